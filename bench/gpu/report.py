#!/usr/bin/env python3
"""Writes the GPU check's report (gpu-report.json and gpu-report.md) from what bench/gpu/run.sh
left in its work folder: steps.tsv (one line per step: name, exit code, seconds, note), env.json
(machine and tool versions), native-tests.log, junit/*.xml (the Java suite's reports),
ours.jsonl (bench_cuda) and peer.jsonl (peer.py). Any of them may be missing: the report then says
what is missing instead of failing. Python standard library only.

TFLOP/s = FLOPs / median time; FLOPs: GEMM 2*M*N*K; attention forward 4*B*H*T*T*D (x0.5 causal),
backward 2.5 x forward. Ratio = Athanor TFLOP/s / PyTorch TFLOP/s (above 1: Athanor is faster).

Also logs/overlap.json (`athanor bench --mode overlap`: host->device copies on a copy stream behind GEMMs on
the compute stream, and the same work serialized): its numbers go into the report with a text timeline, and
its timeline is drawn as an SVG (--out-svg, default <work>/logs/overlap.svg, so it travels in logs.tar.gz).
"""
import argparse
import glob
import json
import math
import os
import re
import sys
import xml.etree.ElementTree as ET


def read_jsonl(path):
    recs = []
    if not path or not os.path.exists(path):
        return recs
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                recs.append(json.loads(line))
            except json.JSONDecodeError:
                recs.append({"impl": "unparsed", "line": line[:300]})
    return recs


def read_steps(path):
    steps = []
    if path and os.path.exists(path):
        with open(path) as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) >= 3:
                    steps.append(dict(name=parts[0], rc=int(parts[1]) if parts[1].lstrip("-").isdigit() else parts[1],
                                      seconds=float(parts[2]), note=parts[3] if len(parts) > 3 else ""))
    return steps


def native_summary(path):
    if not path or not os.path.exists(path):
        return dict(ran=False, note="no native test log (the test binary did not build or the step did not run)")
    text = open(path, errors="replace").read()
    m = None
    for m in re.finditer(r"native: (\d+) passed, (\d+) failed, (\d+) skipped", text):
        pass
    failed_names = re.findall(r"^\[FAILED\] (\S+)", text, re.M)
    skipped = re.findall(r"^\[ SKIP \] (.*)$", text, re.M)
    if not m:
        started = re.findall(r"^\[ RUN  \] (\S+)", text, re.M)
        ok = len(re.findall(r"^\[  OK  \] ", text, re.M))
        last = started[-1] if started else None
        finished = set(re.findall(r"^\[(?:  OK  |FAILED| SKIP )\] (\S+?):?(?:\s|$)", text, re.M))
        hung = last if last and last not in finished else None
        return dict(ran=True, complete=False, passed=ok, failed=len(failed_names), skipped=len(skipped),
                    failed_names=failed_names, unfinished=hung,
                    note=f"INCOMPLETE: the native test binary stopped before its summary line (timeout or crash)"
                         f"{'; it was in ' + hung if hung else ''}. Before that: {ok} passed, "
                         f"{len(failed_names)} failed, {len(skipped)} skipped")
    return dict(ran=True, complete=True, passed=int(m.group(1)), failed=int(m.group(2)), skipped=int(m.group(3)),
                failed_names=failed_names, skipped_reasons=skipped[:20])


def junit_from_xml(folder):
    """Counts from the JUnit XML reports; None when there is no report with test cases."""
    files = sorted(glob.glob(os.path.join(folder, "*.xml"))) if folder else []
    tests = failures = errors = skipped = 0
    failed_names, skip_reasons = [], {}
    for path in files:
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError:
            return None
        for case in root.iter("testcase"):
            tests += 1
            name = f"{case.get('classname', '?')}.{case.get('name', '?')}"
            for tag in ("failure", "error"):
                el = case.find(tag)
                if el is not None:
                    failed_names.append(f"{name}: {(el.get('message') or '')[:200]}")
                    if tag == "failure":
                        failures += 1
                    else:
                        errors += 1
                    break
            else:
                el = case.find("skipped")
                if el is not None:
                    skipped += 1
                    why = (el.get("message") or (el.text or "").strip().split("\n")[0]).strip()[:160]
                    skip_reasons[why] = skip_reasons.get(why, 0) + 1
    if tests == 0:
        return None
    return dict(ran=True, complete=True, source="JUnit XML", tests=tests,
                passed=tests - failures - errors - skipped, failed=failures + errors, skipped=skipped,
                failed_names=failed_names[:50], skip_reasons=sorted(skip_reasons.items(), key=lambda kv: -kv[1])[:8])


