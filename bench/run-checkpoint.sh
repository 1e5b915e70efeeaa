#!/usr/bin/env bash
# Checkpoint benchmark (dev.athanor.bench.CheckpointBench): the stall a checkpoint adds to the training loop on
# the CPU, sync vs async, and the background write's bandwidth against the disk's own sequential write + fsync
# speed measured in the same run, for gpt2-tiny (the demo model, 16M parameters) and GPT-2 124M. Writes
# bench/results/<date>-checkpoint-<host>.md:
#
#   bash bench/run-checkpoint.sh                        # about 3 minutes on 2 cores, build excluded
#   NOTE="machine shared with other jobs" bash bench/run-checkpoint.sh
#   bash bench/run-checkpoint.sh --models gpt2-tiny --saves 3    # extra arguments go to CheckpointBench
#
# Checkpoints go to CKPT_DIR (default bench/target/checkpoint-bench, on the repository's disk; avoid a tmpfs),
# which is deleted afterwards; they need about 3 GB free for the 124M model (one checkpoint + one being written).
# Environment: JDK (default /usr/lib/jvm/temurin-25-jdk-amd64); SKIP_BUILD=1 to reuse bench/target/benchmarks.jar;
# BENCH_CP=<class path> to run from compiled classes instead of the jar (no build); NOTE (a line added to the
# result); RESULTS (output folder, default bench/results). When the 1-minute load average before the run exceeds
# half the cores, the result file says so.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # ROOT, JDK (JAVA_HOME), RESULTS, JAR
CKPT_DIR=${CKPT_DIR:-$ROOT/bench/target/checkpoint-bench}

if [ -n "${BENCH_CP:-}" ]; then
  CLASSPATH_ARG=$BENCH_CP
else
  if [ "${SKIP_BUILD:-0}" != 1 ]; then
    echo "run-checkpoint.sh: building (mvn -pl bench -am package -DskipTests, native library CPU-only)" >&2
    mvn -B -q -f "$ROOT/pom.xml" -pl bench -am -DskipTests -Dathanor.cuda=OFF package
  fi
  [ -f "$JAR" ] || { echo "run-checkpoint.sh: $JAR is missing" >&2; exit 1; }
  CLASSPATH_ARG=$JAR
fi

HOST=$(hostname -s 2>/dev/null || hostname)
HOST=$(echo "${HOST:-host}" | tr 'A-Z' 'a-z' | sed 's/[^a-z0-9]\+/-/g; s/^-//; s/-$//' | cut -c1-40)
STAMP=$(date -u +%Y-%m-%d)
mkdir -p "$RESULTS"
OUT=$RESULTS/$STAMP-checkpoint-$HOST.md
[ -e "$OUT" ] && OUT=$RESULTS/$STAMP-checkpoint-$HOST-$(date -u +%H%M).md

CORES=$(nproc)
LOAD1=$(cut -d' ' -f1 /proc/loadavg)
NOTES=(--note "command: bash bench/run-checkpoint.sh $*")
if awk -v l="$LOAD1" -v c="$CORES" 'BEGIN { exit !(l > c / 2) }'; then
  NOTES+=(--note "BUSY MACHINE: the 1-minute load average was $LOAD1 on $CORES cores before the run (other jobs were running); stalls and step times are inflated and the disk numbers are noisy")
fi
[ -n "${NOTE:-}" ] && NOTES+=(--note "$NOTE")

"$JDK/bin/java" --enable-native-access=ALL-UNNAMED -Xmx2g -cp "$CLASSPATH_ARG" dev.athanor.bench.CheckpointBench \
  --dir "$CKPT_DIR" --out "$OUT" "${NOTES[@]}" "$@"
echo "run-checkpoint.sh: wrote $OUT" >&2
