#!/usr/bin/env bash
# Fetch, here, what the device machine's image lacks for eval/gpu_check.sh (its Python is 3.12; it
# has torch, timm, torchvision, opencv, scipy, scikit-image, matplotlib, pytest), into .whl/:
# pycocotools and ttach as cp312 wheels, grad-cam as a wheel built here (pure Python; PyPI has
# only its sdist), and pydensecrf2's sdist (no cp312 wheel on PyPI: gpu_check.sh builds it there).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$tag")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl "pycocotools>=2.0.7" "ttach"
python3 -m pip wheel -q --no-deps -w .whl "grad-cam>=1.5"
python3 -m pip download -q --no-deps --no-binary=:all: -d .whl "pydensecrf2>=1.1"
ls -la .whl
