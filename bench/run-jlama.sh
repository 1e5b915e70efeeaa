#!/usr/bin/env bash
# Greedy CPU decoding, Athanor against Jlama (com.github.tjake:jlama-core, the JVM peer), on the same Hugging Face
# Llama model (F32), same thread count, same prompt ids, rounds alternating in one JVM, token agreement checked
# (bench/src/main/java/dev/athanor/bench/JlamaBench.java says exactly what is timed).
#
#   1. builds the library and the bench jar CPU-only (skip with NO_BUILD=1);
#   2. makes the model once (BenchLlama: a byte-level BPE tokenizer cut from r50k_base, 4,096 tokens, and an 8-layer
#      Llama, hidden 512, 27.8M parameters, trained briefly with Athanor on the JDK's lib/src.zip: about 5-10 minutes
#      on 2 cores) and caches it in MODEL_DIR (default build/jlama-bench; reused while its recipe is unchanged);
#   3. runs JlamaBench and writes bench/results/<date>-cpu-jlama-<cpu>-<HHMM>.md and .json with the load averages
#      and this command.
#
# Jlama's path: JLAMA_OPS=panama (default) runs its pure-Java Vector API operations; JLAMA_OPS=native also puts
# com.github.tjake:jlama-native (linux-x86_64) on the class path (fetched with mvn) and lets Jlama pick its native
# SIMD library; that result file gets "-native" in its name. The report names the operations Jlama actually used.
#
# Usage: bash bench/run-jlama.sh
# Environment: THREADS (2), PROMPT_LEN (64), NEW_TOKENS (128), WARMUP (5 rounds of each), ROUNDS (10 of each),
#   TRAIN_STEPS (100), TRAIN_BYTES (8000000), MODEL_DIR (build/jlama-bench), JLAMA_OPS (panama|native),
#   JAVA_HOME (a JDK 25; found under /usr/lib/jvm otherwise), NO_BUILD (1: use the jar as it is).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
THREADS=${THREADS:-2}
PROMPT_LEN=${PROMPT_LEN:-64}
NEW_TOKENS=${NEW_TOKENS:-128}
WARMUP=${WARMUP:-5}
ROUNDS=${ROUNDS:-10}
TRAIN_STEPS=${TRAIN_STEPS:-100}
TRAIN_BYTES=${TRAIN_BYTES:-8000000}
MODEL_DIR=${MODEL_DIR:-build/jlama-bench}
JLAMA_OPS=${JLAMA_OPS:-panama}
JLAMA_VERSION=0.8.4
case "$JLAMA_OPS" in panama|native) ;; *) echo "run-jlama.sh: JLAMA_OPS must be panama or native, got $JLAMA_OPS" >&2; exit 2 ;; esac
if [ -z "${JAVA_HOME:-}" ] || [ ! -x "$JAVA_HOME/bin/javac" ] || ! "$JAVA_HOME/bin/java" -version 2>&1 | grep -q '"25'; then
  JAVA_HOME=
  for j in /usr/lib/jvm/temurin-25-jdk-amd64 /usr/lib/jvm/*25*; do [ -x "$j/bin/javac" ] && JAVA_HOME=$j && break; done
  [ -n "$JAVA_HOME" ] || { echo "run-jlama.sh: no JDK 25 found (set JAVA_HOME)" >&2; exit 2; }
fi
export JAVA_HOME PATH=$JAVA_HOME/bin:$PATH
JAVA=$JAVA_HOME/bin/java
JAR=bench/target/benchmarks.jar

if [ "${NO_BUILD:-0}" != 1 ] || [ ! -f "$JAR" ]; then
  MAVEN_OPTS="${MAVEN_OPTS:-} --sun-misc-unsafe-memory-access=allow" \
    mvn -B -q -Dathanor.cuda=OFF -Dathanor.build.jobs="$(nproc)" -DskipTests package
fi

CORPUS=$JAVA_HOME/lib/src.zip
[ -f "$CORPUS" ] || { echo "run-jlama.sh: $CORPUS is missing (the JDK's sources train the model)" >&2; exit 2; }
MODEL=$("$JAVA" --enable-native-access=ALL-UNNAMED -cp "$JAR" dev.athanor.bench.BenchLlama "$MODEL_DIR" "$CORPUS" \
  "$TRAIN_BYTES" "$TRAIN_STEPS" "$THREADS")

CP=$JAR
SUFFIX=
if [ "$JLAMA_OPS" = native ]; then
  LIB=$MODEL_DIR/lib
  NATIVE_JAR=$LIB/jlama-native-$JLAMA_VERSION-linux-x86_64.jar
  if [ ! -f "$NATIVE_JAR" ]; then
    mvn -B -q dependency:copy -Dartifact=com.github.tjake:jlama-native:$JLAMA_VERSION:jar:linux-x86_64 -DoutputDirectory="$LIB"
  fi
  CP=$CP:$NATIVE_JAR
  SUFFIX=-native
fi

CPU=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //; s/(R)//g; s/(TM)//g' | awk '{print tolower($1"-"$2"-"$3)}' | tr -c 'a-z0-9-\n' '-' | sed 's/-*$//')
OUT=bench/results/$(date -u +%Y-%m-%d)-cpu-jlama-$CPU-$(date -u +%H%M)$SUFFIX
COMMAND="THREADS=$THREADS PROMPT_LEN=$PROMPT_LEN NEW_TOKENS=$NEW_TOKENS WARMUP=$WARMUP ROUNDS=$ROUNDS JLAMA_OPS=$JLAMA_OPS bash bench/run-jlama.sh"
echo "== run-jlama: model $MODEL, $THREADS threads, Jlama ops $JLAMA_OPS, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
"$JAVA" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -cp "$CP" dev.athanor.bench.JlamaBench \
  --model "$MODEL" --threads "$THREADS" --prompt-len "$PROMPT_LEN" --new-tokens "$NEW_TOKENS" --warmup "$WARMUP" \
  --rounds "$ROUNDS" --jlama-ops "$JLAMA_OPS" --out "$OUT" --command "$COMMAND"
echo "wrote $OUT.md and $OUT.json" >&2
