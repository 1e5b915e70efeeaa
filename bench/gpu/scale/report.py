#!/usr/bin/env python3
"""The report of bench/gpu/scale/check.sh: reads its work folder W (steps.tsv, env.json, logs/, the runs' JSON lines,
plans and samples) and writes R/scale-report.md, R/scale.json and W/table.txt (the short table check.sh prints last).
Only what the runs wrote is reported; a missing file is said to be missing.

    python3 bench/gpu/scale/report.py W R
"""
import json
import os
import re
import sys

W, R = sys.argv[1], sys.argv[2]


def text(name):
    for p in (os.path.join(W, name), os.path.join(W, "logs", name)):
        try:
            with open(p, errors="replace") as f:
                return f.read()
        except OSError:
            pass
    return ""


def lines(name):
    out = []
    for line in text(name).splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def gib(b):
    return "?" if b is None else f"{b / 2**30:.1f} GiB"


def size_bytes(s):  # "11.6 GiB" -> bytes
    m = re.match(r"([\d.]+) (B|KiB|MiB|GiB|TiB)", s.strip())
    return float(m.group(1)) * {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}[m.group(2)] if m else None


env = {}
try:
    env = json.loads(text("env.json") or "{}")
except ValueError:
    pass
steps = [l.split("\t") for l in text("steps.tsv").splitlines() if l.strip()]
status = {s[0]: s for s in steps}
notes = [n for n in text("notes.txt").splitlines() if n.strip()]
envlog = text("env.log")


def dd(kind):
    m = re.search(r"dd %s: .*, ([\d.]+) ([GMk]?B)/s" % kind, envlog)
    return float(m.group(1)) * {"GB": 1e9, "MB": 1e6, "kB": 1e3, "B": 1}[m.group(2)] if m else None


dd_w, dd_r = dd("write"), dd("read")
out = {"env": env, "dd_write_bytes_per_s": dd_w, "dd_read_bytes_per_s": dd_r, "steps": steps, "notes": notes}

# ---- issue 10: NCCL test, MPI, dp 2
ncl = text("nccl.log")
counts = {k: int(v) for v, k in re.findall(r"\[\s*(\d+) tests (successful|failed|skipped|aborted)\s*\]", ncl)}
nccl_lib = (re.findall(r"NCCL of the Python installation: (.*)", ncl) or ["not found"])[0]
skips = [l.strip(" │├└─") for l in ncl.splitlines() if "Assumption failed" in l or "skipped:" in l.lower()][:6]
fails = [l.strip() for l in ncl.splitlines() if "✘" in l or "=> " in l][:8]
out["nccl"] = dict(counts=counts, library=nccl_lib, skipped=skips, failures=fails)

mpilog = text("mpi.log")
choice = (re.findall(r"^choice: (.*)$", mpilog, re.M) or ["(the mpi step did not run)"])[0]
mpi4py = [l for l in mpilog.splitlines() if l.startswith(("mpi4py", "config:", "library:", "loaded:"))]
found = []
if "== MPI launchers" in mpilog:
    sect = mpilog.split("== MPI launchers", 1)[1].split("== the payload", 1)[0].splitlines()[1:]
    found = [l for l in sect if l.startswith("/")]
onpath = mpilog.split("== mpi4py", 1)[0].split("== launchers on PATH", 1)[-1].strip().splitlines() if mpilog else []
out["mpi"] = dict(choice=choice, on_path=onpath, mpi4py=mpi4py, found=found)

dplog = text("dp.log")
dp = [d for d in lines("dp-mpi.jsonl") if "step" in d and "loss" in d]
acc = [d for d in lines("accum2.jsonl") if "step" in d and "loss" in d]
ncc = [d for d in lines("dp-nccl.jsonl") if "step" in d and "loss" in d]
off = [d for d in lines("dp-off.jsonl") if "step" in d and "loss" in d]
dph = [d for d in lines("dp-host.jsonl") if "step" in d and "loss" in d]
dph1 = [d for d in lines("dp-host1.jsonl") if "step" in d and "loss" in d]  # --zero 1 with the optimizer on the host
exits = dict(re.findall(r"^(dp-mpi|dp-off|accum2|dp-nccl|dp-host1|dp-host) exit (\d+)", dplog, re.M))
overlap_line = (re.findall(r"^gradient all-reduce overlapped with the backward: .*$", dplog, re.M) or [""])[0]
launcher = (re.findall(r"^== which mpirun: (.*)$", dplog, re.M) or ["-"])[0]
ERR = r"NCCL|rror|xception|refus|unavailable|fail|athanor train: "


