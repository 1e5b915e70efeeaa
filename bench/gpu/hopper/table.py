#!/usr/bin/env python3
"""Markdown table of bench_cuda results (JSON Lines) against the PyTorch peer's (peer.py) on the same cases.

usage: table.py OP PASS PEER_LABEL=PEER_FILE LABEL=FILE [LABEL=FILE ...]
  OP: the records' "op" (gemm, attention); PASS: their "pass" (fwd, bwd) or "any".
One row per case key; per column TFLOP/s, the ratio to the peer and the result's check (ok/BAD and its error).
"""
import json
import os
import sys


def load(path, op, pass_):
    out = {}
    if os.path.exists(path):
        for line in open(path):
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if r.get("op") == op and (pass_ == "any" or r.get("pass") == pass_):
                out[r["key"]] = r
    return out


def tflops(r):
    if not r or r.get("error") or not r.get("ms_median"):
        return None
    return r["flops"] / (r["ms_median"] * 1e-3) / 1e12


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    op, pass_ = sys.argv[1], sys.argv[2]
    peer_label, peer_path = sys.argv[3].split("=", 1)
    cols = [a.split("=", 1) for a in sys.argv[4:]]
    peer = load(peer_path, op, pass_)
    ours = [(label, load(path, op, pass_)) for label, path in cols]
    keys = []
    for d in [peer] + [d for _, d in ours]:
        for k in d:
            if k not in keys:
                keys.append(k)
    print(f"| case | {peer_label} TFLOP/s | " + " | ".join(f"{label} TFLOP/s (ratio, check)" for label, _ in ours) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in ours) + " |")
    for key in keys:
        p = tflops(peer.get(key))
        cells = []
        for _, d in ours:
            r = d.get(key)
            t = tflops(r)
            if t is None:
                cells.append("error: " + str((r or {}).get("error", "missing"))[:60])
                continue
            c = r.get("check") or {}
            chk = ("ok" if c.get("ok") else "BAD") + (f" {c['rel_err']:.1e}" if c.get("rel_err") is not None else "")
            cells.append(f"{t:.1f} ({t / p:.2f}, {chk})" if p else f"{t:.1f} ({chk})")
        print((f"| {key} | {p:.1f} | " if p else f"| {key} | - | ") + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
