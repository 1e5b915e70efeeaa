#!/usr/bin/env bash
# Memory per rank of each ZeRO stage on the CPU (issue 10): mpirun -np N train --dp N --zero 0|1|2|3 at --accum 1 and 2 on a
# tiny model and short sequences (so that the parameter state, not activations, dominates), printing a Markdown table
# of rank 0's allocator peak over the training loop (the log's summary line: HOST bytes live at once, weights and
# gradients and moments and the reduction's receive buffer and the step's activations) next to the ZeRO paper's
# split for F32 training on the CPU: weights = masters 4 psi, gradients 4 psi, moments 8 psi, sharded ones / N (ZeRO 3
# also holds the gathered units' weight and gradient windows, which the theory leaves out: the last column has them).
# Needs Open MPI and a built jar (./athanor build). MODEL_FLAGS (default --preset gpt2-tiny) picks the model, ZEROS
# (default "0 1 2 3") and ACCUMS (default "1 2") the runs; the last column compares each run's final weights with the
# first ZEROS stage's at the same accum.
#   bash bench/run-cpu-zero-memory.sh [CORPUS] [STEPS] [N]
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=${1:-}
steps=${2:-3}
np=${3:-2}
model_flags=(${MODEL_FLAGS:---preset gpt2-tiny})
zeros=(${ZEROS:-0 1 2 3})
accums=(${ACCUMS:-1 2})
out=$(mktemp -d /tmp/athanor-zero-mem.XXXXXX)
source bench/dp-setup.sh
run=("$java" --enable-native-access=ALL-UNNAMED -cp "$jar" dev.athanor.cli.Main train "${model_flags[@]}" --data "$corpus"
     --steps "$steps" --batch 1 --seq 32 --warmup 1 --device cpu --dp "$np" --threads 1)
peak() { python3 -c "import json,sys; l=[json.loads(x) for x in open(sys.argv[1]) if '\"summary\"' in x]; print(l[-1]['peak_bytes']['HOST'])" "$1"; }
params=""
# the parameters in a saved model: the elements of its safetensors header's tensors
psi() { python3 -c "
import json,struct,sys,math
f=open(sys.argv[1],'rb'); n=struct.unpack('<Q',f.read(8))[0]; h=json.loads(f.read(n))
print(sum(math.prod(v['shape']) for k,v in h.items() if k!='__metadata__'))" "$1"; }
echo "| accum | zero | rank 0 peak HOST (MiB) | theory: weights + grads + moments (MiB) | weights identical to zero ${zeros[0]} |"
echo "| --- | --- | --- | --- | --- |"
for accum in "${accums[@]}"; do
  for z in "${zeros[@]}"; do
    d=$out/a$accum-z$z
    if ! mpirun -np "$np" --oversubscribe --bind-to none "${run[@]}" --accum "$accum" --zero "$z" --out "$d/model" --log "$d/log.jsonl" > "$d.txt" 2>&1; then
      echo "accum $accum zero $z failed:" >&2; tail -20 "$d.txt" >&2; exit 1
    fi
    if [[ -z "$params" ]]; then params=$(psi "$d/model/model.safetensors"); fi
    p=$(peak "$d/log.jsonl")
    theory=$(python3 -c "
psi=int('${params:-0}'); n=$np; z=$z
w=4*psi/(n if z>=3 else 1); g=4*psi/(n if z>=2 else 1); m=8*psi/(n if z>=1 else 1)
print(f'{w/2**20:.1f} + {g/2**20:.1f} + {m/2**20:.1f} = {(w+g+m)/2**20:.1f}')")
    same=$(cmp -s "$out/a$accum-z${zeros[0]}/model/model.safetensors" "$d/model/model.safetensors" && echo identical || echo different)
    echo "| $accum | $z | $(python3 -c "print(f'{$p/2**20:.1f}')") | $theory | $same |"
  done
done
echo "psi = $params parameters; outputs in $out"
