#!/usr/bin/env bash
# Build the Cloud Functions source folder exactly as it is deployed, and its zip.
#
#   scripts/stage-functions.sh DEST        # DEST/ and DEST.zip (the zip Terraform uploads)
#
# DEST/ holds main.py, requirements.txt (agentfleet pinned to this tree's version) and wheels/:
# agentfleet's own wheel and every dependency as a wheel for the functions' runtime (Linux x86_64,
# CPython $FUNCTIONS_PYTHON_VERSION). The deployment sets the build variable
# GOOGLE_VENDOR_PIP_DEPENDENCIES=wheels, so the buildpack runs
#   pip install --requirement requirements.txt --no-index --find-links wheels
# and installs nothing from an index: what was staged here is what runs.
#
# Environment: PYTHON (a Python with pip, default python3), FUNCTIONS_PYTHON_VERSION (default 3.11),
# FUNCTIONS_PLATFORMS (manylinux tags to accept, space-separated).
set -euo pipefail

usage() { echo "usage: $0 DEST   (builds DEST/ and DEST.zip)" >&2; exit 2; }
[ $# -eq 1 ] || usage
[ -n "$1" ] || usage

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
PY_VERSION="${FUNCTIONS_PYTHON_VERSION:-3.11}"
PLATFORMS="${FUNCTIONS_PLATFORMS:-manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64}"
DEST="${1%/}"
ZIP="$DEST.zip"
ABI="cp${PY_VERSION//./}"

command -v "$PYTHON" >/dev/null 2>&1 || { echo "error: $PYTHON not found (set PYTHON)" >&2; exit 1; }
"$PYTHON" -m pip --version >/dev/null 2>&1 || { echo "error: $PYTHON has no pip" >&2; exit 1; }

VERSION="$("$PYTHON" - "$ROOT/pyproject.toml" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as fh:
    print(tomllib.load(fh)["project"]["version"])
PY
)"

rm -rf "$DEST" "$ZIP"
mkdir -p "$DEST/wheels"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# agentfleet's wheel, built from a copy of the package sources (nothing is written into the tree).
mkdir -p "$WORK/src"
cp "$ROOT/pyproject.toml" "$ROOT/README.md" "$WORK/src/"
cp -R "$ROOT/src" "$WORK/src/src"
find "$WORK/src" \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf {} +
# A fixed SOURCE_DATE_EPOCH stamps the wheel's entries alike on every build, so the same sources
# give the same zip (and Terraform, which names the upload by its md5, redeploys nothing).
SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-315532800}" \
  "$PYTHON" -m pip wheel --quiet --no-deps --no-cache-dir --wheel-dir "$DEST/wheels" "$WORK/src"
WHEEL="$DEST/wheels/agentfleet-$VERSION-py3-none-any.whl"
[ -f "$WHEEL" ] || { echo "error: expected $WHEEL after the build" >&2; ls "$DEST/wheels" >&2; exit 1; }

# requirements.txt: functions/requirements.txt with agentfleet pinned to the version just built.
grep -qE '^agentfleet[[:space:]]*$' "$ROOT/functions/requirements.txt" || {
  echo "error: functions/requirements.txt must name agentfleet on a line of its own" >&2; exit 1; }
sed -E "s/^agentfleet[[:space:]]*$/agentfleet==$VERSION/" "$ROOT/functions/requirements.txt" >"$DEST/requirements.txt"
cp "$ROOT/functions/main.py" "$DEST/main.py"

# Every dependency as a wheel for the runtime's platform (binary only: the buildpack must not build).
platform_args=()
for tag in $PLATFORMS; do platform_args+=(--platform "$tag"); done
grep -vE '^agentfleet==' "$DEST/requirements.txt" >"$WORK/others.txt"
"$PYTHON" -m pip download --quiet --only-binary=:all: "${platform_args[@]}" \
  --python-version "$PY_VERSION" --implementation cp --abi "$ABI" \
  --dest "$DEST/wheels" "$WHEEL" --requirement "$WORK/others.txt"

# The zip, main.py at its root; entries sorted with a fixed time so equal contents zip alike.
"$PYTHON" - "$DEST" "$ZIP" <<'PY'
import sys, zipfile
from pathlib import Path
src, out = Path(sys.argv[1]), Path(sys.argv[2])
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        info = zipfile.ZipInfo(path.relative_to(src).as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        zf.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
PY
echo "staged $DEST ($(find "$DEST/wheels" -name '*.whl' | wc -l | tr -d ' ') wheels) and $ZIP"
