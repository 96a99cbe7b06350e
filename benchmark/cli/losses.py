"""``benchmark losses list|show``: the losses that can be benchmarked, built-in and your own, with their search
spaces."""

from __future__ import annotations

import json
import math

from benchmark.cli import _common


def register(subparsers) -> None:
    parser = subparsers.add_parser("losses", help="list the losses (built-in and plugins) and show their search spaces")
    actions = parser.add_subparsers(dest="losses_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="every loss: where it comes from and what it searches")
    _common.add_loss_module(listing)
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=_list)
    show = actions.add_parser("show", help="one loss's parameters: ranges, log scale, defaults, domains, source")
    show.add_argument("name", help="a loss name")
    show.add_argument("--dataset", default="", help="apply this dataset's ranges and defaults (e.g. MLRC's optima)")
    _common.add_loss_module(show)
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=_show)


def describe(name: str, dataset: str = "") -> dict:
    """Everything ``show`` prints about a loss, as plain data."""
    from benchmark.losses.plugins import find_plugin
    from benchmark.losses.spaces import load_loss_space

    space = load_loss_space(name, dataset, _common.search_space_directory())
    plugin = find_plugin(name)
    if plugin is None:
        code = {"origin": "built-in", "file": "benchmark/losses/registry.py"}
    else:
        code = {"origin": plugin.origin, "class": plugin.loss_class.__qualname__,
                "file": str(plugin.source_file), "sha256": plugin.source_sha256}
    return {"loss": name, "dataset": dataset or None, "search_space_file": str(space.path), "source": space.source,
            "code": code, "fingerprint": space.fingerprint(),
            "params": {n: {**spec.to_dict(), "description": spec.description} for n, spec in space.params.items()}}


def _list(args) -> int:
    from benchmark.losses import loss_names

    _common.load_loss_modules(args)
    rows = [describe(name) for name in loss_names()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["loss"]) for r in rows)
    print(f"{'loss':<{width}}  {'origin':<10}  searched parameters")
    for r in rows:
        searched = [n for n, p in r["params"].items() if p["tune"]]
        origin = "built-in" if r["code"]["origin"] == "built-in" else "plugin"
        print(f"{r['loss']:<{width}}  {origin:<10}  {', '.join(searched) or '-'}")
    plugins = [r for r in rows if r["code"]["origin"] != "built-in"]
    for r in plugins:
        print(f"  {r['loss']}: {r['code']['origin']}")
    return 0


def _show(args) -> int:
    _common.load_loss_modules(args)
    info = describe(args.name, args.dataset)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['loss']}{f' on {args.dataset}' if args.dataset else ''}")
    code = info["code"]
    print(f"  code: {code['origin']}" + (f", {code['class']} in {code['file']} (sha256 {code['sha256'][:12]})"
                                         if "sha256" in code else f" ({code['file']})"))
    print(f"  search space: {info['search_space_file']} (fingerprint {info['fingerprint']})")
    print(f"  source: {info['source']}")
    print(f"  {'parameter':<20} {'type':<11} {'searched':<8} {'range':<24} {'default':<12} {'domain':<12} description")
    for name, p in info["params"].items():
        if p["type"] == "categorical":
            span = ",".join(map(str, p["choices"]))
        else:
            span = f"[{_num(p['low'])}, {_num(p['high'])}]{' log' if p['log'] else ''}"
        domain = p.get("domain", "-")
        print(f"  {name:<20} {p['type']:<11} {'yes' if p['tune'] else 'no':<8} {span:<24} {_num(p['default']):<12} "
              f"{domain:<12} {p['description']}")
    return 0


def _num(value) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) and math.isfinite(value) else str(value)
