# Sourced by the bench/run-*.sh scripts: sets ROOT (the repository), JDK (a JDK 25; JAVA_HOME too), RESULTS (where
# result files go) and JAR (the bench jar), each overridable from the environment where the script says so.
ROOT=$(cd "$(dirname "${BASH_SOURCE[1]}")/.." && pwd)
JDK=${JDK:-/usr/lib/jvm/temurin-25-jdk-amd64}
export JAVA_HOME=$JDK
RESULTS=${RESULTS:-$ROOT/bench/results}
JAR=$ROOT/bench/target/benchmarks.jar

# bench_build SCRIPT: builds bench/target/benchmarks.jar (CPU-only) unless SKIP_BUILD=1, and checks that it is there.
bench_build() {
  if [ "${SKIP_BUILD:-0}" != 1 ]; then
    echo "$1: building (mvn -pl bench -am package -DskipTests, native library CPU-only)" >&2
    MAVEN_OPTS="${MAVEN_OPTS:-} --sun-misc-unsafe-memory-access=allow" \
      mvn -B -q -f "$ROOT/pom.xml" -pl bench -am -DskipTests -Dathanor.cuda=OFF package
  fi
  [ -f "$JAR" ] || { echo "$1: $JAR is missing" >&2; exit 1; }
}

# bench_out KIND: sets OUT to $RESULTS/<date>-cpu-KIND-<cpu>-<HHMM>.md, and prefixes NOTE with a warning when the
# 1-minute load average is above half the cores.
bench_out() {
  local cpu load cores
  cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //; s/(R)//g; s/(TM)//g' | awk '{print tolower($1"-"$2"-"$3)}' | tr -c 'a-z0-9-\n' '-' | sed 's/-*$//')
  mkdir -p "$RESULTS"
  OUT=$RESULTS/$(date -u +%Y-%m-%d)-cpu-$1-$cpu-$(date -u +%H%M).md
  cores=$(nproc)
  load=$(cut -d' ' -f1 /proc/loadavg)
  if awk -v l="$load" -v c="$cores" 'BEGIN { exit !(l > c / 2) }'; then
    NOTE="BUSY MACHINE: the 1-minute load average was $load on $cores cores before the run (other jobs were running); the figures are noisy${NOTE:+. $NOTE}"
  fi
}

# bench_java SCRIPT CLASS ARGS...: runs CLASS from the bench jar with stdout into $OUT (kept only when it succeeds),
# then removes $DIR; exits with the class's status when it fails.
bench_java() {
  local script=$1 cls=$2 status=0
  shift 2
  "$JDK/bin/java" --enable-native-access=ALL-UNNAMED -Xmx2g -cp "$JAR" "dev.athanor.bench.$cls" "$@" \
    ${NOTE:+--note "$NOTE"} >"$OUT.tmp" || status=$?
  rm -rf "$DIR"
  if [ "$status" != 0 ]; then
    rm -f "$OUT.tmp"
    echo "$script: $cls failed (exit $status)" >&2
    exit "$status"
  fi
  mv "$OUT.tmp" "$OUT"
  echo "$script: wrote $OUT" >&2
}
