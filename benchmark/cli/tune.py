"""``benchmark tune``: Bayesian optimisation of one loss's hyperparameters on one dataset (an Optuna study)."""

from __future__ import annotations

from benchmark.cli import _common
from benchmark.errors import UserError
from benchmark.tuning.samplers import PRUNERS, SAMPLERS


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "tune",
        help="optimise a loss's hyperparameters over the 4 folds (resumable Optuna study)",
        description="Run (or resume) the study <dataset>-<loss>-<protocol>: each trial trains the 4 folds and "
        "scores the mean validation MAP@R. --trials is the study's total; a finished study exits 0 at once.",
    )
    _common.add_experiment_args(parser)
    _common.add_storage_args(parser)
    parser.add_argument("--trials", type=int, default=50, help="total trials of the study (default: 50, as MLRC)")
    parser.add_argument("--sampler", default="auto", choices=SAMPLERS,
                        help="auto: GP when every searched parameter is numeric and no pruner is used (every MLRC "
                        "loss; fixed parameters do not count), else TPE; the sampler used is stored on the study "
                        "(default: auto)")
    parser.add_argument("--pruner", default="none", choices=PRUNERS, help="stop hopeless trials between folds, judged from fold 1 on (recommended: successive_halving; see README)")
    parser.add_argument("--no-seed-defaults", dest="seed_defaults", action="store_false",
                        help="do not make a new study's first trial the search space's defaults (MLRC's optimum for "
                        "MLRC's datasets); the choice is recorded in the study")
    parser.add_argument("--space", action="append", metavar="NAME=LOW:HIGH[:log]|A,B,C",
                        help="override a search range (repeatable): LOW:HIGH keeps the scale, LOW:HIGH:log or "
                        "LOW:HIGH:linear sets it, A,B,C lists a categorical parameter's choices, one value fixes the "
                        "parameter, e.g. --space alpha=4:64:log --space scale_schedule=constant,linear")
    parser.set_defaults(func=_tune)


def _tune(args) -> int:
    if args.trials < 1:
        raise UserError(f"--trials must be at least 1, got {args.trials}")
    experiment = _common.experiment_from_args(args)
    if args.space:
        experiment.search_space = experiment.search_space.with_overrides(_common.parse_params(args.space))
    from benchmark.tuning.study import Tuner

    _common.treat_sigterm_as_interrupt()
    storage, results = _common.storage_urls(args)
    tuner = Tuner(experiment, storage, results, total_trials=args.trials, sampler=args.sampler,
                  pruner=args.pruner, seed=args.seed,
                  seed_defaults=args.seed_defaults)
    before = tuner.summary().finished
    summary = tuner.run()
    if before >= summary.total:
        print(f"study {summary.study_name} is already finished: {summary.finished}/{summary.total} trials")
    else:
        print(f"study {summary.study_name}: {summary.finished}/{summary.total} trials finished")
    if summary.best_value is not None:
        print(f"best mean validation MAP@R {summary.best_value:.4f} with {summary.best_params}")
    return 0
