"""The registered image student: an MLflow pyfunc that takes images and returns label names and probabilities.

MLflow logs this file as the model's code ("models from code") next to two artifacts: the ONNX model
and ``image.json`` (labels, the image shape, the pixel range). It imports only numpy, pandas,
onnxruntime, Pillow and mlflow, never Distillery, so ``mlflow models serve`` serves it without Distillery.

Input: a DataFrame with an ``image`` column (or a list of images, called directly). An image is
- nested lists of pixel intensities in the training data's range (0-255 for MNIST), ``[height][width]`` (grey: a
  colour model takes it as three equal channels, as it does a grey PNG and as training read a grey image of a
  colour set; a four-channel model with an opaque alpha, as Pillow converts one), ``[channels][height][width]`` or
  ``[height][width][channels]``; or
- a base64-encoded PNG (or JPEG, BMP, GIF, TIFF, WebP, PPM) of ``height`` x ``width`` pixels, as a string or bytes
  (its size is checked before it is decoded), read as grey, RGB or RGBA by the model's 1, 3 or 4 channels (a model of
  other channels takes pixel lists only); of any size up to ``MAX_PIXELS`` when the training images were
  resized (``data.image_size``; ``resize`` in ``image.json``), resized as they were (Pillow, bilinear);
  its 8-bit values are scaled to the training data's range (``pixel_max``: 255 for 8-bit images, so taken
  as they are; 65535 for 16-bit ones; 16 for scikit-learn's digits), and a 16-bit grey PNG's values likewise
  from 0-65535.
The model normalises the pixels itself (the training split's mean and standard deviation are in its graph).
Output: ``label``, ``score`` (its probability) and ``prob_<label>`` per image, in order.
Refused with HTTP 400 (``INVALID_PARAMETER_VALUE``), naming the row: an image that is null, not decodable,
or of another shape; nested lists with a pixel far outside the training data's range (more than half the range
beyond either end: 0-255 pixels sent to a model trained on 0-1 would otherwise be answered with confidence); and
more than ``max_rows`` images in one call.
"""
from __future__ import annotations

import base64
import io
import json
import os

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import set_model
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

IMAGE = "image"
SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N"}  # Pillow's 16-bit grey modes
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")  # Pillow's raster readers a request may use
IMAGE_MODES = {1: "L", 3: "RGB", 4: "RGBA"}  # the Pillow mode an encoded image is read in, by the model's channels
MAX_PIXELS = 40_000_000  # an encoded image a resizing model decodes: a 40-megapixel photo, not a decompression bomb
MAX_REQUEST_PIXELS = 200_000_000  # all a request's images that a resizing model decodes: five such photos (the CPU)


def _refuse(message: str):
    raise MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def _images(model_input) -> list:
    if isinstance(model_input, dict):
        model_input = pd.DataFrame(model_input) if IMAGE in model_input else model_input
    if isinstance(model_input, pd.Series):
        return model_input.tolist()
    if isinstance(model_input, np.ndarray):
        if model_input.size == 0 and model_input.ndim == 1:  # {"inputs": []}: no rows in, no rows out
            return []
        return list(model_input) if model_input.dtype == object else [model_input] if model_input.ndim <= 3 \
            else list(model_input)
    if isinstance(model_input, (list, tuple)):
        return list(model_input)
    if isinstance(model_input, pd.DataFrame):
        if IMAGE in model_input.columns or len(model_input.columns) == 1:
            values = (model_input[IMAGE] if IMAGE in model_input.columns else model_input.iloc[:, 0]).tolist()
            # {"image": [<base64>, <base64>]}: MLflow's input schema makes the list of strings one row; no image
            # is a list of strings, so it is the request's rows
            if len(values) == 1 and isinstance(values[0], (list, tuple, np.ndarray)) and \
                    all(isinstance(v, str) for v in values[0]):  # an empty list too: no image is empty
                return list(values[0])
            return values
        _refuse(f"input has columns {list(model_input.columns)}; name the image column {IMAGE!r}")
    _refuse(f"expected images or a DataFrame with an {IMAGE!r} column, got {type(model_input).__name__}")


def _environment_threads() -> int:
    """``OMP_NUM_THREADS`` as a thread count when it is one (the cores a process sharing the machine may use, as
    torch reads it), else 0: ONNX Runtime's own default, a thread per physical core."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() else 0


def onnx_session(path: str, threads: int):
    """The model's ONNX Runtime session, without the graph optimizers its metadata names (export timed the
    model with and without ONNX Runtime's SkipLayerNormFusion, and keeps the faster). The same in the three
    pyfunc files, each standalone; a test checks each of them. ``threads`` 0 is ``OMP_NUM_THREADS`` when set."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or _environment_threads()  # 0: OMP_NUM_THREADS, else ONNX Runtime's
    session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    names = session.get_modelmeta().custom_metadata_map.get("onnxruntime.disabled_optimizers", "")
    disabled = [name.strip() for name in names.split(",") if name.strip()]
    if disabled:
        session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"],
                                       disabled_optimizers=disabled)
    return session


