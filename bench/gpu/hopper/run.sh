#!/usr/bin/env bash
# The Hopper GEMM check (issue 12). Runs ON the GPU machine after bench/gpu/run.sh, reusing its build
# ($ATH_GPU_WORK/build, compiled with the sm_90a target) and its driver ($ATH_GPU_WORK/bench_cuda):
#   1. the native GEMM tests with the Hopper switch on (ATHANOR_CUDA_HOPPER=1): every awkward shape,
#      layout and dtype case also runs with the wgmma kernels forced, against the float64 reference
#      and the CPU GEMM, with out-of-bounds-write and NaN-poison checks; once with each epilogue;
#   2. bench_cuda on hopper/cases.txt once per kernel (ATHANOR_CUDA_GEMM_KERNEL forces it: the two
#      wgmma tiles, the 128x256 one with its register epilogue instead of the TMA store
#      (ATHANOR_WGMMA_EPILOGUE=registers), and the sm_80 mma.sync kernel that is the default today),
#      each result spot-checked against float64 host dot products. A kernel without a suffix uses
#      the split-K heuristic (it splits only the weight-gradient shapes: few tiles, K = 16384);
#      KERNEL:splitN forces N k-slices (ATHANOR_WGMMA_SPLITK=N; split1 = no split-K), so split-K,
#      no split and cuBLAS are compared in one job;
#   3. PyTorch (cuBLAS) on the same cases with bench/gpu/peer.py, in the same job;
#   4. a table: TFLOP/s per kernel and the ratio to cuBLAS.
# Output: under $ATH_GPU_WORK/logs/hopper/ (packed into $OUT/logs/logs.tar.gz again, since the device
# tool brings back at most 8 files and run.sh makes 8), and the table on stdout.
set -u -o pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
W=${ATH_GPU_WORK:-/tmp/athanor-gpu}
R=${OUT:-$ROOT/bench/results/hopper-check-$(date -u +%Y%m%d-%H%M%S)}
H=$W/logs/hopper
CASES=$ROOT/bench/gpu/hopper/cases.txt
SECONDS_PER=${ATH_HOPPER_SECONDS:-0.3}
KERNELS=${ATH_HOPPER_KERNELS:-wgmma_128x256 wgmma_128x256:split1 wgmma_128x256:split2 wgmma_128x256:split4 wgmma_128x128 wgmma_128x256:registers mma_128x256}
mkdir -p "$H" "$R/logs"
t0=$(date +%s)
say() { echo "hopper: $*" >&2; }

if [ -x "$W/build/athanor_native_tests" ]; then
  say "native GEMM tests with ATHANOR_CUDA_HOPPER=1"
  ATHANOR_CUDA_HOPPER=1 timeout 100 "$W/build/athanor_native_tests" cuda_gemm > "$H/native-gemm.log" 2>&1
  rc=$?
  echo "native-gemm exit $rc" | tee -a "$H/summary.txt"
  grep -iE "fail|error" "$H/native-gemm.log" | head -12 | cut -c1-400
  tail -4 "$H/native-gemm.log"
  # the same with the register epilogue (the TMA-store epilogue is the default where it applies)
  ATHANOR_CUDA_HOPPER=1 ATHANOR_WGMMA_EPILOGUE=registers timeout 100 "$W/build/athanor_native_tests" cuda_gemm \
    > "$H/native-gemm-registers.log" 2>&1
  echo "native-gemm (register epilogue) exit $?" | tee -a "$H/summary.txt"
  grep -iE "fail|error" "$H/native-gemm-registers.log" | head -6 | cut -c1-400
  tail -1 "$H/native-gemm-registers.log"
else
  echo "native-gemm not run: no $W/build/athanor_native_tests" | tee -a "$H/summary.txt"
fi

if [ -x "$W/bench_cuda" ]; then
  for k in $KERNELS; do
    # KERNEL, KERNEL:registers (the wgmma kernel with its register epilogue instead of the TMA store)
    # or KERNEL:splitN (N k-slices forced; empty ATHANOR_WGMMA_SPLITK = the heuristic)
    suffix=; [ "${k#*:}" != "$k" ] && suffix=${k#*:}
    epi=; split=
    case "$suffix" in
      registers) epi=registers ;;
      split[0-9]*) split=${suffix#split} ;;
    esac
    say "bench_cuda with ATHANOR_CUDA_GEMM_KERNEL=${k%%:*} ${epi:+ATHANOR_WGMMA_EPILOGUE=$epi} ${split:+ATHANOR_WGMMA_SPLITK=$split}"
    ATHANOR_WGMMA_EPILOGUE=$epi ATHANOR_WGMMA_SPLITK=$split ATHANOR_CUDA_GEMM_KERNEL=${k%%:*} timeout 90 \
      "$W/bench_cuda" --cases "$CASES" --out "$H/ours-$k.jsonl" --seconds "$SECONDS_PER" > "$H/bench-$k.log" 2>&1
    echo "bench $k exit $?" | tee -a "$H/summary.txt"
  done
else
  echo "bench not run: no $W/bench_cuda" | tee -a "$H/summary.txt"
fi
say "PyTorch peer"
PYTHONUNBUFFERED=1 timeout 120 python3 "$ROOT/bench/gpu/peer.py" --cases "$CASES" --out "$H/peer.jsonl" \
  --seconds "$SECONDS_PER" > "$H/peer.log" 2>&1
echo "peer exit $?" | tee -a "$H/summary.txt"

cols=(); for k in $KERNELS; do cols+=("$k=$H/ours-$k.jsonl"); done
python3 "$ROOT/bench/gpu/hopper/table.py" gemm any "cuBLAS=$H/peer.jsonl" "${cols[@]}" | tee "$H/table.md"
tar czf "$R/logs/logs.tar.gz" -C "$W" logs 2>/dev/null
say "done in $(($(date +%s) - t0)) s"
