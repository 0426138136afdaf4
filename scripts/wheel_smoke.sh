#!/usr/bin/env bash
# `make wheel-smoke`: build the wheel, install it into a scratch venv with the locked
# dependencies, and use it from an empty folder, as a user who ran `pip install rnnpool-nas` would.
set -euo pipefail
PYTHON=${1:-python3}
LOCK=$(realpath "${2:-requirements.lock}")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/rnnpool-wheel-smoke.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

echo "== build the wheel (the FastGRNN kernel compiled in, against the locked torch)"
rm -rf "$ROOT/build"
(cd "$ROOT" && .venv/bin/python -m build --wheel --no-isolation --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1) \
  || { tail -30 "$WORK/build.log"; exit 1; }
WHEEL=$(ls "$WORK"/dist/*.whl)
echo "$(basename "$WHEEL"): $(unzip -l "$WHEEL" | grep -cE '_data/(search_spaces|constraints)/') shipped spaces/profiles," \
     "kernel: $(unzip -l "$WHEEL" | grep -c '_fastgrnn_ext') file(s)"

echo "== install it into a scratch venv"
"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install --quiet torch==2.13.0
"$WORK/venv/bin/pip" install --quiet -r "$LOCK"
"$WORK/venv/bin/pip" install --quiet --no-deps "$WHEEL"

echo "== run it from an empty folder"
mkdir "$WORK/empty" && cd "$WORK/empty"
export PATH="$WORK/venv/bin:$PATH" RNNPOOL_NAS_EXT_DIR="$WORK/ext"
set -x
rnnpool-nas presets
rnnpool-nas cost --preset rnnpool-tiny --constraints cortex-m4-256k
rnnpool-nas search --ram-budget 16KB --cost-only --trials 6 --out runs/cost-only
rnnpool-nas search --ram-budget 16KB --trials 2 --epochs 1 --limit 512 --workers 1 --out runs/two-trials
python -c "from rnnpool_nas.ops._kernel import kernel_status; print(kernel_status())"
set +x
test ! -e "$WORK/ext" || { echo "the installed kernel was not used: it was rebuilt in $WORK/ext"; exit 1; }
echo "wheel smoke test passed"
