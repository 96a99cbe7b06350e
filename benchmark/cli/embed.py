"""``benchmark embed``: embeddings of a kept model for a dataset split or any image folder -> .npy files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from benchmark.cli import _common
from benchmark.errors import UserError

SPLITS = ("test", "gallery", "trainval", "all")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "embed",
        help="embed a dataset split or an image folder with a kept model (from `benchmark test --keep-models`)",
        description="Writes OUT (float32 [N, D]), OUT with .labels.npy (int64 [N]) and .paths.txt (one image per "
        "line) in place of .npy. --fold I: the raw 128-d embedding of fold model I (what separated-128 scores); "
        "--concatenated: the 4 fold models' L2-normalised embeddings side by side (concatenated-512).",
    )
    parser.add_argument("--study", required=True, help="the tested configuration (see `benchmark status`)")
    parser.add_argument("--reproduction", type=int, default=None,
                        help="which kept reproduction (default: the only one kept, as --keep-models best leaves)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--fold", type=int, help="one fold model's embedding")
    which.add_argument("--concatenated", action="store_true", help="all fold models' concatenated embedding")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--split", choices=SPLITS, default=None,
                        help="images of the model's dataset: test (the test queries; In-Shop: query images), "
                        "gallery (In-Shop), trainval, all (default: test)")
    source.add_argument("--images", type=Path, default=None,
                        help="any folder of images instead (labels: index of the first-level sub-folder, -1 for "
                        "images directly in it)")
    _common.add_data_root(parser)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--out", type=Path, required=True, help="the .npy file to write")
    _common.add_storage_args(parser)
    parser.set_defaults(func=_embed)


def _embed(args) -> int:
    if args.out.suffix != ".npy":
        raise UserError(f"--out {args.out} must end in .npy")
    from benchmark.results import ResultsStore
    from benchmark.results.artifacts import read_fold_model
    from benchmark.training.device import resolve_device

    _, results_url = _common.storage_urls(args)
    device = resolve_device(args.device)
    with ResultsStore(results_url) as store:
        kept = store.kept_models(args.study)
    rows = _pick(kept, args)
    files = [read_fold_model(r["location"], r["artifact_id"], r["sha256"]) for r in rows]
    if args.images is not None:
        paths, labels = _folder_images(args.images)
        data_root = None
    else:
        paths, labels = _split_images(files[0]["meta"], args.split or "test", _common.data_root(args))
        data_root = _common.data_root(args)
    from benchmark.training.kept_models import embed_with

    embeddings = embed_with(files, paths, labels, device, data_root)
    stem = args.out.with_suffix("")
    _write_atomically(args.out, lambda f: _save(f, embeddings))
    _write_atomically(Path(f"{stem}.labels.npy"), lambda f: _save(f, labels))
    _write_atomically(Path(f"{stem}.paths.txt"), lambda f: f.write("".join(f"{p}\n" for p in paths).encode()))
    what = "concatenated" if args.concatenated else f"fold {args.fold}"
    print(f"{args.out}: {embeddings.shape[0]} x {embeddings.shape[1]} embeddings ({args.study}, reproduction "
          f"{rows[0]['reproduction']}, {what}); labels {stem}.labels.npy, paths {stem}.paths.txt")
    return 0


def _pick(kept: list[dict], args) -> list[dict]:
    if not kept:
        raise UserError(f"no kept models of {args.study!r}; run `benchmark test ... --keep-models best` (or all)")
    reproductions = sorted({m["reproduction"] for m in kept})
    reproduction = args.reproduction
    if reproduction is None:
        if len(reproductions) > 1:
            raise UserError(f"{args.study!r} has kept models of reproductions {reproductions}; pick one with "
                            "--reproduction")
        reproduction = reproductions[0]
    rows = [m for m in kept if m["reproduction"] == reproduction]
    if not rows:
        raise UserError(f"reproduction {reproduction} of {args.study!r} has no kept models; kept: {reproductions}")
    if args.fold is not None:
        rows = [m for m in rows if m["fold"] == args.fold]
        if not rows:
            raise UserError(f"--fold {args.fold}: expected one of {sorted(m['fold'] for m in kept)}")
    return rows


def _split_images(meta: dict, split: str, data_root: Path):
    import numpy as np

    from benchmark.data import get_dataset
    from benchmark.data.splits import check_split_hash, make_splits

    dataset = get_dataset(meta["dataset"], data_root, _common.synthetic_config())
    splits = make_splits(dataset, meta["split_scheme"])
    check_split_hash(meta["split_hash"], splits.hash)
    test = np.isin(dataset.labels, np.asarray(splits.test))
    if split == "gallery":
        if dataset.gallery_mask is None:
            raise UserError(f"--split gallery: {meta['dataset']} has no query/gallery split; use test")
        mask = dataset.gallery_mask
    elif split == "test":
        mask = dataset.query_mask if dataset.query_mask is not None else test
    elif split == "trainval":
        mask = ~test
    else:
        mask = np.ones(len(dataset.paths), dtype=bool)
    rows = np.flatnonzero(mask)
    return [dataset.paths[i] for i in rows], dataset.labels[rows].astype(np.int64)


def _folder_images(root: Path):
    import numpy as np

    from benchmark.data.registry import IMAGE_EXTENSIONS

    if not root.is_dir():
        raise UserError(f"--images {root} is not a folder")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not paths:
        raise UserError(f"--images {root} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    groups = sorted({p.relative_to(root).parts[0] for p in paths if len(p.relative_to(root).parts) > 1})
    index = {name: i for i, name in enumerate(groups)}
    labels = np.array([index.get(p.relative_to(root).parts[0], -1) if len(p.relative_to(root).parts) > 1 else -1
                       for p in paths], dtype=np.int64)
    return paths, labels


def _save(f, array) -> None:
    import numpy as np

    np.save(f, array, allow_pickle=False)


def _write_atomically(path: Path, write) -> None:
    """Write through a temporary file in the same folder and rename it: no half-written output."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
