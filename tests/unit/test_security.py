"""Who can change what (section 8): the overrides allow-list, the deployment's own project_dir, and no
tracking-server credentials in anything written or printed. The register stage's outputs on a real
tracking server are checked in tests/integration/test_registry.py."""
from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from distillery.config import Params, load_schedule
from distillery.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SECRET = "http://alice:s3cret@tracking.example:5000"


# --- overrides are limited to schedule.allowed_overrides -------------------------------------------------

@pytest.fixture
def project(tmp_path):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


@pytest.mark.parametrize("key", ["register.gate.min_retention", "register.gate", "register", "data.source",
                                 "schedule.allowed_overrides", "distiller.alpha", "teacher.model",
                                 "teacher.train.learning_rate", "student.model", "student.max_length"])
def test_an_override_outside_the_allow_list_is_refused_in_one_line(project, key):
    from tasks.experiments import set_params
    from tasks.stages import BadInput

    original = (project / "params.yaml").read_text()
    with pytest.raises(BadInput) as caught:
        set_params.fn(str(project), {"distill.alpha": 0.3, key: 0})
    message = str(caught.value)
    assert message.startswith(f"overrides: {key} may not be set by a flow run; schedule.allowed_overrides in "
                              "params.yaml allows distill, student.source, student.init, student.layers, ")
    assert "\n" not in message
    assert (project / "params.yaml").read_text() == original  # nothing written
    assert not (project / ".distillery").exists()


@pytest.mark.parametrize("overrides", [{"distill.alpha": "${oc.env:PGPASSWORD}"},
                                       {"distill.transfer_set.hub_config": "${oc.env:MLFLOW_TRACKING_PASSWORD}"},
                                       {"student.layers": ["${teacher.model}"]},
                                       # the grammar's escapes: \{ and \} become { and } before it resolves
                                       {"distill.transfer_set.hub_config": r"$\{oc.env:PGPASSWORD\}"},
                                       {"distill.alpha": r"$\{oc.env:PGPASSWORD\}"},
                                       {"distill.transfer_set.hub_config": r"str($\{oc.env:PGPASSWORD\})"}])
def test_an_override_value_that_would_be_resolved_is_refused_before_it_is(project, monkeypatch, overrides):
    """DVC's override grammar resolved ${oc.env:VAR}: a flow run could read the worker's secrets, in the run's own
    error line ("expected a number, got 'LockDbS3cret'") or in the experiment's params.yaml."""
    from tasks.experiments import set_params
    from tasks.stages import BadInput

    monkeypatch.setenv("PGPASSWORD", "LockDbS3cret")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "bobPassW0rdS3cret")
    original = (project / "params.yaml").read_text()
    with pytest.raises(BadInput) as caught:
        set_params.fn(str(project), overrides)
    message = str(caught.value)
    assert "a value holding '$' is not allowed" in message and "\n" not in message
    assert "S3cret" not in message
    assert (project / "params.yaml").read_text() == original and not (project / ".distillery").exists()


@pytest.mark.parametrize("overrides", [{"distill.transfer_set.source": "/tmp/creds.csv"},
                                       {"distill.transfer_set.source": "../../secrets/keys.csv"},
                                       {"distill.transfer_set.source": "data/../../outside.csv"},
                                       {"distill.transfer_set.source": "~/.aws/credentials.csv"},
                                       {"distill.transfer_set.source": "hub:/tmp/notes"},
                                       {"distill.transfer_set.source": "hub:./data"},
                                       {"distill.transfer_set.source": "C:\\Users\\x\\a.csv"},
                                       {"distill.transfer_set": {"source": "/etc/hosts.csv"}},
                                       # quoted or spaced: DVC's grammar takes the quotes and spaces off (a review)
                                       {"distill.transfer_set.source": "'hub:/home/someone/private'"},
                                       {"distill.transfer_set.source": " /etc/x.csv"},
                                       {"distill.transfer_set.source": '"/etc/passwd.csv"'}])
