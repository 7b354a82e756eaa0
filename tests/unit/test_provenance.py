"""What a registered version records of where it came from: the default DVC remote (without credentials), the git
commit and the DVC output hashes; and the advisory lock's key."""
from pathlib import Path

from distillery.advisory_lock import lock_key
from distillery.run_records import dvc_remote, dvc_tags, provenance


def _dvc_config(root: Path, text: str, local: str = "") -> Path:
    (root / ".dvc").mkdir(parents=True, exist_ok=True)
    (root / ".dvc" / "config").write_text(text)
    if local:
        (root / ".dvc" / "config.local").write_text(local)
    return root


def test_the_default_remote_is_named_without_its_credentials(tmp_path):
    root = _dvc_config(tmp_path, "[core]\n    remote = web\n['remote \"web\"']\n"
                                 "    url = https://alice:s3cret@dvc.internal/store\n['remote \"s3\"']\n"
                                 "    url = s3://team-ml/dvc\n")
    assert dvc_remote(root) == {"dvc.remote": "web", "dvc.remote_url": "https://dvc.internal/store"}
    _dvc_config(root, (root / ".dvc" / "config").read_text(), local="[core]\n    remote = s3\n")  # config.local wins
    assert dvc_remote(root) == {"dvc.remote": "s3", "dvc.remote_url": "s3://team-ml/dvc"}


def test_no_dvc_or_no_default_remote_is_none(tmp_path):
    assert dvc_remote(tmp_path) == {"dvc.remote": "none"}
    root = _dvc_config(tmp_path / "p", "['remote \"s3\"']\n    url = s3://team-ml/dvc\n")
    assert dvc_remote(root) == {"dvc.remote": "none"}
    broken = _dvc_config(tmp_path / "q", "[core\n    remote = \n")
    assert dvc_remote(broken)["dvc.remote"].startswith("unknown (")


def test_provenance_keeps_commit_remote_and_output_hashes_not_stage_digests():
    lock = {"export": {"outs": [{"path": "models/onnx", "md5": "abc.dir"}, {"path": "reports/x.json", "md5": "r"}]},
            "prepare": {"outs": [{"path": "data/prepared", "md5": "def.dir"}]}}
    tags = {"git.commit": "c0ffee", "git.dirty": "false", "mlflow.source.git.commit": "c0ffee",
            "distillery.kind": "pipeline", "dvc.remote": "team", "dvc.remote_url": "s3://b/dvc", **dvc_tags(lock)}
    assert provenance(tags) == {"git.commit": "c0ffee", "git.dirty": "false", "dvc.remote": "team",
                                "dvc.remote_url": "s3://b/dvc", "dvc.models/onnx": "abc.dir",
                                "dvc.data/prepared": "def.dir"}


def test_the_lock_key_is_a_signed_bigint_per_model_name():
    keys = {lock_key(name) for name in ("distillery-student", "distillery-snli", "a", "b")}
    assert len(keys) == 4 and all(-2 ** 63 <= key < 2 ** 63 for key in keys)
    # Pinned: machines running different Distillery versions must still take the same key for one model name.
    assert lock_key("distillery-student") == -7111381293956555952
