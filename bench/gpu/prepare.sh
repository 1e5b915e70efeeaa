#!/usr/bin/env bash
# Prepares the GPU check's payload. Run it HERE, on the build machine (JDK 25 + Maven + network);
# the GPU machine has nvcc, CMake and Python with PyTorch but no JDK, no Maven and no network.
#
#   bash bench/gpu/prepare.sh            # -> bench/gpu/payload/athanor-gpu-payload.tar.gz (git-ignored)
#
# The tarball holds everything Java that bench/gpu/run.sh needs on the GPU machine:
#   runtime/                 a jlink'ed Java 25 runtime (the modules the library, the tests and the
#                            JUnit launcher use, found with jdeps) with include/jni.h for the native build
#   athanor.jar              the library jar (its embedded libathanor.so is CPU-only; the GPU machine
#                            builds its own with CUDA and points -Dathanor.library.path at it)
#   test-classes/            the Java test suite, compiled, with its resources
#   lib/                     the other dependencies (compile and test scope) but JUnit's own and DJL's tokenizers
#   junit-platform-console-standalone.jar   the JUnit launcher, same version as junit-jupiter
#   jvm-args.txt             the JVM flags surefire uses (property athanor.jvm.args)
#   MANIFEST.txt             what was packed, from which commit, when
#   mpi/                     only with ATH_GPU_MPI=1: this machine's Open MPI (mpirun, libmpi and what they need, about
#                            3.6 MB packed; bench/gpu/scale/mpi-bundle.sh) for a GPU machine without mpirun, so that
#                            bench/gpu/scale/check.sh can run `mpirun -np 2 ... train --dp 2` there (the jar's
#                            libathanor_mpi.so is linked against this Open MPI's libmpi.so.40)
# It must stay under 48 MB (the device tool carries at most 64 MiB in all, the working tree of about
# 8 MB included): the script fails loudly
# otherwise.
#
# The Maven build runs in a copy of the source under $STAGE (default /tmp/athanor-gpu-prepare), so
# this script never writes into the working tree's target/ or build/ folders (other builds may be
# using them); only bench/gpu/payload/ is written. Environment: JDK (default
# /usr/lib/jvm/temurin-25-jdk-amd64), STAGE, MVN_OPTS_EXTRA (extra Maven flags, e.g. -o), ATH_GPU_MPI (1: add mpi/).
set -euo pipefail
shopt -s nullglob

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
JDK=${JDK:-/usr/lib/jvm/temurin-25-jdk-amd64}
STAGE=${STAGE:-/tmp/athanor-gpu-prepare}
PAYLOAD_DIR=$ROOT/bench/gpu/payload
TARBALL=$PAYLOAD_DIR/athanor-gpu-payload.tar.gz
MAX_BYTES=$((48 * 1000 * 1000))
export JAVA_HOME=$JDK
export PATH=$JDK/bin:$PATH

die() { echo "prepare.sh: ERROR: $*" >&2; exit 1; }
say() { echo "prepare.sh: $*" >&2; }

[ -x "$JDK/bin/jlink" ] || die "no JDK with jlink at $JDK (set JDK=...)"
"$JDK/bin/java" -version 2>&1 | grep -q 'version "25' || die "$JDK is not a Java 25 JDK"
command -v mvn >/dev/null || die "mvn not found"

JUNIT_VERSION=$(sed -n 's:.*<junit.version>\(.*\)</junit.version>.*:\1:p' "$ROOT/pom.xml" | head -1)
[ -n "$JUNIT_VERSION" ] || die "cannot read junit.version from $ROOT/pom.xml"

rm -rf "$STAGE"
mkdir -p "$STAGE/src" "$STAGE/payload/lib"
P=$STAGE/payload

# ---- 1. a clean copy of the sources (no build outputs, no payload, no git metadata)
say "copying sources to $STAGE/src"
(cd "$ROOT" && tar cf - --exclude=./.git --exclude='./build' --exclude='*/target' --exclude='./target' \
   --exclude=./bench/gpu/payload --exclude=./.athanor --exclude=./.gl --exclude=./.whl .) | (cd "$STAGE/src" && tar xf -)

