"""Arguments several subcommands share, so they are spelled and validated the same way everywhere."""

from __future__ import annotations

import os
import re
from pathlib import Path

from platformdirs import user_cache_dir

from benchmark.errors import UserError, did_you_mean

MAX_SEED = 2**32 - 1
MAX_WORKERS = 256  # DataLoader processes; beyond this a typo, not a machine


def default_data_root() -> Path:
    """``$BENCHMARK_DATA_ROOT``, else the user cache directory (e.g. ~/.cache/benchmark/data)."""
    env = os.environ.get("BENCHMARK_DATA_ROOT")
    return Path(env) if env else Path(user_cache_dir("benchmark")) / "data"


SYNTHETIC_SIZE_ENV = "BENCHMARK_SYNTHETIC_SIZE"
WEIGHTS_DIR_ENV = "BENCHMARK_WEIGHTS_DIR"
SEARCH_SPACES_ENV = "BENCHMARK_SEARCH_SPACES"


def synthetic_config():
    """The size of the generated ``synthetic`` dataset: ``$BENCHMARK_SYNTHETIC_SIZE=CLASSESxPER_CLASS`` (e.g. 16x6)
    shrinks it, for tests and demos."""
    from benchmark.data.synthetic import SyntheticConfig, config_for_size

    value = os.environ.get(SYNTHETIC_SIZE_ENV)
    if not value:
        return SyntheticConfig()
    try:
        return config_for_size(value)
    except ValueError as error:
        raise UserError(f"{SYNTHETIC_SIZE_ENV}={value!r} {error}") from None


def weights_dir() -> Path | None:
    """``$BENCHMARK_WEIGHTS_DIR``: searched for ImageNet weight files before the torch hub folder."""
    env = os.environ.get(WEIGHTS_DIR_ENV)
    return Path(env) if env else None


def search_space_directory() -> Path | None:
    """``$BENCHMARK_SEARCH_SPACES``: a folder of ``<loss>.yaml`` files used instead of the shipped ones."""
    env = os.environ.get(SEARCH_SPACES_ENV)
    if not env:
        return None
    if not Path(env).is_dir():
        raise UserError(f"${SEARCH_SPACES_ENV}={env} is not a folder; expected a folder of <loss>.yaml files")
    return Path(env)


def add_data_root(parser) -> None:
    parser.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="folder holding the datasets (default: $BENCHMARK_DATA_ROOT, else the user cache dir)",
    )


def data_root(args) -> Path:
    return args.data_root if args.data_root is not None else default_data_root()


def parse_params(pairs: list[str] | None) -> dict[str, str]:
    """``["alpha=32", "margin=0.1"]`` -> ``{"alpha": "32", "margin": "0.1"}`` (values are typed by the search space)."""
    params: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise UserError(f"--param {pair!r} is not of the form name=value")
        params[key.strip()] = value.strip()
    return params


def add_experiment_args(parser, *, loss: bool = True) -> None:
    """--loss (unless ``loss`` is false: the command takes its own), --dataset, --protocol and the settings every
    training command shares."""
    from benchmark.config import PROTOCOL_NAMES

    if loss:
        parser.add_argument("--loss", required=True, help="a loss name (see `benchmark losses list`)")
    add_loss_module(parser)
    parser.add_argument("--dataset", required=True, help="a dataset name (see `benchmark datasets list`)")
    parser.add_argument("--protocol", default="mlrc", choices=PROTOCOL_NAMES,
                        help="mlrc: the paper's protocol; quick: a small CPU-sized version; vit: ViT-S/16 DINO "
                        "(timm), not comparable with MLRC (default: mlrc)")
    add_data_root(parser)
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--weights", default=None,
                        help="trunk weights: imagenet (timm trunks: the local cache), none or a file (default: imagenet for mlrc "
                        "and vit, none for quick)")
    parser.add_argument("--split-scheme", default="mlrc", choices=("mlrc", "kfold"),
                        help="mlrc: the paper's fold rotation; kfold: plain rotation, NOT comparable with MLRC")
    parser.add_argument("--workers", type=int, default=None, help="data-loader worker processes")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the model's forward pass (opt-in; for long GPU runs: compiling takes "
                        "a minute or more per fold)")
    parser.add_argument("--batch-sampler", default=None, metavar="NAME",
                        help="how training batches are drawn: m_per_class (MLRC, default) or representative (fixed "
                        "class representatives with hard-class mining; its period and hard_class_share become "
                        "parameters). Not the Optuna --sampler of tune")
    parser.add_argument("--set", action="append", metavar="SETTING=VALUE", dest="protocol_overrides",
                        help="override a protocol setting, e.g. --set max_epochs=3 (repeatable; results are then "
                        "not comparable with the preset's)")


