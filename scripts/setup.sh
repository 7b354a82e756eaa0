#!/usr/bin/env bash
# Create .venv in the project root and install Distillery into it. `scripts/setup.sh dev` adds the
# test tools. The README's commands, .ci/run and the Dockerfile all install through this script.
#
# torch is pinned to 2.13.0. Where a CPU wheel of it is on local disk (this machine: PIP_FIND_LINKS),
# pip takes it; elsewhere set PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu first, or
# pip takes the multi-GB CUDA build.
#
# The install goes through uv (installed into .venv from PyPI first): the same packages at the same
# versions as pip resolves, in about 50 s instead of pip's 2.5-3.5 minutes on 2 cores (README). uv does not read pip's
# configuration, so pip's find-links, index URLs and certificate (environment and pip.conf) are handed to
# it, and it picks the best version over every index as pip does. It compiles the bytecode at install time,
# as pip does: without it, under PYTHONDONTWRITEBYTECODE=1 every stage process would compile torch and
# transformers from source again (the test suite took twice the CPU). If uv cannot be installed or fails,
# pip installs as before; DISTILLERY_SETUP_PIP=1 skips uv.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
extras=""
if [ "${1:-}" = "dev" ]; then extras="[dev]"; fi
pip=(.venv/bin/pip --disable-pip-version-check)

pip_setting() {  # pip's value for a setting: its PIP_* variable, else pip.conf (global, then install)
  local env_name="PIP_$(echo "$1" | tr 'a-z-' 'A-Z_')"
  if [ -n "${!env_name:-}" ]; then echo "${!env_name}"; return; fi
  "${pip[@]}" config get "global.$1" 2>/dev/null || "${pip[@]}" config get "install.$1" 2>/dev/null || true
}

with_uv() {
  "${pip[@]}" install --quiet uv >/dev/null 2>&1 || return 1
  local find_links index_url extra_index cert
  find_links="$(pip_setting find-links | tr -s ' \n' ',' | sed 's/^,//; s/,$//')"
  index_url="$(pip_setting index-url)"
  extra_index="$(pip_setting extra-index-url | tr -s ' \n' ' ')"
  cert="$(pip_setting cert)"
  env ${find_links:+UV_FIND_LINKS="$find_links"} ${index_url:+UV_INDEX_URL="$index_url"} \
      ${extra_index:+UV_EXTRA_INDEX_URL="$extra_index"} ${cert:+SSL_CERT_FILE="$cert"} \
      UV_INDEX_STRATEGY=unsafe-best-match UV_NO_PROGRESS=1 \
      .venv/bin/uv pip install --quiet --compile-bytecode --python .venv/bin/python -e ".${extras}"
}

if [ "${DISTILLERY_SETUP_PIP:-0}" = "1" ] || ! with_uv; then
  if [ "${DISTILLERY_SETUP_PIP:-0}" != "1" ]; then echo "setup: uv did not install; installing with pip" >&2; fi
  "${pip[@]}" install --quiet -e ".${extras}"
fi
.venv/bin/python -c "import torch; assert not torch.version.cuda, 'a CUDA torch was installed; see scripts/setup.sh'"
