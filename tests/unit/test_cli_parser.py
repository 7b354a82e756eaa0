"""`python -m distillery <command> --help` describes that command; an option another command takes is refused.

A trial found one global usage for every command: `promote --help` listed `--check`, `distill --reason x` ran
the stage, and `promote abc` without `--reason` complained only of the reason."""
import pytest

from distillery.cli import main


def _stopped(capsys, argv: list) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    out = capsys.readouterr()
    return stopped.value.code, out.out, out.err


def test_each_command_has_its_own_help(capsys):
    code, out, _ = _stopped(capsys, ["promote", "--help"])
    assert code == 0 and out.startswith("usage: python -m distillery promote")
    assert "--reason" in out and "--other-inputs" in out and "--check" not in out
    code, out, _ = _stopped(capsys, ["distill", "--help"])
    assert code == 0 and "--params" in out and "--reason" not in out and "--other-inputs" not in out
    assert "baseline" in out  # what the stage does, not only its name
    code, out, _ = _stopped(capsys, ["--help"])
    assert code == 0 and all(name in out for name in ("train_teacher", "kd_gain", "rollback", "params"))


def test_an_option_of_another_command_is_refused_naming_its_command(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may run: no params.yaml here
    code, _, err = _stopped(capsys, ["distill", "--reason", "x"])
    assert code == 2 and "--reason is for promote and rollback, not distill" in err
    code, _, err = _stopped(capsys, ["models", "3"])
    assert code == 2 and "models does not take 3" in err


def test_promote_says_what_is_wrong_with_the_version_and_the_reason(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = _stopped(capsys, ["promote", "abc"])
    assert code == 2 and "'abc' is not a model version" in err
    code, _, err = _stopped(capsys, ["promote", "v2"])  # a version as `models` prints it is understood
    assert code == 2 and "required: --reason" in err and "not a model version" not in err
    code, _, err = _stopped(capsys, ["promote", "0", "--reason", "x"])
    assert code == 2 and "'0' is not a model version" in err
    # a trial: rollback moved the champion with no reason recorded, where promote required one
    code, _, err = _stopped(capsys, ["rollback"])
    assert code == 2 and "required: --reason" in err


@pytest.mark.parametrize("argv", [["--params", "elsewhere.yaml", "models"], ["models", "--params", "elsewhere.yaml"]])
def test_params_may_come_before_or_after_the_command(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2 and "elsewhere.yaml: params file not found" in capsys.readouterr().err


def test_ctrl_c_in_a_stage_is_one_line_and_exit_code_130(capsys, monkeypatch):
    """A trial's Ctrl-C during `register` printed a 30-line KeyboardInterrupt traceback."""
    import distillery.cli as cli

    def interrupted(stage, params_path):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_locked", interrupted)
    assert main(["register"]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("distillery register: interrupted; it stopped where it was") \
        and "Traceback" not in err


def test_sigterm_in_a_stage_is_one_line_and_exit_code_143(capsys, monkeypatch):
    """A trial's SIGTERM to `distill` (a cancelled run) ended it with exit code 143 and not a word."""
    import os
    import signal

    import distillery.cli as cli

    def terminated(stage, params_path):
        os.kill(os.getpid(), signal.SIGTERM)  # the handler main installed raises in this thread
        raise AssertionError("SIGTERM did not stop the stage")

    monkeypatch.setattr(cli, "run_locked", terminated)
    before = signal.getsignal(signal.SIGTERM)
    try:
        assert main(["distill"]) == 143
    finally:
        signal.signal(signal.SIGTERM, before)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("distillery distill: terminated (SIGTERM); it stopped where it "
                                                    "was") and "Traceback" not in err


def test_an_option_before_its_own_command_is_told_to_go_after_it(capsys):
    code, _, err = _stopped(capsys, ["--check", "params"])
    assert code == 2 and "--check goes after the command: python -m distillery params ... --check" in err


def test_an_option_before_its_command_is_named_even_when_it_takes_a_value(capsys):
    """A trial's `--reason x promote 1` got argparse's "invalid choice: 'x'": the value was taken for the command."""
    code, _, err = _stopped(capsys, ["--reason", "x", "promote", "1"])
    assert code == 2 and "--reason goes after the command: python -m distillery promote ... --reason" in err
    code, _, err = _stopped(capsys, ["--other-inputs", "rollback"])
    assert code == 2 and "--other-inputs is for promote, not rollback" in err


@pytest.mark.parametrize("argv, option", [(["--params", "a.yaml", "--params", "b.yaml", "models"], "--params"),
                                          (["promote", "1", "--reason", "a", "--reason=b"], "--reason")])
def test_an_option_given_twice_is_refused(argv, option, capsys, tmp_path, monkeypatch):
    """argparse keeps the last of two: `--params a --params b` ran with b, saying nothing."""
    monkeypatch.chdir(tmp_path)
    code, _, err = _stopped(capsys, argv)
    assert code == 2 and f"{option} is given 2 times: give it once" in err


def test_a_ctrl_c_after_the_stage_is_done_leaves_its_exit_code_alone(tmp_path):
    """A trial's Ctrl-C landed as `export` exited, its files whole: the process died of SIGINT and DVC failed the
    stage. Once main has returned, SIGINT and SIGTERM are ignored (here: SIGINT sent from an exit handler)."""
    import subprocess
    import sys

    script = ("import atexit, os, runpy, signal, sys\n"
              "atexit.register(lambda: os.kill(os.getpid(), signal.SIGINT))\n"
              "sys.argv = ['distillery', 'params']\n"
              "runpy.run_module('distillery', run_name='__main__', alter_sys=True)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0 and "KeyboardInterrupt" not in done.stderr, done.stderr[-2000:]
