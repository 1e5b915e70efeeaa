#!/usr/bin/env bash
# Data parallel on the CPU (issue 10): 2 processes x 1 thread (mpirun, train --dp 2) against 1 process x 2 threads
# (train --accum 2) on the same micro-batches, alternating, REPS times each. Prints a Markdown table of tokens/s (mean
# over each run's steps but the first, as train reports it), the ratio per pair, and whether the final weights are
# identical. Needs Open MPI (apt-get install openmpi-bin libopenmpi-dev) and a built jar (./athanor build).
# With OVERLAP=compare, each rep runs the --dp 2 case twice more, --overlap off and --overlap on (BUCKET_MB, default
# 25), and the table adds rank 0's median comm_ms per step (time in collectives, the communication thread's included)
# and, with overlap, comm_wait_ms (what the training thread waited for the buckets after the backward; under ZERO=2
# and ZERO=3 for the unit folds on the communication thread). ZERO (default 0) is the --dp runs' --zero stage in that mode.
#   bash bench/run-cpu-dp.sh [CORPUS] [REPS] [STEPS]
#   OVERLAP=compare [BUCKET_MB=25] [ZERO=0|1|2|3] bash bench/run-cpu-dp.sh [CORPUS] [REPS] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=${1:-}
reps=${2:-3}
steps=${3:-12}
out=$(mktemp -d /tmp/athanor-dp-bench.XXXXXX)
source bench/dp-setup.sh
# -cp, not -jar: mpirun rewrites the class path of a "java -jar" command line
run=("$java" --enable-native-access=ALL-UNNAMED -cp "$jar" dev.athanor.cli.Main train --preset gpt2-tiny --data "$corpus"
     --steps "$steps" --batch 4 --seq 256 --warmup 2 --device cpu)
tps() { sed -n 's/.*over [0-9]* steps, \([0-9.k]*\) tokens\/s.*/\1/p' "$1"; }
if [[ "${OVERLAP:-}" == compare ]]; then
  # the median of a step field over rank 0's log, the first step left out
  med() { python3 -c "import json,sys,statistics as s; l=[json.loads(x) for x in open(sys.argv[1]) if '\"step\"' in x]; print(f'{s.median(o[sys.argv[2]] for o in l[1:]):.1f}')" "$1" "$2"; }
  bucket=${BUCKET_MB:-25}
  zero=${ZERO:-0}
  echo "| rep | 1 x 2 threads, --accum 2 (tokens/s) | dp 2 zero $zero, --overlap off (tokens/s) | comm ms/step | dp 2 zero $zero, --overlap on (tokens/s) | comm ms/step | wait ms/step | on/off | weights | load before |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  for i in $(seq 1 "$reps"); do
    load=$(cut -d' ' -f1 /proc/loadavg)
    "${run[@]}" --accum 2 --threads 2 --out "$out/one-$i" > "$out/one-$i.txt" 2>&1
    for o in off on; do  # alternating: off first in odd reps, on first in even ones
      [[ $((i % 2)) == 0 ]] && o=$([[ $o == off ]] && echo on || echo off)
      mpirun -np 2 --bind-to none "${run[@]}" --dp 2 --zero "$zero" --threads 1 --overlap "$o" --bucket-mb "$bucket" --out "$out/dp-$o-$i" \
        > "$out/dp-$o-$i.txt" 2>&1
    done
    a=$(tps "$out/one-$i.txt"); f=$(tps "$out/dp-off-$i.txt"); n=$(tps "$out/dp-on-$i.txt")
    same=$(cmp -s "$out/one-$i/model.safetensors" "$out/dp-off-$i/model.safetensors" \
      && cmp -s "$out/dp-off-$i/model.safetensors" "$out/dp-on-$i/model.safetensors" && echo identical || echo DIFFERENT)
    echo "| $i | $a | $f | $(med "$out/dp-off-$i/train-log.jsonl" comm_ms) | $n | $(med "$out/dp-on-$i/train-log.jsonl" comm_ms) |" \
      "$(med "$out/dp-on-$i/train-log.jsonl" comm_wait_ms) |" \
      "$(python3 -c "print(f'{float(\"$n\".replace(\"k\",\"e3\"))/float(\"$f\".replace(\"k\",\"e3\")):.2f}')") | $same | $load |"
  done
  echo "(outputs in $out)"
  exit 0
fi
echo "| rep | 1 process x 2 threads, --accum 2 (tokens/s) | 2 processes x 1 thread, --dp 2 (tokens/s) | ratio | weights | load before |"
echo "| --- | --- | --- | --- | --- | --- |"
for i in $(seq 1 "$reps"); do
  load=$(cut -d' ' -f1 /proc/loadavg)
  "${run[@]}" --accum 2 --threads 2 --out "$out/one-$i" > "$out/one-$i.txt" 2>&1
  mpirun -np 2 --bind-to none "${run[@]}" --dp 2 --threads 1 --out "$out/dp-$i" > "$out/dp-$i.txt" 2>&1
  a=$(tps "$out/one-$i.txt"); b=$(tps "$out/dp-$i.txt")
  same=$(cmp -s "$out/one-$i/model.safetensors" "$out/dp-$i/model.safetensors" && echo identical || echo DIFFERENT)
  echo "| $i | $a | $b | $(python3 -c "print(f'{float(\"$b\".replace(\"k\",\"e3\"))/float(\"$a\".replace(\"k\",\"e3\")):.2f}')") | $same | $load |"
done
echo "(outputs in $out)"
