"""``benchmark sweep``: train every point of a hyperparameter grid (a resumable Optuna study with a GridSampler)."""

from __future__ import annotations

from benchmark.cli import _common


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="train every point of a hyperparameter grid over the 4 folds (resumable Optuna study)",
        description="Run (or resume) a grid study: each grid point is one trial that trains the 4 folds and scores "
        "the mean validation MAP@R; parameters not on the grid keep their defaults or --param values. The study "
        "is named after the grid, so the same command resumes and a finished sweep exits 0 at once. The report "
        "shows a sweep as a heatmap (2 parameters) or a line with 95 % intervals over the folds (1 parameter).",
    )
    _common.add_experiment_args(parser)
    _common.add_storage_args(parser)
    parser.add_argument("--grid", action="append", metavar="NAME=V1,V2,...",
                        help="a swept parameter and its values (repeatable: the grid is their product)")
    parser.add_argument("--param", action="append", metavar="NAME=VALUE",
                        help="fix a parameter that is not swept (repeatable; default: its search-space default)")
    parser.set_defaults(func=_sweep)


def _sweep(args) -> int:
    from benchmark.tuning.sweep import Sweep, format_table, parse_grid, sweep_table

    experiment = _common.experiment_from_args(args)
    grid = parse_grid(experiment.search_space, args.grid, _common.parse_params(args.param))
    _common.treat_sigterm_as_interrupt()
    storage, results = _common.storage_urls(args)
    sweep = Sweep(experiment, storage, results, grid=grid, seed=args.seed)
    before = sweep.tuner.summary().finished
    summary = sweep.run()
    state = "is already finished" if before >= summary.total else "finished"
    print(f"sweep {summary.study_name} {state}: {summary.finished}/{summary.total} grid points")
    print(format_table(sweep_table(sweep.tuner.study), list(grid.values)))
    return 0
