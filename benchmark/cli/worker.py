"""``benchmark worker``: serve the studies of several losses on one dataset, one trial at a time, until all are done.

Start as many as you like, on as many machines as you like, pointed at the same storage (PostgreSQL for several
machines): each takes the least advanced unfinished study every time, and together they stop at each study's total.
One worker per GPU: ``--device cuda:0``, ``--device cuda:1``, ...
"""

from __future__ import annotations

import argparse

from benchmark.cli import _common
from benchmark.errors import UserError
from benchmark.tuning.samplers import PRUNERS, SAMPLERS


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="tune several losses' studies, one trial at a time, alongside other workers (multi-GPU/multi-node)",
        description="Loop: take the study <dataset>-<loss>-<protocol> (of --losses) with the fewest finished+running "
        "trials that is below its total, train one trial of it; exit 0 when every study has --trials finished trials.",
    )
    parser.add_argument("--losses", required=True, metavar="A,B,C", help="comma-separated loss names")
    _common.add_experiment_args(parser, loss=False)
    _common.add_storage_args(parser)
    parser.add_argument("--trials", type=int, default=50, help="total trials of each study (default: 50, as MLRC)")
    parser.add_argument("--sampler", default="auto", choices=SAMPLERS,
                        help="auto: GP for numeric spaces without pruning, else TPE (default: auto)")
    parser.add_argument("--pruner", default="none", choices=PRUNERS, help="stop hopeless trials between folds, judged from fold 1 on (recommended: successive_halving; see README)")
    parser.add_argument("--no-seed-defaults", dest="seed_defaults", action="store_false",
                        help="do not make a new study's first trial the search space's defaults (MLRC's optimum for "
                        "MLRC's datasets); the choice is recorded in the study")
    parser.set_defaults(func=_worker)


def parse_losses(text: str) -> list[str]:
    """``"a,b,a"`` -> ``["a", "b"]``, every name checked against the loss registry (plugins included)."""
    from benchmark.losses import loss_names

    losses = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not losses:
        raise UserError(f"--losses {text!r} names no loss; expected e.g. --losses contrastive,proxy_anchor")
    known = loss_names()
    unknown = [name for name in losses if name not in known]
    if unknown:
        raise UserError(f"unknown loss {unknown[0]!r} in --losses; expected some of: {', '.join(known)}")
    return losses


def _worker(args) -> int:
    if args.trials < 1:
        raise UserError(f"--trials must be at least 1, got {args.trials}")
    _common.load_loss_modules(args)
    losses = parse_losses(args.losses)
    experiments = [_common.experiment_from_args(argparse.Namespace(**vars(args), loss=loss)) for loss in losses]
    from benchmark.tuning.study import Tuner
    from benchmark.tuning.worker import run_worker

    _common.treat_sigterm_as_interrupt()
    storage, results = _common.storage_urls(args)
    tuners = [Tuner(e, storage, results, total_trials=args.trials, sampler=args.sampler, pruner=args.pruner,
                    seed=args.seed, seed_defaults=args.seed_defaults) for e in experiments]
    for summary in run_worker(tuners):
        best = "" if summary.best_value is None else f", best mean validation MAP@R {summary.best_value:.4f}"
        print(f"study {summary.study_name}: {summary.finished}/{summary.total} trials finished{best}")
    return 0
