"""The KD loss against numbers computed by hand in float64 (plain-Python reference + pinned values)."""
import math

import pytest
import torch

from distillery.losses import IGNORE_INDEX, distillation_loss, kd_term

STUDENT = [1.0, 2.0, 0.5]
TEACHER = [2.0, 0.5, -1.0]
LABEL = 1
# Pinned from the hand computation below (softmax, log, sums in Python floats).
CE = 0.4643687841079447  # -log softmax(s)[1]
KL_T2 = 0.19110890251010648  # KL(softmax(t/2) || softmax(s/2))
MSE = 1.8333333333333333  # mean((s - t)^2)


def _softmax(z, temperature=1.0):
    exps = [math.exp(x / temperature) for x in z]
    return [e / sum(exps) for e in exps]


def _reference(student, teacher, label, alpha, temperature, kind):
    kd = (sum((a - b) ** 2 for a, b in zip(student, teacher)) / len(student) if kind == "mse" else
          temperature**2 * sum(p * math.log(p / q) for p, q in
                               zip(_softmax(teacher, temperature), _softmax(student, temperature))))
    if label == IGNORE_INDEX:
        return kd
    return alpha * -math.log(_softmax(student)[label]) + (1 - alpha) * kd


def _loss(student, teacher, labels, alpha, temperature, kind="kl"):
    return distillation_loss(torch.tensor(student, dtype=torch.float64), torch.tensor(teacher, dtype=torch.float64),
                             torch.tensor(labels), alpha, temperature, kind).item()


def test_hand_computed_reference_matches_pinned_numbers():
    assert _reference(STUDENT, TEACHER, LABEL, 1.0, 2.0, "kl") == pytest.approx(CE, abs=1e-15)
    assert _reference(STUDENT, TEACHER, LABEL, 0.0, 2.0, "kl") == pytest.approx(4 * KL_T2, abs=1e-15)
    assert _reference(STUDENT, TEACHER, LABEL, 0.0, 2.0, "mse") == pytest.approx(MSE, abs=1e-15)


@pytest.mark.parametrize("alpha, expected", [(1.0, CE), (0.0, 4 * KL_T2), (0.5, 0.5 * CE + 0.5 * 4 * KL_T2),
                                             (0.3, 0.3 * CE + 0.7 * 4 * KL_T2)])
def test_kl_loss_alpha(alpha, expected):
    assert _loss([STUDENT], [TEACHER], [LABEL], alpha, 2.0) == pytest.approx(expected, abs=1e-12)


def test_kl_term_scaled_by_t_squared():
    """T² scaling: the KD term at T equals T² times the plain KL of the softened distributions."""
    for temperature in (1.0, 2.0, 4.0, 8.0):
        p_t, p_s = _softmax(TEACHER, temperature), _softmax(STUDENT, temperature)
        plain_kl = sum(p * math.log(p / q) for p, q in zip(p_t, p_s))
        got = kd_term(torch.tensor([STUDENT], dtype=torch.float64), torch.tensor([TEACHER], dtype=torch.float64),
                      temperature).item()
        assert got == pytest.approx(temperature**2 * plain_kl, rel=1e-12)
    assert 4 * KL_T2 == pytest.approx(0.7644356100404259, abs=1e-15)


def test_batchmean_matches_torch_kl_div():
    torch.manual_seed(0)
    student, teacher = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    expected = torch.nn.functional.kl_div(torch.log_softmax(student / 3, -1), torch.log_softmax(teacher / 3, -1),
                                          reduction="batchmean", log_target=True) * 9
    got = distillation_loss(student, teacher, torch.zeros(5, dtype=torch.long), 0.0, 3.0)
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)


def test_mse_variant_ignores_temperature():
    for temperature in (1.0, 5.0):
        assert _loss([STUDENT], [TEACHER], [LABEL], 0.0, temperature, "mse") == pytest.approx(MSE, abs=1e-12)
    assert _loss([STUDENT], [TEACHER], [LABEL], 0.5, 2.0, "mse") == pytest.approx(0.5 * CE + 0.5 * MSE, abs=1e-12)


def test_unlabelled_rows_take_kd_only():
    """Mixed batch: a labelled row takes α·CE + (1−α)·KD, an unlabelled row KD alone; the batch is the mean."""
    other_s, other_t = [0.0, -1.0, 3.0], [0.5, 0.5, 1.0]
    got = _loss([STUDENT, other_s], [TEACHER, other_t], [LABEL, IGNORE_INDEX], 0.5, 2.0)
    expected = (_reference(STUDENT, TEACHER, LABEL, 0.5, 2.0, "kl") +
                _reference(other_s, other_t, IGNORE_INDEX, 0.5, 2.0, "kl")) / 2
    assert got == pytest.approx(expected, abs=1e-12)
    # The labelled row's share, from the pinned numbers: (0.5·CE + 0.5·T²·KL) / 2.
    unlabelled_only = _loss([other_s], [other_t], [IGNORE_INDEX], 0.5, 2.0)
    assert got == pytest.approx((0.5 * CE + 0.5 * 4 * KL_T2 + unlabelled_only) / 2, abs=1e-12)


def test_alpha_zero_ignores_labels():
    """With α = 0 the gold label has no effect: only the teacher is learnt from."""
    assert _loss([STUDENT], [TEACHER], [0], 0.0, 2.0) == pytest.approx(_loss([STUDENT], [TEACHER], [2], 0.0, 2.0))
