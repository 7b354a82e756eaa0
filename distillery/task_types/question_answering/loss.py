"""Extractive QA losses: the span loss, and distillation on the start and end logits.

DistilBERT² on SQuAD (Sanh et al. 2019, "DistilBERT, a distilled version of BERT", §4.2; the
``run_squad_w_distillation.py`` example): a student fine-tuned with a SQuAD-trained teacher as an
extra loss term::

    L = α_ce · T² · (KL_start + KL_end) / 2 + α_squad · L_task
    KL_x   = KL(softmax(t_x / T) ‖ softmax(s_x / T)), summed over positions, mean over the batch (batchmean)
    L_task = (CE(s_start, y_start) + CE(s_end, y_end)) / 2

Distillery's keys: ``α_squad = distill.alpha`` (the hard-label weight, as for classification),
``α_ce = 1 − distill.alpha`` and ``T = distill.temperature``; alpha 0.5 is DistilBERT's
α_ce = α_squad = 0.5. Outputs are stacked ``[batch, 2, sequence]`` (start, end); labels are
``[batch, 3]`` (start token, end token, feature index).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def span_loss(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``(CE(start) + CE(end)) / 2``, positions beyond the sequence clamped to its end (as HF does)."""
    length = outputs.shape[-1]
    start, end = labels[:, 0].clamp(0, length - 1), labels[:, 1].clamp(0, length - 1)
    return (F.cross_entropy(outputs[:, 0], start) + F.cross_entropy(outputs[:, 1], end)) / 2


def kl_batchmean(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """``KL(softmax(t/T) ‖ softmax(s/T))`` summed over the last axis, averaged over the batch."""
    log_student = F.log_softmax(student / temperature, dim=-1)
    log_teacher = F.log_softmax(teacher.to(student.dtype) / temperature, dim=-1)
    return F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True)


def span_distillation_loss(outputs: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, alpha: float,
                           temperature: float) -> torch.Tensor:
    """``(1 − alpha) · T² · (KL_start + KL_end) / 2 + alpha · span_loss`` (see the module docstring)."""
    teacher = teacher[:, :, :outputs.shape[-1]]
    kd = (kl_batchmean(outputs[:, 0], teacher[:, 0], temperature) +
          kl_batchmean(outputs[:, 1], teacher[:, 1], temperature)) / 2
    return (1 - alpha) * temperature ** 2 * kd + alpha * span_loss(outputs, labels)