def junit_from_feed(log):
    """Counts from the console launcher's --details testfeed lines ('A > B > C :: STATUS'), which are
    flushed as tests run: used when the run was killed before the XML report was written."""
    if not log or not os.path.exists(log):
        return None
    status, order, reasons = {}, [], {}
    last_name = None
    with open(log, errors="replace") as f:
        for line in f:
            m = re.match(r"^(JUnit .*?) :: (STARTED|SUCCESSFUL|FAILED|ABORTED|SKIPPED)\b", line)
            if m:
                name, st = m.group(1), m.group(2)
                if name not in status:
                    order.append(name)
                status[name] = st
                last_name = name if st in ("FAILED", "ABORTED", "SKIPPED") else None
            elif last_name and line.startswith("\t") and status.get(last_name) in ("ABORTED", "SKIPPED"):
                why = line.strip()[:160]
                reasons[why] = reasons.get(why, 0) + 1
                last_name = None
    if not order:
        return None
    leaves = [n for n in order if not any(o.startswith(n + " > ") for o in order)]
    count = lambda st: sum(1 for n in leaves if status[n] == st)
    unfinished = [n for n in order if status[n] == "STARTED" and n in leaves]
    return dict(ran=True, complete=False, source="console test feed (the XML report was missing)",
                tests=len(leaves), passed=count("SUCCESSFUL"), failed=count("FAILED"),
                skipped=count("ABORTED") + count("SKIPPED"),
                failed_names=[n for n in leaves if status[n] == "FAILED"][:50],
                unfinished=unfinished[:5],
                skip_reasons=sorted(reasons.items(), key=lambda kv: -kv[1])[:8])


def finished_without_tests(log):
    """Whether the console launcher ran to its end and found no test: its summary says '0 tests found'."""
    if not log or not os.path.exists(log):
        return False
    with open(log, errors="replace") as f:
        text = f.read()
    return "Test run finished" in text and re.search(r"^\[\s*0 tests found\s*\]", text, re.M) is not None


def junit_summary(folder, log):
    """Java results: one sub-folder per test class (run.sh runs one JVM per class), each with JUnit
    XML when the class finished and its console feed (feed.log) always; falls back to a flat folder."""
    parts, incomplete = [], []
    subdirs = sorted(d for d in glob.glob(os.path.join(folder or "", "*")) if os.path.isdir(d)) if folder else []
    if subdirs:
        for d in subdirs:
            r = junit_from_xml(d)
            if not r:
                feed = os.path.join(d, "feed.log")
                if finished_without_tests(feed):
                    continue  # a class that holds no tests (a helper named like a test): nothing to count
                r = junit_from_feed(feed)
                name = os.path.basename(d)
                if r:
                    incomplete.append(name + (f" (stopped in {r['unfinished'][0]})" if r["unfinished"] else ""))
                else:
                    incomplete.append(name + " (no result at all: crashed at start?)")
                    continue
            parts.append(r)
    else:
        r = junit_from_xml(folder) or junit_from_feed(log)
        if r:
            parts.append(r)
            if not r["complete"]:
                incomplete.append("the suite" + (f" (stopped in {r['unfinished'][0]})" if r["unfinished"] else ""))
    if not parts:
        return dict(ran=False, note="no Java test results (the suite did not run, or died before its first test)")
    reasons = {}
    for r in parts:
        for why, n in r.get("skip_reasons", []):
            reasons[why] = reasons.get(why, 0) + n
    out = dict(ran=True, complete=not incomplete,
               source="JUnit XML" + (" and console feeds of unfinished classes" if incomplete else ""),
               tests=sum(r["tests"] for r in parts), passed=sum(r["passed"] for r in parts),
               failed=sum(r["failed"] for r in parts), skipped=sum(r["skipped"] for r in parts),
               classes=len(subdirs) or None,
               failed_names=[n for r in parts for n in r["failed_names"]][:50],
               skip_reasons=sorted(reasons.items(), key=lambda kv: -kv[1])[:8])
    if incomplete:
        out["note"] = "INCOMPLETE: did not finish: " + "; ".join(incomplete[:10])
    return out


