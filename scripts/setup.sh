#!/usr/bin/env bash
# Create .venv in the project root and install Distillery into it. `scripts/setup.sh dev` adds the
# test tools. The README's commands, .ci/run and the Dockerfile all install through this script.
#
# torch is pinned to 2.13.0. Where a CPU wheel of it is on local disk (this machine: PIP_FIND_LINKS),
# pip takes it; elsewhere set PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu first, or
# pip takes the multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
extras=""
if [ "${1:-}" = "dev" ]; then extras="[dev]"; fi
.venv/bin/pip install --quiet --disable-pip-version-check -e ".${extras}"
.venv/bin/python -c "import torch; assert not torch.version.cuda, 'a CUDA torch was installed; see scripts/setup.sh'"
