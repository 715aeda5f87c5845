#!/usr/bin/env bash
# One-shot check of the CUDA top-k softmax scorer on a GPU machine: build the
# package with the CUDA module for this GPU's architecture, run the cuda-marked
# parity tests (and the CPU top-k tests as a sanity check), then benchmark the
# cuda backend against torch (matmul + topk). Everything lands in OUT_DIR:
#   env.txt      nvidia-smi, nvcc, torch and Python versions
#   build.log    the verbose pip/CMake build (look for "building the CUDA module")
#   pytest.log   test output, pytest.xml the JUnit report
#   bench.log    benchmark table; topk_cuda.json the numbers
#   summary.txt  one line per step with its exit status
# Needs: nvcc, a CUDA build of torch, and scikit-build-core + pybind11 installed
# (the build runs without isolation, so no network is used). Each step has a
# timeout so the whole run stays under 8 minutes.
#
# Usage: bench/gpu_check.sh OUT_DIR
set -uo pipefail

OUT=${1:?usage: bench/gpu_check.sh OUT_DIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.." || exit 1

# Step timeouts in seconds (build, tests, benchmark): 200 + 120 + 150 < 8 minutes.
BUILD_S=200
TEST_S=120
BENCH_S=150

step() {  # step NAME RC: record a step's exit status
  echo "$1 rc=$2" | tee -a "$OUT/summary.txt"
}
: > "$OUT/summary.txt"

{
  date -u
  nvidia-smi || true
  nvcc --version || true
  python -c "import sys, torch; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())" || true
} > "$OUT/env.txt" 2>&1

# Only this GPU's architecture (e.g. 90 on H100/H200): a faster build.
ARCH=$(python -c "import torch; m, n = torch.cuda.get_device_capability(0); print(f'{m}{n}')" 2>/dev/null || echo "90")
echo "architecture: $ARCH" >> "$OUT/env.txt"

timeout "$BUILD_S" pip install --no-build-isolation -v -e . \
  -Cbuild-dir=build/gpu-check \
  -Ccmake.define.PROMOBANDIT_CUDA_ARCHITECTURES="$ARCH" > "$OUT/build.log" 2>&1
step build $?
grep -E "promobandit: (CUDA|no CUDA)" "$OUT/build.log" | tee -a "$OUT/summary.txt"

python -c "import promobandit._cuda as c; from promobandit import _backends as b; print('device_count', c.device_count(), 'has_cuda', b.has_cuda())" >> "$OUT/summary.txt" 2>&1
step import $?

timeout "$TEST_S" python -m pytest tests/test_topk_cuda.py tests/test_topk.py -q -rs \
  -p no:cacheprovider --junitxml="$OUT/pytest.xml" > "$OUT/pytest.log" 2>&1
step tests $?
tail -n 3 "$OUT/pytest.log" >> "$OUT/summary.txt"

timeout "$BENCH_S" python bench/bench_topk.py --device cuda --out "$OUT" > "$OUT/bench.log" 2>&1
rc=$?
if [ "$rc" -eq 124 ]; then  # out of time: keep what the quick sweep can give
  echo "full sweep timed out; quick sweep follows" >> "$OUT/bench.log"
  timeout 60 python bench/bench_topk.py --device cuda --quick --out "$OUT" >> "$OUT/bench.log" 2>&1
  rc=$?
fi
step bench "$rc"
cat "$OUT/summary.txt"