# ---- 2. library jar and compiled tests. CUDA OFF: the GPU machine compiles the CUDA kernels itself.
say "building the library jar and the test classes (mvn package -DskipTests, CPU-only native build)"
MVN=(mvn -B -q ${MVN_OPTS_EXTRA:-} -f "$STAGE/src/pom.xml" -pl java -am)
"${MVN[@]}" -DskipTests -Dathanor.cuda=OFF package > "$STAGE/mvn-package.log" 2>&1 \
  || { tail -60 "$STAGE/mvn-package.log" >&2; die "Maven build failed (log: $STAGE/mvn-package.log)"; }
JAR=$(ls "$STAGE"/src/java/target/athanor-*.jar 2>/dev/null | grep -v -e sources -e javadoc | head -1)
[ -f "$JAR" ] || die "no library jar in $STAGE/src/java/target"
cp "$JAR" "$P/athanor.jar"
if [ -d "$STAGE/src/java/target/test-classes" ]; then
  cp -r "$STAGE/src/java/target/test-classes" "$P/test-classes"
else
  say "WARNING: no test classes were compiled (java/src/test is empty?)"
  mkdir -p "$P/test-classes"
fi

# Test-scope dependencies other than JUnit's own (the standalone launcher bundles those). Hugging Face's
# tokenizers (DJL's jar: 18 MB, natives for four platforms) are left out too: they run on the CPU and are tested
# there; without them the tokenizer.json tests skip with the reason, and nothing else needs them.
"${MVN[@]}" dependency:copy-dependencies -DincludeScope=test -DoutputDirectory="$P/lib" \
  -DexcludeGroupIds=org.junit.jupiter,org.junit.platform,org.opentest4j,org.apiguardian,org.jspecify,ai.djl,ai.djl.huggingface \
  > "$STAGE/mvn-deps.log" 2>&1 || { tail -30 "$STAGE/mvn-deps.log" >&2; die "copying test dependencies failed"; }
# The library module's own jar is not a test dependency; drop anything that slipped in twice.
rm -f "$P"/lib/athanor-*.jar

# JVM flags surefire passes (kept in one property of the parent pom).
JVM_ARGS=$(sed -n 's:.*<athanor.jvm.args>\(.*\)</athanor.jvm.args>.*:\1:p' "$ROOT/pom.xml" | head -1)
echo "${JVM_ARGS:---enable-native-access=ALL-UNNAMED}" > "$P/jvm-args.txt"

# ---- 3. the JUnit launcher
say "fetching junit-platform-console-standalone $JUNIT_VERSION"
mvn -B -q ${MVN_OPTS_EXTRA:-} dependency:copy \
  -Dartifact=org.junit.platform:junit-platform-console-standalone:$JUNIT_VERSION \
  -DoutputDirectory="$P" > "$STAGE/mvn-junit.log" 2>&1 \
  || { tail -30 "$STAGE/mvn-junit.log" >&2; die "cannot fetch the JUnit console launcher"; }
mv "$P/junit-platform-console-standalone-$JUNIT_VERSION.jar" "$P/junit-platform-console-standalone.jar"

