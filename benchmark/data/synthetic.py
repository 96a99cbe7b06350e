"""The embedded default dataset: a small, offline, fine-grained image set generated from a seed.

Every class belongs to one of a few super-classes that fix the object's layout (body shape, where its parts sit and
what shape they have); classes of the same super-class differ only in details: which palette colour each part has,
small shifts of the parts, and a small mark on the body. Classes come in look-alike twins (c and c + superclasses,
within each block of 2 x superclasses): the same layout and colours but for one part's colour and where the mark
sits. Each image adds nuisances that a metric must learn to ignore: a background drawn from one shared pool of
scenes (so it never identifies a class), mirrored or turned; pose (flip, rotation, scale, translation, every part
moved and resized a little); colour jitter of each part, lighting and white balance; clutter drawn from the objects'
own palette; and partial occlusion. Super-classes are interleaved (class c has super-class c mod S), so both halves
of the classes (train+val and test) contain every layout and the test classes are new combinations of familiar parts.

Calibration (generator version 2, measured with `make demo`: 100 classes x 12 images, test = classes 50-99,
separated-128 MAP@R, mean of 5 reproductions): the untrained small CNN 0.0118; trained for only 100 steps of the
quick preset (10 epochs x 10) contrastive reaches 0.033 and proxy_anchor 0.028 (concatenated-512: 0.052, 0.038),
i.e. 2.4-2.8x, both 95 % intervals entirely above the untrained value. At the default size (200 x 30) the full
quick preset (`benchmark run --loss multi_similarity --dataset synthetic --protocol quick`, 4 folds of classes 0-99)
reaches validation MAP@R 0.245 from 0.014 untrained, best epochs 38-40 of 40. (Version 1, without shared
backgrounds or twins, let the same CNN reach 0.32 on classes 100-199 after ~480 Adam steps.)

Images are written once to ``<data_root>/synthetic/<class>/<n>.png`` (the ``folder`` layout) with a manifest;
they are regenerated only when the manifest (generator version, seed, sizes) differs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from benchmark.errors import UserError

logger = logging.getLogger(__name__)

# Bump whenever the drawing changes, so existing copies are regenerated.
GENERATOR_VERSION = 2
MANIFEST = "manifest.json"

# Shared by object parts and clutter, so colour alone never identifies a class.
_PALETTE = np.array(
    [
        (220, 50, 47), (38, 139, 210), (133, 153, 0), (181, 137, 0), (211, 54, 130),
        (42, 161, 152), (108, 113, 196), (203, 75, 22), (240, 240, 240), (30, 30, 30),
    ],
    dtype=np.float32,
)
_SHAPES = ("ellipse", "rectangle", "triangle", "diamond")
_SUPERSAMPLE = 2
_BACKGROUNDS = 24  # the shared scene pool
_TURNS = (Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.ROTATE_90,
          Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270, Image.Transpose.TRANSPOSE,
          Image.Transpose.TRANSVERSE)


@dataclass(frozen=True)
class SyntheticConfig:
    classes: int = 200
    per_class: int = 30
    size: int = 48
    seed: int = 0
    superclasses: int = 8
    parts: int = 3

    def manifest(self) -> dict:
        return {"generator_version": GENERATOR_VERSION, **asdict(self)}


def config_for_size(value: str) -> SyntheticConfig:
    """``CLASSESxPER_CLASS`` (e.g. ``16x6``): a smaller set, for tests and demos; ValueError says what is wrong."""
    classes, sep, per_class = value.lower().partition("x")
    if not (sep and classes.isdigit() and per_class.isdigit() and int(classes) >= 2 and int(per_class) >= 2):
        raise ValueError("is not of the form CLASSESxPER_CLASS with both >= 2, e.g. 16x6")
    return SyntheticConfig(classes=int(classes), per_class=int(per_class))


def ensure_synthetic(directory: Path, config: SyntheticConfig) -> Path:
    """Generate the set into ``directory`` unless its manifest already matches ``config``; return ``directory``."""
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        with _lock(directory.parent / f".{directory.name}.lock"):
            _ensure_locked(directory, config)
    except OSError as error:
        raise UserError(f"cannot write the synthetic dataset to {directory}: {error.strerror}") from None
    return directory


def _ensure_locked(directory: Path, config: SyntheticConfig) -> None:
    # Under the lock nobody else is generating: a .synthetic.* folder is what a killed generation left behind.
    for stale in directory.parent.glob(f".{directory.name}.*"):
        if stale.is_dir() and not stale.is_symlink():
            logger.info("removing %s, left behind by an interrupted generation", stale)
            shutil.rmtree(stale, ignore_errors=True)
    if _read_manifest(directory) == config.manifest():
        return
    logger.info("generating the synthetic dataset (%d classes x %d images) in %s",
                config.classes, config.per_class, directory)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        generate(tmp, config)
        old = None
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old.{os.getpid()}")
            os.replace(directory, old)
        os.replace(tmp, directory)
        if old is not None:
            shutil.rmtree(old)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def generate(directory: Path, config: SyntheticConfig) -> None:
    """Write every image and, last, the manifest (its presence marks a complete set)."""
    width = len(str(config.classes - 1))
    backgrounds = _backgrounds(np.random.default_rng([config.seed, 4]), config.size * _SUPERSAMPLE)
    layouts = [_layout(np.random.default_rng([config.seed, 1, s]), config.parts) for s in range(config.superclasses)]
    for c in range(config.classes):
        layout = layouts[c % config.superclasses]
        details = _class_details(config, c)
        class_dir = directory / f"{c:0{width}d}"
        class_dir.mkdir(parents=True)
        for n in range(config.per_class):
            rng = np.random.default_rng([config.seed, 3, c, n])
            _render(rng, layout, details, config.size, backgrounds).save(class_dir / f"{n}.png", compress_level=1)
    (directory / MANIFEST).write_text(json.dumps(config.manifest(), indent=1, sort_keys=True))


def _class_details(config: SyntheticConfig, c: int) -> dict:
    """Classes c and c + superclasses (same layout) are twins: one part colour and the mark tell them apart."""
    s = config.superclasses
    pair = (c // (2 * s)) * s + c % s
    details = _details(np.random.default_rng([config.seed, 2, pair]), config.parts)
    if (c // s) % 2:
        details = _twin(np.random.default_rng([config.seed, 5, pair]), details)
    return details


def _read_manifest(directory: Path) -> dict | None:
    try:
        return json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _lock(path: Path):
    # Parallel workers may ask for the set at the same time; only one generates it.
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _layout(rng: np.random.Generator, parts: int) -> dict:
    """A super-class: body shape and aspect, and for each part its shape, place and size."""
    angles = np.sort(rng.uniform(0, 2 * math.pi, parts))
    return {
        "body": _SHAPES[rng.integers(len(_SHAPES))],
        "aspect": float(rng.uniform(0.55, 1.0)),
        "parts": [
            {
                "shape": _SHAPES[rng.integers(len(_SHAPES))],
                "pos": (float(0.75 * math.cos(a)), float(0.75 * math.sin(a))),
                "size": float(rng.uniform(0.3, 0.45)),
            }
            for a in angles
        ],
    }


def _details(rng: np.random.Generator, parts: int) -> dict:
    """A class within its super-class: palette colours, small part shifts, and a mark on the body."""
    colours = rng.choice(len(_PALETTE), size=parts + 2, replace=False)
    return {
        "body_colour": int(colours[0]),
        "part_colours": [int(i) for i in colours[1:parts + 1]],
        "shifts": [(float(x), float(y)) for x, y in rng.uniform(-0.12, 0.12, (parts, 2))],
        "mark_colour": int(colours[-1]),
        "mark_pos": (float(rng.uniform(-0.35, 0.35)), float(rng.uniform(-0.35, 0.35))),
        "mark_bar": bool(rng.integers(2)),
    }


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, rx: float, ry: float, fill) -> None:
    if shape == "ellipse":
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=fill)
    elif shape == "rectangle":
        draw.rectangle((cx - rx, cy - ry, cx + rx, cy + ry), fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - ry), (cx + rx, cy + ry), (cx - rx, cy + ry)], fill=fill)
    else:
        draw.polygon([(cx, cy - ry), (cx + rx, cy), (cx, cy + ry), (cx - rx, cy)], fill=fill)


def _twin(rng: np.random.Generator, details: dict) -> dict:
    """A look-alike of ``details``: one part recoloured (to a colour the class does not use) and the mark moved."""
    used = {details["body_colour"], details["mark_colour"], *details["part_colours"]}
    part_colours = list(details["part_colours"])
    part_colours[rng.integers(len(part_colours))] = int(rng.choice(sorted(set(range(len(_PALETTE))) - used)))
    return {**details, "part_colours": part_colours,
            "mark_pos": (float(rng.uniform(-0.35, 0.35)), float(rng.uniform(-0.35, 0.35)))}


def _backgrounds(rng: np.random.Generator, big: int) -> list[Image.Image]:
    """The shared scenes: every image draws one at random (turned or mirrored), so a background never identifies a
    class. Each blends two colours through smooth noise and carries clutter in the objects' palette."""
    pool = []
    for _ in range(_BACKGROUNDS):
        cells = int(rng.integers(3, 8))
        field = Image.fromarray((rng.random((cells, cells)) * 255).astype(np.uint8)).resize((big, big), Image.BICUBIC)
        t = np.asarray(field, dtype=np.float32)[..., None] / 255
        low, high = rng.uniform(20, 150, 3), rng.uniform(90, 230, 3)
        pixels = low + (high - low) * t + rng.normal(0, 8, (big, big, 3))
        scene = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(scene)
        for _ in range(rng.integers(3, 8)):
            _clutter(draw, rng, big)
        pool.append(scene)
    return pool


