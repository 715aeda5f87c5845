#!/usr/bin/env bash
# One-shot check of the CUDA top-k softmax scorer on a GPU machine: build the
# package with the CUDA module for this GPU's architecture, run the cuda-marked
# parity tests (and the CPU top-k tests as a sanity check), then benchmark the
# cuda backend against torch (matmul + topk) on the same GPU: B = 1, 256 and 4096,
# N = 1M and 10M, d = 64 and 128, float32 / float16 / bfloat16.
# Everything lands in OUT_DIR:
#   env.txt      nvidia-smi, nvcc, torch and Python versions
#   build.log    the verbose pip/CMake build (look for "building the CUDA kernels")
#   pytest.log   test output, pytest.xml the JUnit report
#   bench.log    benchmark table; topk_cuda.json the numbers
#   summary.txt  one line per step with its exit status
# Needs: nvcc, a CUDA build of torch, and scikit-build-core + pybind11 installed
# (the build runs without isolation, so no network is used).
#
# Exit status: 0 only when every step passed: the CUDA module was built and imports,
# it sees a device, no cuda-marked test failed or was skipped, and the benchmark ran.
# Otherwise the first failing step's number (2 prerequisites, 3 build, 4 import,
# 5 tests, 6 benchmark), with a line saying why on stderr and in summary.txt.
# Each step has a timeout, so the whole run stays under 8 minutes (TOTAL_S).
#
# Usage: bench/gpu_check.sh OUT_DIR
set -uo pipefail

OUT=${1:?usage: bench/gpu_check.sh OUT_DIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.." || exit 1
PY=${PYTHON:-python}

# Step timeouts in seconds (build, tests, benchmark): 200 + 100 + 160 = 460 < 480.
BUILD_S=200
TEST_S=100
BENCH_S=160

: > "$OUT/summary.txt"
step() {  # step NAME RC: record a step's exit status
  echo "$1 rc=$2" | tee -a "$OUT/summary.txt"
}
fail() {  # fail CODE MESSAGE: say why, keep it in the summary, stop
  echo "gpu_check FAILED: $2" | tee -a "$OUT/summary.txt" >&2
  exit "$1"
}

# 1. Prerequisites, before spending minutes on a build that cannot help.
command -v nvcc > /dev/null || fail 2 "nvcc not found: the CUDA module cannot be built"
{
  date -u
  nvidia-smi || true
  nvcc --version || true
} > "$OUT/env.txt" 2>&1
"$PY" - >> "$OUT/env.txt" 2>&1 <<'EOF'
import importlib.util
import sys

print(sys.version)
# The device first: without one nothing else matters (and says so, whatever else is missing).
if importlib.util.find_spec("torch") is not None:
    import torch

    print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())
    if not (torch.cuda.is_available() and torch.cuda.device_count() > 0):
        sys.exit(4)
missing = [m for m in ("scikit_build_core", "pybind11", "numpy", "pytest", "hypothesis", "torch")
           if importlib.util.find_spec(m) is None]
if missing:
    print("missing:", " ".join(missing))
    sys.exit(3)
sys.exit(0)
EOF
case $? in
  0) ;;
  3) fail 2 "Python packages missing for an offline build and tests: $(grep '^missing:' "$OUT/env.txt")" ;;
  4) fail 2 "torch sees no CUDA device (see env.txt)" ;;
  *) fail 2 "the Python prerequisite check failed (see env.txt)" ;;
esac
step prerequisites 0

# Only this GPU's architecture (e.g. 90 on H100/H200): a faster build.
ARCH=$("$PY" -c "import torch; m, n = torch.cuda.get_device_capability(0); print(f'{m}{n}')")
echo "architecture: $ARCH" >> "$OUT/env.txt"

# 2. Build; a build that skipped the CUDA module is a failure, not a CPU-only success.
timeout "$BUILD_S" "$PY" -m pip install --no-build-isolation --no-deps -v -e . \
  -Cbuild-dir=build/gpu-check \
  -Ccmake.define.PROMOBANDIT_DISABLE_CUDA=OFF \
  -Ccmake.define.PROMOBANDIT_CUDA_ARCHITECTURES="$ARCH" > "$OUT/build.log" 2>&1
rc=$?
step build $rc
grep -E "promobandit: (CUDA|no CUDA)" "$OUT/build.log" | tee -a "$OUT/summary.txt"
[ "$rc" -eq 0 ] || fail 3 "the build failed (rc=$rc; see build.log)"
grep -q "building the CUDA kernels" "$OUT/build.log" \
  || fail 3 "the build did not build the CUDA module (see build.log)"

# 3. The module imports and sees the device.
"$PY" -c "
import promobandit._cuda as c
from promobandit import _backends as b
print('device_count', c.device_count(), 'has_cuda', b.has_cuda())
assert c.device_count() > 0 and b.has_cuda(), b._why_missing('cuda')
" >> "$OUT/summary.txt" 2>&1
rc=$?
step import $rc
[ "$rc" -eq 0 ] || fail 4 "promobandit._cuda does not import or sees no device (see summary.txt)"

# 4. Tests: every cuda-marked test must run and pass (a skip here is a failure).
timeout "$TEST_S" "$PY" -m pytest tests/test_topk_cuda.py tests/test_topk.py -q -rs -x \
  -p no:cacheprovider --junitxml="$OUT/pytest.xml" > "$OUT/pytest.log" 2>&1
rc=$?
step tests $rc
tail -n 3 "$OUT/pytest.log" >> "$OUT/summary.txt"
[ "$rc" -eq 0 ] || fail 5 "tests failed or timed out (rc=$rc; see pytest.log)"
if grep -q "SKIPPED.*test_topk_cuda" "$OUT/pytest.log"; then
  fail 5 "cuda tests were skipped on a GPU machine (see pytest.log)"
fi

# 5. Benchmark: the issue's rows beside torch on the same GPU.
timeout "$BENCH_S" "$PY" bench/bench_topk.py --device cuda --out "$OUT" > "$OUT/bench.log" 2>&1
rc=$?
if [ "$rc" -eq 124 ]; then  # out of time: keep what the quick sweep can give
  echo "full sweep timed out; quick sweep follows" >> "$OUT/bench.log"
  timeout 60 "$PY" bench/bench_topk.py --device cuda --quick --out "$OUT" >> "$OUT/bench.log" 2>&1
  rc=$?
  [ "$rc" -eq 0 ] && rc=124  # the quick rows are kept, but the full sweep did not finish
fi
step bench "$rc"
[ "$rc" -eq 0 ] || fail 6 "the benchmark failed or timed out (rc=$rc; see bench.log)"
cat "$OUT/summary.txt"
echo "gpu_check passed"
