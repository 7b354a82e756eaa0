"""Which failures are retried (sections 7 and 8 of "Nothing lost and nothing wrongly promoted").

Every case is a real process with a real exit code and real output: a stage command run by `dvc repro`
through the Prefect task's function, or the CLI's own error mapping on a real exception (a write to
/dev/full for a full disk, a garbage file opened by sqlite3, a SQLite database another connection holds).
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PY = "python -c"

LOCKED = ("import sqlite3; a = sqlite3.connect('l.db', isolation_level=None); "
          "a.execute('create table if not exists t (x)'); a.execute('begin exclusive'); "
          "sqlite3.connect('l.db', timeout=0).execute('insert into t values (1)')")
NOT_A_DB = ("open('g.db', 'wb').write(b'this is not a database' * 100); "
            "import sqlite3; sqlite3.connect('g.db').execute('select * from sqlite_master').fetchall()")
# stage -> (command, the class the failure must get, retried?)
CASES = {
    "bad_input": ("import sys; print('distillery prepare: error: params.yaml: distill.alpha = 1.5 is not allowed', "
                  "file=sys.stderr); sys.exit(2)", "BadInput", False),
    "transient": ("import sys; print('distillery register: transient error: MLflow tracking server is unreachable', "
                  "file=sys.stderr); sys.exit(3)", "TransientStageFailure", True),
    "broken_env": ("import sys; print('distillery distill: error: no space left on device writing models/', "
                   "file=sys.stderr); sys.exit(4)", "StageBroken", False),
    "index_error": ("rows = []; rows[3]", "StageBroken", False),  # hours of training, then a bug: exit 1
    "disk_full": ("f = open('/dev/full', 'w'); f.write('x' * 100000); f.close()", "StageBroken", False),
    "not_a_db": (NOT_A_DB, "StageBroken", False),
    "db_locked": (LOCKED, "TransientStageFailure", True),
    "refused": ("import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]; "
                "s.close(); socket.create_connection(('127.0.0.1', port), timeout=5)", "TransientStageFailure", True),
}


@pytest.fixture(scope="module")
def failing_repo(tmp_path_factory):
    """A git + DVC repository with one stage per kind of failure."""
    repo = tmp_path_factory.mktemp("failing")
    stages = {name: {"cmd": f'{PY} "{code}"', "outs": [f"{name}.out"]} for name, (code, _, _) in CASES.items()}
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, width=10_000))
    for args in (["git", "init", "-q"], ["git", "config", "user.email", "ci@example.com"],
                 ["git", "config", "user.name", "CI"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(args, cwd=repo, check=True, capture_output=True)
    return repo


def _state(exc):
    def result(raise_on_failure=True):
        raise exc
    return SimpleNamespace(result=result)


@pytest.mark.parametrize("stage", list(CASES))
def test_a_failed_stage_is_classified_from_its_real_exit_code_and_output(failing_repo, stage):
    from tasks import stages

    _, expected, retried = CASES[stage]
    with pytest.raises(stages.StageFailed) as caught:
        stages.stage_task(stage).fn(str(failing_repo), 120)  # the Prefect task's function: `dvc repro` for real
    assert type(caught.value).__name__ == expected, str(caught.value)
    assert caught.value.stage == stage
    assert stages._retry_if_transient(None, None, _state(caught.value)) is retried
    said = "(transient: a flow's stage task tries it 3 times)" if retried else "(not retried)"
    assert said in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_stage_tasks_retry_only_transient_failures():
    from tasks import stages

    task = stages.STAGE_TASKS["distill"]
    assert task.retries == 2 and task.retry_condition_fn is stages._retry_if_transient
    for kind, retried in ((stages.TransientStageFailure, True), (stages.StageBroken, False),
                          (stages.BadInput, False), (stages.StageTimedOut, False), (stages.StageFailed, False),
                          (RuntimeError, False)):
        assert stages._retry_if_transient(None, None, _state(kind("stage distill failed: x"))) is retried, kind


def test_error_line_prefers_the_cli_line_then_the_exception_line():
    from tasks.stages import _error_line

    traceback = ('Traceback (most recent call last):\n  File "/x/distillery/errors.py", line 3, in <module>\n'
                 "IndexError: list index out of range\nERROR: failed to reproduce 'x': exited with 1\n")
    assert _error_line(traceback) == "IndexError: list index out of range"
    assert _error_line("distillery prepare: error: bad\nERROR: failed") == "distillery prepare: error: bad"
    # the stage's command succeeded and DVC then failed (a trial: the flow's error was the stage's "done" line)
    dvc_failed = ("distillery export: done in 10.3s\nERROR: failed to reproduce 'export': output 'models/onnx' is "
                  "already tracked by SCM (e.g. Git).")
    assert _error_line(dvc_failed) == dvc_failed.splitlines()[1]


# --- the CLI maps well-known causes to one line of the right class -----------------------------------------

@pytest.fixture
def cli_project(tmp_path, monkeypatch):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def _cli_fails(monkeypatch, capsys, failure, code: int, *fragments: str) -> str:
    from distillery import cli

    monkeypatch.setattr(cli, "run_stage", lambda stage, params_path: failure())
    assert cli.main(["prepare"]) == code
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("distillery prepare: "), err
    for fragment in fragments:
        assert fragment in err, err
    return err


def _fill_dev_full():
    with open("/dev/full", "w") as handle:
        handle.write("x" * 100_000)


def test_cli_no_space_left_is_one_line_naming_the_path_exit_4(cli_project, monkeypatch, capsys):
    err = _cli_fails(monkeypatch, capsys, _fill_dev_full, 4, "no space left on device writing under",
                     str(cli_project), "MB free")
    assert err.startswith("distillery prepare: error: ")

    def named():
        raise OSError(28, "No space left on device", str(cli_project / "models" / "teacher"))
    _cli_fails(monkeypatch, capsys, named, 4, f"no space left on device writing {cli_project / 'models' / 'teacher'}")


def test_cli_a_full_disk_in_a_library_a_read_only_tree_and_a_file_size_limit_are_one_line_exit_4(cli_project,
                                                                                                  monkeypatch, capsys):
    """safetensors said "No space left on device (os error 28)" in an exception of its own (a traceback, exit 1);
    a read-only models/ (EROFS) and `ulimit -f` (EFBIG) gave tracebacks too."""
    class SafetensorError(Exception):
        pass

    def safetensors_full():
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: \"No "
                              "space left on device\" })")
    _cli_fails(monkeypatch, capsys, safetensors_full, 4, "no space left on device writing under")
    target = str(cli_project / "models" / "student")
    for number, said in ((30, f"cannot write {target}: the file system is read-only"),
                         (27, f"cannot write {target}: the file grew past this process's size limit (ulimit -f)"),
                         (13, f"cannot use {target}: permission denied")):
        def refused(number=number):
            raise OSError(number, os.strerror(number), target)
        _cli_fails(monkeypatch, capsys, refused, 4, said, "nothing was retried")
    # a size limit met where no file is named (pyarrow's OSError, safetensors' Rust error): a trial's traceback
    for failure in (OSError(27, "Error writing bytes to file. Detail: [errno 27] File too large"),
                    SafetensorError("Error while serializing: I/O error: File too large (os error 27)")):
        def limited(failure=failure):
            raise failure
        _cli_fails(monkeypatch, capsys, limited, 4, f"a file written under {cli_project} grew past this process's "
                   "size limit (ulimit -f ", "); raise the limit", "nothing was retried")
    # a HOME that is a file (its ~/.cache cannot be made): the path and HOME named
    monkeypatch.setenv("HOME", str(cli_project / "params.yaml"))

    def not_a_directory():
        (Path.home() / ".cache" / "distillery").mkdir(parents=True)
    _cli_fails(monkeypatch, capsys, not_a_directory, 4, f"cannot use {cli_project / 'params.yaml'}", "a part of that "
               f"path is a file, not a directory (HOME is {cli_project / 'params.yaml'})")
    # no path to name (os.kill's EPERM), or a bug raised while one was handled: not this failure
    from distillery.cli import known_cause

    assert known_cause(PermissionError(1, "Operation not permitted")) is None
    try:
        try:
            raise PermissionError(13, "Permission denied", target)
        except PermissionError:
            {}["missing"]
    except KeyError as bug:
        assert known_cause(bug) is None


def test_cli_a_failure_on_a_nearly_full_disk_and_a_store_that_cannot_write_are_one_line(cli_project, monkeypatch,
                                                                                          capsys):
    """A full disk that a library masks (ONNX Runtime read back its own cut-short file: "Wire format was corrupt"),
    and SQLite's "disk I/O error" at a size limit, were tracebacks of 40 to 200 lines (a trial)."""
    from distillery import known_causes

    class DecodeError(Exception):
        pass

    def masked():
        raise DecodeError("Error parsing message with type 'onnx.ModelProto': Wire format was corrupt")
    monkeypatch.setattr(known_causes.shutil, "disk_usage", lambda place: SimpleNamespace(free=450_000))
    _cli_fails(monkeypatch, capsys, masked, 4, "DecodeError (Error parsing message with type 'onnx.ModelProto': Wire "
               f"format was corrupt) while {cli_project} has 0.5 MB free: the disk is full, most likely")
    monkeypatch.setattr(known_causes.shutil, "disk_usage", lambda place: SimpleNamespace(free=50_000_000_000))
    assert known_causes.known_cause(DecodeError("Wire format was corrupt")) is None  # with room: not the disk

    def io_error():
        raise sqlite3.OperationalError("disk I/O error")
    _cli_fails(monkeypatch, capsys, io_error, 4, f"the SQLite store sqlite:///{cli_project / 'mlruns'}",
               "could not write (disk I/O error): its disk may be full or a size limit (ulimit -f) reached")


