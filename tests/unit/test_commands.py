"""The README's two commands are the ones CI and the Dockerfile run."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUN = "bash scripts/setup.sh && .venv/bin/python -m flows.pipeline"
TEST = "bash scripts/setup.sh dev && .venv/bin/python -m pytest"
SERVE = "<image> .venv/bin/python -m flows.deploy"


def test_readme_commands_match_ci_and_docker():
    readme = (ROOT / "README.md").read_text()
    assert RUN in readme and TEST in readme
    assert TEST in (ROOT / ".ci" / "run").read_text()
    docker = (ROOT / "Dockerfile").read_text()
    assert "RUN bash scripts/setup.sh\n" in docker
    assert 'CMD [".venv/bin/python", "-m", "flows.pipeline"]' in docker
    assert SERVE in docker and SERVE in readme  # the serve mode: the same image, another command


def test_setup_pins_a_cpu_torch():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"torch==2.13.0"' in pyproject
    assert "torch.version.cuda" in (ROOT / "scripts" / "setup.sh").read_text()