def first_error(section):
    errs = [l.strip() for l in section.splitlines() if re.search(ERR, l) and " exit " not in l and not l.startswith("==")]
    return errs[0][:300] if errs else ""


nccl_err = first_error(dplog.split("--collectives nccl (both ranks", 1)[1]) if "--collectives nccl (both ranks" in dplog else ""
dp_err = first_error(dplog.split("== one process", 1)[0].split("(optimizer on the host)", 1)[0]) if not lines("dp-mpi.jsonl") else ""
host_err = first_error(dplog.split("(optimizer on the host)", 1)[1].split("(ZeRO 1 on the host)", 1)[0].split("== one process", 1)[0]) \
    if "(optimizer on the host)" in dplog and not dph else ""
host1_err = first_error(dplog.split("(ZeRO 1 on the host)", 1)[1].split("== one process", 1)[0]) \
    if "(ZeRO 1 on the host)" in dplog and not dph1 else ""
# ZeRO 1 on the host against ZeRO 0 on the host: the same update on the same elements, so the same losses as logged
host1_same = bool(dph1) and len(dph1) == len(dph) and all(a["loss"] == b["loss"] and a.get("grad_norm") == b.get("grad_norm")
                                                         for a, b in zip(dph, dph1))
same = bool(dp) and len(dp) == len(acc) and all(a["loss"] == b["loss"] for a, b in zip(dp, acc))
# --overlap on (dp-mpi) against off: every step's loss and gradient norm as logged (Java's shortest round-trip decimal:
# the same float32 prints the same)
on_off = bool(dp) and len(dp) == len(off) and all(a["loss"] == b["loss"] and a.get("grad_norm") == b.get("grad_norm")
                                                  for a, b in zip(dp, off))
out["dp"] = dict(launcher=launcher, device="cuda" if env.get("gpu_present") else "cpu", exits=exits, dp2_losses=[d["loss"] for d in dp],
                 dp2_step_ms=[d.get("step_ms") for d in dp], accum2_losses=[d["loss"] for d in acc],
                 dp2_equals_accum2=same, dp2_error=dp_err, nccl_shared_gpu_losses=[d["loss"] for d in ncc], nccl_shared_gpu_error=nccl_err,
                 overlap=overlap_line, overlap_off_losses=[d["loss"] for d in off], overlap_on_equals_off=on_off,
                 comm_wait_ms=[d.get("comm_wait_ms") for d in dp], comm_buckets=[d.get("comm_buckets") for d in dp],
                 dp2_host_offload_losses=[d["loss"] for d in dph], dp2_host_offload_step_ms=[d.get("step_ms") for d in dph],
                 dp2_host_offload_error=host_err, dp2_zero1_host_offload_losses=[d["loss"] for d in dph1],
                 dp2_zero1_host_offload_step_ms=[d.get("step_ms") for d in dph1], dp2_zero1_host_offload_error=host1_err,
                 dp2_zero1_host_equals_zero0_host=host1_same)

# ---- issue 9: GPT-2 124M in memory and with the optimizer on the host
g = lines("gpt2.jsonl")
base = next((r.get("tokens_per_s") for r in g if r.get("case") == "in-memory"), None)
gpt2 = []
for r in g:
    o = r.get("offload") or {}
    gpt2.append(dict(case=r.get("case"), tokens_per_s=r.get("tokens_per_s"), step_ms_median=r.get("step_ms_median"),
                     ratio=(r["tokens_per_s"] / base) if base and r.get("tokens_per_s") else None,
                     disk_roles=o.get("disk_roles"), host_device_bytes_per_step=o.get("host_device_bytes_per_step"),
                     disk_bytes_per_step=o.get("disk_bytes_per_step")))
out["gpt2"] = gpt2


