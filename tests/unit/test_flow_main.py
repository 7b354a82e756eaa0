"""`python -m flows.pipeline` ends a failure with one line and the stage's exit code."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_a_params_typo_is_one_line_and_exit_2_before_any_flow_starts(tmp_path):
    text = (ROOT / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(text.replace("distill:", "distill:\n  alpah: 0.3", 1))
    env = {"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    run = subprocess.run([sys.executable, "-m", "flows.pipeline"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 2, run.stderr[-2000:]
    assert run.stderr.startswith(f"distillery pipeline: error: {tmp_path / 'params.yaml'}: unknown key "
                                 "distill.alpah; allowed keys: alpha,"), run.stderr
    assert run.stderr.count("\n") == 1 and run.stdout == ""  # one line: no flow started, no traceback


@pytest.mark.parametrize("failure, code", [("BadInput", 2), ("TransientStageFailure", 3), ("StageBroken", 4),
                                           ("StageTimedOut", 1), ("ConfigError", 2), ("LockTimeout", 3)])
def test_a_failed_stage_ends_the_command_with_its_exit_code_and_one_line(tmp_path, monkeypatch, capsys, failure,
                                                                         code):
    import distillery.errors as errors
    import flows.pipeline as module
    import tasks.stages as stages

    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    monkeypatch.chdir(tmp_path)

    def failing():
        if hasattr(stages, failure):
            raise getattr(stages, failure)("distill: something named", "distill")
        raise getattr(errors, failure)("distill: something named")
    monkeypatch.setattr(module, "pipeline", failing)
    assert module.main() == code
    assert capsys.readouterr().err == "distillery pipeline: error: distill: something named\n"


@pytest.mark.parametrize("args, code, said", [(["--help"], 0, "usage: python -m flows.pipeline"),
                                             (["--stages", "distill"], 2, "unrecognized arguments: --stages")])
def test_arguments_never_start_a_run(tmp_path, args, code, said):
    """`python -m flows.pipeline --help` ran the whole pipeline: the command read no arguments at all."""
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    env = {"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    run = subprocess.run([sys.executable, "-m", "flows.pipeline", *args], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == code and said in run.stdout + run.stderr, run.stdout[-2000:] + run.stderr[-2000:]
    assert "flow run" not in run.stdout + run.stderr and not (tmp_path / "data").exists()
