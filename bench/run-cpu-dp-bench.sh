#!/usr/bin/env bash
# Data-parallel training throughput through `athanor bench` (issue 10): 1 process x 2 threads at --batch 2B against
# 2 processes x 1 thread at --batch B each (`bench --dp 2`, mpirun) for each ZeRO stage, the same tokens per step,
# alternating, REPS times each. Prints a Markdown table of median step times, tokens/s, the ratio to the one-process
# run just before it, and rank 0's median time and bytes in collectives per step (what `bench --dp` reports).
# With PP_MICRO=M, the pipeline case instead (issue 11): 1 process x 2 threads at --batch M*B against 2 processes x 1
# thread as two pipeline stages (`bench --pp 2 --micro-batches M --batch B`: the 1F1B schedule over M micro-batches of
# B sequences), the same tokens per step; the table adds the 1F1B bubble in theory, (pp-1)/(M+pp-1), and the measured
# median share of stage 0's step it spent blocked in sends, receives and collectives (what `bench --pp` reports).
# Needs Open MPI (apt-get install openmpi-bin libopenmpi-dev) and a built jar (./athanor build).
#   bash bench/run-cpu-dp-bench.sh [REPS] [STEPS] [B] [SEQ] [ZERO_STAGES]
#   PP_MICRO=M bash bench/run-cpu-dp-bench.sh [REPS] [STEPS] [B] [SEQ]
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
if [[ -n "${PP_MICRO:-}" ]]; then
  m=$PP_MICRO
  echo "| rep | 1 x 2 threads, batch $((m * b)): step ms | tokens/s | pp 2 x 1 thread, $m x batch $b: step ms | tokens/s |" \
    "ratio | comm ms/step (stage 0) | comm MB/step | bubble (1F1B theory) | stage 0 blocked share (measured) | load before |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  for i in $(seq 1 "$reps"); do
    load=$(cut -d' ' -f1 /proc/loadavg)
    "${run[@]}" --batch $((m * b)) --threads 2 > "$out/one-$i.json" 2> "$out/one-$i.err"
    mpirun -np 2 --bind-to none "${run[@]}" --batch "$b" --pp 2 --micro-batches "$m" --threads 1 > "$out/pp-$i.json" 2> "$out/pp-$i.err"
    a=$(field "$out/one-$i.json" tokens_per_s); c=$(field "$out/pp-$i.json" tokens_per_s)
    echo "| $i | $(field "$out/one-$i.json" step_ms_median) | $a | $(field "$out/pp-$i.json" step_ms_median) | $c |" \
      "$(python3 -c "print(f'{$c/$a:.2f}')") | $(field "$out/pp-$i.json" comm_ms_median) |" \
      "$(python3 -c "print(f'{$(field "$out/pp-$i.json" comm_bytes_per_step)/1e6:.2f}')") |" \
      "$(field "$out/pp-$i.json" bubble_1f1b_theory) | $(field "$out/pp-$i.json" stage0_comm_fraction_median) | $load |"
  done
  echo "(outputs in $out)"
  exit 0
fi
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