# ---- issue 9: all three tiers
def plan_of(name):
    t = text(name)
    head = (re.findall(r"^athanor plan: (.*)$", t, re.M) or [""])[0]
    params = re.search(r"([\d.]+)M parameters", head)
    tiers = {k: v for k, v in re.findall(r"^  (DEVICE|HOST_PINNED|HOST|DISK): ([\d.]+ \w+)", t, re.M)}
    per = re.search(r"per step: ([\d.]+ \w+) between \S+ and the host, ([\d.]+ \w+) of DISK traffic", t)
    refusal = (re.findall(r"^athanor plan: (not enough.*)$", t, re.M) or [""])[0]
    return dict(model=head, params_m=float(params.group(1)) if params else None, tiers=tiers,
                host_device_per_step=per.group(1) if per else None, disk_per_step=per.group(2) if per else None,
                refusal=refusal[:400])


scale = {}
for name in ("scale-sure", "scale-max"):
    p = plan_of(name + ".plan")
    st = [d for d in lines(name + ".jsonl") if "step" in d and "loss" in d]
    try:
        sample = json.loads(text(name + ".sample.json") or "{}")
    except ValueError:
        sample = {}
    est = None
    if p["disk_per_step"] and dd_w and dd_r:
        bw = min(dd_w, dd_r)
        est = dict(disk_s_per_step=size_bytes(p["disk_per_step"]) / bw,
                   disk_init_s=(size_bytes(p["tiers"].get("DISK", "0 B")) or 0) / dd_w)
    scale[name] = dict(args=text(name + ".args").strip(), plan=p, status=status.get(name),
                       losses=[d["loss"] for d in st], step_s=[round(d.get("step_ms", 0) / 1e3, 2) for d in st],
                       measured=sample, estimate_from_dd=est)
ladder = [l for l in text("scale-max.log").splitlines() if l.startswith(("-- ", "budgets:", "chosen:", "no shape"))]
scale["ladder"] = ladder
out["scale"] = scale

# ---- the Markdown report
md = [f"# Issues 9 and 10 on the GPU: `bench/gpu/scale/check.sh`", ""]
md.append(f"- date (UTC): {env.get('date', '?')}; GPU: {env.get('gpu', '?')} (driver {env.get('driver', '?')}, "
          f"{env.get('gpu_mib_total', 0)} MiB, {env.get('gpu_mib_free', 0)} MiB free at the start)")
md.append(f"- host: {env.get('cores', '?')} cores, MemTotal {gib(env.get('host_total'))}, MemAvailable "
          f"{gib(env.get('host_available'))}; free disk under the work folder {gib(env.get('disk_free'))}; direct I/O "
          f"(dd, 1 GiB, 4 MiB blocks): write {dd_w / 1e9 if dd_w else 0:.2f} GB/s, read {dd_r / 1e9 if dd_r else 0:.2f} GB/s")
for n in notes:
    md.append(f"- NOTE: {n}")
md += ["", "## Steps", "", "| step | exit | seconds | note |", "| --- | --- | --- | --- |"]
md += [f"| {s[0]} | {s[1]} | {s[2]} | {s[3] if len(s) > 3 else ''} |" for s in steps]
md += ["", "## Issue 10: NCCL and two processes on one GPU", "",
       f"- `NcclCommunicatorTest` through JNI: {counts or 'no summary in the log'} (aborted: an assumption failed, the "
       f"test skipped itself with the reason below); NCCL: {nccl_lib}"]
md += [f"  - {l}" for l in skips + fails]
md.append(f"- MPI: {choice}")
md += [f"  - on PATH: {l}" for l in onpath if l.strip()]
md += [f"  - {l}" for l in mpi4py]
md += [f"  - found: {l}" for l in found]
d = out["dp"]
md.append(f"- `mpirun -np 2 train --device {d['device']} --dp 2 --collectives mpi` (mpirun: {launcher}; exit {exits.get('dp-mpi', '-')}): "
          f"losses {d['dp2_losses']}, seconds per step {[round((x or 0) / 1e3, 3) for x in d['dp2_step_ms']]}"
          f"{'; first error line: `' + dp_err + '`' if dp_err else ''}")
md.append(f"  - overlap on: `{overlap_line or 'no overlap line in the log'}`; comm_wait_ms per step {d['comm_wait_ms']}, "
          f"buckets per step {d['comm_buckets']}")
