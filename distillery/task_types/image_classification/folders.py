"""Image classification, reading an image folder: ``<dir>/<label>/*.png`` (any format Pillow reads), or
``<dir>/{train,validation,test}/<label>/``. Images are grey unless any image of the set uses colour (then a
grey one gets three equal channels); 16-bit grey images keep their values (0-65535), not cut to 8 bits; in a set of both, the fewer are
brought to the scale of the more (``_one_bit_depth``); 32-bit ones among 8- or 16-bit ones, or the other way round, the
fewer are rejected (``_one_number_kind``); an unreadable
image, or one of another size than most, becomes a rejected row: its file is the row, so the data report
counts rejections by reason, and ``rejected.csv`` names each file. Hidden folders and files (a notebook's
``.ipynb_checkpoints``) are skipped; a class folder without images, or without one readable image of the
common size, is an error, not a class that vanishes. Folder names are the labels, as they are ("007" and "7" are
two classes)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from distillery.errors import DataError
from distillery.rejected_rows import OTHER_SIZE
from distillery.task_types.image_classification.images import SPLIT_NAMES, Images
from distillery.task_types.image_classification.pixels import resize_image, to_8_bits, to_16_bits

SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N"}  # Pillow's 16-bit grey modes
WIDE_MODES = SIXTEEN_BIT_MODES | {"I", "F"}  # Pillow's modes of more than 8 bits per (grey) pixel
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
# the readers a file is opened with, whatever its bytes say (an EPS named .png would run Ghostscript), as served
RASTER_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")


def _folder_split(directory: Path, size=None) -> tuple[list, list]:
    """``[(path, array, label)]`` for the images under ``directory/<label>/`` (resized to ``size``, [height, width],
    if given), and ``[(file, reason)]`` for the unreadable ones (the file relative to ``directory``)."""
    from PIL import Image, UnidentifiedImageError

    pictures, bad = [], []
    classes = sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{directory}: no class folders; put each label's images in <dir>/<label>/")
    others = []  # files whose suffix is not an image's: skipped, and counted
    for folder in classes:
        visible = [p for p in folder.rglob("*")
                   if not any(part.startswith(".") for part in p.relative_to(folder).parts)]
        files = sorted(p for p in visible if p.suffix.lower() in IMAGE_SUFFIXES)
        others += sorted(p for p in visible if p.suffix.lower() not in IMAGE_SUFFIXES and p.is_file())
        if not files:  # a class of no rows would vanish from the label set without a word
            raise DataError(f"{folder}: class folder '{folder.name}' holds no images (looked for "
                            f"{', '.join(sorted(IMAGE_SUFFIXES))}); add its images or remove the folder")
        readable = len(pictures)
        for path in files:
            try:
                with Image.open(path, formats=RASTER_FORMATS) as image:
                    if image.mode in WIDE_MODES:  # 16-bit or 32-bit grey: the values as they are, not cut to 8 bits
                        array = np.asarray(resize_image(image, size)).astype(
                            np.uint16 if image.mode in SIXTEEN_BIT_MODES else np.float32)
                    else:
                        mode = "RGB" if image.mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr") and _colour(image) else "L"
                        array = np.asarray(resize_image(image.convert(mode), size))
                    pictures.append((path, array, folder.name))
            except (OSError, UnidentifiedImageError) as exc:
                bad.append((path.relative_to(directory).as_posix(), f"unreadable image ({type(exc).__name__})"))
        if len(pictures) == readable:  # every file of the class rejected: the class would vanish without a word
            raise DataError(f"{folder}: class folder '{folder.name}' holds {len(files)} image file(s) and none is "
                            f"readable ({bad[-1][0]}: {bad[-1][1]}); fix or remove them")
    if others:
        import sys

        print(f"prepare: note: {directory}: skipped {len(others)} file(s) that are not images by their suffix (e.g. "
              f"{others[0].relative_to(directory).as_posix()}); read: {', '.join(sorted(IMAGE_SUFFIXES))}",
              file=sys.stderr, flush=True)
    return pictures, bad


def _as_colour(pictures: list) -> list:
    """A grey image of a set with colour images (a black-and-white photo) with the three equal channels it has in
    colour."""
    return [(path, np.repeat(a[..., None], 3, axis=-1) if a.ndim == 2 else a, label) for path, a, label in pictures]


def _colour(image) -> bool:
    """Does a palette or RGB image use colour (not just grey)?"""
    rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
    return bool(np.any(rgb[..., 0] != rgb[..., 1]) or np.any(rgb[..., 1] != rgb[..., 2]))


def _one_bit_depth(read: dict) -> dict:
    """8-bit and 16-bit images in one set: the fewer are brought to the scale of the more (8-bit ones widened,
    255 -> 65535; 16-bit ones narrowed, 65535 -> 255), and prepare says so. The scale is what the served model
    expects, so one stray 16-bit file among 8-bit photos must not move every request's scale to 0-65535."""
    depths = [a.dtype for pictures, _ in read.values() for _, a, _ in pictures if a.dtype in (np.uint8, np.uint16)]
    wide = sum(d == np.uint16 for d in depths)
    if not wide or wide == len(depths):
        return read
    narrow = wide < len(depths) - wide
    fewer, scale = (wide, "8-bit (0-255)") if narrow else (len(depths) - wide, "16-bit (0-65535)")
    print(f"prepare: warning: {fewer} of {len(depths)} images are {'16' if narrow else '8'}-bit; read on the "
          f"{scale} scale of the others, which the served model then expects", flush=True)
    change = (lambda a: to_8_bits(a) if a.dtype == np.uint16 else a) if narrow else \
        (lambda a: to_16_bits(a) if a.dtype == np.uint8 else a)
    return {split: ([(p, change(a), label) for p, a, label in pictures], bad)
            for split, (pictures, bad) in read.items()}