def join_benchmarks(ours, peer):
    """One row per measurement key, Athanor and PyTorch side by side."""
    rows, order = {}, []
    crashed = {r["key"]: r for r in ours if r.get("op") == "case"}  # driver crashes, case-level
    for r in ours + peer:
        if r.get("impl") not in ("athanor", "torch") or r.get("op") == "case":
            continue
        key = r["key"]
        if key not in rows:
            rows[key] = dict(key=key, op=r.get("op"), pass_=r.get("pass"), dtype=r.get("dtype"), shape=r.get("shape"),
                             flops=r.get("flops"))
            order.append(key)
        side = "athanor" if r["impl"] == "athanor" else "torch"
        rows[key][side] = r
    for key, rec in crashed.items():  # a case the driver died in: mark its measurements
        for k in list(rows):
            if k == key or k.startswith(key + "-"):
                rows[k].setdefault("athanor", dict(error=rec.get("error")))
        if not any(k == key or k.startswith(key + "-") for k in rows):
            rows[key] = dict(key=key, op=rec.get("case_op"), pass_="", dtype="", shape="", flops=None,
                             athanor=dict(error=rec.get("error")))
            order.append(key)
    out = []
    for key in order:
        row = rows[key]
        a, t = row.get("athanor") or {}, row.get("torch") or {}
        at, tt = a.get("tflops"), t.get("tflops")
        chk = a.get("check") or {}
        out.append(dict(key=key, op=row["op"], pass_=row["pass_"], dtype=row["dtype"], shape=row["shape"],
                        flops=row["flops"], athanor_tflops=at, torch_tflops=tt,
                        ratio=(at / tt) if (at and tt) else None,
                        athanor_ms=a.get("ms_median"), torch_ms=t.get("ms_median"),
                        athanor_reps=a.get("reps"), torch_reps=t.get("reps"),
                        check_ok=chk.get("ok"), check_rel_err=chk.get("rel_err"), check_limit=chk.get("limit"),
                        check_what=chk.get("what"),
                        athanor_error=a.get("error") if a else "not run", torch_error=t.get("error") if t else "not run",
                        torch_kernels=t.get("kernels")))
    return out


def fmt(v, spec=".1f"):
    return "—" if v is None else format(v, spec)


