"""bfloat16 where it pays: ``fp32 | bf16 | auto`` settings (``teacher.train.precision``,
``distill.train.precision``, ``teacher.logits_precision``) resolved on this machine.

``bf16`` runs the forward (and backward) passes under ``torch.autocast`` in bfloat16; weights, the
optimizer and every saved model stay fp32, so export, parity and serving are unchanged. ``auto`` is bf16
only where the hardware computes it natively (a CPU with AVX512-BF16 or AMX tiles, or a CUDA GPU that
supports it): elsewhere oneDNN emulates bf16, slower than fp32.
"""
from __future__ import annotations

import contextlib


def native_bf16() -> bool:
    """Whether this machine computes bfloat16 natively."""
    import torch

    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    return any(bool(getattr(torch.cpu, probe, lambda: False)()) for probe in ("_is_avx512_bf16_supported",
                                                                              "_is_amx_tile_supported"))


def resolve(setting: str) -> str:
    """``fp32`` or ``bf16``: what ``setting`` (fp32 | bf16 | auto) means on this machine; any other setting
    (``teacher.logits_precision: int8``) as it is."""
    if setting == "auto":
        return "bf16" if native_bf16() else "fp32"
    return setting


def native_int8() -> bool:
    """Whether this CPU computes int8 products without saturating (AVX-512 VNNI or AMX tiles): there the int8
    teacher's logits were measured to be bit for bit the same (reports/evidence/int8_teacher_pass_vnni.json); AVX2
    without VNNI may saturate."""
    import torch

    return any(bool(getattr(torch.cpu, probe, lambda: False)()) for probe in ("_is_vnni_supported",
                                                                              "_is_amx_tile_supported"))


def teacher_pass(setting: str, runtime: str) -> str:
    """``fp32``, ``bf16`` or ``int8``: what ``teacher.logits_precision`` means for the teacher's pass in
    ``teacher_logits`` on this machine, with ``teacher.logits_runtime`` = ``runtime``. ``auto`` is bf16 where the
    hardware computes it natively (fp32 if the runtime is ONNX Runtime, which has no bf16 pass); on a CPU without it
    that computes int8 natively (VNNI or AMX), int8 (ONNX Runtime; used only when its answers agree with fp32's,
    else the pass is fp32) unless the runtime is PyTorch; else fp32."""
    if setting != "auto":
        return setting
    if native_bf16():
        return "bf16" if runtime != "onnxruntime" else "fp32"
    import torch

    return "int8" if runtime != "pytorch" and not torch.cuda.is_available() and native_int8() else "fp32"


def autocast(setting: str, device: str = "cpu"):
    """A context running its operations in ``setting``'s precision (a no-op for fp32)."""
    if resolve(setting) != "bf16":
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device, dtype=torch.bfloat16)
