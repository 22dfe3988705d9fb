#!/usr/bin/env bash
# Creates (or updates) bench/.venv: Stalwart in editable mode plus the benchmark peers.
# Idempotent: does nothing when pyproject.toml and the requirement files are unchanged since the
# last successful run. The peers never enter Stalwart's own dependencies.
#   requirements-engine.txt  engine peers (dbos, langgraph, ...), version ranges
#   requirements.txt         hash-checked pins (e.g. litellm): installed with --require-hashes
#                            --no-deps, then re-resolved by name so their own dependencies come in
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
venv="$here/.venv"
py="${PYTHON:-python3}"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)

if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
stamp="$venv/.bench-stamp"
want="$(cat "$root/pyproject.toml" "$here"/requirements*.txt "$0" | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
"${pip[@]}" --upgrade pip
"${pip[@]}" -e "$root" -r "$here/requirements-engine.txt"
pinned="$(grep -vE '^\s*(#|$)' "$here/requirements.txt" | awk '{print $1}' || true)"
if [ -n "$pinned" ]; then
  "${pip[@]}" --require-hashes --no-deps -r "$here/requirements.txt"
  # shellcheck disable=SC2086
  "${pip[@]}" $pinned
fi
echo "$want" > "$stamp"
echo "bench/.venv ready"
