#!/usr/bin/env bash
# ZeRO 3's read-ahead of gathers on the CPU (issue 10): mpirun -np N train --dp N --zero 3 with --overlap on (the next
# unit's all-gather runs on the communication thread while the current unit computes) and --overlap off (each unit's
# gather when it is about to run), REPS runs of each, alternating, printing a Markdown table of rank 0's median
# gather_wait_ms (the training thread's time in gathers or waiting for those read ahead, from the step log; step 0
# left out), median step_ms and whether the final weights match the first off run. OFFLOAD=1 adds --offload with the
# shard's masters, gradient and moments on DISK. Needs Open MPI and a built jar (./athanor build).
#   bash bench/run-cpu-zero3-readahead.sh [CORPUS] [STEPS] [N] [REPS]
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=${1:-}
steps=${2:-6}
np=${3:-2}
reps=${4:-3}
model_flags=(${MODEL_FLAGS:---preset gpt2-tiny})
out=$(mktemp -d /tmp/athanor-zero3-ahead.XXXXXX)
source bench/dp-setup.sh
extra=()
if [[ "${OFFLOAD:-0}" == 1 ]]; then
  # the plan of one process with every role in memory, the shard's four roles then moved to DISK
  "$java" --enable-native-access=ALL-UNNAMED -cp "$jar" dev.athanor.cli.Main plan "${model_flags[@]}" --device cpu --batch 2 \
    --seq 64 --json "$out/base.json" > /dev/null
  python3 -c "
import re,sys
t=open(sys.argv[1]).read()
open(sys.argv[2],'w').write(re.sub(r'(\"role\": \"(master|grad|adam_m|adam_v)\",\s*\"tier\": \")HOST', r'\1DISK', t))" \
    "$out/base.json" "$out/plan.json"
  extra=(--offload "$out/plan.json" --offload-dir "$out/offload")
fi
run=("$java" --enable-native-access=ALL-UNNAMED -cp "$jar" dev.athanor.cli.Main train "${model_flags[@]}" --data "$corpus"
     --steps "$steps" --batch 2 --seq 64 --warmup 1 --device cpu --dp "$np" --zero 3 --threads 1 "${extra[@]}")
median() { python3 -c "
import json,sys,statistics
key=sys.argv[1]; v=[]
for f in sys.argv[2:]:
  l=[json.loads(x) for x in open(f) if '\"step\"' in x and '\"summary\"' not in x]
  v+= [o[key] for o in l if o['step']>0]
print(f'{statistics.median(v):.1f}')" "$@"; }
for r in $(seq 1 "$reps"); do
  for o in off on; do
    d=$out/$o-$r
    if ! mpirun -np "$np" --oversubscribe --bind-to none "${run[@]}" --overlap "$o" --out "$d/model" --log "$d/log.jsonl" > "$d.txt" 2>&1; then
      echo "--overlap $o run $r failed:" >&2; tail -20 "$d.txt" >&2; exit 1
    fi
  done
done
echo "| --overlap | runs | median gather_wait_ms per step | median step_ms | weights identical to off run 1 |"
echo "| --- | --- | --- | --- | --- |"
for o in off on; do
  same=identical
  for r in $(seq 1 "$reps"); do cmp -s "$out/off-1/model/model.safetensors" "$out/$o-$r/model/model.safetensors" || same=different; done
  echo "| $o | $reps | $(median gather_wait_ms $out/$o-*/log.jsonl) | $(median step_ms $out/$o-*/log.jsonl) | $same |"
done
echo "outputs in $out"