md.append(f"- the same with `--overlap off` (exit {exits.get('dp-off', '-')}): losses {d['overlap_off_losses']}; every step's "
          f"loss and gradient norm equal to overlap on's as logged: {on_off}")
md.append(f"- one process with `--accum 2` (exit {exits.get('accum2', '-')}): losses {d['accum2_losses']}; "
          f"equal to dp 2's as logged: {same}")
if "dp-host" in exits:
    md.append(f"- dp 2 with the optimizer on each rank's host (`--offload auto --mem-device 450m`, exit {exits['dp-host']}): "
              f"losses {d['dp2_host_offload_losses']} (dp 2 in memory: {d['dp2_losses'][:2]}; CPU AdamW, so close, not equal), "
              f"seconds per step {[round((x or 0) / 1e3, 3) for x in d['dp2_host_offload_step_ms']]}"
              f"{'; first error line: `' + host_err + '`' if host_err else ''}")
if "dp-host1" in exits:
    md.append(f"- the same with `--zero 1` (each rank its shard of the optimizer on its host, exit {exits['dp-host1']}): "
              f"losses {d['dp2_zero1_host_offload_losses']}; every step's loss and norm equal to ZeRO 0's as logged: "
              f"{host1_same}; seconds per step {[round((x or 0) / 1e3, 3) for x in d['dp2_zero1_host_offload_step_ms']]}"
              f"{'; first error line: `' + host1_err + '`' if host1_err else ''}")
if "dp-nccl" in exits:
    md.append(f"- `--collectives nccl` with both ranks on the one GPU (exit {exits['dp-nccl']}): losses {d['nccl_shared_gpu_losses']}"
              f"{'; first error line: `' + nccl_err + '`' if nccl_err else ''}")
