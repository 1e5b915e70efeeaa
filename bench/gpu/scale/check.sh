#!/usr/bin/env bash
# What issues 9 and 10 still need from a GPU, in one device call of at most about 5 minutes (ATH_SCALE_BUDGET_S, default
# 280 s), after the main GPU check or on its own. Run ON the GPU machine from the repository root, after
# `ATH_GPU_MPI=1 bash bench/gpu/prepare.sh` made the payload here (mpi/ in it: Open MPI for a machine without mpirun):
#   device tool: run(command="bash bench/gpu/scale/check.sh", carry=["bench/gpu/payload"], timeout_s=330)
# Steps, each time-boxed (the limit is the smaller of its cap and what is left of the budget), none stopping the others:
#   env        GPU, host memory, cores, free disk and its direct-I/O write/read speed (dd, 1 GiB), -> env.json
#   unpack     the payload (Java runtime, jar, test classes, JUnit launcher, mpi/)
#   build      libathanor.so with CUDA: reused from the main check's build when it is there
#              ($ATH_GPU_WORK/build, default /tmp/athanor-gpu; ATH_SCALE_REUSE=0 rebuilds), else CMake + build of the
#              library alone (about a minute on the H200). No GPU: the jar's own CPU library, and the GPU steps skip.
#   mpi        which MPI exists: mpirun/mpiexec on PATH, mpi4py's configuration and the libmpi it loads, MPI launchers
#              and mpi.h in the Python installation and the usual prefixes, the payload's Open MPI (mpi/); picks one
#   nccl       issue 10: dev.athanor.dist.NcclCommunicatorTest and StreamOverlappedReductionTest through JNI (one
#              rank; NCCL from PyTorch's wheel; the latter: training with the bucketed all-reduce on a communication
#              stream against the reduction after the backward, bit for bit)
#   dp         issue 10: `mpirun -np 2 ... train --device cuda --dp 2 --collectives mpi` (two processes sharing the one
#              GPU: staged through host memory) with --overlap on (1 MiB buckets on a communication stream) and again
#              with --overlap off (the losses and norms must be the same bits), one process with --accum 2 on the same
#              data (its losses beside them), and --collectives nccl on the shared GPU (NCCL is expected to refuse two
#              ranks on one GPU: the outcome is recorded); then dp 2 with the optimizer on each rank's host (--offload
#              auto --mem-device 450m, 2 steps: never run on a GPU before this check; its losses beside dp 2's, not
#              bit-identical: CPU AdamW), and the same with --zero 1 (each rank its shard of the optimizer on its host,
#              the new BF16 weights all-gathered; its losses should equal the ZeRO 0 run's). No GPU: the same dp 2 runs on the CPU (a communication thread), to show the
#              MPI that was picked works.
#   gpt2       issue 9: GPT-2 124M training (B=16, T=1024) in memory, then with the optimizer on the host
#              (--offload auto --mem-device 4g --mem-host 8g, then 1500m: the moments on DISK), ratios to the first
#   scale      issue 9: two training steps with all three tiers (GPU, host, DISK): first GPT-2 XL (1.56B) under
#              budgets that force them (--mem-device 16g --mem-host 12g), then the largest Llama shape of a ladder whose
#              plan fits this machine (GPU free - 6 GiB, host MemAvailable - 12 GiB, free disk - 6 GiB) and puts part of
#              the state on DISK, with what is left of the budget; seconds per step, losses, the plan's bytes per tier
#              and per step, the process's measured disk bytes, peak RSS and peak GPU memory. The process is killed
#              once the log holds both steps (train saves the model at the end; that write is not measured).
#   report     scale-report.md (with a results-README row), scale.json; a short table printed last
# Output in $OUT (bench/results/scale-check-<UTC time>/ when unset): scale-report.md, scale.json, scale-logs.tar.gz.
# Knobs: ATH_SCALE_BUDGET_S (280), ATH_SCALE_WORK (/tmp/athanor-scale), ATH_SCALE_REUSE (1), ATH_SCALE_SKIP (step
#   names), ATH_SCALE_LADDER (Llama shapes "name:hidden:layers:mlp:heads ...", largest first), ATH_SCALE_MAX_S (cap of
#   the largest model's run, default 150), ATH_SCALE_MEM_DEVICE (GiB: the ladder's GPU budget instead of the free memory;
#   for trying the choice on paper).
set -u -o pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
cd "$ROOT" || exit 1
T_START=$(date +%s)
BUDGET=${ATH_SCALE_BUDGET_S:-280}
RESERVE=12   # seconds kept for the report
W=${ATH_SCALE_WORK:-/tmp/athanor-scale}
MAIN=${ATH_GPU_WORK:-/tmp/athanor-gpu}
R=${OUT:-$ROOT/bench/results/scale-check-$(date -u +%Y%m%d-%H%M%S)}
TARBALL=$ROOT/bench/gpu/payload/athanor-gpu-payload.tar.gz
SKIP=" ${ATH_SCALE_SKIP:-} "
LADDER=${ATH_SCALE_LADDER:-"llama-13b:5120:40:13824:40 llama-11b:5120:34:13824:40 llama-10b:5120:30:13824:40 llama-8b:4096:40:11008:32 llama-7b:4096:36:11008:32"}
P=$W/payload
RT=$P/runtime
B=$W/build
L=$W/logs
DATA=$ROOT/java/src/main/java/dev/athanor/cli   # about 97k GPT-2 tokens: enough for every run below
export ROOT W R P RT B L DATA MAIN TARBALL LADDER

