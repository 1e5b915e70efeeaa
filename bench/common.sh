# Sourced by the bench/run-*.sh scripts: sets ROOT (the repository), JDK (a JDK 25; JAVA_HOME too), RESULTS (where
# result files go) and JAR (the bench jar), each overridable from the environment where the script says so.
ROOT=$(cd "$(dirname "${BASH_SOURCE[1]}")/.." && pwd)
JDK=${JDK:-/usr/lib/jvm/temurin-25-jdk-amd64}
export JAVA_HOME=$JDK
RESULTS=${RESULTS:-$ROOT/bench/results}
JAR=$ROOT/bench/target/benchmarks.jar