def _clutter(draw: ImageDraw.ImageDraw, rng: np.random.Generator, big: int) -> None:
    cx, cy = rng.uniform(0, big, 2)
    r = rng.uniform(0.04, 0.16) * big
    _draw_shape(draw, _SHAPES[rng.integers(len(_SHAPES))], cx, cy, r, r * rng.uniform(0.4, 1.0),
                _colour(int(rng.integers(len(_PALETTE))), rng)[:3])


def _colour(index: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    rgb = np.clip(_PALETTE[index] + rng.normal(0, 18, 3), 0, 255)
    return (*(int(v) for v in rgb), 255)


def _render(rng: np.random.Generator, layout: dict, details: dict, size: int,
            backgrounds: list[Image.Image]) -> Image.Image:
    big = size * _SUPERSAMPLE
    background = backgrounds[rng.integers(len(backgrounds))].transpose(_TURNS[rng.integers(len(_TURNS))])
    draw = ImageDraw.Draw(background)
    for _ in range(rng.integers(0, 3)):
        _clutter(draw, rng, big)

    # The object, drawn on its own layer so it can be rotated and scaled as a whole. Every part moves and resizes a
    # little in every image (pose), beyond the class's own shifts.
    layer = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    centre = big / 2
    radius = big * 0.22
    _draw_shape(draw, layout["body"], centre, centre, radius, radius * layout["aspect"] * rng.uniform(0.85, 1.15),
                _colour(details["body_colour"], rng))
    for part, colour, (sx, sy) in zip(layout["parts"], details["part_colours"], details["shifts"]):
        px, py = np.array(part["pos"]) + (sx, sy) + rng.normal(0, 0.08, 2)
        r = part["size"] * radius * rng.uniform(0.85, 1.15)
        _draw_shape(draw, part["shape"], centre + px * radius, centre + py * radius, r, r, _colour(colour, rng))
    mx, my = centre + details["mark_pos"][0] * radius, centre + details["mark_pos"][1] * radius
    mr = 0.12 * radius
    mark = _colour(details["mark_colour"], rng)
    if details["mark_bar"]:
        draw.rectangle((mx - 2.5 * mr, my - mr, mx + 2.5 * mr, my + mr), fill=mark)
    else:
        draw.ellipse((mx - 1.5 * mr, my - 1.5 * mr, mx + 1.5 * mr, my + 1.5 * mr), fill=mark)

    if rng.random() < 0.5:
        layer = layer.transpose(Image.FLIP_LEFT_RIGHT)
    layer = layer.rotate(float(rng.uniform(-45, 45)), resample=Image.BILINEAR)
    scale = rng.uniform(0.7, 1.2)
    scaled = max(1, int(big * scale))
    layer = layer.resize((scaled, scaled), Image.BILINEAR)
    offset = rng.uniform(-0.12, 0.12, 2) * big + (big - scaled) / 2
    background.paste(layer, (int(offset[0]), int(offset[1])), layer)

    # Partial occlusion by a flat patch somewhere over the object.
    if rng.random() < 0.3:
        draw = ImageDraw.Draw(background)
        w, h = rng.uniform(0.12, 0.3, 2) * big
        x, y = rng.uniform(0.2, 0.8, 2) * big
        draw.rectangle((x - w / 2, y - h / 2, x + w / 2, y + h / 2), fill=tuple(int(v) for v in rng.uniform(0, 255, 3)))

    image = np.asarray(background.resize((size, size), Image.BOX), dtype=np.float32)
    # Lighting and white balance: brightness, per-channel gain, and pixel noise.
    image = image * rng.uniform(0.75, 1.25) * rng.uniform(0.85, 1.15, 3) + rng.normal(0, 5, image.shape)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