def test_an_override_naming_a_file_outside_the_project_is_refused(project, overrides):
    """distill is on the default allow-list, and distill.transfer_set.source took any path: a flow run read a file of
    the worker's (its header reached the run's error line, its lines the transfer set), or a local directory through
    hub: (a security audit). Relative paths inside the project and Hub ids are still taken."""
    from tasks.experiments import set_params
    from tasks.stages import BadInput

    original = (project / "params.yaml").read_text()
    with pytest.raises(BadInput) as caught:
        set_params.fn(str(project), overrides)
    assert "names a place outside the project; a flow run may name files inside it (relative paths) and Hub ids" \
        in str(caught.value) and "\n" not in str(caught.value)
    assert (project / "params.yaml").read_text() == original and not (project / ".distillery").exists()
    (project / "data").mkdir(exist_ok=True)
    (project / "data" / "more.csv").write_text("text\nsome tweet\n")
    for value in ("data/more.csv", "./data/more.csv", "hub:acme/tweets"):
        set_params.fn(str(project), {"distill.transfer_set.source": value})
        assert load_params_file(project)["distill"]["transfer_set"]["source"] == value


def load_params_file(project):
    return yaml.safe_load((project / "params.yaml").read_text())


def test_allowed_overrides_are_prefixes_and_the_list_itself_is_never_overridable(project):
    from tasks.experiments import set_params
    from tasks.stages import BadInput

    assert set_params.fn(str(project), {"distill.train.epochs": 1, "evaluate.seeds": [4, 5],
                                        "student.layers": [0, 2], "student.bilstm.hidden_size": 64})
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["schedule"]["allowed_overrides"] = ["schedule", "register.gate"]
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    assert set_params.fn(str(project), {"register.gate.min_retention": 0.9})  # the repository's owner allowed it
    with pytest.raises(BadInput, match="overrides: schedule.allowed_overrides may not be set"):
        set_params.fn(str(project), {"schedule.allowed_overrides": ["register"]})


def test_allowed_overrides_is_validated(project):
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["schedule"]["allowed_overrides"] = ["distill", "register..gate"]
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="schedule.allowed_overrides = .* is not allowed; list dotted params key "
                                          "prefixes"):
        load_schedule(project / "params.yaml")
    assert load_schedule(ROOT / "params.yaml").allowed_overrides == [
        "distill", "student.source", "student.init", "student.layers", "student.config", "student.boe",
        "student.bilstm", "student.mlp", "student.cnn", "evaluate.seeds", "benchmark"]
    assert load_schedule(ROOT / "params.yaml").allowed_overrides == Params().schedule.allowed_overrides


# --- project_dir is the deployment's own -----------------------------------------------------------------

def test_the_flow_refuses_another_project_dir_in_one_line(tmp_path, monkeypatch):
    from flows.pipeline import PROJECT_DIR_ENV, check_project_dir, pipeline

    monkeypatch.delenv(PROJECT_DIR_ENV, raising=False)
    assert check_project_dir(str(ROOT)) == ROOT.resolve()  # not deployed: the flow's own repository
    other = tmp_path / "elsewhere"
    other.mkdir()
    with pytest.raises(ConfigError) as caught:
        pipeline.fn(project_dir=str(other), overrides={"distill.alpha": 0.3})
    assert str(caught.value) == (f"project_dir {other} is not this deployment's repository ({ROOT.resolve()}); a "
                                 "flow run may only run the pipeline where it was deployed (python -m flows.deploy "
                                 "--project-dir)")
    assert list(other.iterdir()) == []  # nothing read or written there: no lock file, no params

    monkeypatch.setenv(PROJECT_DIR_ENV, str(other))  # what `python -m flows.deploy --project-dir` sets
    assert check_project_dir(str(other / ".." / "elsewhere")) == other.resolve()
    with pytest.raises(ConfigError, match="is not this deployment's repository"):
        check_project_dir(str(ROOT))
    with pytest.raises(ConfigError, match="is not this deployment's repository"):
        pipeline.fn(project_dir=str(tmp_path))


def test_deploy_pins_the_served_runs_to_its_project_dir(tmp_path, monkeypatch):
    import prefect

    from flows import deploy
    from flows.pipeline import PROJECT_DIR_ENV

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    seen = {}
    # set, then removed, through monkeypatch: the value deploy.main writes into os.environ is undone after the test
    monkeypatch.setenv(PROJECT_DIR_ENV, "placeholder")
    monkeypatch.delenv(PROJECT_DIR_ENV)
    monkeypatch.setattr(prefect, "serve", lambda *deployments: seen.update(env=__import__("os").environ.get(
        PROJECT_DIR_ENV), deployments=deployments))
    assert deploy.main(["--project-dir", str(tmp_path), "--no-schedule", "--no-trigger"]) == 0
    assert seen["env"] == str(tmp_path.resolve())
    assert seen["deployments"][0].parameters == {"project_dir": str(tmp_path.resolve())}


