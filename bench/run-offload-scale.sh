#!/usr/bin/env bash
# A model whose training state does not fit in this machine's RAM takes training steps through the DISK tier (issue 9).
# Runs dev.athanor.bench.OffloadScale (its class comment says exactly what is done): a Llama-shaped model built without
# weights, initialized tensor by tensor onto DISK, weights, gradients and both AdamW moments on DISK, a HOST budget
# well below the state, batch 1 of one repeated sequence; per step seconds, loss, DISK bytes read and written, stall,
# and the allocator's HOST peak. Writes bench/results/<date>-cpu-offload-scale-<cpu>-<HHMM>.md.
#
#   bash bench/run-offload-scale.sh                                    # 3.08B parameters, 45.8 GiB of state, 4 steps
#   LAYERS=16 HIDDEN=2048 HEADS=16 INTERMEDIATE=5504 STEPS=2 bash bench/run-offload-scale.sh   # 0.88B: an estimate
#
# It checks the free space first: the offload directory needs the whole state (16 bytes per parameter) plus 2 GiB.
# Seconds per step are mostly I/O: about 11 passes over one role's bytes (4 bytes per parameter) per step (weights
# read in the forward and the backward, read and written by AdamW; gradients written, read for the norm and by AdamW;
# each moment read and written), about 135 GB per step at 3B.
# Environment: DIR (default bench/target/offload-scale, removed afterwards, also on failure), LAYERS (24), HIDDEN (3200),
# HEADS (32), KV_HEADS (HEADS), INTERMEDIATE (8640), VOCAB (32000), SEQ (32), STEPS (4), BUDGET_GIB (8), LR (3e-4, constant;
# the 0738 run used 1e-3, and its loss rose again at step 4), IN_MEMORY_CHECK (false; true first trains the same
# model in memory and fails unless every loss is equal bit for bit: needs the state in RAM, so only for small models), JDK,
# SKIP_BUILD=1 to reuse bench/target/benchmarks.jar, NOTE (a line added to the result), RESULTS (default bench/results).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # ROOT, JDK (JAVA_HOME), RESULTS, JAR
DIR=${DIR:-$ROOT/bench/target/offload-scale}
LAYERS=${LAYERS:-24}
HIDDEN=${HIDDEN:-3200}
HEADS=${HEADS:-32}
KV_HEADS=${KV_HEADS:-$HEADS}
INTERMEDIATE=${INTERMEDIATE:-8640}
VOCAB=${VOCAB:-32000}
SEQ=${SEQ:-32}
STEPS=${STEPS:-4}
BUDGET_GIB=${BUDGET_GIB:-8}
LR=${LR:-3e-4}
IN_MEMORY_CHECK=${IN_MEMORY_CHECK:-false}

[ -x "$JDK/bin/java" ] || { echo "run-offload-scale.sh: no JDK at $JDK (set JDK to a JDK 25)" >&2; exit 2; }
# parameters of a tied Llama: per block q, o (h x h), k, v (h x kv-width), the MLP's three matrices, two norms; the
# embedding and the final norm
PARAMS=$(awk -v l="$LAYERS" -v h="$HIDDEN" -v a="$HEADS" -v k="$KV_HEADS" -v m="$INTERMEDIATE" -v v="$VOCAB" \
  'BEGIN { kv = h / a * k; printf "%.0f", l * (2 * h * h + 2 * h * kv + 3 * h * m + 2 * h) + v * h + h }')
NEED_MIB=$(awk -v p="$PARAMS" 'BEGIN { printf "%d", p * 16 / 1048576 + 2048 }')
mkdir -p "$(dirname "$DIR")"
FREE_MIB=$(df -Pm "$(dirname "$DIR")" | awk 'NR == 2 { print $4 }')
echo "run-offload-scale.sh: $PARAMS parameters: the state on DISK needs $NEED_MIB MiB (16 bytes per parameter plus" \
  "2 GiB); $FREE_MIB MiB free under $(dirname "$DIR")" >&2
if [ "$FREE_MIB" -lt "$NEED_MIB" ]; then
  echo "run-offload-scale.sh: not enough free disk space: $NEED_MIB MiB needed, $FREE_MIB MiB free: free some, set DIR" \
    "to a larger disk, or shrink the model (LAYERS, HIDDEN, INTERMEDIATE)" >&2
  exit 2
fi
bench_build run-offload-scale.sh

bench_out offload-scale
COMMAND="LAYERS=$LAYERS HIDDEN=$HIDDEN HEADS=$HEADS KV_HEADS=$KV_HEADS INTERMEDIATE=$INTERMEDIATE VOCAB=$VOCAB SEQ=$SEQ STEPS=$STEPS BUDGET_GIB=$BUDGET_GIB LR=$LR IN_MEMORY_CHECK=$IN_MEMORY_CHECK bash bench/run-offload-scale.sh"

bench_java run-offload-scale.sh OffloadScale \
  --layers "$LAYERS" --hidden "$HIDDEN" --heads "$HEADS" --kv-heads "$KV_HEADS" --intermediate "$INTERMEDIATE" \
  --vocab "$VOCAB" --seq "$SEQ" --steps "$STEPS" --budget-gib "$BUDGET_GIB" --lr "$LR" --in-memory-check "$IN_MEMORY_CHECK" --dir "$DIR" --command "$COMMAND"
