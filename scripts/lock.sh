#!/usr/bin/env bash
# Regenerate requirements.lock (runtime dependencies of pyproject.toml, with hashes) using uv from
# a throwaway virtualenv, so that the lock tool never becomes a dependency of Stalwart.
set -euo pipefail
cd "$(dirname "$0")/.."
tool=$(mktemp -d)
trap 'rm -rf "$tool"' EXIT
python3 -m venv "$tool/venv"
"$tool/venv/bin/python" -m pip install -q uv
# Existing pins are kept (uv prefers the versions already in its output file); LOCK_UPGRADE=1 lifts them.
grep -v '^#' requirements.lock > "$tool/lock" || true
upgrade=()
[[ "${LOCK_UPGRADE:-0}" == 1 ]] && upgrade=(--upgrade)
"$tool/venv/bin/uv" pip compile pyproject.toml --generate-hashes --python-version 3.11 \
  --python-platform x86_64-manylinux_2_28 --index-url https://pypi.org/simple --no-header "${upgrade[@]}" -o "$tool/lock"
{
  echo "# Stalwart runtime dependencies, pinned with hashes (pip install --require-hashes -r requirements.lock)."
  echo "# Regenerate: bash scripts/lock.sh  (uv pip compile pyproject.toml --generate-hashes, Python 3.11, PyPI)."
  echo "# Checked by scripts/check_compromised.py against supply-chain/compromised.txt."
  cat "$tool/lock"
} > requirements.lock
python3 scripts/check_compromised.py --lock requirements.lock --no-installed
