#!/usr/bin/env bash
# One command for a GPU machine (the `device` tool: one call, under 8 minutes): the CUDA tests, then
# eval/gpu_check.py (CUDA vs CPU parity, bf16/fp16 drift, images/s of ours, the authors' and the
# peers at batch 64, eval images/s). CI runs it as `--device cpu --quick` so it cannot go stale.
#
#   bash eval/gpu_check.sh [--device cuda|cpu] [--quick] [--out DIR] [gpu_check.py options]
#
# On the device machine (torch and timm there, no network): prepare here once with
# `bash eval/gpu_wheels.sh` (wheels and sdists for what its image lacks, into .whl/), then
#   run(command="bash eval/gpu_check.sh --out $OUT", carry=[".whl", "eval/_official"], timeout_s=540)
# Packages in .whl/ are installed into a private folder first (nothing on the machine changes).
set -euo pipefail
cd "$(dirname "$0")/.."
device=cuda quick="" out="${OUT:-eval/_work/gpu_check}" extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="$2"; shift 2 ;;
        --quick) quick="--quick"; shift ;;
        --out) out="$2"; shift 2 ;;
        *) extra+=("$1"); shift ;;
    esac
done
py="${PYTHON:-python3}"
mkdir -p "$out"
# only where the packages are missing (the device machine): here the wheels may not even fit this Python
if [ -d .whl ] && ls .whl/* >/dev/null 2>&1 \
        && ! "$py" -c "import pydensecrf, pycocotools, pytorch_grad_cam, ttach" >/dev/null 2>&1; then
    site=/tmp/glmix-gpu-site
    # sdists (pydensecrf2 has no wheel for every Python) build against the machine's numpy/cython
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --no-build-isolation \
        --upgrade --target "$site" .whl/* 2>&1 | tail -3
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
set -o pipefail
start=$(date +%s)
echo "== CUDA tests (pytest -m cuda; skipped without a GPU)"
"$py" -m pytest -q -p no:cacheprovider -m cuda tests 2>&1 | tee "$out/cuda_tests.log" | tail -15
echo "== measurements"
"$py" eval/gpu_check.py --device "$device" $quick --out "$out" "${extra[@]}"
echo "== gpu_check done in $(( $(date +%s) - start )) s"
