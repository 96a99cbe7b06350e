"""``benchmark test``: retrain the best configuration and report separated-128 / concatenated-512 test metrics."""

from __future__ import annotations

from benchmark.cli import _common
from benchmark.errors import UserError
from benchmark.evaluation.registry import METRICS, MODES


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "test",
        help="retrain the study's best configuration and evaluate on the test classes (resumable)",
        description="Retrain the best trial's hyperparameters --reproductions times (4 fold models each), embed "
        "the test classes and report separated-128 and concatenated-512 metrics with 95 % t-intervals.",
    )
    _common.add_experiment_args(parser)
    _common.add_storage_args(parser)
    parser.add_argument("--reproductions", type=int, default=10, help="retrainings (default: 10, as MLRC)")
    parser.add_argument("--param", action="append", metavar="NAME=VALUE",
                        help="test fixed parameters instead of the study's best: the search space's defaults with "
                        "these set (repeatable; stored under the study name plus [NAME=VALUE,...])")
    parser.add_argument("--keep-models", default="best", choices=("none", "best", "all"),
                        help="keep the trained fold models (trunk + embedder state dicts) for `benchmark embed`: "
                        "best: the reproduction with the highest separated-128 test MAP@R; all; none (default: best)")
    parser.add_argument("--models", default=None, metavar="DIR|s3://BUCKET/PREFIX",
                        help="artifact store of kept models (default: models/ next to a SQLite results database, "
                        "else results/models; s3:// needs boto3)")
    parser.set_defaults(func=_test)


def _test(args) -> int:
    if args.reproductions < 1:
        raise UserError(f"--reproductions must be at least 1, got {args.reproductions}")
    experiment = _common.experiment_from_args(args)
    from benchmark.tuning.test_phase import run_test

    _common.treat_sigterm_as_interrupt()
    storage, results = _common.storage_urls(args)
    fixed = experiment.search_space.coerce(_common.parse_params(args.param))
    summary = run_test(experiment, storage, results, args.reproductions, args.seed, fixed=fixed,
                       keep_models=args.keep_models, models_location=args.models)
    shown = f" {fixed}" if fixed else ""
    print(f"{args.loss}{shown} on {args.dataset} ({experiment.label}): test classes, mean [95% CI]")
    from benchmark.results import learned, load_test_results
    from benchmark.tuning.test_phase import UNTRAINED_PREFIX

    values = load_test_results(results)
    values = values[(values["study_name"] == summary["study_name"].iloc[0])
                    & (values["metric"] == "mean_average_precision_at_r")]
    for mode in MODES:
        rows = summary[summary["mode"] == mode].set_index("metric")
        cells = []
        for metric in METRICS.values():
            row = rows.loc[metric.key]
            interval = (f"[{row['ci_low']:.4f}, {row['ci_high']:.4f}]" if row["n"] > 1
                        else "[no interval from 1 reproduction]")
            cells.append(f"{metric.label} {row['mean']:.4f} {interval}")
        trained = values[values["mode"] == mode]["value"]
        untrained = values[values["mode"] == UNTRAINED_PREFIX + mode]["value"]
        verdict = "" if untrained.empty else (
            f"  untrained MAP@R {untrained.mean():.4f}"
            + ("" if learned(trained, untrained) else "  DID NOT LEARN (MAP@R interval not above untrained)"))
        print(f"  {mode:<17} n={int(rows['n'].iloc[0])}  " + "  ".join(cells) + verdict)
    for fold in experiment.scale_record(summary.attrs.get("params", {})).get("adacos", []):
        print(f"  fold {fold['fold']}: {fold['schedule']} with C = {fold['classes']} training classes, "
              f"s = sqrt(2) ln(C - 1) = {fold['scale']:.3f}{' at the start' if fold['schedule'] == 'adacos_dynamic' else ''}")
    return 0
