"""The sizes of the image networks a ``scratch:`` teacher or an ``mlp`` / ``cnn`` student is built at (task
image_classification)."""
from __future__ import annotations

from typing import Annotated

from pydantic import Field

from distillery.config.base import section


@section("student.mlp")
class ImageMlpConfig:
    """An MLP over an image's pixels (task image_classification): flattened pixels, ReLU layers, the classes."""

    hidden_sizes: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [64], description="units of each ReLU layer; [] is a linear model (the primer's "
                                                  "student: [4], 3.2K parameters on 28x28)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout after each ReLU layer")


@section("student.cnn")
class ImageCnnConfig:
    """A small CNN (task image_classification): conv + ReLU + 2x2 max-pool blocks, a ReLU layer, the classes."""

    channels: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [8, 16], min_length=1, description="output channels of each conv block")
    kernel_size: int = Field(3, ge=1, description="conv kernel size (odd keeps the map's size: same padding)")
    hidden_size: int = Field(32, ge=0, description="units of the ReLU layer before the classes; 0 = none")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout after the ReLU layer")
