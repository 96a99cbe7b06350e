"""``benchmark run``: train the 4 folds once with given hyperparameters and print their validation metrics."""

from __future__ import annotations

import json

from benchmark.cli import _common


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="train the folds once with given hyperparameters (a building block of tuning; for debugging)",
        description="Train the 4 cross-validation folds once with the given hyperparameters and print each "
        "fold's validation metrics next to the untrained model's. Parameters not given take the search space's "
        "default for the dataset (MLRC's optimum where published).",
    )
    _common.add_experiment_args(parser)
    parser.add_argument("--param", action="append", metavar="NAME=VALUE", help="a hyperparameter (repeatable)")
    parser.add_argument("--folds", default=None, help="comma-separated fold numbers, 1-4 (default: all)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.set_defaults(func=_run)


def _run(args) -> int:
    from benchmark.training.run import mean_validation_map_at_r, run_folds

    experiment = _common.experiment_from_args(args)
    space = experiment.search_space
    params = {**space.defaults(), **space.coerce(_common.parse_params(args.param))}
    folds = _common.parse_folds(args.folds, experiment.protocol.num_folds)
    trainer = experiment.trainer(params)
    results = run_folds(trainer, experiment.fold_run, seed=args.seed, folds=folds)
    if args.json:
        print(json.dumps(
            {
                "loss": args.loss, "dataset": args.dataset, "protocol": experiment.label, "params": params,
                "seed": args.seed, "split_hash": experiment.splits.hash,
                "folds": [
                    {"fold": r.fold + 1, "status": r.status, "best_epoch": r.best_epoch,
                     "epochs_trained": r.epochs_trained, "untrained": r.untrained_metrics, "best": r.best_metrics,
                     "curve": r.curve, "proxy_diagnostics": r.proxy_diagnostics}
                    for r in results
                ],
                "mean_val_map_at_r": mean_validation_map_at_r(results),
            },
            indent=2,
        ))
        return 0
    from benchmark.evaluation.registry import METRICS, OBJECTIVE
    from benchmark.search_space import format_params

    print(f"{args.loss} on {args.dataset} ({experiment.label}), params {format_params(params)}")
    # The objective first, then every other metric of the table.
    shown = [METRICS[OBJECTIVE], *(m for m in METRICS.values() if m.key != OBJECTIVE)]
    untrained_head = f"untrained {METRICS[OBJECTIVE].label}"
    print(f"{'fold':>4}  {'status':<15} {'epochs':>6} {'best':>4}  {untrained_head:>15}  "
          + "  ".join(f"{m.label:>{max(7, len(m.label))}}" for m in shown))
    for r in results:
        print(f"{r.fold + 1:>4}  {r.status:<15} {r.epochs_trained:>6} {r.best_epoch:>4}  "
              f"{r.untrained_metrics[OBJECTIVE]:>15.4f}  "
              + "  ".join(f"{r.best_metrics[m.key]:>{max(7, len(m.label))}.4f}" for m in shown))
    if params.get("scale_schedule", "constant") != "constant":
        print(f"softmax scale by epoch ({params['scale_schedule']} schedule):")
        for r in results:
            print(f"{r.fold + 1:>4}  " + " ".join(f"{row['scale']:.3g}" for row in r.curve))
    from benchmark.results import learned

    best = [r.best_metrics[OBJECTIVE] for r in results]
    untrained = [r.untrained_metrics[OBJECTIVE] for r in results]
    if len(results) < 2:
        verdict = "  (one fold: no interval to tell learning from noise)"
    elif learned(best, untrained):
        verdict = ""
    else:
        verdict = "  DID NOT LEARN: the folds' 95 % interval is not above the untrained model"
    print(f"mean validation MAP@R: {mean_validation_map_at_r(results):.4f} (untrained "
          f"{sum(untrained) / len(untrained):.4f}, {sum(best) / max(sum(untrained), 1e-12):.1f}x){verdict}")
    return 0