# ---- 4. the Java runtime: jdeps finds the modules, jlink links them, headers kept for jni.h.
CP="$P/athanor.jar:$P/junit-platform-console-standalone.jar"
for j in "$P"/lib/*.jar; do [ -f "$j" ] && CP="$CP:$j"; done
# --module-path: a dependency that is a named module (progressbar) has its own requirements (org.jline.terminal)
# resolved there. jdeps reports errors on stdout, so anything but a list of module names is an error.
DEPS=$("$JDK/bin/jdeps" --print-module-deps --ignore-missing-deps --multi-release 25 -q --module-path "$P/lib" \
        --class-path "$CP" "$P/athanor.jar" "$P/junit-platform-console-standalone.jar" "$P/test-classes" "$P"/lib/*.jar \
        2>"$STAGE/jdeps.err" || true)
if ! [[ "$DEPS" =~ ^[A-Za-z0-9_.]+(,[A-Za-z0-9_.]+)*$ ]]; then
  { echo "$DEPS"; cat "$STAGE/jdeps.err"; } >&2
  say "WARNING: jdeps gave no module list; using the base module set"
  DEPS=
fi
MODULES=$(echo "java.base,java.logging,jdk.unsupported,java.management,jdk.management,${DEPS}" | tr ',' '\n' \
          | grep -v '^$' | grep -v -x 'java.desktop' | sort -u | paste -sd, -)
# java.desktop (AWT, only for the training charts) is left out: it alone would push the payload past
# 40 MB. Without it the chart tests skip, and `train` writes its report without charts (and says so).
say "jlink modules: $MODULES"
# --strip-debug and --no-man-pages keep it small; NOT --no-header-files: the GPU machine's native
# build needs include/jni.h from this runtime.
"$JDK/bin/jlink" --add-modules "$MODULES" --strip-debug --no-man-pages --compress=zip-6 \
  --output "$P/runtime" > "$STAGE/jlink.log" 2>&1 || { cat "$STAGE/jlink.log" >&2; die "jlink failed"; }
if [ ! -f "$P/runtime/include/jni.h" ] || [ ! -f "$P/runtime/include/linux/jni_md.h" ]; then
  say "jlink left out the JNI headers; copying $JDK/include"
  rm -rf "$P/runtime/include"
  cp -r "$JDK/include" "$P/runtime/include"
fi
"$P/runtime/bin/java" -version > /dev/null 2>&1 || die "the linked runtime does not start"

# ---- 4b. optionally Open MPI (ATH_GPU_MPI=1), relocatable: bench/gpu/scale/check.sh sources mpi/env.sh
if [ "${ATH_GPU_MPI:-0}" = 1 ]; then
  bash "$ROOT/bench/gpu/scale/mpi-bundle.sh" "$P/mpi" >&2 || die "could not bundle Open MPI (ATH_GPU_MPI=1)"
fi

# ---- 5. manifest, tarball, size check
{
  echo "athanor GPU-check payload"
  echo "created: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname) ($(uname -m))"
  echo "source: $(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)$( [ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null | head -1)" ] && echo ' + uncommitted changes')"
  echo "jdk: $("$JDK/bin/java" -version 2>&1 | head -1)"
  echo "modules: $MODULES"
  echo "junit: $JUNIT_VERSION"
  echo "jvm-args: $(cat "$P/jvm-args.txt")"
  echo "test classes: $(find "$P/test-classes" -name '*Test*.class' ! -name '*$*' | wc -l) top-level test classes"
  echo "lib: $(ls "$P/lib" | tr '\n' ' ')"
  echo "mpi: $([ -d "$P/mpi" ] && "$P/mpi/bin/orterun" --version 2>/dev/null | head -1 || echo "not bundled (ATH_GPU_MPI=1 adds it)")"
} > "$P/MANIFEST.txt"
mkdir -p "$PAYLOAD_DIR"
rm -f "$PAYLOAD_DIR"/*.tar.gz
tar czf "$TARBALL" -C "$STAGE" payload
SIZE=$(stat -c %s "$TARBALL")
if [ "$SIZE" -gt "$MAX_BYTES" ]; then
  echo "prepare.sh: ERROR: $TARBALL is $SIZE bytes, over the 48 MB limit (contents below)" >&2
  du -sh "$P"/* >&2
  rm -f "$TARBALL"
  exit 1
fi
cat "$P/MANIFEST.txt" >&2
say "OK: $TARBALL ($((SIZE / 1000000)) MB of at most 48)"
say "run on the GPU machine from the repository root:  bash bench/gpu/run.sh   (carry bench/gpu/payload)"