case "$W" in /tmp/*) ;; *) echo "check.sh: ATH_SCALE_WORK must be under /tmp" >&2; exit 2;; esac
rm -rf "$W"
mkdir -p "$L" "$R" "$W/cfg"
: > "$W/steps.tsv"
: > "$W/notes.txt"

say() { echo "check: [$(($(date +%s) - T_START)) s] $*" >&2; }
note() { echo "$*" >> "$W/notes.txt"; say "NOTE: $*"; }
left() { echo $((BUDGET - ($(date +%s) - T_START))); }
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$W/steps.tsv"; say "[$1] exit $2 after $3 s${4:+ - $4}"; }

# step NAME CAP COMMAND...: COMMAND under `timeout` (the smaller of CAP and the budget left), output to logs/NAME.log
step() {
  local name=$1 cap=$2 lim rc t0 secs msg=""
  shift 2
  if [[ "$SKIP" == *" $name "* ]]; then record "$name" - 0 "skipped (ATH_SCALE_SKIP)"; return 125; fi
  lim=$(($(left) - RESERVE))
  [ "$lim" -gt "$cap" ] && lim=$cap
  if [ "$lim" -lt 8 ]; then record "$name" - 0 "skipped: the budget (${BUDGET} s) is spent"; return 124; fi
  say "[$name] start (limit ${lim} s)"
  t0=$(date +%s.%N)
  STEP_LIMIT=$lim timeout -k 5 "$lim" "$@" > "$L/$name.log" 2>&1
  rc=$?
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  { [ $rc -eq 124 ] || [ $rc -eq 137 ]; } && msg="TIMED OUT after ${lim} s"
  record "$name" "$rc" "$secs" "$msg"
  [ $rc -ne 0 ] && tail -n 5 "$L/$name.log" | cut -c1-240 | sed "s/^/  [$name] /" >&2
  return $rc
}

java_cmd() {  # the CLI (or, with -cp extras, any main class) on the payload's runtime and the chosen library
  local cp="$P/athanor.jar" j
  for j in "$P"/lib/*.jar; do [ -f "$j" ] && cp="$cp:$j"; done
  JAVA=("$RT/bin/java" --enable-native-access=ALL-UNNAMED -Djava.awt.headless=true -Dathanor.cache.dir="$W/cache")
  [ -n "${LIB:-}" ] && JAVA+=(-Dathanor.library.path="$LIB")
  ATH=("${JAVA[@]}" -cp "$cp" dev.athanor.cli.Main)
}

# ------------------------------------------------------------------ step bodies
do_env() {
  nvidia-smi || true
  free -g; nproc; df -hT "$W"   # the file system of the DISK tier's files (tmpfs would be RAM)
  # the disk's direct-I/O speed where the DISK tier's files go (1 GiB; the offload uses direct I/O)
  dd if=/dev/zero of="$W/dd.bin" bs=4M count=256 oflag=direct conv=fsync 2>&1 | tail -1 | sed 's/^/dd write: /'
  dd if="$W/dd.bin" of=/dev/null bs=4M iflag=direct 2>&1 | tail -1 | sed 's/^/dd read: /'
  rm -f "$W/dd.bin"
  python3 - <<'EOF'
import json, os, re, subprocess, datetime, shutil
def sh(c):
    try: return subprocess.run(c, shell=True, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception as e: return f"({e})"
smi = sh("nvidia-smi --query-gpu=name,driver_version,memory.total,memory.free --format=csv,noheader,nounits")
g = smi.splitlines()[0].split(", ") if smi else []
mem = {l.split(":")[0]: int(l.split()[1]) * 1024 for l in open("/proc/meminfo") if l.split()[0][:-1] in ("MemTotal", "MemAvailable")}
log = open(os.path.join(os.environ["L"], "env.log")).read() if os.path.exists(os.path.join(os.environ["L"], "env.log")) else ""
def bw(kind):
    m = re.search(r"dd %s: .*, ([\d.]+) ([GMk]?B)/s" % kind, log)
    return float(m.group(1)) * {"GB": 1e9, "MB": 1e6, "kB": 1e3, "B": 1}[m.group(2)] if m else None
env = dict(date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"), gpu_present=bool(g),
           gpu=g[0] if g else "none", driver=g[1] if len(g) > 1 else "?",
           gpu_mib_total=int(g[2]) if len(g) > 2 else 0, gpu_mib_free=int(g[3]) if len(g) > 3 else 0,
           host_total=mem.get("MemTotal", 0), host_available=mem.get("MemAvailable", 0), cores=os.cpu_count(),
           disk_free=shutil.disk_usage(os.environ["W"]).free, python=sh("python3 --version"))
json.dump(env, open(os.path.join(os.environ["W"], "env.json"), "w"), indent=1)
print(json.dumps(env))
EOF
}

do_unpack() {
  tar xzf "$TARBALL" -C "$W" || { echo "no payload at $TARBALL: run bench/gpu/prepare.sh here and carry bench/gpu/payload"; return 1; }
  cat "$P/MANIFEST.txt"
}

do_build() {
  set -o pipefail
  if [ "${ATH_SCALE_REUSE:-1}" = 1 ] && [ -f "$MAIN/build/lib/libathanor.so" ]; then
    echo "reusing the main check's build: $MAIN/build/lib/libathanor.so"
    echo "$MAIN/build/lib/libathanor.so" > "$W/lib.txt"
    [ -f "$MAIN/build/lib/libathanor_mpi.so" ] && echo "$MAIN/build/lib/libathanor_mpi.so" > "$W/mpi-shim.txt"
    return 0
  fi
  local gen=()
  command -v ninja > /dev/null && gen=(-G Ninja)
  cmake -S "$ROOT" -B "$B" "${gen[@]}" -DCMAKE_CUDA_FLAGS=--threads=0 -DCMAKE_BUILD_TYPE=Release -DATHANOR_CUDA=ON \
    -DATHANOR_JNI=ON -DATHANOR_JNI_INCLUDE="$RT/include" -DATHANOR_OUTPUT_DIR="$B/lib" -DATHANOR_TESTS=OFF | tail -5 || return 1
  cmake --build "$B" --parallel "$(nproc)" --target athanor | tail -3 || return 1
  # the MPI shim against this machine's MPI, when CMake found one (mpi.h): for a launcher that is not the payload's
  cmake --build "$B" --parallel "$(nproc)" --target athanor_mpi > /dev/null 2>&1 \
    && echo "$B/lib/libathanor_mpi.so" > "$W/mpi-shim.txt" && echo "built libathanor_mpi against this machine's MPI"
  [ -f "$B/lib/libathanor.so" ] && echo "$B/lib/libathanor.so" > "$W/lib.txt"
}

do_mpi() {
  local c
  echo "== launchers on PATH"
  for c in mpirun mpiexec orterun mpiexec.hydra; do command -v "$c" && { "$c" --version 2>&1 | head -2; }; done
  echo "== mpi4py"
  python3 - <<'EOF'
try:
    import mpi4py
    print("mpi4py", mpi4py.__version__, "at", mpi4py.__path__[0])
    print("config:", mpi4py.get_config())
    mpi4py.rc.initialize = False  # no MPI_Init: only where its MPI comes from
    from mpi4py import MPI
    print("library:", MPI.Get_library_version().strip().splitlines()[0])
    print("loaded:", sorted({l.split()[-1] for l in open("/proc/self/maps") if "libmpi" in l}))
except Exception as e:
    print("mpi4py: not usable:", repr(e))
EOF
  echo "== MPI launchers, headers and libraries under the Python installation and the usual prefixes"
  local dirs=(/usr/bin /usr/local /opt /usr/lib/x86_64-linux-gnu /usr/include)
  dirs+=($(python3 -c 'import site, sys; print(" ".join(site.getsitepackages() + [sys.prefix]))' 2>/dev/null))
  timeout 20 find "${dirs[@]}" -maxdepth 6 \( -name mpirun -o -name mpiexec -o -name 'mpiexec.*' -o -name mpi.h \
    -o -name 'libmpi.so*' -o -name 'libmpich.so*' \) 2>/dev/null | sort -u | head -30
  echo "== the payload's Open MPI"
  if [ -f "$P/mpi/env.sh" ]; then "$P/mpi/bin/orterun" --version 2>&1 | head -1; else echo "not in the payload (ATH_GPU_MPI=1 bash bench/gpu/prepare.sh adds it)"; fi
  # the choice: the payload's Open MPI first (the jar's libathanor_mpi.so is linked against its libmpi.so.40), else a
  # launcher here with a shim built against this machine's MPI, else a launcher here that is Open MPI 4 (libmpi.so.40)
  if [ -f "$P/mpi/env.sh" ]; then
    echo "choice: payload" ; echo "source $P/mpi/env.sh" > "$W/mpi-env.sh"
  elif command -v mpirun > /dev/null && [ -f "$W/mpi-shim.txt" ]; then
    echo "choice: system mpirun with a shim built here"
    { echo "export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none"
      echo "MPI_SHIM=-Dathanor.mpi.library.path=$(cat "$W/mpi-shim.txt")"; } > "$W/mpi-env.sh"
  elif command -v mpirun > /dev/null && mpirun --version 2>&1 | grep -qE "Open ?(MPI|RTE)\)? 4"; then
    echo "choice: system Open MPI 4 with the jar's shim"
    echo "export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none" > "$W/mpi-env.sh"
  else
    echo "choice: none: no MPI launcher usable with libathanor_mpi (no mpirun, or not Open MPI 4 and no mpi.h to build the shim)"
  fi
}

do_nccl() {
  python3 -c "import os, nvidia.nccl as m; print('NCCL of the Python installation:', os.path.join(list(m.__path__)[0], 'lib'))" \
    2>&1 | tail -1
  local cp="$P/athanor.jar:$P/test-classes" j
  for j in "$P"/lib/*.jar; do [ -f "$j" ] && cp="$cp:$j"; done
  java_cmd
  "${JAVA[@]}" -jar "$P/junit-platform-console-standalone.jar" execute --class-path "$cp" \
    --select-class dev.athanor.dist.NcclCommunicatorTest --select-class dev.athanor.dist.StreamOverlappedReductionTest \
    --details tree --disable-banner --disable-ansi-colors
}

# run_watched NAME STEPS COMMAND...: runs COMMAND in the background with a sampler (every second: the process's disk
# bytes read and written at the block layer, its peak RSS, the GPU's used memory); once $W/NAME.jsonl holds STEPS step
# lines the process is killed (train would save the model next) and counted as done.
run_watched() {
  local name=$1 steps=$2 pid gmax=0 g io rss n
  shift 2
  bash -c 'echo $$ > "$0"; exec "$@"' "$W/$name.pid" "$@" &
  local bg=$!
  sleep 0.3
  pid=$(cat "$W/$name.pid")
  while kill -0 "$bg" 2>/dev/null; do
    io=$(awk '/^read_bytes/ { r = $2 } /^write_bytes/ { w = $2 }
              END { if (r != "") printf "\"disk_read_bytes\":%s,\"disk_write_bytes\":%s", r, w }' "/proc/$pid/io" 2>/dev/null)
    rss=$(awk '/^VmHWM/ { print $2 * 1024 }' "/proc/$pid/status" 2>/dev/null)
    g=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1)
    [[ "$g" =~ ^[0-9]+$ ]] && [ "$g" -gt "$gmax" ] && gmax=$g
    [ -n "$io" ] && echo "{$io,\"peak_rss_bytes\":${rss:-0},\"peak_gpu_mib\":$gmax}" > "$W/$name.sample.json"
    n=$(grep -c '"step"' "$W/$name.jsonl" 2>/dev/null)
    if [ "${n:-0}" -ge "$steps" ]; then
      echo "check: $steps steps logged: stopping the process before it saves the model"
      kill -9 "$pid" 2>/dev/null; wait "$bg" 2>/dev/null; return 0
    fi
    sleep 1
  done
  wait "$bg"
}

# dp 2 over MPI: on CUDA two processes sharing the GPU (staged), overlap on and off, one process with --accum 2, NCCL on
# the shared GPU
do_dp() {
  [ -f "$W/mpi-env.sh" ] || { echo "no usable MPI launcher (see the mpi step): skipped"; return 3; }
  MPI_SHIM=""
  source "$W/mpi-env.sh"
  java_cmd
  [ -n "$MPI_SHIM" ] && ATH=("${ATH[@]:0:${#JAVA[@]}}" "$MPI_SHIM" "${ATH[@]:${#JAVA[@]}}")
  local dev=cuda steps=6 args=(--preset gpt2-tiny --data "$DATA" --device cuda --batch 8 --seq 256 --lr 3e-4)
  [ "$GPU" = 1 ] || { dev=cpu; steps=3; args=(--preset gpt2-tiny --data "$DATA" --device cpu --batch 2 --seq 64 --lr 3e-4); }
  echo "== which mpirun: $(command -v mpirun)"
  echo "== mpirun -np 2 train --device $dev --dp 2 --collectives mpi --overlap on --bucket-mb 1 (ATHANOR_CUDA_STREAM_OVERLAP=1)"
  # the stream variant of the overlap is behind ATHANOR_CUDA_STREAM_OVERLAP=1 until this check has run it
  ATHANOR_CUDA_STREAM_OVERLAP=1 timeout 75 mpirun -np 2 --oversubscribe --bind-to none "${ATH[@]}" train "${args[@]}" \
    --steps $steps --dp 2 --collectives mpi --overlap on --bucket-mb 1 --out "$W/dp-mpi" --log "$W/dp-mpi.jsonl"
  echo "dp-mpi exit $?"
  echo "== mpirun -np 2 train --device $dev --dp 2 --collectives mpi --overlap off"
  timeout 60 mpirun -np 2 --oversubscribe --bind-to none "${ATH[@]}" train "${args[@]}" --steps $steps --dp 2 --collectives mpi \
    --overlap off --out "$W/dp-off" --log "$W/dp-off.jsonl"
  echo "dp-off exit $?"
  if [ "$GPU" = 1 ]; then  # the plan of gpt2-tiny at B=8, T=256 under 450m: the optimizer on the host, nothing recomputed
    echo "== mpirun -np 2 train --device cuda --dp 2 --collectives mpi --offload auto --mem-device 450m (optimizer on the host)"
    timeout 45 mpirun -np 2 --oversubscribe --bind-to none "${ATH[@]}" train "${args[@]}" --steps 2 --dp 2 --collectives mpi \
      --offload auto --mem-device 450m --offload-dir "$W/offload-dp" --out "$W/dp-host" --log "$W/dp-host.jsonl"
    echo "dp-host exit $?"
    rm -rf "$W/offload-dp"
    echo "== mpirun -np 2 train --device cuda --dp 2 --zero 1 --collectives mpi --offload auto --mem-device 450m (ZeRO 1 on the host)"
    timeout 40 mpirun -np 2 --oversubscribe --bind-to none "${ATH[@]}" train "${args[@]}" --steps 2 --dp 2 --zero 1 \
      --collectives mpi --offload auto --mem-device 450m --offload-dir "$W/offload-dp1" --out "$W/dp-host1" \
      --log "$W/dp-host1.jsonl"
    echo "dp-host1 exit $?"
    rm -rf "$W/offload-dp1"
  fi
  echo "== one process, --accum 2 (the micro-batches dp 2 reads)"
  timeout 60 "${ATH[@]}" train "${args[@]}" --steps $steps --accum 2 --out "$W/accum2" --log "$W/accum2.jsonl"
  echo "accum2 exit $?"
  if [ "$GPU" = 1 ]; then
    echo "== mpirun -np 2 train --device cuda --dp 2 --collectives nccl (both ranks on the one GPU)"
    timeout 40 mpirun -np 2 --oversubscribe --bind-to none "${ATH[@]}" train "${args[@]}" --steps 2 --dp 2 \
      --collectives nccl --out "$W/dp-nccl" --log "$W/dp-nccl.jsonl"
    echo "dp-nccl exit $?"
  fi
  return 0
}

# GPT-2 124M with a device budget below its in-memory need (8.6 GiB; 4.8 with recomputation): the planner puts the
# optimizer on the host (masters and moments pinned, CPU AdamW); with less host memory (1500m) the first moment goes to
# DISK and the gradients through two pinned slots. Each tokens/s is compared with the in-memory run of this job.
do_gpt2() {
  set -o pipefail
  java_cmd
  local a=(bench --preset gpt2 --device cuda --mode train --batch 16 --seq 1024 --steps 10 --warmup-steps 2) hb rc=0
  echo "== in memory"
  timeout 60 "${ATH[@]}" "${a[@]}" | sed 's/^{/{"case":"in-memory",/' | tee -a "$W/gpt2.jsonl" || rc=1
  for hb in 8g 1500m; do
    echo "== --offload auto --mem-device 4g --mem-host $hb"
    timeout 75 "${ATH[@]}" "${a[@]}" --offload auto --mem-device 4g --mem-host "$hb" --offload-dir "$W/offload-gpt2" \
      | sed 's/^{/{"case":"offload host '"$hb"'",/' | tee -a "$W/gpt2.jsonl" || rc=1
    rm -rf "$W/offload-gpt2"
  done
  return $rc
}

# plan_case ARGS...: the plan of one scale case (the model's and the budgets' flags; plan --device cuda needs no GPU)
plan_case() {
  set -o pipefail
  java_cmd
  "${ATH[@]}" plan "$@" --device cuda --steps 2 2>&1 | grep -v -E '^  (embedding|block|head|final|lm_head|unit) '
}

do_scale_sure() {
  local m=(--preset gpt2-xl --batch 4 --seq 1024) b=(--mem-device 16g --mem-host 12g)
  echo "$(printf '%s ' "${m[@]}" "${b[@]}")" > "$W/scale-sure.args"
  plan_case "${m[@]}" "${b[@]}" | tee "$W/scale-sure.plan"
  [ "$GPU" = 1 ] || { echo "no GPU: planned only"; return 0; }
  java_cmd
  run_watched scale-sure 2 "${ATH[@]}" train "${m[@]}" "${b[@]}" --device cuda --offload auto --offload-dir "$W/offload-sure" \
    --data "$DATA" --steps 2 --lr 1e-4 --out "$W/scale-sure-model" --log "$W/scale-sure.jsonl"
  local rc=$?
  rm -rf "$W/offload-sure" "$W/scale-sure-model"
  return $rc
}

# Llama shapes (vocab 50304: the data is GPT-2 tokens), largest first; the first whose plan fits this machine's budgets
# with part of the state on DISK is trained for two steps with what is left of the budget.
do_scale_max() {
  python3 - "$LADDER" "$W/cfg" <<'EOF'
import json, sys
for spec in sys.argv[1].split():
    n, h, l, i, a = spec.split(":")
    json.dump(dict(model_type="llama", hidden_size=int(h), num_hidden_layers=int(l), intermediate_size=int(i),
                   num_attention_heads=int(a), num_key_value_heads=int(a), vocab_size=50304,
                   max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=False),
              open(f"{sys.argv[2]}/{n}.json", "w"))
EOF
  local env dev host disk spec name chosen=""
  dev=$(python3 -c 'import json; e=json.load(open("'"$W"'/env.json")); print(max(e["gpu_mib_free"] // 1024 - 6, 0) if e["gpu_present"] else 132)')
  dev=${ATH_SCALE_MEM_DEVICE:-$dev}
  host=$(python3 -c 'import json; e=json.load(open("'"$W"'/env.json")); print(max(e["host_available"] // 2**30 - 12, 1))')
  disk=$(python3 -c 'import json; e=json.load(open("'"$W"'/env.json")); print(max(e["disk_free"] // 2**30 - 6, 1))')
  local b=(--mem-device "${dev}g" --mem-host "${host}g" --mem-disk "${disk}g")
  echo "budgets: ${b[*]} (GPU free - 6 GiB, host MemAvailable - 12 GiB, free disk - 6 GiB; no GPU: 132g for the GPU)"
  for spec in $LADDER; do
    name=${spec%%:*}
    plan_case --config "$W/cfg/$name.json" --batch 1 --seq 1024 "${b[@]}" > "$W/plan-$name.txt"
    if grep -q "^athanor plan: not enough" "$W/plan-$name.txt"; then
      echo "-- $name: refused: $(grep -o -E "the [A-Za-z_ ()]+ is [0-9.]+ [KMGT]?i?B short" "$W/plan-$name.txt" | head -1)"
    else
      echo "-- $name: $(sed -n 2p "$W/plan-$name.txt" | cut -c1-150); DISK: $(sed -n 's/^  DISK: //p' "$W/plan-$name.txt" | cut -c1-60)"
    fi
    if grep -q "^  DISK: " "$W/plan-$name.txt" && ! grep -q "^  DISK: 0 B" "$W/plan-$name.txt"; then chosen=$name; break; fi
  done
  [ -n "$chosen" ] || { echo "no shape of the ladder has a plan with all three tiers under these budgets"; return 2; }
  echo "chosen: $chosen"
  echo "--config $W/cfg/$chosen.json --batch 1 --seq 1024 ${b[*]}" > "$W/scale-max.args"
  cp "$W/plan-$chosen.txt" "$W/scale-max.plan"
  [ "$GPU" = 1 ] || { echo "no GPU: planned only"; return 0; }
  java_cmd
  run_watched scale-max 2 "${ATH[@]}" train --device cuda --config "$W/cfg/$chosen.json" --batch 1 --seq 1024 "${b[@]}" --offload auto \
    --offload-dir "$W/offload-max" --data "$DATA" --steps 2 --lr 1e-4 --save-dtype bf16 --out "$W/scale-max-model" \
    --log "$W/scale-max.jsonl"
  local rc=$?
  rm -rf "$W/offload-max" "$W/scale-max-model"
  return $rc
}
export -f say java_cmd do_env do_unpack do_build do_mpi do_nccl run_watched do_dp do_gpt2 plan_case do_scale_sure do_scale_max

# ------------------------------------------------------------------ the steps
say "scale check: root $ROOT, work $W, output $R, budget ${BUDGET} s"
GPU=0
nvidia-smi -L 2>/dev/null | grep -q '^GPU ' && GPU=1
export GPU
[ $GPU = 1 ] || note "NO GPU (nvidia-smi lists none): the GPU runs are skipped; the plans, the MPI discovery, the NCCL test's skips and dp 2 on the CPU still run"
step env 30 bash -c do_env
step unpack 30 bash -c do_unpack || note "no payload: no Java runtime, so nothing but env and mpi can run"
if [ $GPU = 1 ]; then
  step build 150 bash -c do_build || note "the build step failed: later steps use what there is"
else
  record build - 0 "no GPU: the jar's own CPU library is used"
fi
LIB=$(cat "$W/lib.txt" 2>/dev/null)
export LIB
[ $GPU = 1 ] && [ -z "$LIB" ] && note "no libathanor.so with CUDA: the GPU runs will fail"
step mpi 40 bash -c do_mpi
step nccl 75 bash -c do_nccl
step dp 130 bash -c do_dp
if [ $GPU = 1 ]; then
  step gpt2 150 bash -c do_gpt2
else
  record gpt2 - 0 "skipped: no GPU"
fi
step scale-sure 100 bash -c do_scale_sure
step scale-max "${ATH_SCALE_MAX_S:-150}" bash -c do_scale_max

# ------------------------------------------------------------------ report (always)
say "writing the report"
cp "$W/steps.tsv" "$W/notes.txt" "$W"/*.json "$W"/*.jsonl "$W"/*.plan "$W"/*.args "$W"/plan-*.txt "$L/" 2>/dev/null
timeout 30 python3 "$ROOT/bench/gpu/scale/report.py" "$W" "$R" > "$L/report.log" 2>&1 || cat "$L/report.log" >&2
tar czf "$R/scale-logs.tar.gz" -C "$W" logs 2>/dev/null
say "done in $(($(date +%s) - T_START)) s; report: $R/scale-report.md"
echo
cat "$W/table.txt" 2>/dev/null || cat "$W/steps.tsv"
