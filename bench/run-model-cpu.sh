#!/usr/bin/env bash
# CPU whole-model throughput, Athanor against PyTorch in the same run, same machine, same threads, and
# optionally Athanor against an older Athanor build ("before", BASELINE_JAR) in the same run:
#   training: GPT-2 family, 4 layers, width 256, 4 heads, GPT-2 vocab (50257), B=8, T=256 (the issue's bar),
#             full steps (forward, backward, global-norm clip, AdamW), median step time after warm-up steps;
#   decode:   the same model, greedy with a KV cache, B=1 and B=8, prompt 16, 64 new tokens: WARMUP untimed full
#             rounds, then ROUNDS timed rounds; the prefill and every decode step timed on their own; decode
#             tokens/s = batch / median step seconds (DecodeBench.java; torch_train.py measures the same way).
# Every case runs REPS times, the builds alternating (after, before, peer; then again), so drifting load hits
# all of them alike; a build's figure is the median of its REPS run medians. The load average is sampled before
# every run and recorded with it.
#
# Before/after: train runs `bench --mode train` of each jar (that code is the same in both). Decode runs the
# same measuring code in both: java/src/main/java/dev/athanor/cli/DecodeBench.java of this tree, compiled
# against each jar with javac (it uses only public API the builds share), so an old jar's own (older) decode
# timing is never used.
#
# The peer is PyTorch (bench/model/torch_train.py), run with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset
# (they can force slow OpenBLAS kernels) and OMP_WAIT_POLICY=PASSIVE (PEER_OMP_WAIT_POLICY): torch's OpenMP
# workers otherwise spin against OpenBLAS's own pthreads on the same cores, which made every small op take
# milliseconds (decode B=8: 124 ms per step with the default policy, 14 ms with PASSIVE; training the same
# within the noise, both measured on this machine 2026-12-03 at load 2 to 5); it records which BLAS library it loaded and the GFLOP/s of a 2048^3
# FP32 matmul, which the report prints, with a loud warning under 50 GFLOP/s (no optimized BLAS: then the
# training ratio measures that PyTorch build, not our kernels). Debian: apt-get install python3-torch
# libopenblas0-pthread (python3-torch calls whatever libblas.so.3 is installed).
#
# Writes bench/results/<date>-cpu-model-<cpu>-<HHMM>.md and .jsonl.
# Usage: bash bench/run-model-cpu.sh [steps]      (steps: timed training steps per run, default 5)
# Environment:
#   JAR           the Athanor jar to measure ("after"; default: java/target/athanor-0.1.0.jar, built by
#                 ./athanor build unless JAR is given)
#   BASELINE_JAR  an older Athanor jar to measure as "before" (its lib/ folder next to it); or
#   BASELINE_REF  a git ref (e.g. main): checked out detached at BASELINE_DIR (default /tmp/athanor-baseline)
#                 with `git worktree add` if not there yet, built CPU-only there, used as BASELINE_JAR
#   PEER_OMP_WAIT_POLICY (PASSIVE), REPS (3), WARMUP_STEPS (train, 2), ROUNDS (decode, 5), WARMUP_ROUNDS (decode, 2), THREADS (nproc),
#   PYTHON (a python with torch; default /usr/bin/python3, then python3), JAVA_HOME (JDK 25; javac needed
#   for the before/after decode harness)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
STEPS=${1:-5}
REPS=${REPS:-3}
WARM=${WARMUP_STEPS:-2}
ROUNDS=${ROUNDS:-5}
WARM_ROUNDS=${WARMUP_ROUNDS:-2}
THREADS=${THREADS:-$(nproc)}
PY=${PYTHON:-}
for c in /usr/bin/python3 python3; do
  [ -z "$PY" ] && "$c" -c 'import torch' 2>/dev/null && PY=$c
