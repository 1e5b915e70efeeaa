#!/usr/bin/env bash
# The Hopper attention forward check (issue 12; kernels/attention_fwd_wgmma.cu, sm_90a, behind
# ATHANOR_CUDA_HOPPER=1). Runs ON the GPU machine after check.sh's build step, reusing its build
# ($ATH_GPU_WORK/build) and driver ($ATH_GPU_WORK/bench_cuda):
#   1. SASS: the wgmma attention object must hold HGMMA (cuobjdump, when the image has it);
#   2. the native attention tests with the switch on: every CUDA attention test (the forward of
#      BF16/F16 with D 64/128 then runs the sm_90a kernel, and the backward reads its o and lse)
#      plus the cuda_attention_hopper_* tests, which skip without the switch;
#   3. bench_cuda --fwd-only on hopper/attn_cases.txt with the switch off (the mma.sync kernel) and
#      on (the wgmma kernel, in both schedules: pipelined with ping-pong, and simple), each result
#      spot-checked against float64 host rows;
#   4. PyTorch SDPA on the same cases (peer.py), and a table: forward TFLOP/s and ratio to PyTorch.
# Output under $ATH_GPU_WORK/logs/hopper-attn/ (check.sh packs the logs) and the table on stdout.
set -u -o pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
W=${ATH_GPU_WORK:-/tmp/athanor-gpu}
H=$W/logs/hopper-attn
CASES=$ROOT/bench/gpu/hopper/attn_cases.txt
SECONDS_PER=${ATH_HOPPER_SECONDS:-0.3}
mkdir -p "$H"
say() { echo "hopper-attn: $*" >&2; }

obj=$(find "$W/build" -name 'attention_fwd_wgmma.cu.o' 2>/dev/null | head -1)
if command -v cuobjdump > /dev/null && [ -n "$obj" ]; then
  cuobjdump --dump-sass "$obj" > "$H/sass.txt" 2>&1
  echo "sass: $(grep -c HGMMA "$H/sass.txt") HGMMA, $(grep -c -E '\bHMMA' "$H/sass.txt") HMMA, $(grep -c -E 'LDL|STL' "$H/sass.txt") LDL/STL" \
    | tee -a "$H/summary.txt"
else
  echo "sass: not checked (cuobjdump: $(command -v cuobjdump || echo none), object: ${obj:-none})" | tee -a "$H/summary.txt"
fi

if [ -x "$W/build/athanor_native_tests" ]; then
  say "native attention tests with ATHANOR_CUDA_HOPPER=1"
  ATHANOR_CUDA_HOPPER=1 timeout 120 "$W/build/athanor_native_tests" attention > "$H/native-attention.log" 2>&1
  echo "native-attention exit $?" | tee -a "$H/summary.txt"
  grep -iE "fail|error|skip" "$H/native-attention.log" | head -12 | cut -c1-400
  tail -2 "$H/native-attention.log"
else
  echo "native-attention not run: no $W/build/athanor_native_tests" | tee -a "$H/summary.txt"
fi

if [ -x "$W/bench_cuda" ]; then
  # RUN = switch (0: mma.sync, 1: wgmma) and the wgmma schedule (ATHANOR_ATTN_WGMMA_SCHEDULE)
  for run in 0 1:pipelined 1:simple; do
    sw=${run%%:*}; sched=; [ "$run" != "$sw" ] && sched=${run#*:}
    say "bench_cuda --fwd-only with ATHANOR_CUDA_HOPPER=$sw ${sched:+ATHANOR_ATTN_WGMMA_SCHEDULE=$sched}"
    ATHANOR_CUDA_HOPPER=$sw ATHANOR_ATTN_WGMMA_SCHEDULE=$sched timeout 60 "$W/bench_cuda" --cases "$CASES" \
      --out "$H/ours-$sw$sched.jsonl" --seconds "$SECONDS_PER" --fwd-only > "$H/bench-$sw$sched.log" 2>&1
    echo "bench $run exit $?" | tee -a "$H/summary.txt"
  done
else
  echo "bench not run: no $W/bench_cuda" | tee -a "$H/summary.txt"
fi
say "PyTorch peer"
PYTHONUNBUFFERED=1 timeout 60 python3 "$ROOT/bench/gpu/peer.py" --cases "$CASES" --out "$H/peer.jsonl" \
  --seconds "$SECONDS_PER" > "$H/peer.log" 2>&1
echo "peer exit $?" | tee -a "$H/summary.txt"

python3 "$ROOT/bench/gpu/hopper/table.py" attention fwd "PyTorch SDPA=$H/peer.jsonl" "mma.sync (switch 0)=$H/ours-0.jsonl" \
  "wgmma pipelined (switch 1)=$H/ours-1pipelined.jsonl" "wgmma simple (switch 1)=$H/ours-1simple.jsonl" | tee "$H/table.md"