class OnnxImageClassifier(PythonModel):
    """Decode each image to ``[channels, height, width]`` raw pixels, run the ONNX model, return labels."""

    def load_context(self, context) -> None:
        with open(context.artifacts["config"], encoding="utf-8") as handle:
            config = json.load(handle)
        self.labels = list(config["labels"])
        self.shape = (int(config["channels"]), int(config["height"]), int(config["width"]))
        self.pixel_max = float(config.get("pixel_max", 255.0))
        # the training data's darkest value; a model registered before it was recorded has no lower bound
        self.pixel_min = config.get("pixel_min")
        low = 0.0 if self.pixel_min is None else float(self.pixel_min)
        margin = (self.pixel_max - low) / 2
        self.accepted = (-np.inf if self.pixel_min is None else low - margin, self.pixel_max + margin)
        self.batch_size = int(config.get("batch_size", 256))
        self.max_rows = int(config.get("max_rows") or 0)
        self.resize = bool(config.get("resize"))  # the training images were resized to this shape (data.image_size)
        self.session = onnx_session(context.artifacts["onnx"], int(config.get("threads", 0)))
        self.input_name = self.session.get_inputs()[0].name

    def _decode(self, value, row: int, spent: "list | None" = None) -> np.ndarray:
        """One row's pixels; ``spent``: the pixels this request's images decoded so far, to resize (one item)."""
        spent = [0] if spent is None else spent
        channels, height, width = self.shape
        as_sent = not isinstance(value, (str, bytes))  # pixels as sent, not read on an image format's scale
        if value is None or (isinstance(value, float) and value != value):
            _refuse(f"{IMAGE!r} of row {row} is null; every row needs an image")
        if isinstance(value, (str, bytes)) and not value.strip():
            _refuse(f"{IMAGE!r} of row {row} is an empty string; every row needs an image")
        if isinstance(value, (str, bytes)):
            from PIL import Image

            try:
                if isinstance(value, str) and value.startswith("data:") and ";base64," in value[:100]:
                    value = value.split(",", 1)[1]  # a data URI (data:image/png;base64,...), as a browser gives it
                raw = base64.b64decode(value, validate=True)
                # raster formats only (an EPS would run Ghostscript), and the size read from the header before
                # a pixel is decoded: a 100 KB PNG of 10,000 x 10,000 pixels would otherwise take gigabytes
                with Image.open(io.BytesIO(raw), formats=IMAGE_FORMATS) as image:
                    if image.size != (width, height) and (not self.resize or image.size[0] * image.size[1]
                                                          > MAX_PIXELS):
                        _refuse(f"{IMAGE!r} of row {row} is {image.size[0]} x {image.size[1]} pixels (width x "
                                f"height); this model takes {width} x {height}"
                                + (f", or an image of at most {MAX_PIXELS:,} pixels it resizes" if self.resize
                                   else ""))
                    if image.size != (width, height):  # 39 KB of PNG is 40 megapixels: the CPU a request may take
                        spent[0] += image.size[0] * image.size[1]
                        if spent[0] > MAX_REQUEST_PIXELS:
                            _refuse(f"the images up to row {row} hold {spent[0]:,} pixels to resize, over "
                                    f"{MAX_REQUEST_PIXELS:,} in one request; send fewer or smaller images a request")
                    if getattr(image, "n_frames", 1) > 1 and image.format != "MPO":  # a trial's two-page TIFF was
                        # answered from its first page (a phone's JPEG holds a gain map as a second picture: MPO)
                        _refuse(f"{IMAGE!r} of row {row} holds {image.n_frames} images (frames or pages); send one "
                                "per row")
                    if channels not in IMAGE_MODES:
                        _refuse(f"{IMAGE!r} of row {row} is an encoded image, but this model takes {channels} "
                                f"channels, which no image file holds; send the pixels as nested lists "
                                f"({self._shapes()})")
                    if image.mode in SIXTEEN_BIT_MODES:  # 16-bit grey: 65535 is the top, not cut to 8 bits
                        array = self._from_grey(np.asarray(self._sized(image), dtype=np.float32)
                                                * (self.pixel_max / 65535.0))
                    elif image.mode in ("I", "F"):  # 32-bit grey, of no fixed scale: its values as sent, checked as
                        array = self._from_grey(np.asarray(self._sized(image), dtype=np.float32))  # nested lists
                        as_sent = True  # are (a trial's float TIFFs of 0-1e6 and of NaN were clipped and answered)
                    else:  # the mode first, then the size: as prepare read the training images
                        array = np.asarray(self._sized(image.convert(IMAGE_MODES[channels])),
                                           dtype=np.float32) * (self.pixel_max / 255.0)
            except MlflowException:
                raise
            except Image.DecompressionBombError:  # Pillow's guard, before the size check above could say it
                _refuse(f"{IMAGE!r} of row {row} is an image of more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels; this "
                        f"model takes {width} x {height}" + (f", or an image of at most {MAX_PIXELS:,} pixels it "
                                                            "resizes" if self.resize else ""))
            except Exception as exc:  # noqa: BLE001 - binascii, Pillow (DecompressionBombError too): one 400
                _refuse(f"{IMAGE!r} of row {row} is a string but not a base64-encoded image ({type(exc).__name__})")
            array = np.moveaxis(array, -1, 0) if array.ndim == 3 else array[None]
        else:
            try:
                array = np.asarray(value, dtype=np.float32)
            except (TypeError, ValueError):
                _refuse(f"{IMAGE!r} of row {row} is neither nested lists of numbers nor a base64 string")
            sent = list(array.shape)
            if array.ndim == 0:
                _refuse(f"{IMAGE!r} of row {row} is one number ({value!r}), not an image; this model takes "
                        f"{self._shapes()}")
            if array.ndim == 3 and channels in (3, 4) and array.shape in ((1, height, width), (height, width, 1)):
                array = array.reshape(height, width)  # one grey channel, first or last
            if array.ndim == 2 and channels in (1, 3, 4):  # grey: a colour model gets three equal channels, as from
                array = np.moveaxis(self._from_grey(array), -1, 0) if channels > 1 else array[None]  # a grey PNG
            elif array.shape == (height, width, channels) and array.shape != self.shape:
                array = np.moveaxis(array, -1, 0)  # channels last, as Pillow and numpy hold an image
            if array.shape != self.shape:
                _refuse(f"{IMAGE!r} of row {row} is {sent}; this model takes {self._shapes()}")
        if array.shape != self.shape:  # a PNG whose mode gave another shape
            _refuse(f"{IMAGE!r} of row {row} is {list(array.shape)}; this model takes {self._shapes()}")
        if as_sent:  # a PNG is scaled into the training range above: pixels as sent only
            self._check_range(array, row)
        return array

    def _from_grey(self, grey: np.ndarray) -> np.ndarray:
        """A grey ``[height, width]`` image in this model's channels, last: as Pillow converts one (three equal
        channels, and for four an opaque alpha, at the top of the pixel range)."""
        channels = self.shape[0]
        if channels == 1:
            return grey
        planes = [grey] * 3 + ([np.full_like(grey, self.pixel_max)] if channels == 4 else [])
        return np.stack(planes, axis=-1)

    def _sized(self, image):
        """``image`` at this model's size, resized as prepare resized the training images (Pillow, bilinear)."""
        from PIL import Image

        channels, height, width = self.shape
        return image if image.size == (width, height) else image.resize((width, height), Image.BILINEAR)

    def _shapes(self) -> str:
        """The pixel arrays this model takes, for a refusal."""
        channels, height, width = self.shape
        if channels == 1:
            return f"[{height}][{width}] pixels"
        return (f"[{height}][{width}] pixels in {channels} channels ([{channels}][{height}][{width}] or "
                f"[{height}][{width}][{channels}])" + (f", or grey [{height}][{width}]" if channels in (3, 4) else ""))

    def _check_range(self, array: np.ndarray, row: int) -> None:
        if not np.all(np.isfinite(array)):
            _refuse(f"{IMAGE!r} of row {row} holds a value that is not a finite number")
        if array.size and (array.min() < self.accepted[0] or array.max() > self.accepted[1]):
            trained = f"{self.pixel_min:g}-{self.pixel_max:g}" if self.pixel_min is not None \
                else f"values up to {self.pixel_max:g}"
            _refuse(f"{IMAGE!r} of row {row} has pixels from {array.min():g} to {array.max():g}; this model was "
                    f"trained on {trained}: send pixels on that scale, or the image as a base64 PNG")

    def logits(self, model_input) -> np.ndarray:
        images = _images(model_input)
        if self.max_rows and len(images) > self.max_rows:
            _refuse(f"{len(images)} images in one request; this model takes at most {self.max_rows} "
                    "(max_rows): split the request")
        if not images:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        spent = [0]
        pixels = np.stack([self._decode(value, row, spent) for row, value in enumerate(images)])
        parts = [self.session.run(None, {self.input_name: pixels[start:start + self.batch_size]})[0]
                 for start in range(0, len(pixels), self.batch_size)]
        return np.concatenate(parts)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        logits = self.logits(model_input).astype(np.float64)
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True)) if len(logits) else logits
        probabilities = shifted / shifted.sum(axis=-1, keepdims=True) if len(logits) else logits
        best = probabilities.argmax(axis=-1) if len(probabilities) else np.zeros(0, dtype=int)
        frame = pd.DataFrame({"label": [self.labels[i] for i in best],
                              "score": probabilities.max(axis=-1) if len(probabilities) else []})
        for index, label in enumerate(self.labels):
            frame[f"prob_{label}"] = probabilities[:, index] if len(probabilities) else []
        return frame


set_model(OnnxImageClassifier())
