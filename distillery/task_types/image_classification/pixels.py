"""The prepared images' pixels: the columns a prepared row carries, the array types images are kept as, and
the rows turned back into float32 arrays (for training, export and serving alike)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from distillery.errors import DataError

PIXELS, RAW_LABEL, REASON = "pixels", "label", "_reason"
SHAPE = ("channels", "height", "width")  # every prepared row carries its shape; the dtype follows from the size


def image_dtype(dtypes: set) -> type:
    """What images of these array types are kept as: uint8 (8-bit images), uint16 (16-bit ones, with or without
    8-bit ones among them), else float32."""
    if dtypes <= {np.dtype(np.uint8)}:
        return np.uint8
    return np.uint16 if dtypes <= {np.dtype(np.uint8), np.dtype(np.uint16)} else np.float32


def to_16_bits(array: np.ndarray) -> np.ndarray:
    """An 8-bit image on the 16-bit scale (255 -> 65535, as a PNG's 8-bit values widen); 16-bit ones as they are."""
    return array.astype(np.uint16) * np.uint16(257) if array.dtype == np.uint8 else array.astype(np.uint16)


def to_8_bits(array: np.ndarray) -> np.ndarray:
    """A 16-bit image on the 8-bit scale (65535 -> 255, rounded to the nearest)."""
    return np.rint(array.astype(np.float64) / 257).astype(np.uint8)


def resize_image(image, size):
    """A Pillow image at ``size`` ([height, width]), bilinear; as it is: one of that size, or ``size`` None. The
    served model resizes an encoded image the same way (``distillery/serving/image_classifier.py``)."""
    from PIL import Image

    if size is None or image.size == (size[1], size[0]):
        return image
    return image.resize((int(size[1]), int(size[0])), Image.BILINEAR)


def resize_array(array: np.ndarray, size) -> np.ndarray:
    """An image array (``[height, width]`` or ``[channels, height, width]``) at ``size``, channel by channel as
    Pillow resizes an image of its type (8-bit, 16-bit or float), the same type back."""
    from PIL import Image

    if size is None or tuple(array.shape[-2:]) == tuple(size):
        return array
    kind = array.dtype if array.dtype in (np.uint8, np.uint16) else np.dtype(np.float32)
    planes = array[None] if array.ndim == 2 else array
    out = np.stack([np.asarray(resize_image(Image.fromarray(np.ascontiguousarray(plane, dtype=kind)), size))
                    for plane in planes])
    return out[0] if array.ndim == 2 else out


def pixel_scale(dtype: np.dtype, brightest: float) -> float:
    """The top of the images' scale, what a PNG's 255 (an 8-bit one's) or 65535 (a 16-bit one's) stands for when
    the served model decodes one: 255 for 8-bit images (uint8) and 65535 for 16-bit ones (uint16), however
    bright their brightest pixel, else the largest value seen."""
    return {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(np.dtype(dtype), float(brightest))


def pixel_dtype(row_bytes: int, channels: int, height: int, width: int) -> np.dtype:
    """uint8, uint16 or float32, from a row's byte count and shape."""
    itemsize, rest = divmod(row_bytes, channels * height * width)
    if rest or itemsize not in (1, 2, 4):
        raise DataError(f"a prepared image of {row_bytes} bytes is neither uint8, uint16 nor float32 "
                        f"[{channels}, {height}, {width}]; run `dvc repro prepare` again")
    return np.dtype({1: np.uint8, 2: np.uint16, 4: np.float32}[itemsize])


def to_arrays(frame: pd.DataFrame) -> np.ndarray:
    """The prepared rows' pixels as float32 ``[rows, channels, height, width]``, raw intensities."""
    if not len(frame):
        return np.zeros((0, 1, 1, 1), dtype=np.float32)
    channels, height, width = (int(frame[c].iloc[0]) for c in SHAPE)
    dtype = pixel_dtype(len(frame[PIXELS].iloc[0]), channels, height, width)
    flat = np.frombuffer(b"".join(frame[PIXELS]), dtype=dtype)
    if flat.size != len(frame) * channels * height * width:
        raise DataError(f"prepared images are not all [{channels}, {height}, {width}]; run `dvc repro prepare` again")
    return flat.reshape(len(frame), channels, height, width).astype(np.float32)