def add_loss_module(parser) -> None:
    parser.add_argument("--loss-module", action="append", type=Path, metavar="FILE.py", default=None,
                        help="load your own losses from a Python file with a LOSSES dict (repeatable; see "
                        "examples/my_dml_loss); installed packages' dml_benchmark.losses entry points load by themselves")


def load_loss_modules(args) -> None:
    """Register the losses of every --loss-module file (validated here, once)."""
    from benchmark.losses.plugins import load_loss_module

    for path in getattr(args, "loss_module", None) or []:
        load_loss_module(path)


def protocol_from_args(name: str, dataset: str, overrides: dict, loss: str | None = None):
    """The protocol preset with ``dataset``'s validation schedule and ``overrides`` (and, for ``loss``, the m per class
    MLRC drew for it), its settings checked, and the names it uses checked against the registries of trunks, batch
    samplers, BatchNorm modes and precisions."""
    from benchmark.config import protocol_for
    from benchmark.data.registry import mlrc_validation
    from benchmark.data.samplers import BATCH_SAMPLERS
    from benchmark.losses import is_classification_loss
    from benchmark.models.embedder import BATCHNORM_MODES
    from benchmark.models.precision import PRECISIONS
    from benchmark.models.trunks import TRUNKS

    classification = loss is not None and is_classification_loss(loss)
    protocol = protocol_for(name, validation=mlrc_validation(dataset), classification_loss=classification, **overrides)
    for what, value, known in (("batchnorm setting", protocol.batchnorm, BATCHNORM_MODES),
                               ("precision", protocol.precision, PRECISIONS), ("trunk", protocol.trunk, TRUNKS),
                               ("batch sampler", protocol.batch_sampler, BATCH_SAMPLERS)):
        if value not in known:
            raise UserError(f"unknown {what} {value!r}; expected one of: {', '.join(known)}")
    return protocol


def experiment_from_args(args):
    """Validate the shared arguments once and resolve them into an Experiment."""
    from benchmark.config import default_weights, search_space_section
    from benchmark.losses.spaces import load_loss_space
    from benchmark.training.device import resolve_device
    from benchmark.training.experiment import Experiment

    if not 0 <= args.seed <= MAX_SEED:
        raise UserError(f"--seed must be an integer from 0 to {MAX_SEED} (numpy's seed range), got {args.seed}")
    load_loss_modules(args)
    overrides = parse_protocol_overrides(args.protocol_overrides)
    if args.batch_sampler is not None:
        overrides["batch_sampler"] = args.batch_sampler
    protocol = protocol_from_args(args.protocol, args.dataset, overrides, loss=args.loss)
    search_space = load_loss_space(args.loss, search_space_section(args.protocol, args.dataset),
                                   search_space_directory())
    if args.workers is not None and not 0 <= args.workers <= MAX_WORKERS:
        raise UserError(f"--workers must be from 0 to {MAX_WORKERS}, got {args.workers}")
    weights = args.weights or default_weights(protocol.name)
    from benchmark.models.trunks import check_weights

    weights_folder = weights_dir()
    check_weights(protocol.trunk, weights, weights_folder)  # before any data is read or study created
    return Experiment.create(
        dataset_name=args.dataset,
        loss_name=args.loss,
        protocol=protocol,
        search_space=search_space,
        data_root=data_root(args),
        device=resolve_device(args.device),
        weights=weights,
        split_scheme=args.split_scheme,
        num_workers=args.workers,
        study_prefix=study_prefix(args),
        compile=args.compile,
        weights_dir=weights_folder,
        synthetic=synthetic_config(),
    )


