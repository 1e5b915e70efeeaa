#!/usr/bin/env python3
"""PyTorch peer for the GPU check: times torch.matmul and
torch.nn.functional.scaled_dot_product_attention (forward, and backward through autograd) on the
cases of bench/gpu/cases.txt, the same shapes and dtypes that bench_cuda.cu times for Athanor, with
the same method: random uniform [-1, 1) inputs, two warm-up calls, one call to size the run, then
5..200 calls each bracketed by its own pair of CUDA events; the median is reported.

FP32 GEMM runs as strict FP32 (allow_tf32 = False, float32 matmul precision 'highest').
Attention tensors are (B, H, T, D) contiguous; is_causal with Tq == Tk, as in bench_cuda.

Output: JSON Lines (one object per measurement, flushed as it is known), appended to --out, plus
one {"impl": "torch-env", ...} line describing the software and the GPU.
"""
import argparse
import json
import math
import sys
import time
import traceback


def parse_cases(path):
    cases = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.split("#", 1)[0].split()
            if not line:
                continue
            op, dtype = line[0], line[1]
            if op == "gemm":
                m, n, k = (int(x) for x in line[2:5])
                cases.append(dict(op=op, dtype=dtype, m=m, n=n, k=k,
                                  name=f"gemm-{dtype}-{m}x{n}x{k}"))
            elif op == "attn":
                b, h, t, d, causal = (int(x) for x in line[2:7])
                cases.append(dict(op=op, dtype=dtype, b=b, h=h, t=t, d=d, causal=bool(causal),
                                  name=f"attn-{dtype}-b{b}-h{h}-t{t}-d{d}" + ("-causal" if causal else "")))
            else:
                raise SystemExit(f"{path}:{lineno}: unknown op {op!r}")
    return cases


def emit(out, rec):
    line = json.dumps(rec)
    with open(out, "a") as f:
        f.write(line + "\n")
    print(line, file=sys.stderr, flush=True)