# --- credentials ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, clean", [
    ("http://alice:s3cret@tracking.example:5000", "http://tracking.example:5000"),
    ("https://token@host/api/2.0?x=1", "https://host/api/2.0?x=1"),
    ("postgresql+psycopg://mlflow:p@ss@db:5432/mlflow", "postgresql+psycopg://db:5432/mlflow"),
    ("server http://a:b@h:1/x stopped; retry https://c:d@e", "server http://h:1/x stopped; retry https://e"),
    ("https://bob:Zx9/Qw+secret@127.0.0.1:9 is unreachable", "https://127.0.0.1:9 is unreachable"),  # "/" in it
    ("'http://u:a?b#c@h/x' and http://h2", "'http://h/x' and http://h2"),
    ("https://u:pa'ss@host/x failed", "https://host/x failed"),  # a quote in the password
    ('url="http://u:p@h:1/x", other', 'url="http://h:1/x", other'),
    ("sqlite:////abs/mlruns/mlflow.db", "sqlite:////abs/mlruns/mlflow.db"),
    ("databricks", "databricks"),
    # secrets in the query string: a token, an S3 presigned URL, an Azure SAS (a DVC remote's url), ?password=
    ("https://host/api?token=SECRETTOK&x=1", "https://host/api?token=***&x=1"),
    ("https://b/k?X-Amz-Credential=AKIA1&X-Amz-Signature=ab12&X-Amz-Security-Token=t0&v=2",
     "https://b/k?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Security-Token=***&v=2"),
    ("https://acct.blob.core.windows.net/dvc?sv=2020-08&sig=SAS%3D",
     "https://acct.blob.core.windows.net/dvc?sv=2020-08&sig=***"),
    ("postgresql://mlflow@db/x?password=PG&sslmode=require", "postgresql://db/x?password=***&sslmode=require"),
    ("'https://h/x?access_token=zz' failed; https://h/?monkey=1&key=K",
     "'https://h/x?access_token=***' failed; https://h/?monkey=1&key=***"),
    # a review: punctuation after the value kept; a tokenizer is no token; Azure's api-key, subscription-key, code;
    # an OAuth fragment
    ("see https://h/x?token=abc, and (https://h/y?sig=s1).", "see https://h/x?token=***, and (https://h/y?sig=***)."),
    ("https://h/?tokenizer=bert&passwordless=1&api-key=K1&subscription-key=K2&code=C3",
     "https://h/?tokenizer=bert&passwordless=1&api-key=***&subscription-key=***&code=***"),
    ("https://h/cb#access_token=T9&state=1", "https://h/cb#access_token=***&state=1"),
])
def test_redact_uri_strips_credentials_only(text, clean):
    from distillery.tracking import redact_uri

    assert redact_uri(text) == clean


def test_an_unreachable_server_with_credentials_is_reported_without_them(tmp_path, monkeypatch, capsys):
    from distillery.cli import main
    from servers import free_port

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:s3cret@127.0.0.1:{free_port()}")
    assert main(["models"]) == 3
    out = capsys.readouterr()
    assert "distillery models: transient error: MLflow tracking server http://127.0.0.1:" in out.err
    assert "s3cret" not in out.err + out.out and "alice" not in out.err + out.out


@contextlib.contextmanager
def _answering(status: int, body: bytes):
    """A local HTTP server that answers every request but ``/health`` with ``status`` and ``body``; its port."""
    import http.server
    import threading

    class Answering(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the handler's name
            self.send_response(200 if self.path == "/health" else status)
            self.end_headers()
            self.wfile.write(b"OK" if self.path == "/health" else body)

        do_POST = do_GET  # noqa: N815

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answering)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_port
    finally:
        server.shutdown()


