"""Image classification, reading an image folder: ``<dir>/<label>/*.png`` (any format Pillow reads), or
``<dir>/{train,validation,test}/<label>/``. Images are read as grey unless they use colour; an unreadable
image, or one of another size than most, becomes a rejected row: its file is the row, so the data report
counts rejections by reason, and ``rejected.csv`` names each file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from distillery.errors import DataError
from distillery.task_types.image_classification.images import SPLIT_NAMES, Images

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


def _folder_split(directory: Path) -> tuple[list, list]:
    """``[(row, path, array, label)]`` for the images under ``directory/<label>/``, and ``[(file, reason)]`` for
    the unreadable ones (the file relative to ``directory``)."""
    from PIL import Image, UnidentifiedImageError

    pictures, bad = [], []
    classes = sorted(p for p in directory.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"{directory}: no class folders; put each label's images in <dir>/<label>/")
    row = 0
    for folder in classes:
        for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
            row += 1
            try:
                with Image.open(path) as image:
                    mode = "RGB" if image.mode in ("RGB", "RGBA", "P") and _colour(image) else "L"
                    pictures.append((row, path, np.asarray(image.convert(mode)), folder.name))
            except (OSError, UnidentifiedImageError) as exc:
                bad.append((path.relative_to(directory).as_posix(), f"unreadable image ({type(exc).__name__})"))
    return pictures, bad


def _colour(image) -> bool:
    """Does a palette or RGB image use colour (not just grey)?"""
    rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
    return bool(np.any(rgb[..., 0] != rgb[..., 1]) or np.any(rgb[..., 1] != rgb[..., 2]))


def read_folder(directory: Path) -> Images:
    """``<dir>/<label>/*`` images, or ``<dir>/{train,validation,test}/<label>/``; odd-sized ones rejected."""
    images = Images(str(directory))
    subdirs = {p.name: p for p in directory.iterdir() if p.is_dir()}
    split_dirs = {SPLIT_NAMES[name]: path for name, path in subdirs.items() if name in SPLIT_NAMES}
    parts = split_dirs if split_dirs else {"all": directory}
    for split, path in parts.items():
        pictures, bad = _folder_split(path)
        if not pictures:
            raise DataError(f"{path}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        common = pd.Series([p[2].shape for p in pictures]).value_counts().index[0]
        kept = [p for p in pictures if p[2].shape == common]
        bad += [(p.relative_to(path).as_posix(), f"image is {list(a.shape)}, not {list(common)} like most")
                for _, p, a, _ in pictures if a.shape != common]
        stacked = np.stack([a if a.ndim == 2 else np.moveaxis(a, -1, 0) for _, _, a, _ in kept])
        images.add(split, stacked, [label for *_, label in kept], bad)
    return images
