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

A window of an unlabelled transfer-set question (start and end ``-100``) takes the distillation term
alone, as a classification transfer row does: per window ``α_squad · L_task + α_ce · T² · KL`` when
labelled, ``T² · KL`` when not, averaged over the batch's windows. With every window labelled this is
the formula above exactly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from distillery.losses import IGNORE_INDEX


def _span_ce(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per window ``(CE(start) + CE(end)) / 2``; positions beyond the sequence clamped to its end (as HF
    does); 0 for an unlabelled window (``-100``)."""
    length = outputs.shape[-1]
    start, end = labels[:, 0].clamp(0, length - 1), labels[:, 1].clamp(0, length - 1)
    ce = (F.cross_entropy(outputs[:, 0], start, reduction="none") +
          F.cross_entropy(outputs[:, 1], end, reduction="none")) / 2
    return torch.where(labels[:, 0] == IGNORE_INDEX, torch.zeros_like(ce), ce)


def span_loss(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``(CE(start) + CE(end)) / 2`` averaged over the labelled windows (the baseline has no others)."""
    labelled = labels[:, 0] != IGNORE_INDEX
    return _span_ce(outputs, labels).sum() / labelled.sum().clamp(min=1)


def kl_per_window(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """``KL(softmax(t/T) ‖ softmax(s/T))`` summed over the last axis, one value per window."""
    log_student = F.log_softmax(student / temperature, dim=-1)
    log_teacher = F.log_softmax(teacher.to(student.dtype) / temperature, dim=-1)
    return F.kl_div(log_student, log_teacher, reduction="none", log_target=True).sum(dim=-1)


def span_distillation_loss(outputs: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, alpha: float,
                           temperature: float) -> torch.Tensor:
    """Mean over windows of ``(1 − alpha) · T² · (KL_start + KL_end) / 2 + alpha · span CE`` (labelled) or
    ``T² · (KL_start + KL_end) / 2`` (unlabelled, ``-100``); see the module docstring."""
    teacher = teacher[:, :, :outputs.shape[-1]]
    kd = temperature ** 2 * (kl_per_window(outputs[:, 0], teacher[:, 0], temperature) +
                             kl_per_window(outputs[:, 1], teacher[:, 1], temperature)) / 2
    labelled = labels[:, 0] != IGNORE_INDEX
    per_window = torch.where(labelled, (1 - alpha) * kd + alpha * _span_ce(outputs, labels), kd)
    return per_window.mean()
