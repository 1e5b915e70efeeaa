#!/usr/bin/env python3
"""Writes the GPU check's report (gpu-report.json and gpu-report.md) from what bench/gpu/run.sh
left in its work folder: steps.tsv (one line per step: name, exit code, seconds, note), env.json
(machine and tool versions), native-tests.log, junit/*.xml (the Java suite's reports),
ours.jsonl (bench_cuda) and peer.jsonl (peer.py). Any of them may be missing: the report then says
what is missing instead of failing. Python standard library only.

TFLOP/s = FLOPs / median time; FLOPs: GEMM 2*M*N*K; attention forward 4*B*H*T*T*D (x0.5 causal),
backward 2.5 x forward. Ratio = Athanor TFLOP/s / PyTorch TFLOP/s (above 1: Athanor is faster).
"""
import argparse
import glob
import json
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


def junit_summary(folder, log):
    """Java results: one sub-folder per test class (run.sh runs one JVM per class), each with JUnit
    XML when the class finished and its console feed (feed.log) always; falls back to a flat folder."""
    parts, incomplete = [], []
    subdirs = sorted(d for d in glob.glob(os.path.join(folder or "", "*")) if os.path.isdir(d)) if folder else []
    if subdirs:
        for d in subdirs:
            r = junit_from_xml(d)
            if not r:
                r = junit_from_feed(os.path.join(d, "feed.log"))
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
    return 0


def model_key(r):
    return ("cpu" if str(r.get("device", "")).startswith("cpu") else "cuda", r.get("mode"), r.get("batch"), r.get("seq") if r.get("mode") == "train" else r.get("prompt_len"),
            r.get("decode_tokens"))


def join_model(ours, peer):
    """Pairs Athanor's and PyTorch's whole-model results by (mode, batch, seq/prompt, decode tokens)."""
    rows = []
    peers = {model_key(r): r for r in peer if "mode" in r}
    for o in ours:
        if "mode" not in o:
            continue
        p = peers.get(model_key(o), {})
        # decode: both sides report tokens_per_s = decode_tokens_per_s = batch / median decode-step seconds, measured
        # the same way (DecodeBench.java / torch_train.py: warm-up rounds, prefill and every step timed apart)
        pt = p.get("tokens_per_s") if o["mode"] == "train" else p.get("decode_tokens_per_s")
        ratio = o["tokens_per_s"] / pt if pt else None
        rows.append(dict(device=o.get("device"), threads=o.get("threads"), mode=o["mode"], batch=o.get("batch"), seq=o.get("seq"), prompt_len=o.get("prompt_len"),
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
           "", "| case | Athanor tok/s | PyTorch tok/s | ratio | Athanor MFU |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        if str(r.get("device", "")).startswith("cpu"):
            case = "CPU (host, %s threads, FP32, gpt2-tiny 16M) train B=%s T=%s" % (r.get("threads"), r["batch"], r["seq"])
            tt = r["torch_tokens_per_s"]
            out.append("| %s | %.0f | %s | %s | |" % (case, r["athanor_tokens_per_s"], "%.0f" % tt if tt else "n/a",
                                                      "%.2f" % r["ratio"] if r["ratio"] else "n/a"))
            continue
        case = ("train B=%s T=%s" % (r["batch"], r["seq"])) if r["mode"] == "train" else \
            ("decode B=%s prompt %s, %s new (prefill %s vs %s ms)" % (
                r["batch"], r["prompt_len"], r["decode_tokens"], fmt(r.get("athanor_prefill_ms"), ".2f"),
                fmt(r.get("torch_prefill_ms"), ".2f")))
        mfu = ("%.1f%%" % (100 * r["athanor_tflops"] / peak)) if r.get("athanor_tflops") else ""
        tt = r["torch_tokens_per_s"]
        out.append("| %s | %.0f | %s | %s | %s |" % (case, r["athanor_tokens_per_s"], "%.0f" % tt if tt else "n/a",
                                                   "%.2f" % r["ratio"] if r["ratio"] else "n/a", mfu))
    return "\n".join(out) + "\n"



if __name__ == "__main__":
    sys.exit(main())
