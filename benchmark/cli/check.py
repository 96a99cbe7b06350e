"""``benchmark check``: compare current metrics with a baseline file; exit 1 on a regression beyond tolerance.

Without --run the current metrics are the storage's test results (mean and 95 % interval over reproductions);
with --run, a small fixed and seeded benchmark on the synthetic dataset, trained in a temporary folder (about
30 s on a CPU). --update writes the current metrics as the new baseline (atomically) instead of failing.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from benchmark.cli import _common
from benchmark.errors import UserError

logger = logging.getLogger(__name__)


def register(subparsers) -> None:
    from benchmark.report.baseline import DEFAULT_TOLERANCE

    parser = subparsers.add_parser(
        "check", help="compare results with a baseline file; exit 1 on a regression (for CI)",
        description="Print metric | baseline | current | delta | allowed | verdict. A metric regresses when it "
        "drops by more than the larger of --tolerance and the half-widths of the 95 % intervals (baseline and "
        "current, where known); a baseline metric with no current value also fails. Exit 0 when nothing "
        "regressed, 1 on a regression, 2 on a malformed baseline or bad input.",
    )
    _common.add_storage_args(parser)
    parser.add_argument("--baseline", type=Path, default=Path("results/baseline.json"),
                        help="the baseline JSON (default: results/baseline.json)")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help=f"smallest allowed drop of a metric, absolute (default: {DEFAULT_TOLERANCE})")
    parser.add_argument("--run", action="store_true",
                        help="measure a small fixed, seeded benchmark on synthetic data instead of reading storage")
    parser.add_argument("--update", action="store_true", help="write the current metrics as the new baseline")
    parser.set_defaults(func=_check)


def _check(args) -> int:
    from benchmark.report import baseline as bl
    from benchmark.training.fixed_run import RUN_SETTINGS, run_values
    from benchmark.results import redact_url

    if not args.tolerance >= 0:
        raise UserError(f"--tolerance must be a number >= 0, got {args.tolerance}")
    existing = None
    if not args.update or args.baseline.exists():
        try:
            existing = bl.load_baseline(args.baseline)
        except UserError:
            if not args.update:
                raise
            logger.warning("replacing the unreadable baseline %s", args.baseline)
    # Without --run or a storage, check what the baseline holds: `check --baseline results/baseline.json` (the
    # README's example, a --run baseline) reruns the fixed benchmark instead of failing on the default storage.
    follows_baseline = (not args.run and args.storage is None and args.results_db is None and existing is not None
                        and existing["source"] == "run")
    if follows_baseline:
        logger.info("%s holds --run metrics: running the fixed benchmark", args.baseline)
    args.run = args.run or follows_baseline
    source = "run" if args.run else "storage"
    if existing is not None and existing["source"] != source and not args.update:
        hint = "pass --run" if existing["source"] == "run" else "leave out --run"
        raise UserError(f"the baseline {args.baseline} holds {existing['source']} metrics; {hint} (or --update)")
    if existing is not None and source == "run" and existing.get("settings") != RUN_SETTINGS and not args.update:
        raise UserError(f"the baseline {args.baseline} was made with other --run settings than this version's; "
                        "rerun with --update to replace it")
    started = time.monotonic()
    if args.run:
        current, settings = {key: bl.Value(value) for key, value in run_values().items()}, RUN_SETTINGS
    else:
        storage, results = _common.storage_urls(args)
        _common.require_existing_storage(results)
        prefix = _common.study_prefix(args)
        current = {key: value for key, value in bl.storage_values(results).items()
                   if not prefix or key.startswith(f"{prefix}/")}
        settings = {"results": redact_url(results), **({"study_prefix": prefix} if prefix else {})}
        if not current:
            raise UserError(f"no test results in {redact_url(results)} to check; run `benchmark test` first, or use --run")
    logger.info("measured %d metrics in %.1f s", len(current), time.monotonic() - started)
    baseline_values = bl.baseline_values(existing) if existing is not None and existing["source"] == source else {}
    rows = bl.compare(baseline_values, current, args.tolerance)
    print(bl.format_table(rows))
    if args.update:
        bl.write_baseline(args.baseline, source, settings, current)
        print(f"wrote the baseline {args.baseline}")
        return 0
    failed = [r.metric for r in rows if r.failed]
    if failed:
        print(f"{len(failed)} regression(s): {', '.join(failed)}")
        return 1
    print("no regression")
    return 0
