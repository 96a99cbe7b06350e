"""``benchmark perf``: evaluation, training-loop, image-pipeline and pruning costs against their baselines."""

from __future__ import annotations

from pathlib import Path

from benchmark.errors import UserError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "perf",
        help="measure the harness's costs against bare baselines (ratios, peak memory) and check the targets",
        description="Side-by-side measurements in one run: retrieval metrics vs PML and a bare faiss kNN search, "
        "validation before/after computing only MAP@R's neighbours, the trainer's epoch loop and a whole fold vs bare "
        "PyTorch loops, the decoded-image cache vs a plain PIL + torchvision pipeline, and the pruners' compute vs "
        "none (a replay of real training curves). Writes a JSON file and prints a table.",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="smaller sizes: ~2 minutes on 2 CPU cores, plus ~15 for the pruning replay's "
                      "training (skip it with --only)")
    size.add_argument("--tiny", action="store_true", help="smoke-test sizes, seconds; the figures mean nothing")
    parser.add_argument("--json", type=Path, default=None,
                        help="where to write the results (default: results/perf.json, with --gpu results/perf-gpu.json)")
    parser.add_argument("--gpu", action="store_true",
                        help="the prepared GPU check instead: MLRC-sized training steps (BN-Inception, 227 px, batch "
                        "32, fp32 and bf16) against a bare loop, device utilisation and peak memory, evaluation at "
                        "60k x 128 with faiss on the GPU vs the CPU (a few minutes on one GPU); with --tiny on a CPU "
                        "it runs the same code at smoke-test sizes")
    parser.add_argument("--device", default="auto", help="for --gpu: auto, cuda, cuda:N or cpu (default: auto)")
    parser.add_argument("--only", metavar="SECTION[,SECTION]",
                        help="run only these of: cli_startup, evaluation, validation, training_loop, fold_throughput, image_pipeline, pruning")
    parser.add_argument("--pools", type=Path, metavar="FILE",
                        help="the pruning section replays the training curves stored in FILE (an earlier `benchmark "
                        "perf` result, e.g. results/perf.json) with their own trials and seeds instead of training new "
                        "ones: seconds, for trying a change to the pruners; the file and its hash are recorded")
    parser.set_defaults(func=_perf)


def _perf(args) -> int:
    from benchmark.perf import suite

    if args.gpu:
        return _gpu_check(args)
    args.json = args.json or Path("results/perf.json")
    settings = suite.PRESETS["tiny" if args.tiny else "quick" if args.quick else "full"]
    if args.only:
        sections = tuple(part.strip() for part in args.only.split(",") if part.strip())
        unknown = sorted(set(sections) - set(suite.SECTIONS))
        if unknown or not sections:
            raise UserError(f"--only {args.only!r}: expected a comma-separated subset of {', '.join(suite.SECTIONS)}")
    else:
        sections = suite.SECTIONS
    if args.json.exists() and args.json.is_dir():
        raise UserError(f"--json {args.json} is a directory; expected a file path")
    stored = None
    if args.pools is not None:
        from benchmark.perf.pruning import load_stored

        if "pruning" not in sections:
            raise UserError(f"--pools is for the pruning section, which --only {args.only!r} leaves out")
        stored = load_stored(args.pools)
    results = suite.run(settings, sections, stored)
    suite.write_json(results, args.json)
    print(suite.table(results))
    print(f"\nwritten to {args.json}")
    return 0


def _gpu_check(args) -> int:
    from benchmark.perf import gpu, suite
    from benchmark.training.device import resolve_device

    if args.quick or args.only or args.pools:
        raise UserError("--gpu takes --tiny, --device and --json only")
    device = resolve_device(args.device)
    if device.type != "cuda" and not args.tiny:
        raise UserError(f"--gpu on {device}: MLRC sizes need a CUDA device; add --tiny to run the same code at "
                        "smoke-test sizes on the CPU")
    path = args.json or Path("results/perf-gpu.json")
    if path.exists() and path.is_dir():
        raise UserError(f"--json {path} is a directory; expected a file path")
    results = gpu.run(device, gpu.SIZES["tiny" if args.tiny else "mlrc"])
    suite.write_json(results, path)
    print(gpu.table(results))
    print(f"\nwritten to {path}")
    return 0