def write_md(rep, path):
    L = []
    env = rep.get("env", {})
    L.append("# Athanor GPU check")
    L.append("")
    L.append(f"- date (UTC): {env.get('date', '?')}")
    L.append(f"- GPU: {env.get('gpu', '?')}; driver {env.get('driver', '?')}; "
             f"nvidia-smi CUDA {env.get('driver_cuda', '?')}; nvcc {env.get('nvcc', '?')}")
    te = rep.get("torch_env") or {}
    if te:
        L.append(f"- PyTorch {te.get('torch')} (CUDA {te.get('cuda')}, cuDNN {te.get('cudnn')}), "
                 f"{te.get('sm_count')} SMs, allow_tf32={te.get('allow_tf32')}")
    L.append(f"- host: {env.get('host_cpu', '?')}, {env.get('host_cores', '?')} cores; "
             f"cmake {env.get('cmake', '?')}, compiler: {env.get('cxx', '?')}; source {env.get('source', '?')}")
    if rep.get("gpu_present") is False:
        L.append("")
        L.append("**No GPU was found: the CUDA tests skipped and the benchmarks did not run.**")
    L.append("")
    L.append("## Steps")
    L.append("")
    L.append("| step | exit | seconds | note |")
    L.append("| --- | --- | --- | --- |")
    for s in rep.get("steps", []):
        L.append(f"| {s['name']} | {s['rc']} | {s['seconds']:.1f} | {s['note']} |")
    L.append("")
    L.append("## Tests")
    L.append("")
    n, j = rep["tests"]["native"], rep["tests"]["java"]
    if n.get("complete"):
        L.append(f"- native (CUDA vs CPU ops): **{n['passed']} passed, {n['failed']} failed, {n['skipped']} skipped**")
    else:
        L.append(f"- native: {n.get('note')}")
    for name in n.get("failed_names", []):
        L.append(f"  - FAILED {name}")
    if j.get("ran"):
        L.append(f"- Java (JUnit, Java -> JNI -> CUDA): **{j['passed']} passed, {j['failed']} failed, "
                 f"{j['skipped']} skipped** of {j['tests']}"
                 + (f" in {j['classes']} test classes, one JVM each" if j.get("classes") else "")
                 + f" (from the {j['source']})")
        if not j.get("complete"):
            L.append(f"  - {j.get('note')}")
    else:
        L.append(f"- Java: {j.get('note')}")
    for name in j.get("failed_names", [])[:30]:
        L.append(f"  - FAILED {name.replace('JUnit Jupiter > ', '')}")
    if len(j.get("failed_names", [])) > 30:
        L.append(f"  - ... and more (see logs)")
    for why, count in j.get("skip_reasons", []):
        L.append(f"  - skipped x{count}: {why}")
    L.append("")
    L.append("## Benchmarks (median of single launches, CUDA events)")
    L.append("")
    L.append("TFLOP/s from FLOPs / median time. GEMM 2MNK; attention forward 4·B·H·T²·D (×0.5 causal), "
             "backward 2.5× forward. Ratio = Athanor / PyTorch (>1: Athanor faster). FP32 is strict FP32 on "
             "both sides. Check: Athanor's output spot-checked against a float64 host reference.")
    L.append("")
    L.append("| case | pass | Athanor TFLOP/s | PyTorch TFLOP/s | ratio | Athanor ms | PyTorch ms | check |")
    L.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for b in rep.get("benchmarks", []):
        if b["check_ok"] is None:
            chk = "—"
        else:
            chk = ("ok " if b["check_ok"] else "**FAILED** ") + fmt(b["check_rel_err"], ".1e")
        at = fmt(b["athanor_tflops"]) if b["athanor_tflops"] is not None else (
            "error" if b["athanor_error"] else "—")
        tt = fmt(b["torch_tflops"]) if b["torch_tflops"] is not None else ("error" if b["torch_error"] else "—")
        case = b["key"].rsplit("-fwd", 1)[0].rsplit("-bwd", 1)[0] if b["op"] == "attention" else b["key"]
        L.append(f"| {case} | {b['pass_']} | {at} | {tt} | {fmt(b['ratio'], '.2f')} | {fmt(b['athanor_ms'], '.3f')} | "
                 f"{fmt(b['torch_ms'], '.3f')} | {chk} |")
    errs = [b for b in rep.get("benchmarks", []) if b["athanor_error"] or b["torch_error"]]
    if errs:
        L.append("")
        L.append("Errors:")
        for b in errs:
            if b["athanor_error"]:
                L.append(f"- {b['key']} Athanor: {b['athanor_error']}")
            if b["torch_error"]:
                L.append(f"- {b['key']} PyTorch: {b['torch_error']}")
    kern = [(b["key"], b["torch_kernels"]) for b in rep.get("benchmarks", []) if b.get("torch_kernels")]
    if kern:
        L.append("")
        L.append("<details><summary>PyTorch kernels that ran (profiler)</summary>")
        L.append("")
        for key, ks in kern:
            L.append(f"- {key}: {'; '.join(ks)}")
        L.append("")
        L.append("</details>")
    for note in rep.get("notes", []):
        L.append("")
        L.append(f"Note: {note}")
    L.append("")
    with open(path, "w") as f:
        f.write("\n".join(L))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True, help="run.sh's work folder")
    ap.add_argument("--out-json", required=True)
    ap.add_argument("--out-md", required=True)
    ap.add_argument("--out-svg", default=None, help="the overlap timeline (default: <work>/logs/overlap.svg)")
    args = ap.parse_args()
    w = args.work
    env = {}
    if os.path.exists(os.path.join(w, "env.json")):
        try:
            env = json.load(open(os.path.join(w, "env.json")))
        except json.JSONDecodeError as e:
            env = {"error": f"env.json unreadable: {e}"}
    ours = read_jsonl(os.path.join(w, "ours.jsonl"))
    peer = read_jsonl(os.path.join(w, "peer.jsonl"))
    torch_env = next((r for r in peer if r.get("impl") == "torch-env"), None)
    notes = []
    if os.path.exists(os.path.join(w, "notes.txt")):
        notes = [l.strip() for l in open(os.path.join(w, "notes.txt")) if l.strip()]
    rep = dict(
        format=1,
        env=env,
        gpu_present=env.get("gpu_present"),
        torch_env=torch_env,
        steps=read_steps(os.path.join(w, "steps.tsv")),
        tests=dict(native=native_summary(os.path.join(w, "logs", "native-tests.log")),
                   java=junit_summary(os.path.join(w, "logs", "junit"), os.path.join(w, "logs", "java-tests.log"))),
        benchmarks=join_benchmarks(ours, peer),
        model=join_model(read_jsonl(os.path.join(w, "model-ours.jsonl")), read_jsonl(os.path.join(w, "model-peer.jsonl"))),
        overlap=read_overlap(os.path.join(w, "logs", "overlap.json")),
        notes=notes,
        formulas=dict(gemm="2*M*N*K", attention_fwd="4*B*H*T*T*D, x0.5 when causal",
                      attention_bwd="2.5 x attention_fwd", ratio="athanor_tflops / torch_tflops"),
    )
    with open(args.out_json, "w") as f:
        json.dump(rep, f, indent=1)
    write_md(rep, args.out_md)
    if rep["model"]:
        with open(args.out_md, "a") as f:
            f.write(model_md(rep["model"]))
    ov = rep["overlap"]
    if ov:
        svg = args.out_svg or os.path.join(w, "logs", "overlap.svg")
        if ov.get("overlapped"):
            try:
                os.makedirs(os.path.dirname(os.path.abspath(svg)), exist_ok=True)
                with open(svg, "w") as f:
                    f.write(overlap_svg(ov))
            except (OSError, KeyError, TypeError, ValueError) as e:
                svg = None
                ov["svg_error"] = str(e)
        else:
            svg = None
        with open(args.out_md, "a") as f:
            f.write(overlap_md(ov, svg))
    return 0


