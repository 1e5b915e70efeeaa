#!/usr/bin/env bash
# DISK tier bandwidth against the disk's own sequential direct-I/O speed, on the same directory, in the same run
# (issue 9). Runs dev.athanor.bench.DiskBench (bench/src/main/java/dev/athanor/bench/DiskBench.java says exactly
# what is timed): Athanor writes then reads a DISK-tier file set through Storage (the offload's path: 4096-aligned
# HOST staging buffers, O_DIRECT, chunks and requests in flight as the offload's ChunkStreamer uses), and fio
# (direct=1, libaio, bs = the chunk, iodepth = the requests in flight) and dd (oflag/iflag=direct) do the same on
# the same directory; then a sweep over chunk sizes and requests in flight. Writes
# bench/results/<date>-cpu-disk-<cpu>-<HHMM>.md with the machine, the directory's file system and device, and the load.
#
#   bash bench/run-disk.sh                              # 4 GiB, 5 rounds, sweep 1/4/16 MiB x 1/2/4 on 1 GiB: ~4 min
#   GIB=8 ROUNDS=3 DIR=/mnt/nvme/athanor bash bench/run-disk.sh
#   NOTE="machine shared with other jobs" bash bench/run-disk.sh
#
# Direct I/O bypasses the page cache, so no cache dropping is needed (it needs root anyway). A file system without
# O_DIRECT (tmpfs) makes Athanor fall back to buffered I/O (the result says "O_DIRECT used: NO") and fio fail.
# Environment: DIR (default bench/target/disk-bench, on the repository's disk; removed afterwards when the script made
# it), GIB (4: the file set; it needs GIB + 64 MiB free, one side's files at a time), FILE_MIB (1024 per file),
# CHUNK_MIB (4), INFLIGHT (2), ROUNDS (5), SWEEP_GIB (1; 0 skips the sweep), SWEEP_CHUNKS (1,4,16),
# SWEEP_INFLIGHT (1,2,4), FIO (fio), JDK (default /usr/lib/jvm/temurin-25-jdk-amd64), SKIP_BUILD=1 to reuse
# bench/target/benchmarks.jar, NOTE (a line added to the result), RESULTS (default bench/results).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # ROOT, JDK (JAVA_HOME), RESULTS, JAR
DIR=${DIR:-$ROOT/bench/target/disk-bench}
GIB=${GIB:-4}
FILE_MIB=${FILE_MIB:-1024}
CHUNK_MIB=${CHUNK_MIB:-4}
INFLIGHT=${INFLIGHT:-2}
ROUNDS=${ROUNDS:-5}
SWEEP_GIB=${SWEEP_GIB:-1}
SWEEP_CHUNKS=${SWEEP_CHUNKS:-1,4,16}
SWEEP_INFLIGHT=${SWEEP_INFLIGHT:-1,2,4}
FIO=${FIO:-fio}

if ! command -v "$FIO" >/dev/null 2>&1; then
  echo "run-disk.sh: fio (the peer) is not installed: apt-get install fio (Debian/Ubuntu), dnf install fio (Fedora)," \
    "or set FIO=/path/to/fio" >&2
  exit 2
fi
[ -x "$JDK/bin/java" ] || { echo "run-disk.sh: no JDK at $JDK (set JDK to a JDK 25)" >&2; exit 2; }

MADE_DIR=0
[ -d "$DIR" ] || MADE_DIR=1
mkdir -p "$DIR"
NEED_MIB=$(awk -v g="$GIB" -v s="$SWEEP_GIB" 'BEGIN { m = g > s ? g : s; printf "%d", m * 1024 + 64 }')
FREE_MIB=$(df -Pm "$DIR" | awk 'NR == 2 { print $4 }')
if [ "$FREE_MIB" -lt "$NEED_MIB" ]; then
  echo "run-disk.sh: $DIR has $FREE_MIB MiB free but the benchmark needs $NEED_MIB MiB (GIB=$GIB plus 64 MiB):" \
    "lower GIB or set DIR to another directory" >&2
  exit 2
fi

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "run-disk.sh: building (mvn -pl bench -am package -DskipTests, native library CPU-only)" >&2
  MAVEN_OPTS="${MAVEN_OPTS:-} --sun-misc-unsafe-memory-access=allow" \
    mvn -B -q -f "$ROOT/pom.xml" -pl bench -am -DskipTests -Dathanor.cuda=OFF package
fi
[ -f "$JAR" ] || { echo "run-disk.sh: $JAR is missing" >&2; exit 1; }

CPU=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //; s/(R)//g; s/(TM)//g' | awk '{print tolower($1"-"$2"-"$3)}' | tr -c 'a-z0-9-\n' '-' | sed 's/-*$//')
mkdir -p "$RESULTS"
OUT=$RESULTS/$(date -u +%Y-%m-%d)-cpu-disk-$CPU-$(date -u +%H%M).md
CORES=$(nproc)
LOAD1=$(cut -d' ' -f1 /proc/loadavg)
NOTES=()
if awk -v l="$LOAD1" -v c="$CORES" 'BEGIN { exit !(l > c / 2) }'; then
  NOTES+=(--note "BUSY MACHINE: the 1-minute load average was $LOAD1 on $CORES cores before the run (other jobs were running); the figures are noisy")
fi
[ -n "${NOTE:-}" ] && NOTES+=(--note "$NOTE")
COMMAND="GIB=$GIB FILE_MIB=$FILE_MIB CHUNK_MIB=$CHUNK_MIB INFLIGHT=$INFLIGHT ROUNDS=$ROUNDS SWEEP_GIB=$SWEEP_GIB SWEEP_CHUNKS=$SWEEP_CHUNKS SWEEP_INFLIGHT=$SWEEP_INFLIGHT bash bench/run-disk.sh"

status=0
"$JDK/bin/java" --enable-native-access=ALL-UNNAMED -Xmx1g -cp "$JAR" dev.athanor.bench.DiskBench \
  --dir "$DIR" --gib "$GIB" --file-mib "$FILE_MIB" --chunk-mib "$CHUNK_MIB" --inflight "$INFLIGHT" --rounds "$ROUNDS" \
  --sweep-gib "$SWEEP_GIB" --sweep-chunks "$SWEEP_CHUNKS" --sweep-inflight "$SWEEP_INFLIGHT" --fio "$FIO" \
  --out "$OUT" --command "$COMMAND" ${NOTES[@]+"${NOTES[@]}"} || status=$?
[ "$MADE_DIR" = 1 ] && rm -rf "$DIR"
[ "$status" = 0 ] || { echo "run-disk.sh: DiskBench failed (exit $status)" >&2; exit "$status"; }
echo "run-disk.sh: wrote $OUT" >&2