def test_cli_a_store_that_is_not_a_database_is_one_line_naming_the_store_exit_4(cli_project, monkeypatch, capsys):
    store = cli_project / "mlruns" / "mlflow.db"

    def corrupt():
        store.parent.mkdir()
        store.write_bytes(b"this is not a database" * 100)
        sqlite3.connect(store).execute("select * from sqlite_master").fetchall()
    _cli_fails(monkeypatch, capsys, corrupt, 4, f"the SQLite store sqlite:///{store}", "file is not a database")


def test_cli_a_full_store_is_one_line_naming_the_store_exit_4(cli_project, monkeypatch, capsys):
    def full():
        store = sqlite3.connect(cli_project / "small.db")
        store.execute("pragma max_page_count = 3")  # a real SQLITE_FULL, as on a full disk
        store.execute("create table t (x)")
        store.executemany("insert into t values (?)", [("x" * 1000,) for _ in range(100)])
    _cli_fails(monkeypatch, capsys, full, 4, f"the SQLite store sqlite:///{cli_project / 'mlruns' / 'mlflow.db'}",
               "database or disk is full")


def test_cli_a_locked_store_is_transient_exit_3(cli_project, monkeypatch, capsys):
    def locked():
        holder = sqlite3.connect(cli_project / "l.db", isolation_level=None)
        holder.execute("create table t (x)")
        holder.execute("begin exclusive")
        sqlite3.connect(cli_project / "l.db", timeout=0).execute("insert into t values (1)")
    err = _cli_fails(monkeypatch, capsys, locked, 3, "database is locked")
    assert err.startswith("distillery prepare: transient error: ")