def _one_number_kind(read: dict, parts: dict) -> dict:
    """32-bit images (Pillow's modes I and F: integers or floats on any scale) in a set of 8- or 16-bit ones, or
    the other way round: the fewer become rejected rows (a tie rejects the 32-bit ones), and prepare says so. A
    trial's one float TIFF of values up to 1e6 among 8-bit PNGs moved the set's scale, and every served PNG's,
    to 0-1e6, and the teacher collapsed."""
    kinds = [a.dtype == np.float32 for pictures, _ in read.values() for _, a, _ in pictures]
    wide = sum(kinds)
    if not wide or wide == len(kinds):
        return read
    drop_wide = wide * 2 <= len(kinds)
    reason = ("32-bit image (Pillow mode I or F) among 8- or 16-bit ones; save it as an 8- or 16-bit PNG"
              if drop_wide else "8- or 16-bit image among 32-bit ones (Pillow mode I or F); save it as those are")
    print(f"prepare: warning: {wide if drop_wide else len(kinds) - wide} of {len(kinds)} images are "
          f"{'32-bit' if drop_wide else '8- or 16-bit'}, the others not: rejected (rejected.csv names them)",
          flush=True)
    out = {}
    for split, (pictures, bad) in read.items():
        kept = [p for p in pictures if (p[1].dtype == np.float32) != drop_wide]
        lost = sorted({label for *_, label in pictures} - {label for *_, label in kept})
        if lost:  # a class would vanish without a word
            raise DataError(f"{parts[split] / lost[0]}: class folder '{lost[0]}' holds only "
                            f"{'32-bit' if drop_wide else '8- or 16-bit'} images, unlike most of the set: {reason}")
        out[split] = (kept, bad + [(p.relative_to(parts[split]).as_posix(), reason)
                                   for p, a, _ in pictures if (a.dtype == np.float32) == drop_wide])
    return out


def read_folder(directory: Path, size=None) -> Images:
    """``<dir>/<label>/*`` images, or ``<dir>/{train,validation,test}/<label>/``; each resized to ``size`` ([height,
    width], ``data.image_size``) if given, else odd-sized ones rejected."""
    images = Images(str(directory))
    subdirs = {p.name: p for p in sorted(directory.iterdir()) if p.is_dir() and not p.name.startswith(".")}
    named = [name for name in subdirs if name in SPLIT_NAMES]
    others = [name for name in subdirs if name not in SPLIT_NAMES]
    if named and others:
        raise DataError(f"{directory}: holds split folders ({', '.join(named)}) and other folders "
                        f"({', '.join(others)}); put every class folder under a split folder "
                        "(<dir>/<split>/<label>/), or use no split folders (<dir>/<label>/)")
    split_dirs = {}
    for name in named:
        if SPLIT_NAMES[name] in split_dirs:
            raise DataError(f"{directory}: folders {split_dirs[SPLIT_NAMES[name]].name} and {name} are both the "
                            f"{SPLIT_NAMES[name]} split; keep one")
        split_dirs[SPLIT_NAMES[name]] = subdirs[name]
    parts = split_dirs if split_dirs else {"all": directory}
    read = _one_number_kind({split: _folder_split(path, size) for split, path in parts.items()}, parts)
    colour = any(a.ndim == 3 for pictures, _ in read.values() for _, a, _ in pictures)  # of the images kept
    read = _one_bit_depth(read)
    for split, path in parts.items():
        pictures, bad = read[split]
        if not pictures:
            raise DataError(f"{path}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        if colour:  # any colour image in any split: every image has three channels
            pictures = _as_colour(pictures)
        sizes = pd.Series([a.shape for _, a, _ in pictures]).value_counts()
        common = sizes.index[0]
        # "like most" only when most share it: a tie (thirds of three sizes) keeps the first, and says so
        kind = " like most" if sizes.iloc[0] * 2 > len(pictures) else \
            f", the most common of {len(sizes)} sizes ({int(sizes.iloc[0])} of {len(pictures)} images)"
        kept = [p for p in pictures if p[1].shape == common]
        lost = sorted({label for *_, label in pictures} - {label for *_, label in kept})
        if lost:
            raise DataError(f"{path / lost[0]}: class folder '{lost[0]}' holds no image of the common shape "
                            f"{list(common)}; every one is another size")
        bad += [(p.relative_to(path).as_posix(), f"{OTHER_SIZE}{list(a.shape)}, not {list(common)}{kind}")
                for p, a, _ in pictures if a.shape != common]
        stacked = np.stack([a if a.ndim == 2 else np.moveaxis(a, -1, 0) for _, a, _ in kept])
        images.add(split, stacked, [label for *_, label in kept], bad,
                   files=[p.relative_to(path).as_posix() for p, _, _ in kept])
    return images
