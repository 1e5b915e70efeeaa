#!/usr/bin/env bash
# The parallel planner on paper (bench/PlannerOnPaper.java): GPT-2 1.5B and Llama 7B on 8 and 64 A100-like ranks, the
# ZeRO paper's 7.5B model per ZeRO stage, Megatron-LM's 1.7B on 32 ranks. Prints Markdown; runs nothing on a GPU.
# Needs a build (./athanor build, or mvn install): it runs against java/target/classes and java/target/lib.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
JAVA_HOME="${JAVA_HOME:-$(./athanor java-home)}"
exec "$JAVA_HOME/bin/java" --enable-native-access=ALL-UNNAMED -cp "java/target/classes:java/target/lib/*" \
  bench/PlannerOnPaper.java "$@"