def time_op(torch, fn, seconds):
    """Median and min milliseconds of single calls of fn, timed with CUDA events."""
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    fn()
    e1.record()
    e1.synchronize()
    one = max(e0.elapsed_time(e1), 1e-3)
    reps = int(min(max(seconds * 1e3 / one, 5), 200))
    evs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
    for a, b in evs:
        a.record()
        fn()
        b.record()
    torch.cuda.synchronize()
    ms = sorted(a.elapsed_time(b) for a, b in evs)
    med = ms[reps // 2] if reps % 2 else 0.5 * (ms[reps // 2 - 1] + ms[reps // 2])
    return med, ms[0], reps


def kernel_names(torch, fn):
    """Names of the CUDA kernels one call of fn launches (which SDPA backend / GEMM kernel ran)."""
    try:
        from torch.profiler import profile, ProfilerActivity
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        names = []
        for ev in prof.events():
            if getattr(ev, "device_type", None) is not None and "CUDA" in str(ev.device_type) and ev.name not in names:
                names.append(ev.name)
        return [n[:120] for n in names[:6]]
    except Exception as e:  # profiler unavailable: not worth failing the benchmark for
        return [f"(profiler failed: {type(e).__name__}: {e})"]


def record(case, pass_, flops, shape, ms=None, ms_min=None, reps=0, error=None, kernels=None):
    key = case["name"] + ("" if case["op"] == "gemm" else "-" + pass_)
    rec = dict(impl="torch", key=key, op="gemm" if case["op"] == "gemm" else "attention", **{"pass": pass_},
               dtype=case["dtype"], shape=shape, flops=flops, ms_median=ms, ms_min=ms_min, reps=reps,
               tflops=(flops / (ms * 1e-3) / 1e12) if ms else None, error=error)
    if kernels:
        rec["kernels"] = kernels
    return rec


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default="bench/gpu/cases.txt")
    ap.add_argument("--out", default="peer.jsonl")
    ap.add_argument("--seconds", type=float, default=0.4)
    args = ap.parse_args()
    cases = parse_cases(args.cases)

    t0 = time.time()
    import torch
    import torch.nn.functional as F
    if not torch.cuda.is_available():
        print("peer.py: torch sees no CUDA device", file=sys.stderr)
        return 4
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    dev = torch.device("cuda", 0)
    props = torch.cuda.get_device_properties(dev)
    emit(args.out, dict(impl="torch-env", torch=torch.__version__, cuda=torch.version.cuda,
                        cudnn=torch.backends.cudnn.version(), gpu=props.name,
                        sm_count=props.multi_processor_count, capability=f"{props.major}.{props.minor}",
                        memory_gib=round(props.total_memory / 2**30, 1), allow_tf32=torch.backends.cuda.matmul.allow_tf32,
                        import_seconds=round(time.time() - t0, 1)))
    dtypes = {"bf16": torch.bfloat16, "f32": torch.float32}

    def uniform(shape, dtype, seed):
        g = torch.Generator(device=dev)
        g.manual_seed(seed)
        return (torch.rand(shape, device=dev, dtype=torch.float32, generator=g) * 2 - 1).to(dtype)

    for case in cases:
        print(f"peer.py: {case['name']}", file=sys.stderr, flush=True)
        dt = dtypes[case["dtype"]]
        if case["op"] == "gemm":
            m, n, k = case["m"], case["n"], case["k"]
            flops = 2.0 * m * n * k
            shape = f"{m}x{n}x{k}"
            try:
                a, b = uniform((m, k), dt, 11), uniform((k, n), dt, 22)
                c = torch.empty((m, n), device=dev, dtype=dt)
                fn = lambda: torch.matmul(a, b, out=c)
                ms, mn, reps = time_op(torch, fn, args.seconds)
                emit(args.out, record(case, "fwd", flops, shape, ms, mn, reps, kernels=kernel_names(torch, fn)))
                del a, b, c
            except Exception as e:
                emit(args.out, record(case, "fwd", flops, shape, error=f"{type(e).__name__}: {e}"))
                traceback.print_exc()
        else:
            bb, h, t, d, causal = case["b"], case["h"], case["t"], case["d"], case["causal"]
            fwd_flops = 4.0 * bb * h * t * t * d * (0.5 if causal else 1.0)
            shape = f"B{bb} H{h} T{t} D{d}" + (" causal" if causal else "")
            q = k = v = do = None
            try:
                q, k, v, do = (uniform((bb, h, t, d), dt, s) for s in (101, 202, 303, 404))

                def fwd():
                    with torch.no_grad():
                        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                ms, mn, reps = time_op(torch, fwd, args.seconds)
                emit(args.out, record(case, "fwd", fwd_flops, shape, ms, mn, reps, kernels=kernel_names(torch, fwd)))
            except Exception as e:
                emit(args.out, record(case, "fwd", fwd_flops, shape, error=f"{type(e).__name__}: {e}"))
                traceback.print_exc()
            try:
                if q is None:
                    raise RuntimeError("inputs were not created (see the forward error)")
                qg, kg, vg = (x.detach().requires_grad_(True) for x in (q, k, v))
                o = F.scaled_dot_product_attention(qg, kg, vg, is_causal=causal)
                bwd = lambda: torch.autograd.grad(o, (qg, kg, vg), do, retain_graph=True)
                ms, mn, reps = time_op(torch, bwd, args.seconds)
                emit(args.out, record(case, "bwd", 2.5 * fwd_flops, shape, ms, mn, reps,
                                      kernels=kernel_names(torch, bwd)))
                del qg, kg, vg, o
            except Exception as e:
                emit(args.out, record(case, "bwd", 2.5 * fwd_flops, shape, error=f"{type(e).__name__}: {e}"))
                traceback.print_exc()
            del q, k, v, do
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
