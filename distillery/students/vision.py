"""The image networks (task ``image_classification``): a multilayer perceptron and a small CNN, as
transformers models so every stage saves, loads, exports and serves them like any other model.

Both take ``pixel_values``: raw pixel intensities ``[batch, channels, height, width]`` as float32,
in the data's own range (0-255 for MNIST). The normalisation is part of the model: its config records
the training split's pixel mean and standard deviation (``pixel_mean``, ``pixel_std``), and ``forward``
applies them, so the exported ONNX graph and the served model take the raw pixels.

:func:`register_auto_classes` makes ``AutoConfig`` and ``AutoModelForImageClassification`` know them;
the image task type calls it before it loads or builds a model. Importing this module registers nothing.
"""
from __future__ import annotations

from dataclasses import field
from typing import Optional

import torch
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import ImageClassifierOutput

MLP_TYPE, CNN_TYPE = "distillery_image_mlp", "distillery_image_cnn"


class _ImageConfig(PreTrainedConfig):
    channels: int = 1
    height: int = 28
    width: int = 28
    pixel_mean: float = 0.0  # of the training split's raw pixels; the model subtracts it ...
    pixel_std: float = 1.0  # ... and divides by this
    dropout: float = 0.0
    initializer_range: float = 0.02


class ImageMLPConfig(_ImageConfig):
    model_type = MLP_TYPE
    hidden_sizes: list = field(default_factory=lambda: [16])  # one ReLU layer per entry; [] is a linear model


class ImageCNNConfig(_ImageConfig):
    model_type = CNN_TYPE
    conv_channels: list = field(default_factory=lambda: [16, 32])  # one conv (same padding) + ReLU + 2x2 max-pool block per entry
    kernel_size: int = 3
    hidden_size: int = 64  # a ReLU layer between the flattened maps and the classes; 0 = none


class _ImageModel(PreTrainedModel):
    main_input_name = "pixel_values"

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_uniform_(module.weight, a=5 ** 0.5)  # PyTorch's own default for these layers
            if module.bias is not None:
                fan_in = module.weight[0].numel()
                bound = 1 / fan_in ** 0.5
                nn.init.uniform_(module.bias, -bound, bound)

    def normalise(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return (pixel_values.to(torch.float32) - self.config.pixel_mean) / self.config.pixel_std

    def _output(self, logits: torch.Tensor, labels: Optional[torch.Tensor]) -> ImageClassifierOutput:
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return ImageClassifierOutput(loss=loss, logits=logits)


def _mlp(sizes: list[int], dropout: float) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes, sizes[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
    return layers


class ImageMLPForImageClassification(_ImageModel):
    """Flattened pixels, ReLU layers of ``hidden_sizes``, then the classes: the primer's networks."""

    config_class = ImageMLPConfig
    base_model_prefix = "mlp"

    def __init__(self, config: ImageMLPConfig):
        super().__init__(config)
        inputs = config.channels * config.height * config.width
        sizes = [inputs, *config.hidden_sizes]
        self.body = nn.Sequential(nn.Flatten(), *_mlp(sizes, config.dropout))
        self.classifier = nn.Linear(sizes[-1], config.num_labels)
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, labels: Optional[torch.Tensor] = None,
                **kwargs) -> ImageClassifierOutput:
        return self._output(self.classifier(self.body(self.normalise(pixel_values))), labels)


def pooled_size(size: int, blocks: int) -> int:
    """A side of ``size`` pixels after ``blocks`` 2x2 max-pools (floor, as ``nn.MaxPool2d(2)``)."""
    for _ in range(blocks):
        size //= 2
    return size


class ImageCNNForImageClassification(_ImageModel):
    """Blocks of conv (same padding) + ReLU + 2x2 max-pool, a ReLU layer, then the classes."""

    config_class = ImageCNNConfig
    base_model_prefix = "cnn"

    def __init__(self, config: ImageCNNConfig):
        super().__init__(config)
        blocks: list[nn.Module] = []
        fan_in = config.channels
        for width in config.conv_channels:
            blocks += [nn.Conv2d(fan_in, width, config.kernel_size, padding=config.kernel_size // 2), nn.ReLU(),
                       nn.MaxPool2d(2)]
            fan_in = width
        side = pooled_size(config.height, len(config.conv_channels)), pooled_size(config.width,
                                                                                  len(config.conv_channels))
        flat = fan_in * side[0] * side[1]
        hidden = [config.hidden_size] if config.hidden_size else []
        self.body = nn.Sequential(*blocks, nn.Flatten(), *_mlp([flat, *hidden], config.dropout))
        self.classifier = nn.Linear(hidden[0] if hidden else flat, config.num_labels)
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, labels: Optional[torch.Tensor] = None,
                **kwargs) -> ImageClassifierOutput:
        return self._output(self.classifier(self.body(self.normalise(pixel_values))), labels)


def image_spec(spec: dict) -> dict:
    """The config keys every image network records: its input shape and its normalisation."""
    return {"channels": int(spec["channels"]), "height": int(spec["height"]), "width": int(spec["width"]),
            "pixel_mean": float(spec["pixel_mean"]), "pixel_std": float(spec["pixel_std"])}


def mlp_config(cfg, spec: dict) -> ImageMLPConfig:
    """The MLP's config from its params section (``student.mlp`` / ``teacher.mlp``) and the images' ``spec``."""
    return ImageMLPConfig(hidden_sizes=list(cfg.hidden_sizes), dropout=cfg.dropout, **image_spec(spec))


def cnn_config(cfg, spec: dict, key: str) -> ImageCNNConfig:
    """The CNN's config from its params section at ``key`` and the images' ``spec``; refused when its pooling
    blocks would shrink the images to nothing."""
    from distillery.errors import ModelError

    blocks = len(cfg.channels)
    if min(pooled_size(int(spec["height"]), blocks), pooled_size(int(spec["width"]), blocks)) < 1:
        raise ModelError(f"{key}.channels: {blocks} blocks of 2x2 max-pooling shrink {spec['height']}x{spec['width']} "
                         f"images to nothing; use at most {min(spec['height'], spec['width']).bit_length() - 1}")
    return ImageCNNConfig(conv_channels=list(cfg.channels), kernel_size=cfg.kernel_size, hidden_size=cfg.hidden_size,
                          dropout=cfg.dropout, **image_spec(spec))


CONFIGS = {"mlp": lambda cfg, spec, key: mlp_config(cfg, spec), "cnn": cnn_config}  # by family / scratch: name

_REGISTERED = False


def register_auto_classes() -> None:
    """Make ``AutoConfig`` / ``AutoModelForImageClassification`` load and build these models (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    from transformers import AutoConfig, AutoModelForImageClassification

    for config, model in ((ImageMLPConfig, ImageMLPForImageClassification),
                          (ImageCNNConfig, ImageCNNForImageClassification)):
        AutoConfig.register(config.model_type, config, exist_ok=True)
        AutoModelForImageClassification.register(config, model, exist_ok=True)
    _REGISTERED = True
