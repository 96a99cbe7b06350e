"""`benchmark datasets list|verify|splits|download`: what datasets exist, whether the local copy is whole, the exact
class splits (as original class ids) and fetching the ones with a public archive.

`synthetic` is generated on first use; $BENCHMARK_SYNTHETIC_SIZE=CLASSESxPER_CLASS (e.g. 16x6) makes it smaller.
"""

from __future__ import annotations

import logging

from benchmark.cli._common import add_data_root, data_root, synthetic_config
from benchmark.data.splits import SCHEMES

logger = logging.getLogger(__name__)


def register(subparsers) -> None:
    parser = subparsers.add_parser("datasets", help="list, verify, split and download datasets", description=__doc__)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    actions.add_parser("list", help="the known datasets and their expected layout").set_defaults(func=_list)

    verify = actions.add_parser("verify", help="count images and classes and decode every image")
    verify.add_argument("name")
    add_data_root(verify)
    verify.set_defaults(func=_verify)

    splits = actions.add_parser("splits", help="the class splits (original class ids) and their hash")
    splits.add_argument("name")
    add_data_root(splits)
    splits.add_argument("--scheme", choices=SCHEMES, default="mlrc",
                        help="mlrc: the paper's rotation (default); kfold: plain rotation, not MLRC-comparable")
    splits.add_argument("--json", action="store_true", help="print the splits as JSON")
    splits.set_defaults(func=_splits)

    download = actions.add_parser("download", help="fetch, verify and unpack a dataset into DATA_ROOT/NAME")
    download.add_argument("name")
    add_data_root(download)
    download.add_argument("--url", help="a mirror of the archive (the registry's checksum still applies)")
    download.add_argument("--md5", help="expected md5 of the archive (replaces the registry's)")
    download.add_argument("--sha256", help="expected sha256 of the archive (replaces the registry's)")
    download.set_defaults(func=_download)


def _list(args) -> int:
    from benchmark.data.registry import DATASETS

    width = max(map(len, DATASETS))
    for spec in DATASETS.values():
        print(f"{spec.name:<{width}}  {spec.description}")
        print(f"{'':<{width}}  layout: {spec.layout}")
    return 0


def _verify(args) -> int:
    from benchmark.data.cache import decode_image
    from benchmark.data.registry import get_dataset

    dataset = get_dataset(args.name, data_root(args), synthetic_config())
    for i, path in enumerate(dataset.paths, 1):
        decode_image(path)
        if i % 5000 == 0:
            logger.info("decoded %d of %d images", i, len(dataset))
    print(f"{dataset.name}: {len(dataset)} images, {len(dataset.class_ids)} classes, all decode ({dataset.root})")
    return 0


def _splits(args) -> int:
    from benchmark.data.registry import get_dataset
    from benchmark.data.splits import make_splits

    splits = make_splits(get_dataset(args.name, data_root(args), synthetic_config()), args.scheme)
    if args.json:
        print(splits.to_json())
        return 0
    print(f"{splits.dataset} ({splits.scheme}), hash {splits.hash}")
    print(f"test: {len(splits.test)} classes, ids {_span(splits.test)}")
    for k, fold in enumerate(splits.folds):
        print(f"fold {k}: train {len(fold.train)} classes, val {len(fold.val)} classes, val ids {_span(fold.val)}")
    return 0


def _span(ids: list[int]) -> str:
    """Consecutive runs, e.g. ``1-24, 50-74``."""
    runs: list[list[int]] = []
    for i in ids:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in runs)


def _download(args) -> int:
    from benchmark.data.download import download_dataset

    target = download_dataset(args.name, data_root(args), url=args.url, md5=args.md5, sha256=args.sha256)
    print(target)
    return 0
