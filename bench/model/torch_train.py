#!/usr/bin/env python3
"""PyTorch peer for Athanor's training and inference benchmarks: the same GPT-2 / Llama models
(bench/model/torch_models.py), timed the same way, so that the two can be compared in one run.

train mode: from-scratch init (seeded), random token batches (seeded, made before timing), and per step
  forward + backward + clip_grad_norm_(1.0) + AdamW (fused on CUDA where this PyTorch has it, else foreach;
  betas 0.9/0.95, eps 1e-8, weight decay 0.1 on tensors with dim >= 2, constant lr). Each step is timed on
  its own (CUDA synchronized at both ends); --warmup-steps untimed steps come first. Reports the median and
  mean step time, tokens/s = B*T / median step time, and the model FLOPs utilization:
    flops per token = 6 * N + 12 * L * C * T          (PaLM, appendix B; causal masking not discounted)
    N = parameters that take part in a matmul per token (all but the position and input-embedding tables;
        the output head counted once, also when tied), L layers, C hidden, T sequence length
    MFU = flops per token * B * T / median step time / peak
  with the peak from --peak-flops (defaults on CUDA: H200 dense BF16 989.4e12, FP32 67e12; on CPU no
  default, so MFU is null unless given).
decode mode: a random prompt (B, --prompt-len), then greedy generation of --decode-tokens tokens with a
  preallocated KV cache, measured exactly as Athanor's `bench --mode decode` (DecodeBench.java): --warmup-steps
  (>= 1) untimed full rounds, then --steps timed rounds; the prefill (prompt forward + argmax, the first new
  token) and every decode step (one token forward + argmax) are timed on their own. Reports the median prefill,
  the median step over all timed steps, decode tokens/s = B / median step seconds (also as tokens_per_s),
  prefill tokens/s = B * prompt / median prefill, end-to-end tokens/s = B * decode_tokens / median round, and
  the raw lists.

On the CPU the JSON also records which BLAS library the process actually loaded (blas_runtime: Debian's
python3-torch reports BLAS_INFO=generic at build time but calls whatever libblas.so.3 is installed, e.g.
OpenBLAS) and the measured speed of one 2048^3 FP32 matmul at the run's thread count (matmul_2048: median of
5 after 2 warm-ups, GFLOP/s = 2*2048^3 / seconds). Below 50 GFLOP/s on a modern x86 core pair the peer has no
optimized BLAS (unset OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, which can force slow kernels).

--dtype bf16: train = autocast to bfloat16 on CUDA with FP32 master weights and an FP32 loss; decode = the
model converted to bfloat16. f32 on CUDA runs strict FP32 (TF32 off).

One JSON object is printed on stdout and, with --json, written to that file.
Example (the CPU bar config):
  python3 bench/model/torch_train.py --family gpt2 --layers 4 --hidden 256 --heads 4 --vocab 50257 \\
      --batch 8 --seq 256 --threads 2 --device cpu --dtype f32 --steps 5 --warmup-steps 2
"""
import argparse
import json
import math
import os
import platform
import re
import statistics
import sys
import time


def _threads_from_argv(argv):
    for i, x in enumerate(argv):
        if x == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if x.startswith("--threads="):
            return x.split("=", 1)[1]
    return None


# BLAS libraries read their thread counts when loaded, so --threads must reach them before torch is imported
# (Debian's PyTorch calls the system OpenBLAS, which torch.set_num_threads alone does not limit).
_T = _threads_from_argv(sys.argv[1:])
if _T:
    for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_v] = _T

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_models import CausalLM, ModelConfig, has_sdpa, init_weights, make_adamw, set_lr  # noqa: E402

PEAKS = {"bf16": 989.4e12, "f32": 67e12}  # H200 SXM dense


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", choices=["gpt2", "llama"], default="gpt2")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=None, help="default: --heads")
    ap.add_argument("--intermediate", type=int, default=None,
                    help="default: 4*hidden (gpt2), 8/3*hidden rounded up to a multiple of 16 (llama)")
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--seq-len-max", type=int, default=1024)
    ap.add_argument("--untied", action="store_true", help="separate output head (default: tied)")
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10, help="timed steps (train) or rounds (decode)")
    ap.add_argument("--warmup-steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--sdpa", action=argparse.BooleanOptionalAction, default=True,
                    help="F.scaled_dot_product_attention (default on; falls back to the explicit path when "
                         "this PyTorch lacks it, which the JSON says)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (PyTorch 2+)")
    ap.add_argument("--mode", choices=["train", "decode"], default="train")
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--decode-tokens", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--peak-flops", type=float, default=None)
    ap.add_argument("--json", default=None, help="also write the result here")
    ap.add_argument("--matmul-check", action=argparse.BooleanOptionalAction, default=True,
                    help="on the CPU, time one 2048^3 FP32 matmul first and record its GFLOP/s (default on)")
    return ap.parse_args(argv)