def model_key(r):
    return ("cpu" if str(r.get("device", "")).startswith("cpu") else "cuda", r.get("mode"), r.get("batch"), r.get("seq") if r.get("mode") == "train" else r.get("prompt_len"),
            r.get("decode_tokens"))


def join_model(ours, peer):
    """Pairs Athanor's and PyTorch's whole-model results by (mode, batch, seq/prompt, decode tokens)."""
    rows = []
    peers = {model_key(r): r for r in peer if "mode" in r and not r.get("compiled")}
    compiled = {model_key(r): r for r in peer if "mode" in r and r.get("compiled")}  # torch.compile, training only
    for o in ours:
        if "mode" not in o:
            continue
        p = peers.get(model_key(o), {})
        # decode: both sides report tokens_per_s = decode_tokens_per_s = batch / median decode-step seconds, measured
        # the same way (DecodeBench.java / torch_train.py: warm-up rounds, prefill and every step timed apart)
        pt = p.get("tokens_per_s") if o["mode"] == "train" else p.get("decode_tokens_per_s")
        ratio = o["tokens_per_s"] / pt if pt else None
        pc = compiled.get(model_key(o), {}).get("tokens_per_s") if o["mode"] == "train" else None
        rows.append(dict(device=o.get("device"), threads=o.get("threads"), mode=o["mode"], batch=o.get("batch"), seq=o.get("seq"), prompt_len=o.get("prompt_len"),
                         hopper_switch=bool(o.get("hopper_switch")), torch_compile_tokens_per_s=pc,
                         ratio_compile=o["tokens_per_s"] / pc if pc else None,
                         decode_tokens=o.get("decode_tokens"), athanor_tokens_per_s=o["tokens_per_s"],
                         torch_tokens_per_s=pt, ratio=ratio,
                         athanor_tflops=o.get("achieved_tflops"), athanor_prefill_ms=o.get("prefill_ms_median"),
                         torch_prefill_ms=p.get("prefill_ms_median"), torch=p))
    return rows


