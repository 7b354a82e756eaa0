"""Hub model ids (``teacher.model: org/name``, ``student.model: org/name``) through the stages that load them,
resolved from a warm Hugging Face cache: the Hub itself is unreachable here, and the tests never reach it
(``HF_HUB_OFFLINE``). The cache is laid out as ``huggingface_hub`` writes it, holding the tiny BERTs."""
import json
import shutil
from pathlib import Path

import pytest

from conftest import tiny_params, update_params, write_params
from distillery.cli import main
from tiny import make_csv

REVISION = "0123456789abcdef0123456789abcdef01234567"


def _cache(root: Path, repo_id: str, model_dir: Path) -> None:
    """``model_dir`` as the Hub cache holds ``repo_id`` at its main branch."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(model_dir, repo / "snapshots" / REVISION)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch, tiny_bert, tiny_bert_other):
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    _cache(cache, "distillery-test/tiny-bert", tiny_bert)
    _cache(cache, "distillery-test/tiny-bert-other", tiny_bert_other)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))  # read at each call, not at import
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def test_hub_ids_for_the_teacher_and_a_model_student_load_from_the_cache_and_a_missing_one_is_named(
        tmp_path, monkeypatch, capsys, hub_cache):
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path / "params.yaml", tiny_params("distillery-test/tiny-bert", make_csv(tmp_path / "data.csv",
                                                                                              n=150)))
    for stage in ("prepare", "train_teacher", "teacher_logits", "distill"):  # layers [0, 3] of the Hub teacher
        assert main([stage]) == 0, (stage, capsys.readouterr().err)
    teacher = json.loads((tmp_path / "models/teacher/config.json").read_text())
    student = json.loads((tmp_path / "models/student/config.json").read_text())
    assert teacher["num_hidden_layers"] == 4 and student["num_hidden_layers"] == 2
    assert student["hidden_size"] == teacher["hidden_size"] == 32

    # `student.source: model`: a Hub id with its own tokenizer and width (the 2-layer, 16-wide tiny BERT)
    update_params(tmp_path / "params.yaml", **{"student.source": "model",
                                               "student.model": "distillery-test/tiny-bert-other"})
    assert main(["distill"]) == 0, capsys.readouterr().err
    student = json.loads((tmp_path / "models/student/config.json").read_text())
    assert student["hidden_size"] == 16 and student["num_hidden_layers"] == 2
    assert json.loads((tmp_path / "reports/metrics/distill.json").read_text())["student"]["steps"] > 0

    # An id the cache does not hold: one line naming the key and the id, and the student already there is kept
    kept = (tmp_path / "models/student/model.safetensors").read_bytes()
    update_params(tmp_path / "params.yaml", **{"student.model": "distillery-test/no-such-model"})
    capsys.readouterr()
    assert main(["distill"]) != 0
    error = capsys.readouterr().err.strip().splitlines()[-1]
    # offline, the cache's miss is found before anything loads (it was from_pretrained's "cannot load ... could not
    # provide it"), and `params --check` says the same before DVC removes an output
    assert error.startswith("distillery distill: error: student.model: 'distillery-test/no-such-model' is not in the "
                            "Hugging Face cache ("), error
    assert error.endswith("and HF_HUB_OFFLINE is set, so it cannot be fetched: download it where the Hub is "
                          "reachable (same HF_HOME), or give a local directory"), error
    assert main(["params", "--check"]) == 2 and "'distillery-test/no-such-model' is not in the Hugging Face cache" in \
        capsys.readouterr().err
    assert (tmp_path / "models/student/model.safetensors").read_bytes() == kept

    # the teacher records the commit it was trained from; a layers student of a teacher.model that has moved on
    # since (a new snapshot behind refs/main) is refused: DVC hashes no Hub model, so it called the teacher current
    # and the student took its layers from another model
    assert json.loads((tmp_path / "models/teacher/training.json").read_text())["hub_revisions"] == \
        {"distillery-test/tiny-bert": REVISION}
    repo = hub_cache / "models--distillery-test--tiny-bert"
    moved = "fedcba9876543210fedcba9876543210fedcba98"
    shutil.copytree(repo / "snapshots" / REVISION, repo / "snapshots" / moved)
    (repo / "refs" / "main").write_text(moved)
    update_params(tmp_path / "params.yaml", **{"student.source": "layers"})
    capsys.readouterr()
    assert main(["distill"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "teacher.model: 'distillery-test/tiny-bert' is at commit fedcba987654 on the Hub (or in the cache) now, but the "
        "teacher was trained from 0123456789ab: retrain it (`dvc repro -f train_teacher`), or distill would mix two "
        "models")
    assert (tmp_path / "models/student/model.safetensors").read_bytes() == kept


def test_a_hub_out_of_reach_is_found_once_then_the_cache_serves_at_once_and_a_miss_is_transient(
        tmp_path, monkeypatch, capsys, hub_cache):
    """No network and no HF_HUB_OFFLINE: every load of a Hub id retried for 25 s (4 min 50 s for one stage), then
    failed, or found the model the cache held all along. One connection attempt now decides, for the process."""
    import socket

    from huggingface_hub import constants
    from transformers import AutoConfig

    from distillery import errors
    from distillery.hf import from_pretrained, resolve_model

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: the connection is refused at once
    attempts = []
    connect = socket.create_connection
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: attempts.append(a[0]) or connect(*a, **k))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(errors, "PROBED", {})
    for variable in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY",
                     "no_proxy"):
        monkeypatch.delenv(variable, raising=False)

    name = resolve_model("distillery-test/tiny-bert", "teacher.model")
    assert from_pretrained(AutoConfig, name, "teacher.model").hidden_size == 32  # from the cache
    assert constants.HF_HUB_OFFLINE is True and attempts == [("127.0.0.1", port)]
    assert capsys.readouterr().err.count(f"the Hugging Face Hub (http://127.0.0.1:{port}) cannot be reached") == 1

    with pytest.raises(errors.HubUnreachable) as error:  # exit 3: the flow retries it later
        resolve_model("distillery-test/no-such-model", "student.model")
    assert str(error.value) == (f"student.model: 'distillery-test/no-such-model' is not in the Hugging Face cache "
                                f"({hub_cache}), and the Hub (http://127.0.0.1:{port}) cannot be reached from this "
                                "machine: retry once it can, or give a local directory")
    assert len(attempts) == 1  # asked once per process

    # the processes this one starts (torchrun's ranks) inherit the answer: no second attempt, no second note
    monkeypatch.setattr(errors, "PROBED", {})
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert errors.offline_unless_hub_reachable("distillery-test/tiny-bert") and len(attempts) == 1
    assert capsys.readouterr().err == ""

    # the flow's first stage, `params --check`, exits 3 (retried) with one line, not a traceback (exit 1)
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path / "params.yaml", tiny_params("distillery-test/no-such-model", make_csv(tmp_path / "d.csv")))
    assert main(["params", "--check"]) == 3
    assert capsys.readouterr().err.startswith("distillery params: transient error: params.yaml: teacher.model: "
                                              "'distillery-test/no-such-model' is not in the Hugging Face cache")
    # ...but a local error in the same file is said first (exit 2): a retry would meet it anyway
    update_params(tmp_path / "params.yaml", **{"benchmark.batch_sizes": [8]})
    assert main(["params", "--check"]) == 2
    assert "benchmark.batch_sizes = [8] is not allowed; register's latency gate reads the batch-1 cell" in \
        capsys.readouterr().err
    update_params(tmp_path / "params.yaml", **{"data.source": "data/raw/gone.csv"})  # and a data file first of all
    assert main(["params", "--check"]) == 2 and "gone.csv" in capsys.readouterr().err

    # a local directory never asks; behind a proxy, the proxy is what is asked for (no_proxy hosts: the host)
    monkeypatch.setattr(errors, "PROBED", {})
    monkeypatch.setenv(errors.OUT_OF_REACH, "")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert not errors.offline_unless_hub_reachable(str(hub_cache)) and len(attempts) == 1
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:3128")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:3129")
    assert errors.offline_unless_hub_reachable("distillery-test/tiny-bert")  # the endpoint is http: the http proxy
    assert attempts[1:] == [("127.0.0.1", 3129)]
    assert "cannot be reached from this machine (proxy 127.0.0.1:3129: " in capsys.readouterr().err
    monkeypatch.setattr(errors, "PROBED", {})
    monkeypatch.setenv(errors.OUT_OF_REACH, "")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    errors.offline_unless_hub_reachable("distillery-test/tiny-bert")
    assert attempts[2:] == [("127.0.0.1", port)]

    # a long-lived process (a kd_gain flow run) asks again after errors.ASK_AGAIN_S: the Hub is back, and it is online
    import time

    listening = socket.socket()
    listening.bind(("127.0.0.1", port))
    listening.listen()
    try:
        assert errors.offline_unless_hub_reachable("distillery-test/tiny-bert")  # asked too soon: still out of reach
        assert constants.HF_HUB_OFFLINE is True and len(attempts) == 3
        errors.PROBED_AT[constants.ENDPOINT] = time.monotonic() - errors.ASK_AGAIN_S - 1
        assert not errors.offline_unless_hub_reachable("distillery-test/tiny-bert")
        assert constants.HF_HUB_OFFLINE is False and len(attempts) == 4 and not errors.hub_out_of_reach()
    finally:
        listening.close()


@pytest.mark.parametrize("answer, reachable", [(b"HTTP/1.1 404 Not Found\r\n\r\n", False),
                                                (b"HTTP/1.1 200 Connection established\r\n\r\n", True)])
def test_a_proxy_that_will_not_tunnel_to_the_hub_is_out_of_reach_and_its_refusal_is_transient(monkeypatch, capsys,
                                                                                              answer, reachable):
    """A trial: a proxy that accepts the connection but answers 404 to CONNECT (one that blocks huggingface.co) passed
    the probe; a cached id then failed with a 98-line httpx ProxyError traceback (exit 1), never used the cache."""
    import socket
    import threading

    from huggingface_hub import constants

    from distillery import errors
    from distillery.hf import from_pretrained

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    requests = []

    def proxy():
        connection, _ = server.accept()
        with connection:
            requests.append(connection.recv(1024))
            connection.sendall(answer)

    thread = threading.Thread(target=proxy, daemon=True)
    thread.start()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "https://huggingface.co")
    for variable in ("HTTPS_PROXY", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("https_proxy", f"http://user:secret@127.0.0.1:{server.getsockname()[1]}")
    try:
        assert errors.offline_unless_hub_reachable("acme/tiny") is not reachable
    finally:
        thread.join(5)
        server.close()
    assert requests[0].startswith(b"CONNECT huggingface.co:443 HTTP/1.1\r\nHost: huggingface.co:443\r\n"
                                  b"Proxy-Authorization: Basic dXNlcjpzZWNyZXQ=\r\n\r\n")
    said = capsys.readouterr().err
    assert ("answered 'HTTP/1.1 404 Not Found' to CONNECT huggingface.co:443): Hub ids load from the local Hugging "
            "Face cache only" in said) is not reachable

    class ProxyError(Exception):  # httpx's: no OSError
        pass

    class Loader:
        @staticmethod
        def from_pretrained(name, **kwargs):
            raise ProxyError("404 Not Found")

    with pytest.raises(errors.HubUnreachable, match=r"^teacher\.model: the Hugging Face Hub did not answer for "
                                                    r"'acme/tiny' \(404 Not Found\); retry once it does"):
        from_pretrained(Loader, "acme/tiny", "teacher.model")


def test_a_multi_process_stage_asks_the_hub_before_it_launches_so_its_processes_say_nothing(
        hub_cache, tmp_path, monkeypatch, capsys):
    """A trial: with `distill.train.processes: 2` the note that the Hub is out of reach came once per process, as
    the launcher re-launched under torchrun before loading any model, leaving its processes nothing to inherit."""
    import os
    import socket

    from huggingface_hub import constants

    from distillery import distributed, errors
    from distillery.cli import run_stage

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    for variable in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    launched = []
    monkeypatch.setattr(distributed, "launch", lambda stage, processes, path: launched.append(
        (stage, processes, os.environ.get(errors.OUT_OF_REACH))) or {"launched": True})
    monkeypatch.chdir(tmp_path)
    params = tiny_params("distillery-test/tiny-bert", make_csv(tmp_path / "d.csv"))
    params["teacher"]["train"]["processes"] = 2
    write_params(tmp_path / "params.yaml", params)
    assert run_stage("train_teacher") == {"launched": True}
    assert launched == [("train_teacher", 2, constants.ENDPOINT)]  # what torchrun's processes inherit
    assert capsys.readouterr().err.count("cannot be reached") == 1