def model_config(a):
    inter = a.intermediate
    if inter is None:
        inter = 4 * a.hidden if a.family == "gpt2" else 16 * math.ceil(8 * a.hidden / 3 / 16)
    return ModelConfig(family=a.family, vocab_size=a.vocab, max_seq_len=a.seq_len_max, layers=a.layers,
                       hidden=a.hidden, heads=a.heads, kv_heads=a.kv_heads or a.heads, intermediate=inter,
                       norm_eps=1e-5, rope_theta=a.rope_theta, tied=not a.untied)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def torch_build():
    """BLAS and CPU capability lines of torch.__config__.show()."""
    text = torch.__config__.show()
    out = {}
    for key in ("BLAS_INFO", "LAPACK_INFO", "USE_MKL", "USE_MKLDNN"):
        m = re.search(key + r"=([^,\s]+)", text)
        if m:
            out[key] = m.group(1)
    m = re.search(r"CPU capability usage: (\S+)", text)
    if m:
        out["cpu_capability"] = m.group(1)
    return out


def blas_runtime():
    """Shared libraries of a BLAS that this process has mapped (Linux /proc/self/maps): which BLAS torch calls."""
    libs = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1] if len(line.split()) >= 6 else ""
                name = os.path.basename(path).lower()
                if any(k in name for k in ("blas", "mkl", "blis", "lapack")) and path not in libs:
                    libs.append(path)
    except OSError:
        pass
    real = []
    for path in libs:
        r = os.path.realpath(path)
        real.append(path if r == path else f"{path} -> {r}")
    return real


def matmul_check(device, n=2048, reps=5):
    """GFLOP/s of one n^3 FP32 matmul (median of reps after 2 warm-ups): is the BLAS behind torch optimized?"""
    g = torch.Generator().manual_seed(7)
    x = torch.rand((n, n), generator=g).to(device)
    y = torch.rand((n, n), generator=g).to(device)
    out = torch.empty((n, n), device=device)
    for _ in range(2):
        torch.matmul(x, y, out=out)
    times = []
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        torch.matmul(x, y, out=out)
        sync(device)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"n": n, "reps": reps, "median_ms": med * 1e3, "gflops": 2.0 * n ** 3 / med / 1e9,
            "gflops_all": [2.0 * n ** 3 / t / 1e9 for t in times]}


def stats_ms(times):
    ms = [t * 1e3 for t in times]
    return {"median_ms": statistics.median(ms), "mean_ms": statistics.fmean(ms), "min_ms": min(ms),
            "max_ms": max(ms), "n": len(ms)}


def run_train(a, cfg, model, device, result):
    impl = "fused" if device.type == "cuda" else "foreach"
    opt, impl = make_adamw(model, a.lr, (0.9, 0.95), 1e-8, 0.1, impl)
    set_lr(opt, a.lr)
    result["optimizer"] = {"name": "AdamW", "impl": impl, "lr": a.lr, "schedule": "constant", "betas": [0.9, 0.95],
                           "eps": 1e-8, "weight_decay": 0.1, "decay_on": "dim >= 2", "grad_clip": 1.0}
    g = torch.Generator().manual_seed(a.seed + 1)
    n = a.warmup_steps + a.steps
    data = torch.randint(0, cfg.vocab_size, (n, a.batch, a.seq + 1), generator=g).to(device)
    autocast = a.dtype == "bf16"
    params = list(model.parameters())
    times, losses = [], []
    for i in range(n):
        x = data[i, :, :-1].contiguous()
        y = data[i, :, 1:].contiguous()
        sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
            _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        t1 = time.perf_counter()
        if i >= a.warmup_steps:
            times.append(t1 - t0)
        losses.append(loss.detach())
    st = stats_ms(times)
    tokens = a.batch * a.seq
    n_mm = model.num_matmul_params()
    fpt = 6 * n_mm + 12 * cfg.layers * cfg.hidden * a.seq
    achieved = fpt * tokens / (st["median_ms"] / 1e3)
    peak = a.peak_flops if a.peak_flops is not None else (PEAKS[a.dtype] if device.type == "cuda" else None)
    result.update({
        "step_time": st,
        "tokens_per_step": tokens,
        "tokens_per_s": tokens / (st["median_ms"] / 1e3),
        "tokens_per_s_mean": tokens / (st["mean_ms"] / 1e3),
        "loss_first": losses[0].item(),
        "loss_last": losses[-1].item(),
        "flops_formula": "per token 6*N + 12*L*C*T (N = matmul params: all but position and input-embedding "
                         "tables, head counted once; causal masking not discounted); MFU = that * B*T / median "
                         "step time / peak",
        "flops_per_token": fpt,
        "achieved_flops": achieved,
        "peak_flops": peak,
        "mfu": achieved / peak if peak else None,
    })