def model_md(rows):
    peak = 989.4
    out = ["", "## GPT-2 124M, whole model (BF16 compute, FP32 master weights)", "",
           "Ratio = Athanor / PyTorch tokens/s, same job. Training: forward + backward + clip + AdamW per step, median of "
           "10 steps; MFU from 6N + 6LTC FLOPs per token over the H200's %.1f dense BF16 TFLOP/s. Decode: greedy, KV cache, "
           "tokens/s = batch / median decode step (every step of 5 rounds after 2 warm-up rounds, prefill timed apart "
           "and given as median ms)." % peak,
           "Training also against torch.compile (the stronger peer; its compile time stays out of the timed steps), "
           "and with ATHANOR_CUDA_HOPPER=1 (the sm_90a wgmma GEMM instead of the default mma.sync one).",
           "", "| case | Athanor tok/s | PyTorch tok/s | ratio | torch.compile tok/s | ratio vs compile | Athanor MFU |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if str(r.get("device", "")).startswith("cpu"):
            case = "CPU (host, %s threads, FP32, gpt2-tiny 16M) train B=%s T=%s" % (r.get("threads"), r["batch"], r["seq"])
            tt = r["torch_tokens_per_s"]
            out.append("| %s | %.0f | %s | %s | | | |" % (case, r["athanor_tokens_per_s"], "%.0f" % tt if tt else "n/a",
                                                          "%.2f" % r["ratio"] if r["ratio"] else "n/a"))
            continue
        case = ("train B=%s T=%s%s" % (r["batch"], r["seq"], " (ATHANOR_CUDA_HOPPER=1)" if r.get("hopper_switch") else "")) \
            if r["mode"] == "train" else \
            ("decode B=%s prompt %s, %s new (prefill %s vs %s ms)" % (
                r["batch"], r["prompt_len"], r["decode_tokens"], fmt(r.get("athanor_prefill_ms"), ".2f"),
                fmt(r.get("torch_prefill_ms"), ".2f")))
        mfu = ("%.1f%%" % (100 * r["athanor_tflops"] / peak)) if r.get("athanor_tflops") else ""
        tt = r["torch_tokens_per_s"]
        tc = r.get("torch_compile_tokens_per_s")
        out.append("| %s | %.0f | %s | %s | %s | %s | %s |" % (
            case, r["athanor_tokens_per_s"], "%.0f" % tt if tt else "n/a", "%.2f" % r["ratio"] if r["ratio"] else "n/a",
            "%.0f" % tc if tc else "", "%.2f" % r["ratio_compile"] if r.get("ratio_compile") else "", mfu))
    return "\n".join(out) + "\n"



# ------------------------------------------------------------------ copy/compute overlap (athanor bench --mode overlap)

def read_overlap(path):
    """The last `bench --mode overlap` record of the file, or a note saying why there is none."""
    if not os.path.exists(path):
        return dict(missing="no overlap result (the overlap step did not run or failed; see logs/steps.log)")
    recs = [r for r in read_jsonl(path) if r.get("mode") == "overlap"]
    if not recs:
        return dict(missing=f"{os.path.basename(path)} holds no overlap record")
    return recs[-1]


def _lanes(run):
    """(lane label, [intervals]) for copies and GEMMs of one run, whatever stream they ran on."""
    ivs = run.get("intervals", [])
    return [("copy (h2d)", [x for x in ivs if x.get("op") == "h2d"]),
            ("compute (gemm)", [x for x in ivs if x.get("op") == "gemm"])]


def _streams(run, op):
    return sorted({x.get("stream", "?") for x in run.get("intervals", []) if x.get("op") == op})


def _esc(text):
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def overlap_svg(ov):
    """A hand-written SVG (no dependencies): per run (overlapped, serialized) one lane for copies and one for
    GEMMs, a bar per op on one time axis shared by both runs, the hidden fraction in the title."""
    runs = [("overlapped: copies on the copy stream, GEMMs on the compute stream", ov["overlapped"]),
            ("serialized: copies and GEMMs on one stream", ov["serialized"])]
    t_max = max([r.get("wall_ms", 0) for _, r in runs] + [x["end_ms"] for _, r in runs for x in r.get("intervals", [])]
                + [1e-6])
    W, left, right, lane_h, gap = 1000, 210, 20, 26, 8
    plot_w = W - left - right
    colors = {"h2d": "#4e79a7", "gemm": "#f28e2b"}
    y = 0
    out = []
    title = (f"Copy/compute overlap on {ov.get('device', '?')}: {100 * ov.get('hidden_fraction', 0):.1f}% of copy "
             f"time hidden behind compute")
    sub = (f"{ov.get('chunks')} chunks of {ov.get('chunk_bytes', 0) / 2**20:.0f} MiB host->device "
           f"({'pinned, async' if ov.get('async_copies') else 'synchronous copies'}), {ov.get('chunks')} "
           f"{ov.get('dtype')} GEMMs {'x'.join(str(v) for v in ov.get('gemm', []))}; wall {ov.get('overlapped_wall_ms', 0):.2f} ms "
           f"overlapped vs {ov.get('serialized_wall_ms', 0):.2f} ms serialized (x{ov.get('speedup', 0):.2f}); "
           f"copy {ov.get('copy_gb_per_s', 0):.1f} GB/s")
    out.append(f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="16" font-weight="bold">{_esc(title)}</text>')
    out.append(f'<text x="{W / 2}" y="42" text-anchor="middle" font-size="12">{_esc(sub)}</text>')
    y = 60
    for name, run in runs:
        out.append(f'<text x="10" y="{y + 14}" font-size="13" font-weight="bold">{_esc(name)} '
                   f'(wall {run.get("wall_ms", 0):.2f} ms)</text>')
        y += 22
        for label, ivs in _lanes(run):
            op = "h2d" if label.startswith("copy") else "gemm"
            streams = "/".join(_streams(run, op)) or "-"
            out.append(f'<text x="{left - 8}" y="{y + lane_h / 2 + 4}" text-anchor="end" font-size="12">'
                       f'{op} on the {_esc(streams)} stream</text>')
            out.append(f'<rect x="{left}" y="{y}" width="{plot_w}" height="{lane_h}" fill="#f4f4f4"/>')
            for x in ivs:
                x0 = left + plot_w * x["start_ms"] / t_max
                w = max(plot_w * (x["end_ms"] - x["start_ms"]) / t_max, 0.5)
                dur = x["end_ms"] - x["start_ms"]
                rate = ""
                if dur > 0 and x.get("bytes"):
                    rate = f", {x['bytes'] / (dur * 1e6):.1f} GB/s"
                elif dur > 0 and x.get("flops"):
                    rate = f", {x['flops'] / (dur * 1e9):.1f} TFLOP/s"
                tip = f"{op} {x.get('i')} on the {x.get('stream')} stream: {x['start_ms']:.3f} to {x['end_ms']:.3f} ms{rate}"
                out.append(f'<rect x="{x0:.2f}" y="{y + 2}" width="{w:.2f}" height="{lane_h - 4}" fill="{colors[op]}" '
                           f'stroke="white" stroke-width="0.5"><title>{_esc(tip)}</title></rect>')
                if w > 14:
                    out.append(f'<text x="{x0 + w / 2:.2f}" y="{y + lane_h / 2 + 4}" text-anchor="middle" font-size="11" '
                               f'fill="white">{x.get("i")}</text>')
            y += lane_h + 4
        y += gap
    # time axis
    out.append(f'<line x1="{left}" y1="{y}" x2="{left + plot_w}" y2="{y}" stroke="black"/>')
    step = _nice_step(t_max / 8)
    t = 0.0
    while t <= t_max * 1.0001:
        x = left + plot_w * t / t_max
        out.append(f'<line x1="{x:.2f}" y1="{y}" x2="{x:.2f}" y2="{y + 5}" stroke="black"/>')
        out.append(f'<text x="{x:.2f}" y="{y + 18}" text-anchor="middle" font-size="11">{t:g}</text>')
        t += step
    out.append(f'<text x="{left + plot_w / 2}" y="{y + 36}" text-anchor="middle" font-size="12">milliseconds from the '
               f'run\'s start event</text>')
    h = y + 48
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" '
            f'font-family="sans-serif">\n<rect width="{W}" height="{h}" fill="white"/>')
    return head + "\n" + "\n".join(out) + "\n</svg>\n"


def _nice_step(raw):
    if raw <= 0:
        return 1.0
    p = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * p:
            return m * p
    return 10 * p


def overlap_text_timeline(ov, cols=72):
    """Lanes of characters on one time scale: the op's index (mod 10) where it runs, '.' where the lane is idle."""
    runs = [("overlapped", ov["overlapped"]), ("serialized", ov["serialized"])]
    t_max = max([r.get("wall_ms", 0) for _, r in runs] + [1e-6])
    lines = []
    for name, run in runs:
        for label, ivs in _lanes(run):
            row = ["."] * cols
            for x in ivs:
                a = int(cols * x["start_ms"] / t_max)
                b = max(a + 1, int(round(cols * x["end_ms"] / t_max)))
                for c in range(max(a, 0), min(b, cols)):
                    row[c] = str(x.get("i", 0) % 10)
            lines.append(f"{name:<11} {label.split()[0]:<8}|{''.join(row)}|")
    lines.append(f"{'':<20}0{'ms':>{cols - 6}} {t_max:.2f}")
    return "\n".join(lines)


def overlap_md(ov, svg_path):
    out = ["", "## Copies hidden behind compute (two streams)", ""]
    if ov.get("missing"):
        return "\n".join(out + [f"Not measured: {ov['missing']}.", ""])
    out.append(
        f"`athanor bench --mode overlap` on {ov.get('device')}: {ov.get('chunks')} host->device copies of "
        f"{ov.get('chunk_bytes', 0) / 2**20:.0f} MiB from "
        f"{'pinned' if ov.get('pinned') else 'pageable (not pinned)'} memory on a copy stream while {ov.get('chunks')} "
        f"{ov.get('dtype')} GEMMs {'x'.join(str(v) for v in ov.get('gemm', []))} run on the compute stream; GEMM i "
        f"waits for chunk i's copy-done event, then {'multiplies chunk i (its left operand)' if ov.get('gemm_reads_chunk') else 'multiplies resident matrices'}; "
        f"chunk i+1 is copied meanwhile. Baseline: the same work on one stream. Median of {ov.get('repeats')} runs each (by wall time). "
        f"Hidden = (copy + compute - overlapped wall) / copy, copy and compute summed over the overlapped run's ops "
        f"(the copy time that ran behind a GEMM, from one run's timeline); vs serialized: the same with the serialized "
        f"run's op sums (the time actually saved, counting any slowdown of ops sharing the GPU and run-to-run noise).")
    out.append("")
    out.append("| hidden | hidden vs serialized | overlapped wall ms | serialized wall ms | speedup | copy ms | "
               "compute ms | copy GB/s alone | copy GB/s during compute | GEMM TFLOP/s alone | copy time concurrent with a GEMM |")
    out.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    out.append(f"| **{100 * ov.get('hidden_fraction', 0):.1f}%** | {100 * ov.get('hidden_fraction_vs_serialized', 0):.1f}% | "
               f"{ov.get('overlapped_wall_ms', 0):.3f} | {ov.get('serialized_wall_ms', 0):.3f} | {ov.get('speedup', 0):.2f} | "
               f"{ov.get('copy_total_ms', 0):.3f} | {ov.get('compute_total_ms', 0):.3f} | {ov.get('copy_gb_per_s', 0):.1f} | "
               f"{ov.get('copy_gb_per_s_during_compute', 0):.1f} | {ov.get('gemm_tflops', 0):.1f} | "
               f"{100 * ov.get('copy_concurrent_fraction', 0):.0f}% |")
    out.append("")
    out.append("copy ms and compute ms: sums over the overlapped run's ops.")
    if not ov.get("async_copies"):
        out.append("")
        out.append(f"Copies were not asynchronous: {ov.get('note', '')}.")
    if ov.get("overlapped") and ov.get("serialized"):
        out.append("")
        out.append("Timeline (each character is the op's index mod 10; '.' idle; one time scale for both runs):")
        out.append("")
        out.append("```")
        out.append(overlap_text_timeline(ov))
        out.append("```")
    out.append("")
    if svg_path:
        out.append(f"Figure: `logs/{os.path.basename(svg_path)}` inside `logs/logs.tar.gz` (one lane per stream, a bar per "
                   "op, both runs on one time axis); every interval is in `gpu-report.json` under `overlap`.")
    elif ov.get("svg_error"):
        out.append(f"The SVG could not be written: {ov['svg_error']}")
    out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
