#!/usr/bin/env bash
# The Hopper check on its own (issue 12), for a lease too short for the whole GPU check: run ON the GPU
# machine from the repository root, after bench/gpu/prepare.sh made the payload here:
#   device tool: run(command="bash bench/gpu/hopper/check.sh", carry=["bench/gpu/payload"])
# Steps, each time-boxed, none stopping the others:
#   build     unpack the payload; CMake + build of libathanor (CUDA, sm_80 + sm_90a) and the native tests; bench_cuda
#   gemm      bench/gpu/hopper/run.sh: native GEMM tests with the switch on (both epilogues), bench_cuda per kernel,
#             PyTorch on the same cases, the table
#   attention bench/gpu/hopper/attention.sh: the SASS of the wgmma attention forward (HGMMA), the native attention
#             tests with the switch on (cuda_attention_hopper_* included), bench_cuda --fwd-only with the switch
#             off and on, PyTorch SDPA on the same cases, the table (attention forward not yet run on a GPU)
#   java      GemmTest and ModelFixtureTest (GPT-2 and Llama against PyTorch fixtures) through JNI with
#             ATHANOR_CUDA_HOPPER=1, so every model GEMM goes to the wgmma kernel (and, D 64/128, every attention
#             forward to the wgmma attention kernel); the training step without host synchronisation: the native
#             tests of AdamW's device factor and the step's scalars, and DeviceStepScalarsTest (CUDA bits equal to
#             the host-side step, one read per step)
#   model     GPT-2 124M training (B=16, T=1024) with the switch off and on (on: both wgmma kernels), then PyTorch
#             eager and torch.compile
# ATH_HOPPER_STEPS picks the steps after the build (default "gemm attention java model"); gemm and
# attention need no payload (the Java steps do), e.g. the attention forward alone:
#   run(command="ATH_HOPPER_STEPS=attention bash bench/gpu/hopper/check.sh")
# Output in $OUT: hopper-table.md, hopper-attn-table.md, model.jsonl, hopper-logs.tar.gz (everything else).
set -u -o pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
export ATH_GPU_WORK=${ATH_GPU_WORK:-/tmp/athanor-hopper}
W=$ATH_GPU_WORK
R=${OUT:-$ROOT/bench/results/hopper-check-$(date -u +%Y%m%d-%H%M%S)}
P=$W/payload
RT=$P/runtime
B=$W/build
rm -rf "$W"; mkdir -p "$W/logs" "$R"
t0=$(date +%s)
say() { echo "check: [$(($(date +%s) - t0)) s] $*" >&2; }

say "unpack, configure, build"
tar xzf "$ROOT/bench/gpu/payload/athanor-gpu-payload.tar.gz" -C "$W" || say "no payload: the Java steps will fail"
gen=(); command -v ninja > /dev/null && gen=(-G Ninja)
jni=AUTO; [ -f "$RT/include/jni.h" ] && jni=ON  # without the payload (ATH_HOPPER_STEPS=attention) no JNI library
timeout 30 cmake -S "$ROOT" -B "$B" "${gen[@]}" -DCMAKE_CUDA_FLAGS=--threads=0 -DCMAKE_BUILD_TYPE=Release -DATHANOR_CUDA=ON \
  -DATHANOR_JNI=$jni -DATHANOR_JNI_INCLUDE="$RT/include" -DATHANOR_OUTPUT_DIR="$B/lib" > "$W/logs/configure.log" 2>&1
timeout 200 cmake --build "$B" --parallel "$(nproc)" > "$W/logs/build.log" 2>&1
echo "build exit $?"; grep -E "error" "$W/logs/build.log" | head -5
timeout 60 nvcc -std=c++17 -O2 -gencode=arch=compute_90a,code=sm_90a -I"$ROOT/native/include" \
  "$ROOT/bench/gpu/bench_cuda.cu" "$B/libathanor_core.a" -o "$W/bench_cuda" -lrt -ldl -lpthread > "$W/logs/driver.log" 2>&1
echo "driver exit $?"
LIB=$B/lib/libathanor.so

