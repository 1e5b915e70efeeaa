#!/usr/bin/env bash
# Builds and runs the CPU benchmarks (JMH: GemmBench = Athanor vs OpenBLAS FP32 GEMM, AttentionBench)
# with fixed settings, and writes the result as Markdown (plus JMH's raw JSON) into bench/results/:
#
#   bash bench/run-cpu.sh                    # about 5 minutes on 2 cores, build excluded
#   NOTE="machine shared with other jobs" bash bench/run-cpu.sh
#   bash bench/run-cpu.sh GemmBench -p shape=2048x2048x2048:NN     # extra JMH arguments narrow the run
#
# Fixed settings: 1 fork per benchmark and parameter set, 3 x 1 s warm-up, 5 x 1 s measurement,
# throughput mode (ops/s, turned into GFLOP/s by dev.athanor.bench.Report), threads = all cores for
# both libraries; then three GEMM shapes again on 1 thread each (the kernels alone). OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are unset for the run so that OpenBLAS picks
# its kernels for this CPU by itself (some machines set them to work around old OpenBLAS bugs; each
# trial cross-checks Athanor's result against OpenBLAS's, so a wrong result fails loudly), and
# OPENBLAS_VERBOSE=2 makes it print the core it chose, which goes into the result file.
#
# Environment: JDK (default /usr/lib/jvm/temurin-25-jdk-amd64); SKIP_BUILD=1 to reuse
# bench/target/benchmarks.jar; ATHANOR_NATIVE_DIR (CMake build folder for the library, default
# build/native-bench, configured CPU-only); ATHANOR_LIBRARY=/path/libathanor.so to benchmark that
# library instead of the one packed in the jar; NOTE (a line added to the result); RESULTS (output
# folder, default bench/results).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # ROOT, JDK (JAVA_HOME), RESULTS, JAR
NATIVE_DIR=${ATHANOR_NATIVE_DIR:-$ROOT/build/native-bench}

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "run-cpu.sh: building (mvn -pl bench -am package -DskipTests, native library CPU-only in $NATIVE_DIR)" >&2
  mvn -B -q -f "$ROOT/pom.xml" -pl bench -am -DskipTests -Dathanor.cuda=OFF -Dathanor.native.dir="$NATIVE_DIR" package
fi
[ -f "$JAR" ] || { echo "run-cpu.sh: $JAR is missing" >&2; exit 1; }

CPU=$(sed -n 's/^model name\s*:\s*//p' /proc/cpuinfo | head -1)
SLUG=$(echo "${CPU:-cpu}" | tr 'A-Z' 'a-z' | sed 's/([^)]*)//g; s/[^a-z0-9]\+/-/g; s/^-//; s/-$//' | cut -c1-40)
STAMP=$(date -u +%Y-%m-%d)
mkdir -p "$RESULTS"
BASE=$RESULTS/$STAMP-cpu-$SLUG
[ -e "$BASE.md" ] && BASE=$BASE-$(date -u +%H%M)
LOG=$(mktemp /tmp/athanor-run-cpu.XXXXXX.log)

COMMON=(-f 1 -wi 3 -w 1s -i 5 -r 1s)
if [ -n "${ATHANOR_LIBRARY:-}" ]; then
  COMMON+=(-jvmArgsPrepend "-Dathanor.library.path=$ATHANOR_LIBRARY")
fi
jmh() {  # RESULT_FILE JMH_ARGS...
  local rff=$1
  shift
  echo "run-cpu.sh: java -jar $JAR ${COMMON[*]} -rf json -rff $rff $*   (log: $LOG)" >&2
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_VERBOSE=2 \
    "$JDK/bin/java" --enable-native-access=ALL-UNNAMED -jar "$JAR" "${COMMON[@]}" -rf json -rff "$rff" "$@" 2>&1 | tee -a "$LOG"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
RESULT_FILES=("$BASE.json")
if [ $# -gt 0 ]; then
  jmh "$BASE.json" "$@"
else
  # 1. every benchmark, all cores; 2. three GEMM shapes on one thread each, where the comparison
  # measures the kernels alone (no threading, and much less sensitive to other load on the machine).
  jmh "$BASE.json" 'dev.athanor.bench.(GemmBench|AttentionBench)'
  jmh "$BASE-1thread.json" 'dev.athanor.bench.GemmBench' -p threads=1 \
    -p shape=1024x1024x1024:NN,2048x2048x2048:NN,4096x3072x768:NT
  RESULT_FILES+=("$BASE-1thread.json")
fi
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
CORES=$(grep -o 'Core: [A-Za-z0-9_]*' "$LOG" | sort -u | sed 's/Core: //' | paste -sd, - || true)

NOTES=(--note "OpenBLAS kernels chosen (OPENBLAS_VERBOSE=2): ${CORES:-not reported}"
       --note "load average (1/5/15 min) before: $LOAD_BEFORE, after: $LOAD_AFTER"
       --note "command: bash bench/run-cpu.sh $*"
       --note "raw JMH results: $(for f in "${RESULT_FILES[@]}"; do basename "$f"; done | paste -sd' ' -)")
[ -n "${NOTE:-}" ] && NOTES+=(--note "$NOTE")
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$JDK/bin/java" --enable-native-access=ALL-UNNAMED \
  ${ATHANOR_LIBRARY:+-Dathanor.library.path=$ATHANOR_LIBRARY} \
  -cp "$JAR" dev.athanor.bench.Report "${RESULT_FILES[@]}" --out "$BASE.md" "${NOTES[@]}" > /dev/null
{ printf '# CPU benchmarks, %s\n\n' "$STAMP"; cat "$BASE.md"; } > "$BASE.md.tmp" && mv "$BASE.md.tmp" "$BASE.md"
echo >&2
cat "$BASE.md"
echo "run-cpu.sh: wrote $BASE.md and ${RESULT_FILES[*]}" >&2
