#!/usr/bin/env bash
# Write a CycloneDX SBOM of Stalwart's pinned runtime dependencies (requirements.lock, hashes
# included), plus one of the installed environment when a virtualenv is given.
#   bash scripts/sbom.sh [OUT_DIR] [PYTHON]     defaults: build/sbom, .venv/bin/python (if present)
# The generator (cyclonedx-bom) runs from a throwaway virtualenv: it never becomes a dependency.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/sbom}
py=${2:-.venv/bin/python}
mkdir -p "$out"
tool=$(mktemp -d)
trap 'rm -rf "$tool"' EXIT
python3 -m venv "$tool/venv"
"$tool/venv/bin/python" -m pip install -q --disable-pip-version-check "cyclonedx-bom>=7,<8"
"$tool/venv/bin/cyclonedx-py" requirements requirements.lock \
  --pyproject pyproject.toml --of JSON --output-reproducible -o "$out/stalwart-lock.cdx.json"
echo "SBOM (lock): $out/stalwart-lock.cdx.json"
if [ -x "$py" ]; then
  "$tool/venv/bin/cyclonedx-py" environment "$py" \
    --pyproject pyproject.toml --of JSON --output-reproducible -o "$out/stalwart-env.cdx.json"
  echo "SBOM (installed environment $py): $out/stalwart-env.cdx.json"
fi
python3 - "$out/stalwart-lock.cdx.json" <<'PY'
import json, sys
bom = json.load(open(sys.argv[1]))
comps = bom.get("components", [])
hashed = sum(1 for c in comps if c.get("hashes") or any(r.get("hashes") for r in c.get("externalReferences", [])))
print(f"{len(comps)} components, {hashed} with hashes, spec {bom.get('specVersion')}")
if not comps:
    sys.exit("the SBOM lists no components")
PY