STEPS=" ${ATH_HOPPER_STEPS:-gemm attention java model} "
step() { [[ "$STEPS" == *" $1 "* ]]; }

if step gemm; then
say "hopper GEMM tests and benchmarks"
timeout 240 bash "$ROOT/bench/gpu/hopper/run.sh" 2>&1 | tail -30
cp "$W/logs/hopper/table.md" "$R/hopper-table.md" 2>/dev/null
fi

if step attention; then
say "hopper attention forward: SASS, tests and benchmarks"
timeout 380 bash "$ROOT/bench/gpu/hopper/attention.sh" 2>&1 | tail -24
cp "$W/logs/hopper-attn/table.md" "$R/hopper-attn-table.md" 2>/dev/null
fi

CP="$P/athanor.jar:$P/test-classes"; for j in "$P"/lib/*.jar; do CP="$CP:$j"; done
if step java; then
say "Java tests through JNI with the switch on"
for t in cuda_adamw_scale_pointer cuda_train_scalars; do  # the sync-free step's kernels (not yet run on a GPU)
  ATHANOR_CUDA_HOPPER=1 timeout 60 "$B/athanor_native_tests" "$t" 2>&1 | tail -4
done
for c in dev.athanor.ops.GemmTest dev.athanor.nn.ModelFixtureTest dev.athanor.train.DeviceStepScalarsTest; do
  ATHANOR_CUDA_HOPPER=1 timeout 120 "$RT/bin/java" --enable-native-access=ALL-UNNAMED -Dathanor.library.path="$LIB" \
    -jar "$P/junit-platform-console-standalone.jar" execute --class-path "$CP" --select-class "$c" \
    --details summary --disable-banner --disable-ansi-colors > "$W/logs/java-$c.log" 2>&1
  echo "java $c exit $?"; grep -E "tests (successful|failed|skipped)" "$W/logs/java-$c.log"
  grep -A3 -E "MethodSource|=> " "$W/logs/java-$c.log" | head -12 | cut -c1-300
done
fi

if step model; then
say "GPT-2 124M training, switch off and on; PyTorch eager and compiled"
M=$R/model.jsonl; : > "$M"
ARGS="--preset gpt2 --device cuda --mode train --batch 16 --seq 1024 --steps 10 --warmup-steps 2"
for sw in 0 1; do
  ATHANOR_CUDA_HOPPER=$sw timeout 120 "$RT/bin/java" --enable-native-access=ALL-UNNAMED -Dathanor.library.path="$LIB" \
    -cp "$CP" dev.athanor.cli.Main bench $ARGS 2> "$W/logs/model-ours-$sw.err" \
    | sed "s/^{/{\"hopper_switch\":$sw,/" | tee -a "$M" | cut -c1-200
done
PEER="--family gpt2 --layers 12 --hidden 768 --heads 12 --vocab 50257 --device cuda --dtype bf16 --mode train --batch 16 --seq 1024 --steps 10 --warmup-steps 2"
for comp in "" "--compile"; do
  # shellcheck disable=SC2086
  timeout 200 python3 "$ROOT/bench/model/torch_train.py" $PEER $comp --json "$W/peer.json" > "$W/logs/model-peer$comp.log" 2>&1
  echo "peer $comp exit $?"
  [ -f "$W/peer.json" ] && python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))))' "$W/peer.json" \
    | tee -a "$M" | cut -c1-200
  rm -f "$W/peer.json"
done
python3 - "$M" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
peak = 989.4e12
for r in rows:
    tps = r.get("tokens_per_s")
    fpt = r.get("flops_per_token") or (r.get("mfu", 0) * peak / tps if tps else 0)
    who = ("athanor switch " + str(r.get("hopper_switch"))) if r.get("impl") == "athanor" else \
          ("pytorch " + ("compiled" if r.get("compiled") else "eager"))
    print(f"{who}: {tps:.0f} tokens/s, MFU {tps * fpt / peak * 100:.1f}%" if tps else f"{who}: no result")
PY
fi
tar czf "$R/hopper-logs.tar.gz" -C "$W" logs 2>/dev/null
say "done"
