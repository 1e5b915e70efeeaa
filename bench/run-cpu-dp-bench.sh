#!/usr/bin/env bash
# Data-parallel training throughput through `athanor bench` (issue 10): 1 process x 2 threads at --batch 2B against
# 2 processes x 1 thread at --batch B each (`bench --dp 2`, mpirun) for each ZeRO stage, the same tokens per step,
# alternating, REPS times each. Prints a Markdown table of median step times, tokens/s, the ratio to the one-process
# run just before it, and rank 0's median time and bytes in collectives per step (what `bench --dp` reports).
# Needs Open MPI (apt-get install openmpi-bin libopenmpi-dev) and a built jar (./athanor build).
#   bash bench/run-cpu-dp-bench.sh [REPS] [STEPS] [B] [SEQ] [ZERO_STAGES]
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-3}
steps=${2:-8}
b=${3:-4}
seq=${4:-256}
stages=${5:-0 1 2}
out=$(mktemp -d /tmp/athanor-dp-bench.XXXXXX)
corpus=none  # bench draws random tokens; dp-setup.sh only needs a value
source bench/dp-setup.sh
run=("$java" --enable-native-access=ALL-UNNAMED -cp "$jar" dev.athanor.cli.Main bench --mode train --preset gpt2-tiny
     --seq "$seq" --steps "$steps" --warmup-steps 2 --device cpu)
field() { python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])[sys.argv[2]])" "$1" "$2"; }
echo "| rep | zero | 1 x 2 threads, batch $((2 * b)): step ms | tokens/s | 2 x 1 thread, batch $b each: step ms | tokens/s | ratio | comm ms/step (rank 0) | comm MB/step | load before |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for i in $(seq 1 "$reps"); do
  for z in $stages; do
    load=$(cut -d' ' -f1 /proc/loadavg)
    "${run[@]}" --batch $((2 * b)) --threads 2 > "$out/one-$i-$z.json" 2> "$out/one-$i-$z.err"
    mpirun -np 2 --bind-to none "${run[@]}" --batch "$b" --dp 2 --zero "$z" --threads 1 > "$out/dp-$i-$z.json" 2> "$out/dp-$i-$z.err"
    a=$(field "$out/one-$i-$z.json" tokens_per_s); c=$(field "$out/dp-$i-$z.json" tokens_per_s)
    echo "| $i | $z | $(field "$out/one-$i-$z.json" step_ms_median) | $a | $(field "$out/dp-$i-$z.json" step_ms_median) | $c |" \
      "$(python3 -c "print(f'{$c/$a:.2f}')") | $(field "$out/dp-$i-$z.json" comm_ms_median) |" \
      "$(python3 -c "print(f'{$(field "$out/dp-$i-$z.json" comm_bytes_per_step)/1e6:.1f}')") | $load |"
  done
done
echo "(outputs in $out)"
