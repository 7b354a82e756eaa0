"""The KD loss against numbers computed by hand (literals with their derivation) and a plain-Python KL."""
import math

import pytest
import torch

from distillery.losses import IGNORE_INDEX, distillation_loss, kd_term

STUDENT = [1.0, 2.0, 0.5]
TEACHER = [2.0, 0.5, -1.0]
LABEL = 1
# Computed by hand (exp and ln to 40 digits, rounded to float64), not by a helper of this file:
#
# CE = -log softmax(s)[1] = ln(e^1 + e^2 + e^0.5) - 2
#    = ln(2.718281828 + 7.389056099 + 1.648721271) - 2 = ln(11.756059198) - 2 = 2.464368784108 - 2
CE = 0.46436878410794484
# KL at T = 2: s/2 = [0.5, 1, 0.25], t/2 = [1, 0.25, -0.5]
#   Zs = e^0.5 + e^1 + e^0.25 = 1.648721271 + 2.718281828 + 1.284025417 = 5.651028516
#   Zt = e^1 + e^0.25 + e^-0.5 = 2.718281828 + 1.284025417 + 0.606530660 = 4.608837905
#   pt = [2.718281828, 1.284025417, 0.606530660] / Zt = [0.589797664, 0.278600689, 0.131601647]
#   KL(pt || ps) = sum pt_i (t_i/2 - s_i/2) + ln Zs - ln Zt
#                = (0.589797664·0.5 + 0.278600689·(-0.75) + 0.131601647·(-0.75)) + (1.731837567 - 1.527975744)
#                = -0.012752920 + 0.203861823 = 0.191108903
KL_T2 = 0.19110890251010618
KD_T2 = 0.7644356100404247  # T^2 · KL = 4 · 0.19110890251010618
# MSE = ((1-2)^2 + (2-0.5)^2 + (0.5+1)^2) / 3 = (1 + 2.25 + 2.25) / 3 = 5.5 / 3
MSE = 1.8333333333333333
# A second row, s' = [0, -1, 3], t' = [0.5, 0.5, 1], T = 2: s'/2 = [0, -0.5, 1.5], t'/2 = [0.25, 0.25, 0.5]
#   Zs' = 1 + 0.606530660 + 4.481689070 = 6.088219730;  Zt' = 2·1.284025417 + 1.648721271 = 4.216772104
#   pt' = [0.304504342, 0.304504342, 0.390991315]
#   KL = 0.304504342·0.25 + 0.304504342·0.75 + 0.390991315·(-1) + (ln 6.088219730 - ln 4.216772104)
#      = -0.086486973 + (1.806355712 - 1.439069931) = 0.280798808;  T^2 · KL = 1.123195234
OTHER_S, OTHER_T, OTHER_KD_T2 = [0.0, -1.0, 3.0], [0.5, 0.5, 1.0], 1.1231952335123184


def _softmax(z, temperature=1.0):
    exps = [math.exp(x / temperature) for x in z]
    return [e / sum(exps) for e in exps]


def _loss(student, teacher, labels, alpha, temperature, kind="kl"):
    return distillation_loss(torch.tensor(student, dtype=torch.float64), torch.tensor(teacher, dtype=torch.float64),
                             torch.tensor(labels), alpha, temperature, kind).item()


def test_loss_matches_the_hand_computed_numbers():
    """Each term of the loss on its own (alpha 1: CE only; alpha 0: the KD term only) against the literals."""
    assert _loss([STUDENT], [TEACHER], [LABEL], 1.0, 2.0) == pytest.approx(CE, abs=1e-12)
    assert _loss([STUDENT], [TEACHER], [LABEL], 0.0, 2.0) == pytest.approx(KD_T2, abs=1e-12)
    assert _loss([STUDENT], [TEACHER], [LABEL], 0.0, 2.0, "mse") == pytest.approx(MSE, abs=1e-12)
    assert _loss([OTHER_S], [OTHER_T], [IGNORE_INDEX], 0.5, 2.0) == pytest.approx(OTHER_KD_T2, abs=1e-12)
    assert kd_term(torch.tensor([STUDENT], dtype=torch.float64), torch.tensor([TEACHER], dtype=torch.float64),
                   2.0).item() == pytest.approx(4 * KL_T2, abs=1e-12)


@pytest.mark.parametrize("alpha, expected", [(1.0, CE), (0.0, KD_T2), (0.5, 0.5 * CE + 0.5 * KD_T2),
                                             (0.3, 0.3 * CE + 0.7 * KD_T2)])
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
    got = _loss([STUDENT, OTHER_S], [TEACHER, OTHER_T], [LABEL, IGNORE_INDEX], 0.5, 2.0)
    # (0.5·0.464368784 + 0.5·0.764435610 + 1.123195234) / 2 = (0.614402197 + 1.123195234) / 2 = 0.868798715
    assert got == pytest.approx((0.5 * CE + 0.5 * KD_T2 + OTHER_KD_T2) / 2, abs=1e-12)
    assert got == pytest.approx(0.868798715, abs=1e-9)


def test_alpha_zero_ignores_labels():
    """With α = 0 the gold label has no effect: only the teacher is learnt from."""
    assert _loss([STUDENT], [TEACHER], [0], 0.0, 2.0) == pytest.approx(_loss([STUDENT], [TEACHER], [2], 0.0, 2.0))