def parse_folds(text: str | None, num_folds: int) -> list[int] | None:
    """``--folds 1,3`` (folds numbered 1..N, as people count) -> internal indices ``[0, 2]``."""
    if text is None:
        return None
    try:
        folds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--folds {text!r} is not a comma-separated list of fold numbers") from None
    bad = [f for f in folds if not 1 <= f <= num_folds]
    if bad or not folds:
        raise UserError(f"--folds {text!r}: expected fold numbers in 1..{num_folds}")
    return [f - 1 for f in folds]


STUDY_PREFIX_ENV = "BENCHMARK_STUDY_PREFIX"
_STUDY_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def study_prefix(args) -> str:
    """The validated ``--study-prefix`` (default ``$BENCHMARK_STUDY_PREFIX``), or "" for none."""
    prefix = getattr(args, "study_prefix", None)
    if prefix is None:
        prefix = os.environ.get(STUDY_PREFIX_ENV, "")
    if prefix and not _STUDY_PREFIX.match(prefix):
        raise UserError(f"--study-prefix {prefix!r}: expected 1-64 letters, digits, '_', '.' or '-', starting with a "
                        "letter or digit (e.g. your user name)")
    return prefix


def add_storage_args(parser) -> None:
    parser.add_argument("--storage", default=None,
                        help="Optuna storage URL (default: sqlite:///results/benchmark.db; also postgresql://..., "
                        "journal:///path/file.log)")
    parser.add_argument("--study-prefix", default=None, metavar="NAME",
                        help=f"study namespace: studies are named NAME/<dataset>-<loss>-<protocol>, so users of one "
                        f"shared database never share a study; status/report/check show only NAME's (default: "
                        f"${STUDY_PREFIX_ENV}, else none)")
    parser.add_argument("--results-db", default=None,
                        help="results database URL (default: the --storage database; for a journal storage "
                        "sqlite:///results/benchmark.db)")


def require_existing_storage(url: str) -> None:
    """Commands that only read (status, report, check) refuse a SQLite or journal file that does not exist instead
    of creating an empty one: a mistyped path must not look like an empty benchmark."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from benchmark.results import redact_url

    if url.startswith("journal://"):
        path = Path(url[len("journal://"):])
    else:
        try:
            parsed = make_url(url)
        except ArgumentError:
            return  # the storage's own error names it
        database = parsed.database
        if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:" or database.startswith(
                "file:"):
            return
        path = Path(database)
    if not path.is_file():
        raise UserError(f"no database at {path} (from --storage {redact_url(url)}); check the path, or create one "
                        "with `benchmark tune`")


def storage_urls(args) -> tuple[str, str]:
    from benchmark.results.db import DEFAULT_STORAGE

    storage = args.storage or DEFAULT_STORAGE
    results = args.results_db or (DEFAULT_STORAGE if storage.startswith("journal://") else storage)
    return storage, results


def treat_sigterm_as_interrupt() -> None:
    """A scheduler's SIGTERM (Slurm, Kubernetes, docker stop) is handled like Ctrl-C: the running trial or
    reproduction is recorded as failed, everything completed stays, and a rerun resumes."""
    import signal

    from benchmark import interrupts

    main_pid = os.getpid()

    def _interrupt(signum, frame):
        if os.getpid() != main_pid:
            # A forked DataLoader worker inherits this handler. A SIGTERM sent to the whole process group (docker
            # stop, Slurm) is the main process's to handle: it records and re-queues the interrupted work and shuts
            # its workers down; a worker raising or dying here would only add tracebacks.
            return
        interrupts.request()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    interrupts.quiet_swallowed_interrupts()


def parse_protocol_overrides(pairs: list[str] | None) -> dict:
    """``["max_epochs=3"]`` -> ``{"max_epochs": 3}``, typed like the Protocol field it sets (protocol_for checks the
    values' domains)."""
    from dataclasses import fields

    from benchmark.config import Protocol, parse_setting

    names = {f.name for f in fields(Protocol)} - {"name"}
    overrides = {}
    for key, text in parse_params(pairs).items():
        if key not in names:
            raise UserError(f"unknown protocol setting {key!r}{did_you_mean(key, names)}; expected one of: "
                            f"{', '.join(sorted(names))}")
        overrides[key] = parse_setting(key, text)
    return overrides