def test_a_server_answering_404_is_a_wrong_address_not_a_lost_server(tmp_path, monkeypatch, capsys):
    """MLFLOW_TRACKING_URI at a path the server does not serve (http://host:port/mlflow): "transient error: ... stopped
    answering", exit 3 and retried by the flow, though the server had answered."""
    from distillery.cli import main

    with _answering(404, b"<!doctype html><title>404</title>") as port:
        shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:s3cret@127.0.0.1:{port}/mlflow")
        assert main(["models"]) == 2
    err = capsys.readouterr().err
    assert f"MLflow tracking server http://127.0.0.1:{port}/mlflow answered 404 (not found) to " \
           "MLflow's REST API: set MLFLOW_TRACKING_URI to the server's own address" in err, err
    assert "transient" not in err and "s3cret" not in err


@pytest.mark.parametrize("code, password, said", [
    (401, "s3cret", "refused the credentials (401 Unauthorized): set MLFLOW_TRACKING_USERNAME and "
                    "MLFLOW_TRACKING_PASSWORD"),
    (401, None, "refused the credentials (401 Unauthorized; MLFLOW_TRACKING_PASSWORD is not set): set "
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"),
    (403, "s3cret", "denied permission (403) to account 'alice' for /api/2.0/mlflow/model-versions/search: an admin "
                    "grants EDIT on the experiment and MANAGE on the registered model")])
def test_a_server_refusing_the_account_is_a_setting_to_fix_not_a_lost_server(tmp_path, monkeypatch, capsys, code,
                                                                             password, said):
    """A trial's wrong password (401) and a teammate without permission on the basic-auth server (403) were "transient
    error: ... stopped answering", exit 3, retried by the flow for nothing. Another's user name without a password
    was not told which variable was missing, and `models`, which moves nothing, said the champion was not moved."""
    from distillery.cli import main

    with _answering(code, b"Permission denied") as port:
        shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
        if password:
            monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
        else:
            monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
        monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
        assert main(["models"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"MLflow tracking server http://127.0.0.1:{port} {said}" in err, err
    assert "transient" not in err and "s3cret" not in err and "champion" not in err


def test_a_server_failing_inside_is_said_with_its_status_not_as_a_lost_server(tmp_path, monkeypatch, capsys):
    """A trial's server with a missing artifact bucket answered 500 to every upload: "transient error: ... stopped
    answering (max retries exceeded)", exit 3, retried by the flow, though the server was up and its log said why."""
    from distillery.cli import main

    with _answering(500, b"NoSuchBucket") as port:
        shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:s3cret@127.0.0.1:{port}")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # MLflow's own retries, quickly
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
        assert main(["models"]) == 4  # EnvironmentFailure: someone fixes the server; the flow does not retry it
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and (
        f"MLflow tracking server http://127.0.0.1:{port} answered HTTP 500 to /api/2.0/mlflow/model-versions/search, "
        "again after MLflow's retries: the server's own log says why") in err, err
    assert "transient" not in err and "s3cret" not in err and "champion" not in err


def test_a_database_as_the_tracking_uri_fails_in_one_line(tmp_path, monkeypatch, capsys):
    """A trial set MLFLOW_TRACKING_URI to the team server's PostgreSQL (the mistake the README warns of): a closed
    port, a refused password and the server's mlflow-artifacts each ended in a traceback of 40 to 208 lines."""
    import socket

    import sqlalchemy.exc
    from mlflow.exceptions import MlflowException

    import mlflow.store.db.utils
    from distillery.cli import main
    from distillery.known_causes import known_cause

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    uri = f"postgresql://mlflow:s3cret@127.0.0.1:{port}/mlflow"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setattr(mlflow.store.db.utils, "MAX_RETRY_COUNT", 1)  # MLflow's own 100 s of retries, once
    assert main(["models"]) == 3
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"distillery models: transient error: the tracking database postgresql://127.0.0.1:{port}"
                          f"/mlflow did not answer (connection to server at \"127.0.0.1\", port {port} failed: "
                          "Connection refused"), err
    assert "s3cret" not in err

    refused = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception(
        'connection to server at "127.0.0.1", port 5432 failed: FATAL:  password authentication failed for user '
        '"mlflow"'))  # as psycopg2 said it to the trial
    said = known_cause(refused)
    assert type(said).__name__ == "ConfigError" and str(said).startswith(
        f"the tracking database postgresql://127.0.0.1:{port}/mlflow refused the connection (connection to server "
        "at "), said
    missing = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception('FATAL:  database "mlflow" does not exist'))
    assert type(known_cause(missing)).__name__ == "ConfigError"  # the server answered: not retried
    dropped = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("SSL SYSCALL error: EOF detected"))
    assert type(known_cause(dropped)).__name__ == "TransientError"  # a connection lost mid-way: retried
    proxied = MlflowException("When an mlflow-artifacts URI was supplied, the tracking URI must be a valid http or "
                              "https URI, but it was currently set to postgresql://127.0.0.1:5432/mlflow.")
    said = known_cause(proxied)
    assert type(said).__name__ == "ConfigError" and "set MLFLOW_TRACKING_URI to the server's own http(s):// address" \
        in str(said) and "s3cret" not in str(said), said
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")  # the same errors under a server: not these
    assert known_cause(proxied) is None