def test_cli_a_refused_connection_is_transient_exit_3_without_credentials(cli_project, monkeypatch, capsys):
    import requests

    from servers import free_port

    secret = f"http://alice:s3cret@127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", secret)
    err = _cli_fails(monkeypatch, capsys, lambda: requests.get(secret + "/api", timeout=5), 3, "a connection failed",
                     "http://127.0.0.1:")
    assert "s3cret" not in err and "alice" not in err


def test_cli_an_unexpected_exception_keeps_its_traceback_and_exit_1(cli_project):
    proc = subprocess.run([sys.executable, "-c", "import sys; from distillery import cli; "
                           "cli.run_stage = lambda *a: [][3]; sys.exit(cli.main(['prepare']))"],
                          cwd=cli_project, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "IndexError" in proc.stderr


def test_scratch_in_the_temporary_directory_is_this_users_alone(tmp_path, monkeypatch):
    """Checkpoints and a registration's files were kept in /tmp under predictable names, world-readable (0755);
    another local user could read them, or take the names first. They live in distillery-<uid>, mode 0700."""
    import os
    import stat
    import tempfile

    from distillery.errors import EnvironmentFailure
    from distillery.files import private_temp, scratch_dir

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    private = private_temp()
    assert private == tmp_path / f"distillery-{os.getuid()}" and stat.S_IMODE(private.stat().st_mode) == 0o700
    with scratch_dir(private_temp() / "distillery-register") as scratch:
        assert Path(scratch).parent == private
    private.chmod(0o755)  # made by someone else, or opened up: refused, never used
    with pytest.raises(EnvironmentFailure, match="not a directory of this user's alone .*mode 755.*set TMPDIR"):
        private_temp()
    private.rmdir()
    private.symlink_to(tmp_path)
    with pytest.raises(EnvironmentFailure, match="not a directory of this user's alone"):
        private_temp()


def test_a_killed_multi_process_launchs_checkpoints_are_swept_by_the_next_run(tmp_path):
    """Their shared directory is named after the torchrun launch, not a process, so no sweep matched it: a killed
    2-process run left its full checkpoints in the temporary directory for good."""
    import socket

    from distillery.files import OWNER, mark_owner, sweep_scratch

    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    dead, host = ended.pid, socket.gethostname()
    for name, owner in (("killed", f"{host} {dead}"), ("running", f"{host} {os.getppid()}"),
                        ("elsewhere", f"other-{host} {dead}"), ("unmarked", None)):
        (tmp_path / name / "checkpoint-8").mkdir(parents=True)
        if owner:
            (tmp_path / name / OWNER).write_text(owner)
    (tmp_path / "mine").mkdir()
    mark_owner(tmp_path / "mine")
    assert (tmp_path / "mine" / OWNER).read_text() == f"{host} {os.getpid()}"
    assert sweep_scratch(tmp_path) == [tmp_path / "killed"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "mine", "running", "unmarked"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_torchrun_launched_by_a_stage_dies_with_it(tmp_path):
    """A SIGKILLed `python -m distillery train_teacher` freed the repository lock while the torchrun it launched
    kept training; the next run took the lock and both wrote models/teacher."""
    import signal
    import time

    pid_file = tmp_path / "child.pid"
    middle = subprocess.Popen([sys.executable, "-c", f"""
import os, subprocess, sys, time
from distillery.distributed import dies_with
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], preexec_fn=dies_with(os.getpid()))
open({str(pid_file)!r}, "w").write(str(child.pid))
time.sleep(120)
"""], cwd=Path(__file__).resolve().parents[2])
    deadline = time.monotonic() + 30
    while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    child = int(pid_file.read_text())
    os.kill(child, 0)  # running
    middle.send_signal(signal.SIGKILL)
    middle.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the launched process outlived the killed launcher")


@pytest.mark.parametrize("name, refused", [("proj #1 50%?", True), ("q %20x", True), ("proj #1 50% ü", False)])
def test_a_project_path_a_sqlite_uri_cannot_carry_is_refused(tmp_path, monkeypatch, name, refused):
    """With a "?" in the project's path the store was made as a file outside the project ("/work/p 50%" for
    "/work/p 50%?/mlruns/mlflow.db"), shared by the next such project, which then moved the first one's champion."""
    from distillery.errors import ConfigError
    from distillery.tracking import tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    project = tmp_path / name
    project.mkdir()
    if refused:
        with pytest.raises(ConfigError, match="a project path holding '\\?' or a %XX escape cannot be a sqlite:// URI"):
            tracking_uri(project)
        # a store of its own elsewhere, as the message says: the project's path is no longer in a URI
        from distillery.tracking import connect

        elsewhere = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", elsewhere)
        assert tracking_uri(project) == connect(project) == elsewhere
    else:
        assert tracking_uri(project) == f"sqlite:///{project.resolve()}/mlruns/mlflow.db"


def test_a_failed_report_write_leaves_no_half_file_and_a_cut_json_is_named(tmp_path, monkeypatch):
    """(ulimit -f 1; evaluate) left reports/metrics/.eval.json.tmp-<pid>, 1 KB of cut JSON, one more each time; and a
    cut labels.json or benchmark.json stopped the next stage with a JSONDecodeError traceback."""
    from distillery.errors import DistilleryError
    from distillery.files import read_json, write_json

    target = tmp_path / "reports" / "eval.json"
    write_json(target, {"accuracy": 0.5})
    real = Path.write_text

    def full_disk(self, text, *args, **kwargs):
        real(self, text[:10], *args, **kwargs)
        raise OSError(28, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(OSError):
        write_json(target, {"accuracy": 0.75, "rows": list(range(100))})
    monkeypatch.undo()
    assert sorted(p.name for p in target.parent.iterdir()) == ["eval.json"]
    assert read_json(target) == {"accuracy": 0.5}
    target.write_text('{"accuracy": 0.')
    with pytest.raises(DistilleryError, match=r"eval.json: not valid JSON \(.*\); run `dvc repro evaluate` again"):
        read_json(target, "evaluate")


def test_a_lost_tracking_servers_cause_is_said_in_a_few_whole_words():
    """A trial's register ended "...Max retries exceeded with ); the champion was not moved": the first 160
    characters of MLflow's message, cut mid-sentence."""
    from distillery.tracking_errors import lost_cause

    refused = ("API request to http://127.0.0.1:5000/api/2.0/mlflow/model-versions/set-tag failed with exception "
               "HTTPConnectionPool(host='127.0.0.1', port=5000): Max retries exceeded with url: "
               "/api/2.0/mlflow/model-versions/set-tag (Caused by NewConnectionError('<urllib3.connection."
               "HTTPConnection object at 0x7f2b>: Failed to establish a new connection: [Errno 111] Connection "
               "refused'))")
    assert lost_cause(refused) == "[Errno 111] Connection refused"
    assert lost_cause(refused.replace("NewConnectionError", "ReadTimeoutError").split(" (Caused")[0]) == \
        "max retries exceeded"
    assert lost_cause("x" * 200).endswith("...") and len(lost_cause("x" * 200)) == 160
    assert lost_cause("API request to http://h/api failed") == "API request to http://h/api failed"
