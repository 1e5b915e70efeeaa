#!/usr/bin/env bash
# ZeRO 3 with the rank's shard on DISK (issue 10 with issue 9's tiered memory, CPU): mpirun -np N train --dp N --zero 3
# in memory, with a plan that puts the shard's AdamW moments on DISK, and with one that puts its whole shard there
# (masters, gradient, moments); prints a Markdown table of rank 0's allocator peaks (the log's summary line), its DISK
# bytes per step (every step line's read + written; they are all equal) next to what `plan --dp N --zero 3` predicts
# for the busiest rank, and whether the final weights equal the in-memory run's. Needs Open MPI and a built jar
# (./athanor build). MODEL_FLAGS (default --preset gpt2-tiny) picks the model, ACCUM (default 2) the micro-batches per
# rank, CHUNK (default 4m) the offload chunk. AUTO_MEM_HOST=SIZE adds a run with --offload auto --mem-host SIZE (the
# planner then keeps what units fit resident); RESIDENT="role:unit,unit role:unit" adds a run of the whole shard on DISK
# but those units of those roles in memory (e.g. RESIDENT="master:embedding").
#   bash bench/run-cpu-zero3-offload.sh [CORPUS] [STEPS] [N]
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=${1:-}
steps=${2:-3}
np=${3:-2}
model_flags=(${MODEL_FLAGS:---preset gpt2-tiny})
accum=${ACCUM:-2}
chunk=${CHUNK:-4m}
out=$(mktemp -d /tmp/athanor-zero3-offload.XXXXXX)
source bench/dp-setup.sh
main=("$java" --enable-native-access=ALL-UNNAMED -cp "$jar" dev.athanor.cli.Main)
"${main[@]}" plan "${model_flags[@]}" --device cpu --batch 1 --seq 32 --accum "$accum" --offload-chunk "$chunk" \
  --json "$out/base.json" > /dev/null
# the plan's rows of these roles put on DISK, for every unit but those of the third argument ("role:unit,unit ...")
plan_with() { python3 -c "
import json,sys
p=json.load(open(sys.argv[1])); roles=sys.argv[3].split(',')
kept={(r,u) for x in sys.argv[4].split() for r in [x.split(':')[0]] for u in x.split(':')[1].split(',')}
for r in p['placements']:
  if r['role'] in roles and (r['role'],r['unit']) not in kept: r['tier']='DISK'
json.dump(p,open(sys.argv[2],'w'),indent=2)" "$out/base.json" "$1" "$2" "${3:-}"; }
plan_with "$out/moments.json" adam_m,adam_v
plan_with "$out/all.json" master,grad,adam_m,adam_v
runs=(memory moments all)
if [[ -n "${RESIDENT:-}" ]]; then plan_with "$out/resident.json" master,grad,adam_m,adam_v "$RESIDENT"; runs+=(resident); fi
if [[ -n "${AUTO_MEM_HOST:-}" ]]; then runs+=(auto); fi
summary() { python3 -c "import json,sys; l=[json.loads(x) for x in open(sys.argv[1]) if '\"summary\"' in x]; print(l[-1]['peak_bytes'][sys.argv[2]])" "$1" "$2"; }
disk_per_step() { python3 -c "
import json,sys
s=sorted({json.loads(x)['disk_read_bytes']+json.loads(x)['disk_write_bytes'] for x in open(sys.argv[1]) if '\"summary\"' not in x})
print(' / '.join(f'{v} ({v/2**20:.1f} MiB)' for v in s))" "$1"; }
train=("${main[@]}" train "${model_flags[@]}" --data "$corpus" --steps "$steps" --batch 1 --seq 32 --accum "$accum" --warmup 1
       --device cpu --dp "$np" --zero 3 --threads 1)
echo "| run | rank 0 peak HOST (bytes) | rank 0 peak DISK (bytes) | rank 0 DISK bytes per step | predicted (busiest rank) | weights identical to in memory |"
echo "| --- | --- | --- | --- | --- | --- |"
for run in "${runs[@]}"; do
  d=$out/$run
  extra=()
  if [[ $run == auto ]]; then
    extra=(--offload auto --offload-chunk "$chunk" --mem-host "$AUTO_MEM_HOST" --offload-dir "$out/$run-dir")
  elif [[ $run != memory ]]; then
    extra=(--offload "$out/$run.json" --offload-dir "$out/$run-dir")
  fi
  if ! mpirun -np "$np" --oversubscribe --bind-to none "${train[@]}" "${extra[@]}" --out "$d/model" --log "$d/log.jsonl" \
      > "$d.txt" 2>&1; then
    echo "$run failed:" >&2; tail -20 "$d.txt" >&2; exit 1
  fi
  per=$([[ $run == memory ]] && echo 0 || disk_per_step "$d/log.jsonl")
  predicted=$(sed -n 's/.*DISK traffic per step (busiest rank): //p' "$d.txt" | head -1)
  same=$(cmp -s "$out/memory/model/model.safetensors" "$d/model/model.safetensors" && echo identical || echo different)
  echo "| $run | $(summary "$d/log.jsonl" HOST) | $(summary "$d/log.jsonl" DISK) | $per | ${predicted:--} | $same |"
done
grep -h "offload plan\|shard roles" "$out/all.txt" | head -2
for run in resident auto; do
  if [[ -f "$out/$run.txt" ]]; then echo "$run:"; grep -h "stays in memory\|total HOST\|DISK traffic per step" "$out/$run.txt"; fi
done
echo "outputs in $out"