def test_the_failure_notification_and_log_carry_no_credentials():
    import logging

    from prefect.settings import PREFECT_LOGGING_TO_API_ENABLED, temporary_settings

    from flows.operations import notify_failure
    from tasks.stages import TransientStageFailure

    from servers import json_receiver

    error = TransientStageFailure(f"stage register failed (transient): MLflow tracking server {SECRET} "
                                  f"stopped answering (API request to {SECRET}/api/2.0/mlflow/runs/create failed)",
                                  "register")
    from uuid import uuid4

    from prefect.client.schemas.objects import FlowRun

    logged = []  # the flow run logger's records (it does not propagate to the root logger, so caplog sees none)
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())
    logger = logging.getLogger("prefect.flow_runs")
    logger.addHandler(handler)
    try:
        with json_receiver() as (url, received), temporary_settings(updates={PREFECT_LOGGING_TO_API_ENABLED: False}):
            notify_failure(SimpleNamespace(name="distillery-pipeline"), FlowRun(name="calm-fox", flow_id=uuid4()),
                           SimpleNamespace(result=lambda raise_on_failure=True: error, message="", name="Failed"),
                           apprise_url=url)
    finally:
        logger.removeHandler(handler)
    said = "MLflow tracking server http://tracking.example:5000 stopped answering"
    assert received and said in received[0]["message"]
    assert any(said in line for line in logged), logged  # the log line was written, redacted
    sent = json.dumps(received) + "\n".join(logged)
    assert "s3cret" not in sent and "alice" not in sent


def test_the_model_card_carries_no_credentials():
    from distillery.config import load_params
    from distillery.model_card import model_card

    import dataclasses

    params = load_params(ROOT / "params.yaml")
    params = dataclasses.replace(params, data=dataclasses.replace(params.data, source=f"{SECRET}/data/tweets.csv"))
    card = model_card(params, {"labels": ["a", "b"]}, {}, {}, {"rows": {"test": 2}}, "student.onnx",
                      {"decision": "promoted", "checks": [{"name": "retention", "passed": True,
                                                           "detail": f"tracked at {SECRET}"}]})
    assert "http://tracking.example:5000/data/tweets.csv" in card and "tracked at http://tracking.example:5000" in card
    assert "s3cret" not in card and "alice" not in card


def test_params_check_warns_of_an_allow_list_that_lets_a_flow_run_lower_the_bar(project, capsys):
    """The narrower default reaches new projects only: a params.yaml from before lists student and teacher.train."""
    from distillery.cli import main

    assert main(["params", "--check", "--params", str(project / "params.yaml")]) == 0
    assert "warning" not in capsys.readouterr().err
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["schedule"]["allowed_overrides"] = ["distill", "student", "teacher.train", "evaluate.seeds", "benchmark"]
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    assert main(["params", "--check", "--params", str(project / "params.yaml")]) == 0
    assert capsys.readouterr().err == (
        f"{project / 'params.yaml'}: warning: schedule.allowed_overrides lets whoever starts a flow run set "
        "student, teacher.train: the gate's bar, the teacher it is measured against, or the weights that ship (the "
        "default list leaves out register, teacher, student.model and student.max_length)\n")
    raw["schedule"]["allowed_overrides"] = ["distill", "register.gate.tolerance"]  # 1.0 lets any model through
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    assert main(["params", "--check", "--params", str(project / "params.yaml")]) == 0
    assert "set register.gate.tolerance:" in capsys.readouterr().err