done
[ -n "$PY" ] || { echo "run-model-cpu.sh: no Python with PyTorch found (set PYTHON=...)" >&2; exit 2; }
if [ -z "${JAVA_HOME:-}" ]; then
  for j in /usr/lib/jvm/temurin-25-jdk-amd64 /usr/lib/jvm/*25*; do [ -x "$j/bin/javac" ] && JAVA_HOME=$j && break; done
fi
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java
JAVAC=${JAVA_HOME:+$JAVA_HOME/bin/}javac
MVN_CPU=(mvn -B -q -Dathanor.cuda=OFF -Dathanor.build.jobs="$THREADS" -pl java -am -DskipTests package)

if [ -z "${JAR:-}" ]; then
  ./athanor build >/dev/null
  JAR=$ROOT/java/target/athanor-0.1.0.jar
fi
JAR=$(readlink -f "$JAR")
if [ -z "${BASELINE_JAR:-}" ] && [ -n "${BASELINE_REF:-}" ]; then
  BDIR=${BASELINE_DIR:-/tmp/athanor-baseline}
  [ -d "$BDIR" ] || git worktree add --detach "$BDIR" "$BASELINE_REF"
  [ "$(git -C "$BDIR" rev-parse HEAD)" = "$(git rev-parse "$BASELINE_REF^{commit}")" ] ||
    { echo "run-model-cpu.sh: $BDIR is not at $BASELINE_REF; remove it (git worktree remove $BDIR) or set BASELINE_DIR" >&2; exit 2; }
  (cd "$BDIR" && JAVA_HOME=$JAVA_HOME PATH=$JAVA_HOME/bin:$PATH MAVEN_OPTS="${MAVEN_OPTS:-} --sun-misc-unsafe-memory-access=allow" \
    "${MVN_CPU[@]}")
  BASELINE_JAR=$BDIR/java/target/athanor-0.1.0.jar
fi
[ -n "${BASELINE_JAR:-}" ] && BASELINE_JAR=$(readlink -f "$BASELINE_JAR")

# what each jar was built from: the git commit of the tree holding it (+ "dirty" when it had local changes)
describe_jar() {
  local d
  d=$(cd "$(dirname "$1")" && git rev-parse --show-toplevel 2>/dev/null) || { echo "unknown"; return; }
  echo "$(git -C "$d" log -1 --format='%h %s' | cut -c1-90)$(git -C "$d" diff --quiet HEAD -- java native CMakeLists.txt 2>/dev/null || echo ' (+ uncommitted changes)')"
}

CPU=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //; s/(R)//g; s/(TM)//g' | awk '{print tolower($1"-"$2"-"$3)}' | tr -c 'a-z0-9-\n' '-' | sed 's/-*$//')
STAMP=$(date -u +%Y-%m-%d)-cpu-model-$CPU-$(date -u +%H%M)
OUT=bench/results/$STAMP
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# the decode harness: DecodeBench.java compiled against each jar, with this build's picocli (its command line)
HARNESS_SRC=java/src/main/java/dev/athanor/cli/DecodeBench.java
PICOCLI=$(ls "$(dirname "$JAR")"/lib/picocli-*.jar 2>/dev/null | head -n1)
[ -n "$PICOCLI" ] || { echo "run-model-cpu.sh: no picocli jar in $(dirname "$JAR")/lib (build with ./athanor build)" >&2; exit 2; }
declare -A HARNESS
compile_harness() {  # label jar
  mkdir -p "$TMP/harness-$1"
  "$JAVAC" -nowarn -d "$TMP/harness-$1" -cp "$2:$PICOCLI" "$HARNESS_SRC" ||
    { echo "run-model-cpu.sh: $HARNESS_SRC does not compile against $2 (the shared public API changed?)" >&2; exit 2; }
  HARNESS[$1]="$TMP/harness-$1:$2:$PICOCLI"
}
compile_harness after "$JAR"
[ -n "${BASELINE_JAR:-}" ] && compile_harness before "$BASELINE_JAR"

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
: > "$OUT.jsonl"
MODEL="--layers 4 --hidden 256 --heads 4 --vocab 50257"

tag() {  # build case rep: reads one JSON object on stdin, appends it with build, case, rep and the load to the .jsonl
  "$PY" -c 'import json,sys
r = json.loads(sys.stdin.read().strip().splitlines()[-1])
r.update(build=sys.argv[1], case=sys.argv[2], rep=int(sys.argv[3]), load1_at_start=float(sys.argv[4]))
print(json.dumps(r))' "$1" "$2" "$3" "$LOAD1" | tee -a "$OUT.jsonl" | cut -c1-160
}
athanor_train() {  # build jar case rep
  LOAD1=$(cut -d' ' -f1 /proc/loadavg)
  "$JAVA" --enable-native-access=ALL-UNNAMED -jar "$2" bench --preset gpt2-tiny --device cpu --threads "$THREADS" \
    --mode train --batch 8 --seq 256 --steps "$STEPS" --warmup-steps "$WARM" | tag "$1" "$3" "$4"
}
athanor_decode() {  # build case rep batch
  LOAD1=$(cut -d' ' -f1 /proc/loadavg)
  "$JAVA" --enable-native-access=ALL-UNNAMED -cp "${HARNESS[$1]}" dev.athanor.cli.DecodeBench --preset gpt2-tiny \
    --device cpu --threads "$THREADS" --batch "$4" --prompt-len 16 --decode-tokens 64 --steps "$ROUNDS" \
    --warmup-steps "$WARM_ROUNDS" | tag "$1" "$2" "$3"
}
peer() {  # case rep torch-args
  LOAD1=$(cut -d' ' -f1 /proc/loadavg)
  # shellcheck disable=SC2086
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_WAIT_POLICY="${PEER_OMP_WAIT_POLICY:-PASSIVE}" \
    "$PY" bench/model/torch_train.py --family gpt2 $MODEL --seq-len-max 256 \
    --device cpu --dtype f32 --threads "$THREADS" $3 --json "$TMP/peer.json" > /dev/null
  "$PY" -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))))' "$TMP/peer.json" | tag peer "$1" "$2"
}

for rep in $(seq 1 "$REPS"); do
  echo "== rep $rep/$REPS: train B=8 T=256 (load $(cut -d' ' -f1-3 /proc/loadavg))"
  athanor_train after "$JAR" train "$rep"
  [ -n "${BASELINE_JAR:-}" ] && athanor_train before "$BASELINE_JAR" train "$rep"
  peer train "$rep" "--mode train --batch 8 --seq 256 --steps $STEPS --warmup-steps $WARM"
  for b in 1 8; do
    echo "== rep $rep/$REPS: decode B=$b (load $(cut -d' ' -f1-3 /proc/loadavg))"
    athanor_decode after "decode-b$b" "$rep" "$b"
    [ -n "${BASELINE_JAR:-}" ] && athanor_decode before "decode-b$b" "$rep" "$b"
    peer "decode-b$b" "$rep" "--mode decode --batch $b --prompt-len 16 --decode-tokens 64 --steps $ROUNDS --warmup-steps $WARM_ROUNDS"
  done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

"$PY" - "$OUT.jsonl" "$OUT.md" "$LOAD_BEFORE" "$LOAD_AFTER" "$THREADS" "$JAR" "$(describe_jar "$JAR")" \
  "${BASELINE_JAR:-}" "$( [ -n "${BASELINE_JAR:-}" ] && describe_jar "$BASELINE_JAR")" "$REPS" "$STEPS" "$WARM" \
  "$ROUNDS" "$WARM_ROUNDS" <<'PYEOF'
import json, statistics, sys
(jsonl, md, load_before, load_after, threads, jar, jar_desc, base_jar, base_desc, reps, steps, warm, rounds,
 warm_rounds) = sys.argv[1:15]
rows = [json.loads(l) for l in open(jsonl) if l.strip()]
med = statistics.median
def runs(build, case):
    return [r for r in rows if r["build"] == build and r["case"] == case]
def tps(r):  # training: B*T / median step; decode: batch / median decode step (tokens_per_s on both sides)
    return r["tokens_per_s"]
peer = [r for r in rows if r["build"] == "peer"]
p0 = peer[0]
mm = [r["matmul_2048"]["gflops"] for r in peer if r.get("matmul_2048")]
loads = [r["load1_at_start"] for r in rows]
cpu = open("/proc/cpuinfo").read().split("model name")[1].split(":")[1].split("\n")[0].strip()
out = ["# CPU whole-model throughput: Athanor vs PyTorch%s (same run)" % (" and before vs after" if base_jar else ""), "",
       "- machine: %s, %s threads for every run; load average before %s, after %s; 1-min load at the start of the "
       "runs: %.2f to %.2f (median %.2f)" % (cpu, threads, load_before, load_after, min(loads), max(loads), med(loads)),
       "- model: GPT-2 family, 4 layers, width 256, 4 heads, vocab 50257, context 256 (16.1M parameters), FP32",
       "- Athanor (\"after\"): `%s`, built from %s" % (jar, jar_desc)]
if base_jar:
    out.append("- Athanor \"before\": `%s`, built from %s" % (base_jar, base_desc))
blas = p0.get("blas_runtime") or ["(not recorded)"]
out += ["- peer: bench/model/torch_train.py, PyTorch %s (%s attention); build info: BLAS_INFO %s, CPU capability %s; "
        "BLAS library loaded at run time: %s; OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset for the peer, "
        "OMP_WAIT_POLICY=%s" % (
            p0.get("torch"), p0.get("attention"), p0.get("torch_build", {}).get("BLAS_INFO"),
            p0.get("torch_build", {}).get("cpu_capability"), ", ".join("`%s`" % b for b in blas),
            p0.get("thread_env", {}).get("OMP_WAIT_POLICY"))]
if mm:
    out.append("- the peer's 2048^3 FP32 matmul (torch.matmul, %s threads, median of 5 after 2 warm-ups, once per peer "
               "run): %.1f GFLOP/s (median of %d runs; range %.1f to %.1f)" % (threads, med(mm), len(mm), min(mm), max(mm)))
    if med(mm) < 50:
        out += ["", "**WARNING: the peer's BLAS reaches only %.1f GFLOP/s on a 2048^3 matmul (below 50): this PyTorch has no "
                "optimized BLAS (install libopenblas0-pthread; unset OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE). Its training "
                "ratio measures that build, not Athanor's kernels.**" % med(mm), ""]
out += ["- method: every case %s times, builds alternating within each repetition (after%s, PyTorch); a build's "
        "figure is the median over the repetitions of each run's median" % (reps, ", before" if base_jar else ""),
        "- training: forward + backward + global-norm clip + AdamW per step; %s warm-up steps, then %s timed; median "
        "step time; tokens/s = B*T / median step" % (warm, steps),
        "- decode: greedy, KV cache, prompt 16, 64 new tokens (1 from the prefill + 63 decode steps); %s untimed full "
        "rounds, then %s timed rounds; prefill and every decode step timed on their own; decode tokens/s = batch / "
        "median step (over all %d timed steps); Athanor's side is DecodeBench.java (what `athanor bench --mode decode` "
        "runs)%s" % (warm_rounds, rounds, int(rounds) * 63,
                     ", compiled against each jar, so before and after are timed by the same code" if base_jar else ""),
        ""]

cases = [("train", "train B=8 T=256"), ("decode-b1", "decode B=1 (per token)"), ("decode-b8", "decode B=8 (per token)")]
out += ["## Athanor vs PyTorch", "", "| case | Athanor tok/s | PyTorch tok/s | ratio | Athanor per repetition | PyTorch per repetition |",
        "| --- | --- | --- | --- | --- | --- |"]
for case, name in cases:
    a, p = [tps(r) for r in runs("after", case)], [tps(r) for r in runs("peer", case)]
    if a and p:
        out.append("| %s | %.0f | %.0f | %.2f | %s | %s |" % (name, med(a), med(p), med(a) / med(p),
                   ", ".join("%.0f" % x for x in a), ", ".join("%.0f" % x for x in p)))
out += ["", "| decode prefill (16 tokens), median ms | Athanor | PyTorch |", "| --- | --- | --- |"]
for case, name in cases[1:]:
    a, p = [r["prefill_ms_median"] for r in runs("after", case)], [r["prefill_ms_median"] for r in runs("peer", case)]
    if a and p:
        out.append("| %s | %.2f | %.2f |" % (name.split(" (")[0], med(a), med(p)))
if base_jar:
    out += ["", "## Before vs after (Athanor)", "",
            "| case | before tok/s | after tok/s | after / before | paired ratios per repetition | before, per repetition | after, per repetition |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for case, name in cases:
        a, b = [tps(r) for r in runs("after", case)], [tps(r) for r in runs("before", case)]
        if a and b:
            out.append("| %s | %.0f | %.0f | **%.3f** | %s | %s | %s |" % (
                name, med(b), med(a), med(a) / med(b), ", ".join("%.3f" % (x / y) for x, y in zip(a, b)),
                ", ".join("%.0f" % x for x in b), ", ".join("%.0f" % x for x in a)))
    for case, name in cases[1:]:
        ca = {r["tokens_checksum"] for r in runs("after", case)}
        cb = {r["tokens_checksum"] for r in runs("before", case)}
        out.append("")
        out.append("- %s: the greedy tokens of before and after are %s (checksum over every token of a round)." % (
            name.split(" (")[0], "identical" if ca == cb and len(ca) == 1 else "DIFFERENT (%s vs %s)" % (cb, ca)))
out += ["", "Raw results (one JSON object per run, with the load at its start and every step/round time): `%s`." %
        jsonl.split("/")[-1]]
open(md, "w").write("\n".join(out) + "\n")
print("\n".join(out))
PYEOF