md += ["", "## Issue 9: GPT-2 124M (B=16, T=1024) with the optimizer on the host", ""]
if gpt2:
    md += ["| case | tokens/s | step ms (median) | / in memory | moments on DISK | host<->GPU per step (plan) | DISK per step (plan) |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in gpt2:
        md.append(f"| {r['case']} | {r['tokens_per_s']} | {r['step_ms_median']} | "
                  f"{'%.3f' % r['ratio'] if r['ratio'] else '-'} | {r['disk_roles'] if r['disk_roles'] is not None else '-'} | "
                  f"{gib(r['host_device_bytes_per_step']) if r['host_device_bytes_per_step'] else '-'} | "
                  f"{gib(r['disk_bytes_per_step']) if r['disk_bytes_per_step'] else '-'} |")
else:
    md.append("not run (see the steps)")
md += ["", "## Issue 9: two training steps with all three tiers", ""]
for name, label in (("scale-sure", "GPT-2 XL under budgets that force the three tiers"),
                    ("scale-max", "the largest Llama shape of the ladder whose plan fits this machine")):
    s = scale[name]
    p = s["plan"]
    md.append(f"### {label}")
    st = s["status"]
    md.append(f"- arguments: `{s['args'] or '-'}`; step: "
              + (f"exit {st[1]} after {st[2]} s {st[3] if len(st) > 3 else ''}" if st else "not run"))
    md.append(f"- plan: {p['model'] or '-'}")
    if p["refusal"]:
        md.append(f"- plan refused: {p['refusal']}")
    if p["tiers"]:
        md.append("- planned bytes per tier: " + ", ".join(f"{k} {v}" for k, v in p["tiers"].items())
                  + f"; per step {p['host_device_per_step']} between GPU and host, {p['disk_per_step']} of DISK traffic")
    if s["estimate_from_dd"]:
        e = s["estimate_from_dd"]
        md.append(f"- estimate from dd: {e['disk_s_per_step']:.0f} s of DISK traffic per step, {e['disk_init_s']:.0f} s to "
                  "write the DISK state once (the rest of a step, GPU and CPU AdamW, is smaller at these sizes)")
    md.append(f"- measured: losses {s['losses'] or '-'}; seconds per step {s['step_s'] or '-'}")
    if s["measured"]:
        m = s["measured"]
        md.append(f"- the process (whole run, initialization included): disk read {gib(m.get('disk_read_bytes'))}, "
                  f"written {gib(m.get('disk_write_bytes'))} (block layer, /proc/PID/io), peak RSS "
                  f"{gib(m.get('peak_rss_bytes'))}, peak GPU memory used {m.get('peak_gpu_mib')} MiB (nvidia-smi)")
    md.append("")
if ladder:
    md += ["The ladder:", ""] + [f"    {l}" for l in ladder] + [""]
sure, mx = scale["scale-sure"], scale["scale-max"]
ratio = next((r["ratio"] for r in gpt2 if r["case"] == "offload host 8g"), None)
md += ["## Row for bench/results/README.md", "",
       "| file | what it is | made by |", "| --- | --- | --- |",
       f"| `{(env.get('date') or '?')[:10]}-gpu-h200-<HHMM>-scale.md` | issues 9 and 10 on the GPU: NcclCommunicatorTest "
       f"{counts or '-'}; dp 2 on one GPU over {choice.split(':')[0]} ({'ran' if d['dp2_losses'] else 'did not run'}); "
       f"GPT-2 124M with the optimizer on the host at {'%.2f' % ratio if ratio else '?'} of in-memory tokens/s; "
       f"{sure['plan']['params_m'] or '?'}M parameters {'trained 2 steps' if len(sure['losses']) >= 2 else 'not trained'} "
       f"on GPU + host + DISK; largest: {mx['plan']['params_m'] or '?'}M "
       f"{'trained 2 steps' if len(mx['losses']) >= 2 else 'not trained'} | `bash bench/gpu/scale/check.sh` on the GPU "
       "machine (copy `$OUT/scale-report.md` here) |", ""]
os.makedirs(R, exist_ok=True)
with open(os.path.join(R, "scale-report.md"), "w") as f:
    f.write("\n".join(md) + "\n")
with open(os.path.join(R, "scale.json"), "w") as f:
    json.dump(out, f, indent=1)

# ---- the short table (printed last by check.sh)
t = ["| part | result |", "| --- | --- |"]
t.append(f"| GPU | {env.get('gpu', '?')}; dd direct write/read {dd_w / 1e9 if dd_w else 0:.2f}/{dd_r / 1e9 if dd_r else 0:.2f} GB/s |")
t.append(f"| NCCL test | {counts or 'no result'} |")
t.append(f"| MPI | {choice[:90]} |")
t.append(f"| dp 2 ({d['device']}, staged) | exit {exits.get('dp-mpi', '-')}; "
         + (f"losses {d['dp2_losses'][:3]}...; = accum 2: {same}; overlap on = off: {on_off} |" if d['dp2_losses']
            else f"{dp_err[:90] or 'no losses'} |"))
if "dp-host" in exits:
    t.append(f"| dp 2, optimizer on the host | exit {exits['dp-host']}; "
             + (f"losses {d['dp2_host_offload_losses']} |" if dph else f"{host_err[:90] or 'no losses'} |"))
if "dp-host1" in exits:
    t.append(f"| dp 2 ZeRO 1, optimizer on the host | exit {exits['dp-host1']}; "
             + (f"losses {d['dp2_zero1_host_offload_losses']}; = ZeRO 0 on the host: {host1_same} |" if dph1
                else f"{host1_err[:90] or 'no losses'} |"))
if "dp-nccl" in exits:
    t.append(f"| dp 2 NCCL, shared GPU | exit {exits['dp-nccl']}; {(nccl_err or str(d['nccl_shared_gpu_losses']))[:90]} |")
for r in gpt2:
    t.append(f"| GPT-2 {r['case']} | {r['tokens_per_s']} tokens/s{', %.3f of in memory' % r['ratio'] if r['ratio'] else ''} |")
for name in ("scale-sure", "scale-max"):
    s = scale[name]
    t.append(f"| {name} {s['plan']['params_m'] or '?'}M | {'exit %s after %s s' % tuple(s['status'][1:3]) if s['status'] else 'not run'}; "
             f"s/step {s['step_s'] or '-'}; losses {s['losses'] or '-'}; DISK {s['plan']['tiers'].get('DISK', '-')} |")
with open(os.path.join(W, "table.txt"), "w") as f:
    f.write("\n".join(t) + "\n")
print("\n".join(t))
