"""Image classification, ONNX: input ``pixel_values`` ``[batch, channels, height, width]`` (raw pixels;
the model normalises), output ``logits``, and the parity check on every row of a real split."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from distillery.onnx_runtime import export_module, run_session, session
from distillery.prepared import LABEL
from distillery.task_types.image_classification.features import INPUT
from distillery.task_types.text_classification.onnx import OUTPUT, parity_report


class _LogitsOnly(torch.nn.Module):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits


def export_onnx(model: torch.nn.Module, processor, path: Path, opset: int = 17) -> list[str]:
    """A single-file ONNX model with a dynamic batch axis; returns its input names."""
    sample = torch.rand(2, processor.channels, processor.height, processor.width) * processor.pixel_max
    export_module(_LogitsOnly(model), (sample,), path, [INPUT], [OUTPUT],
                  {INPUT: {0: "batch"}, OUTPUT: {0: "batch"}}, opset)
    model.eval()
    return [INPUT]


def parity(model, processor, fp32_path: Path, int8_path: Path, frame: pd.DataFrame, cfg) -> dict:
    """The fp32 and int8 ONNX models against PyTorch on every row of ``frame``, in batches as served."""
    sessions = {"fp32": session(fp32_path), "int8": session(int8_path)}
    pixels = processor.arrays(frame)
    batches = [{INPUT: pixels[start:start + cfg.parity_batch_size]}
               for start in range(0, len(frame), cfg.parity_batch_size)]
    model.eval()
    with torch.inference_mode():  # one runtime over every batch, then the next (text_classification/onnx.py)
        outputs = {"pytorch": [model(pixel_values=torch.from_numpy(b[INPUT])).logits.numpy() for b in batches]}
    outputs.update({name: [run_session(sess, batch) for batch in batches] for name, sess in sessions.items()})
    logits = {name: np.concatenate(parts) for name, parts in outputs.items()}
    return parity_report(logits, frame[LABEL].to_numpy(), cfg)
