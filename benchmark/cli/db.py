"""``benchmark db init``: create the database (Optuna's and the results tables, optionally the studies) once,
before many workers start, so they do not all race to create the same tables and studies."""

from __future__ import annotations

from benchmark.cli import _common
from benchmark.errors import UserError


def register(subparsers) -> None:
    parser = subparsers.add_parser("db", help="prepare a shared database for many workers (db init)")
    actions = parser.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    init = actions.add_parser(
        "init",
        help="create Optuna's tables, the results tables and (with --dataset/--losses) the studies",
        description="Idempotent: what exists already is left as it is. Run it once, then start the workers.",
    )
    _common.add_storage_args(init)
    init.add_argument("--dataset", default=None, help="also create the studies of this dataset (with --losses)")
    init.add_argument("--losses", default=None, metavar="A,B,C", help="comma-separated loss names (with --dataset)")
    _common.add_loss_module(init)
    from benchmark.config import PROTOCOL_NAMES

    init.add_argument("--protocol", default="mlrc", choices=PROTOCOL_NAMES, help="the studies' protocol (default: mlrc)")
    init.add_argument("--batch-sampler", default=None, metavar="NAME",
                      help="the workers' --batch-sampler, which is part of the study names (default: m_per_class)")
    init.set_defaults(func=_init)


def _init(args) -> int:
    from benchmark.cli.worker import parse_losses
    from benchmark.data.registry import get_spec
    from benchmark.results import ResultsStore, redact_url
    from benchmark.tuning.storage import open_storage
    from benchmark.tuning.namespace import namespaced
    from benchmark.tuning.studies import create_studies, study_name

    if (args.dataset is None) != (args.losses is None):
        raise UserError("--dataset and --losses go together: both name the studies to create, or neither")
    names = []
    _common.load_loss_modules(args)
    if args.dataset is not None:
        get_spec(args.dataset)
        sampler = {} if args.batch_sampler is None else {"batch_sampler": args.batch_sampler}
        label = _common.protocol_from_args(args.protocol, args.dataset, sampler).label
        prefix = _common.study_prefix(args)
        names = [namespaced(prefix, study_name(args.dataset, loss, label)) for loss in parse_losses(args.losses)]
    storage_url, results_url = _common.storage_urls(args)
    storage = open_storage(storage_url)
    print(f"optuna tables ready in {redact_url(storage_url)}")
    with ResultsStore(results_url) as store:
        print(f"results tables ready in {store.url}")
    for name, created in create_studies(storage, names).items():
        print(f"study {name}: {'created' if created else 'already exists'}")
    return 0
