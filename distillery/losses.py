"""Knowledge-distillation losses.

KL (Hinton et al. 2015, "Distilling the Knowledge in a Neural Network"; used by DistilBERT,
Sanh et al. 2019)::

    L = α·CE(y, s) + (1−α)·T²·KL(softmax(t/T) ‖ softmax(s/T))

with ``batchmean`` KL: the KL divergence summed over classes and averaged over the batch. The T²
factor keeps the soft-target gradients on the same scale as the hard-label ones when T changes.

MSE (Tang et al. 2019, "Distilling Task-Specific Knowledge from BERT into Simple Neural
Networks")::

    L = α·CE(y, s) + (1−α)·MSE(s, t)

with the squared logit difference averaged over classes and examples; T is not used.

Rows without a gold label (``label == -100``: transfer-set text labelled only by the teacher) take
the distillation term alone, so each row's loss is ``α·CE + (1−α)·KD`` when labelled and ``KD``
when not, and the batch loss is the mean over rows. With every row labelled this equals the
formulas above exactly.

Hidden-state MSE (PKD, Sun et al. 2019; TinyBERT, Jiao et al. 2020), optional: each student layer
``i`` is pulled towards the teacher layer it was copied from, ``layers[i]``::

    L_hidden = mean over mapped layers of MSE(h_s[i], h_t[layers[i]])  (padding positions excluded)

and ``weight · L_hidden`` is added to the loss above. It needs the teacher's hidden states, which
are not cached, so the teacher runs on every training batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def kd_term(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
            kind: str = "kl") -> torch.Tensor:
    """Per-example distillation term, shape ``[batch]`` (already T²-scaled for ``kl``)."""
    teacher_logits = teacher_logits.to(student_logits.dtype)
    if kind == "mse":
        return (student_logits - teacher_logits).pow(2).mean(dim=-1)
    if kind != "kl":
        raise ValueError(f"unknown distillation loss {kind!r}; use kl or mse")
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=-1)
    return kl * temperature**2


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      alpha: float, temperature: float, kind: str = "kl") -> torch.Tensor:
    """Mean over rows of ``α·CE + (1−α)·KD`` (labelled rows) or ``KD`` (rows with label -100)."""
    kd = kd_term(student_logits, teacher_logits, temperature, kind)
    labelled = labels != IGNORE_INDEX
    ce = F.cross_entropy(student_logits, labels.clamp(min=0), reduction="none")
    per_row = torch.where(labelled, alpha * ce + (1 - alpha) * kd, kd)
    return per_row.mean()


def hidden_state_loss(student_hidden: tuple, teacher_hidden: tuple, layer_map: list[tuple[int, int]],
                      attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean over ``(student_layer, teacher_layer)`` pairs of the MSE between their outputs.

    ``*_hidden`` are the models' ``hidden_states`` (index 0 is the embeddings, ``k + 1`` the output of
    encoder layer ``k``). The squared error is averaged over the hidden units and the real tokens
    (``attention_mask == 1``) of the batch.
    """
    mask = attention_mask.unsqueeze(-1).to(student_hidden[0].dtype)
    denominator = mask.sum() * student_hidden[0].shape[-1]
    losses = [(((student_hidden[s + 1] - teacher_hidden[t + 1].to(student_hidden[0].dtype)) ** 2) * mask).sum()
              / denominator for s, t in layer_map]
    return torch.stack(losses).mean()
