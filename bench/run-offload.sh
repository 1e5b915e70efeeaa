#!/usr/bin/env bash
# Offloaded training throughput against in-memory training of the same model at HOST budgets of 1/2, 1/4 and 1/8 of
# the training state, prefetch on and off (issue 9). Runs dev.athanor.bench.OffloadBudgetBench (its class comment says
# exactly what is timed): per budget and prefetch setting, a fresh in-memory trainer and a fresh offloaded trainer whose
# placement OffloadPlanner chooses under that budget take alternating steps; their losses must agree bit for bit.
# Writes bench/results/<date>-cpu-offload-budgets-<cpu>-<HHMM>.md with the machine, the directory's file system and the
# load before and after.
#
#   bash bench/run-offload.sh                  # 130M-parameter GPT-2 shape (1.9 GiB of state), B=1 T=64: ~3 min
#   STEPS=8 NOTE="quiet machine" bash bench/run-offload.sh
#
# The model is sized so that at state/8 the fixed HOST costs (the windows of the units being computed, the optimizer's
# staging slots, activations) still fit: with a few large units (a small model, or a big vocabulary's embedding) no
# plan fits 1/8 and the row says so with the planner's message.
# Environment: DIR (default bench/target/offload-budgets; needs about the state, 2 GiB, free; removed afterwards),
# VOCAB (8192), LAYERS (40), HIDDEN (512), HEADS (8), BATCH (1), SEQ (64), STEPS (5 timed per side and row),
# FRACTIONS (2,4,8), JDK, SKIP_BUILD=1 to reuse bench/target/benchmarks.jar, NOTE (a line added to the result),
# RESULTS (default bench/results).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # ROOT, JDK (JAVA_HOME), RESULTS, JAR
DIR=${DIR:-$ROOT/bench/target/offload-budgets}
VOCAB=${VOCAB:-8192}
LAYERS=${LAYERS:-40}
HIDDEN=${HIDDEN:-512}
HEADS=${HEADS:-8}
BATCH=${BATCH:-1}
SEQ=${SEQ:-64}
STEPS=${STEPS:-5}
FRACTIONS=${FRACTIONS:-2,4,8}

[ -x "$JDK/bin/java" ] || { echo "run-offload.sh: no JDK at $JDK (set JDK to a JDK 25)" >&2; exit 2; }
bench_build run-offload.sh

mkdir -p "$DIR"
NEED_MIB=$(awk -v v="$VOCAB" -v l="$LAYERS" -v h="$HIDDEN" 'BEGIN { printf "%d", (v * h + l * 12 * h * h) * 16 / 1048576 + 256 }')
FREE_MIB=$(df -Pm "$DIR" | awk 'NR == 2 { print $4 }')
if [ "$FREE_MIB" -lt "$NEED_MIB" ]; then
  echo "run-offload.sh: $DIR has $FREE_MIB MiB free but the benchmark needs about $NEED_MIB MiB (the state plus" \
    "256 MiB): set DIR to another directory or shrink the model" >&2
  rm -rf "$DIR"
  exit 2
fi

bench_out offload-budgets
COMMAND="VOCAB=$VOCAB LAYERS=$LAYERS HIDDEN=$HIDDEN HEADS=$HEADS BATCH=$BATCH SEQ=$SEQ STEPS=$STEPS FRACTIONS=$FRACTIONS bash bench/run-offload.sh"

bench_java run-offload.sh OffloadBudgetBench \
  --vocab "$VOCAB" --layers "$LAYERS" --hidden "$HIDDEN" --heads "$HEADS" --batch "$BATCH" --seq "$SEQ" \
  --steps "$STEPS" --fractions "$FRACTIONS" --dir "$DIR" --command "$COMMAND"
