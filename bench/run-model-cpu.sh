#!/usr/bin/env bash
# CPU whole-model throughput, Athanor against PyTorch in the same run, same machine, same threads:
#   training: GPT-2 family, 4 layers, width 256, 4 heads, GPT-2 vocab (50257), B=8, T=256 (the issue's bar),
#             full steps (forward, backward, global-norm clip, AdamW), median step time;
#   decode:   the same model, greedy with a KV cache, B=1 and B=8, prompt 16, 64 new tokens.
# Writes bench/results/<date>-cpu-model-<cpu>-<HHMM>.md and .jsonl. Needs PyTorch for the peer
# (Debian: apt-get install python3-torch; found via PYTHON, /usr/bin/python3 or python3).
# Usage: bash bench/run-model-cpu.sh [steps]    (run on a quiet machine: the load is recorded)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
STEPS=${1:-5}
THREADS=$(nproc)
PY=${PYTHON:-}
for c in /usr/bin/python3 python3; do
  [ -z "$PY" ] && "$c" -c 'import torch' 2>/dev/null && PY=$c
done
[ -n "$PY" ] || { echo "run-model-cpu.sh: no Python with PyTorch found (set PYTHON=...)" >&2; exit 2; }
./athanor build >/dev/null
CPU=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //; s/(R)//g; s/(TM)//g' | awk '{print tolower($1"-"$2"-"$3)}' | tr -c 'a-z0-9-\n' '-' | sed 's/-*$//')
STAMP=$(date -u +%Y-%m-%d)-cpu-model-$CPU-$(date -u +%H%M)
OUT=bench/results/$STAMP
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
: > "$OUT.jsonl"
MODEL="--layers 4 --hidden 256 --heads 4 --vocab 50257"
run_pair() {  # athanor-args torch-args
  ./athanor bench --preset gpt2-tiny --device cpu $1 | tail -1 | tee -a "$OUT.jsonl"
  "$PY" bench/model/torch_train.py --family gpt2 $MODEL --seq-len-max 256 --device cpu --dtype f32 --threads "$THREADS" \
    $2 --json "$OUT.peer.json" > /dev/null
  "$PY" -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))))' "$OUT.peer.json" | tee -a "$OUT.jsonl"
  rm -f "$OUT.peer.json"
}
run_pair "--mode train --batch 8 --seq 256 --steps $STEPS --warmup-steps 1" \
         "--mode train --batch 8 --seq 256 --steps $STEPS --warmup-steps 1"
run_pair "--mode decode --batch 1 --prompt-len 16 --decode-tokens 64" \
         "--mode decode --batch 1 --prompt-len 16 --decode-tokens 64 --steps 3 --warmup-steps 1"
run_pair "--mode decode --batch 8 --prompt-len 16 --decode-tokens 64" \
         "--mode decode --batch 8 --prompt-len 16 --decode-tokens 64 --steps 3 --warmup-steps 1"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
"$PY" - "$OUT.jsonl" "$OUT.md" "$LOAD_BEFORE" "$LOAD_AFTER" "$THREADS" <<'PYEOF'
import json, sys, platform
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ours = [r for r in rows if r.get("impl") == "athanor"]
peer = [r for r in rows if r.get("impl") == "pytorch"]
out = ["# CPU whole-model throughput: Athanor vs PyTorch (same run)", "",
       "- machine: %s, %s threads for both; load average before %s, after %s" % (
           open("/proc/cpuinfo").read().split("model name")[1].split(":")[1].split("\n")[0].strip(), sys.argv[5],
           sys.argv[3], sys.argv[4]),
       "- model: GPT-2 family, 4 layers, width 256, 4 heads, vocab 50257, context 256 (16.1M parameters), FP32",
       "- peer: bench/model/torch_train.py, PyTorch %s (%s attention; build: BLAS %s, CPU capability %s)" % (
           peer[0].get("torch"), peer[0].get("attention"), peer[0].get("torch_build", {}).get("BLAS_INFO"),
           peer[0].get("torch_build", {}).get("cpu_capability")),
       "- a PyTorch built with BLAS `generic` has no optimized GEMM: the training ratio then mostly measures that build;"
       " the kernel-level comparison with an optimized BLAS is the GEMM table of the CPU benchmark (OpenBLAS)",
       "- training: forward + backward + global-norm clip + AdamW per step, median step time; decode: greedy, KV cache,"
       " prompt 16, 64 new tokens, prefill included", "",
       "| case | Athanor tok/s | PyTorch tok/s | ratio |", "| --- | --- | --- | --- |"]
for o, p in zip(ours, peer):
    if o["mode"] == "train":
        case, pt = "train B=%d T=%d" % (o["batch"], o["seq"]), p["tokens_per_s"]
    else:
        case, pt = "decode B=%d" % o["batch"], p["end_to_end_tokens_per_s"]
    out.append("| %s | %.0f | %.0f | %.2f |" % (case, o["tokens_per_s"], pt, o["tokens_per_s"] / pt))
out += ["", "Raw results: `%s`." % sys.argv[1].split("/")[-1]]
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
PYEOF
