"""What the CLI and the tables print for small models and for a registry without a champion."""
from distillery.reports import parameters
from distillery.stages.register import summary


def test_a_small_models_parameters_are_not_shown_as_zero_millions():
    # the MNIST primer's student has 3.2K parameters: it was printed as "0.0M"
    assert [parameters(n) for n in (22_713_219, 15_606_147, 3_194, 850, 0)] == ["22.7M", "15.6M", "3.2K", "850", "0"]


def test_register_summary_without_a_champion_says_so():
    result = {"checks": [{"passed": False, "detail": "retention 0.90 < 0.97"}], "model_name": "students",
              "version": "1", "decision": "rejected", "alias": "challenger", "champion_after": None,
              "mlflow_run_id": "r1", "tracking_uri": "sqlite:///mlruns/mlflow.db"}
    assert summary(result).splitlines()[0] == ("students v1: rejected (alias challenger); no champion yet; "
                                               "failed: retention 0.90 < 0.97")
    assert "champion is v3;" in summary(dict(result, champion_after="3"))