@torch.no_grad()
def run_decode(a, cfg, model, device, result):
    """Measured exactly as Athanor's DecodeBench (java/src/main/java/dev/athanor/cli/DecodeBench.java): one cache,
    --warmup-steps untimed full rounds (at least one), then --steps timed rounds; a round = the prefill (the whole
    prompt in one forward + argmax: the first new token) and decode_tokens - 1 steps (one token + argmax), each
    timed on its own (CUDA synchronized at both ends); medians over rounds (prefill) and over every timed step."""
    if a.dtype == "bf16":
        model.to(torch.bfloat16)
    model.eval()
    p, n = a.prompt_len, a.decode_tokens
    if p + n > cfg.max_seq_len:
        raise SystemExit(f"prompt {p} + decode tokens {n} exceed --seq-len-max {cfg.max_seq_len}")
    if n < 2:
        raise SystemExit("--decode-tokens must be >= 2")
    if a.warmup_steps < 1:
        raise SystemExit("--warmup-steps must be >= 1 for decode (one full untimed round)")
    g = torch.Generator().manual_seed(a.seed + 2)
    prompt = torch.randint(0, cfg.vocab_size, (a.batch, p), generator=g).to(device)
    cache = model.new_cache(a.batch, p + n)
    prefill, steps, rounds = [], [], []
    for r in range(a.warmup_steps + a.steps):
        timed = r >= a.warmup_steps
        sync(device)
        t0 = time.perf_counter()
        nxt = model.forward_cached(prompt, cache, 0)[:, -1].argmax(-1, keepdim=True)
        sync(device)
        t1 = time.perf_counter()
        total = t1 - t0
        for i in range(1, n):
            s0 = time.perf_counter()
            nxt = model.forward_cached(nxt, cache, p + i - 1)[:, -1].argmax(-1, keepdim=True)
            sync(device)
            s1 = time.perf_counter()
            total += s1 - s0
            if timed:
                steps.append(s1 - s0)
        if timed:
            prefill.append(t1 - t0)
            rounds.append(total)
    sp, sd, sr = stats_ms(prefill), stats_ms(steps), stats_ms(rounds)
    decode_tps = a.batch / (sd["median_ms"] / 1e3)
    result.update({
        "precision": "bf16 weights and activations" if a.dtype == "bf16" else "fp32",
        "prompt_len": p,
        "decode_tokens": n,
        "prefill_ms_median": sp["median_ms"],
        "decode_ms_per_token_median": sd["median_ms"],
        "decode_tokens_per_s": decode_tps,
        "prefill_tokens_per_s": a.batch * p / (sp["median_ms"] / 1e3),
        "end_to_end_tokens_per_s": a.batch * n / (sr["median_ms"] / 1e3),
        "tokens_per_s": decode_tps,
        "prefill_time": sp,
        "decode_step_time": sd,
        "round_time": sr,
        "prefill_ms": [t * 1e3 for t in prefill],
        "round_ms": [t * 1e3 for t in rounds],
        "decode_step_ms": [t * 1e3 for t in steps],
    })


def main(argv=None):
    a = parse_args(argv)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but CUDA is not available to this PyTorch")
    if a.dtype == "bf16" and device.type != "cuda":
        raise SystemExit("--dtype bf16 is for --device cuda (autocast with FP32 master weights)")
    if a.mode == "train" and a.seq > a.seq_len_max:
        raise SystemExit(f"--seq {a.seq} exceeds --seq-len-max {a.seq_len_max}")
    if a.threads:
        torch.set_num_threads(a.threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    cfg = model_config(a)
    use_sdpa = a.sdpa and has_sdpa()
    torch.manual_seed(a.seed)
    model = CausalLM(cfg, use_sdpa=use_sdpa)
    init_weights(model, torch.Generator().manual_seed(a.seed))
    model.to(device)
    if a.compile:
        if not hasattr(torch, "compile"):
            raise SystemExit(f"--compile needs PyTorch 2+, this is {torch.__version__}")
        model = torch.compile(model)
    core = model._orig_mod if hasattr(model, "_orig_mod") else model
    if a.sdpa and not use_sdpa:
        attn = f"explicit softmax (F.scaled_dot_product_attention is missing in PyTorch {torch.__version__})"
    else:
        attn = "F.scaled_dot_product_attention" if use_sdpa else "explicit softmax"
    result = {
        "impl": "pytorch",
        "mode": a.mode,
        "config": dict(cfg.to_dict(), head_dim=cfg.head_dim),
        "params": core.num_params(),
        "matmul_params": core.num_matmul_params(),
        "batch": a.batch,
        "seq": a.seq if a.mode == "train" else None,
        "device": a.device,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "dtype": a.dtype,
        "precision": ("bf16 autocast, fp32 master weights, fp32 loss" if a.dtype == "bf16" else "fp32 (no TF32)"),
        "threads": torch.get_num_threads(),
        "attention": attn,
        "compiled": a.compile,
        "warmup_steps": a.warmup_steps,
        "steps": a.steps,
        "seed": a.seed,
        "torch": torch.__version__,
        "torch_build": torch_build(),
        "thread_env": {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                                      "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_WAIT_POLICY")},
        "python": platform.python_version(),
    }
    if device.type == "cpu" and a.matmul_check:
        result["matmul_2048"] = matmul_check(device)
    if device.type == "cpu":
        result["blas_runtime"] = blas_runtime()
    if a.mode == "train":
        model.train()
        run_train(a, cfg, model, device, result)
    else:
        run_decode(a, cfg, core, device, result)  # the cached path runs uncompiled
    if device.type == "cuda":
        result["peak_memory_bytes"] = torch.cuda.max_memory_allocated(device)
    text = json.dumps(result)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            f.write(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
