"""``benchmark status``: the studies in a storage, their progress, best value and whether test results exist."""

from __future__ import annotations

import json

from benchmark.cli import _common


def register(subparsers) -> None:
    parser = subparsers.add_parser("status", help="list studies: trials done, best value, test results present")
    _common.add_storage_args(parser)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=_status)


def _status(args) -> int:
    from benchmark.tuning.status import study_statuses

    storage, results = _common.storage_urls(args)
    _common.require_existing_storage(storage)
    _common.require_existing_storage(results)
    rows = study_statuses(storage, results, _common.study_prefix(args))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no studies yet; start one with `benchmark tune --loss NAME --dataset NAME`")
        return 0
    print(f"{'study':<40} {'complete':>8} {'pruned':>6} {'failed':>6} {'running':>7} {'best val MAP@R':>14} "
          f"{'test reps':>9} {'kept models':>11}  learned?")
    for r in rows:
        best = "-" if r["best_value"] is None else f"{r['best_value']:.4f}"
        verdict = {True: "yes", False: "DID NOT LEARN", None: "-"}[r["best_learned"]]
        print(f"{r['study']:<40} {r['complete']:>8} {r['pruned']:>6} {r['failed']:>6} {r['running']:>7} "
              f"{best:>14} {r['test_reproductions']:>9} {_size(r['kept_model_bytes']):>11}  {verdict}")
    _kept_total(results)
    if any(r["best_learned"] is False for r in rows):
        print("DID NOT LEARN: the best trial's 95 % interval over the folds is not above its untrained models' "
              "validation MAP@R")
    return 0


def _kept_total(results_url: str) -> None:
    """All kept models, fixed-parameter tests (which have no study) included."""
    from benchmark.results import load_kept_models

    kept = load_kept_models(results_url)
    if not kept.empty:
        locations = sorted(set(kept["location"]))
        print(f"kept models: {len(kept)} files, {_size(int(kept['bytes'].sum()))} in {', '.join(locations)}")


def _size(count: int) -> str:
    """Bytes for people: 0 -> "-", else in KiB/MiB/GiB with 1 decimal."""
    if not count:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
