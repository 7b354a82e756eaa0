"""`repro` streams a stage's output while the stage runs, and still classifies its failure."""
import subprocess
import sys
import time

import pytest
import yaml

PRINTER = ("import sys, time; print('first line', flush=True); print('to stderr', file=sys.stderr, flush=True); "
           "time.sleep(4); print('last line'); open('slow.out', 'w').write('x')")


@pytest.fixture
def printing_repo(tmp_path):
    """A git + DVC repository whose stage prints, waits 4 s, prints again (stdout without flush: streamed
    only if the child is unbuffered) and a stage that prints, then fails with exit code 2."""
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        "slow": {"cmd": f'python -c "{PRINTER}"', "outs": ["slow.out"]},
        "bad": {"cmd": "python -c \"import sys; print('working'); "
                       "print('distillery bad: data.csv row 3: no label', file=sys.stderr); sys.exit(2)\"",
                "outs": ["bad.out"]}}}, width=10_000))
    for args in (["git", "init", "-q"], ["git", "config", "user.email", "ci@example.com"],
                 ["git", "config", "user.name", "CI"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(args, cwd=tmp_path, check=True, capture_output=True)
    return tmp_path


def test_lines_arrive_while_the_stage_runs(printing_repo, monkeypatch):
    from tasks import stages

    arrived = []
    monkeypatch.setattr(stages, "_emitter", lambda stage: lambda line: arrived.append((time.monotonic(), line)))
    result = stages.repro("slow", str(printing_repo), timeout_seconds=120)
    returned = time.monotonic()
    assert result["ran"]
    lines = {line: at for at, line in arrived}
    assert "first line" in lines and "to stderr" in lines and "last line" in lines, arrived
    # the stage sleeps 4 s after its first two lines: they were seen well before the process ended
    assert returned - lines["first line"] > 3 and returned - lines["to stderr"] > 3
    assert returned - lines["last line"] < 3
    assert any("Running stage 'slow'" in line for line in lines)  # DVC's own lines are streamed too
    # ...but not its advice to `git add` and `dvc push` after each stage: a flow run says that once, at its end,
    # with the files DVC named (the lock file, and the .gitignore it added slow.out to)
    assert not [line for line in lines if "git add" in line or "autostage" in line or "dvc push" in line], lines
    assert result["git_add"] == ["dvc.lock", ".gitignore"], result  # the lock file first (DVC's is a set)
    # up to date: DVC's "Data and pipelines are up to date." read as "nothing to do" though later stages ran (a trial)
    arrived.clear()
    again = stages.repro("slow", str(printing_repo), timeout_seconds=120)
    assert not again["ran"] and again["git_add"] == [], again
    assert arrived and not [line for _, line in arrived if "Data and pipelines are up to date" in line], arrived


def test_a_streamed_failure_is_still_classified_with_its_error_line(printing_repo, monkeypatch, capsys):
    from tasks import stages

    with pytest.raises(stages.BadInput, match=r"^stage bad failed \(not retried\): distillery bad: data.csv row 3: "
                                              r"no label$"):
        stages.repro("bad", str(printing_repo), timeout_seconds=120)
    streamed = capsys.readouterr().err  # outside a Prefect run the lines go to stderr, named by stage
    assert "bad | working" in streamed and "bad | distillery bad: data.csv row 3: no label" in streamed


def test_inside_a_prefect_run_the_lines_go_to_the_run_logger(printing_repo, monkeypatch, capsys):
    import prefect.logging

    from tasks import stages

    logged = []

    class RunLogger:
        def info(self, message, *args):
            logged.append((time.monotonic(), message % args))

    monkeypatch.setattr(prefect.logging, "get_run_logger", lambda: RunLogger())
    stages.repro("slow", str(printing_repo), timeout_seconds=120)
    returned = time.monotonic()
    lines = {line: at for at, line in logged}
    assert returned - lines["first line"] > 3 and "last line" in lines, logged
    assert "first line" not in capsys.readouterr().err  # not printed twice: Prefect's console handler shows it


def test_the_git_add_advice_is_one_line_naming_dvc_push_only_with_a_remote(tmp_path):
    from flows.operations import git_add_hint

    (tmp_path / ".dvc").mkdir()
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    assert git_add_hint(tmp_path, []) is None  # nothing ran: nothing to say
    hint = git_add_hint(tmp_path, ["dvc.lock", "reports/my plots/.gitignore"])
    assert hint == ("DVC recorded this run in dvc.lock: `git add dvc.lock 'reports/my plots/.gitignore'` keeps the "
                    "record with your code")
    (tmp_path / ".dvc" / "config.local").write_text("[core]\n    remote = shared\n['remote \"shared\"']\n"
                                                    "    url = /mnt/dvc\n")
    assert git_add_hint(tmp_path, ["dvc.lock"]).endswith("; `dvc push` sends its outputs to your DVC remote")
    # the reports git tracks (metrics, summaries: cache: false in dvc.yaml), which DVC does not name (a trial)
    (tmp_path / "reports" / "metrics").mkdir(parents=True)
    (tmp_path / "reports" / "metrics" / "eval.json").write_text("{}")
    assert git_add_hint(tmp_path, ["dvc.lock"]).startswith("DVC recorded this run in dvc.lock: `git add dvc.lock "
                                                           "reports` keeps")
