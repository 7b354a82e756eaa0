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


def test_the_container_runs_as_a_non_root_user():
    """Checked by reading: no Docker engine runs here, so the image is never built in the tests."""
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    users = [i for i, line in enumerate(lines) if line.startswith("USER ")]
    assert users and lines[users[-1]] == "USER distillery"
    assert "useradd --system --uid 10001 --gid distillery" in "\n".join(lines)
    assert "chown -R distillery:distillery /app" in "\n".join(lines)
    after = lines[users[-1]:]
    assert not any(line.startswith(("RUN ", "COPY ", "ADD ")) for line in after)  # nothing root-owned later
    assert after[-1].startswith("CMD ")
