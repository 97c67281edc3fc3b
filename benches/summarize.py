#!/usr/bin/env python3
"""Prints criterion results as a Markdown table.

Usage: python3 benches/summarize.py [--prefix P]... DIR [DIR...]

Each DIR is a criterion output folder (target/criterion, or a copy of it
kept from an earlier run). Per benchmark it prints the lowest median over
the runs (on a shared, busy machine the least disturbed run is the best
estimate of the cost), the spread of the medians, time per element and
elements/s on one core.
"""
import json
import os
import sys


def fmt_time(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def fmt_rate(per_s):
    if per_s >= 1e6:
        return f"{per_s / 1e6:.2f} M/s"
    if per_s >= 1e3:
        return f"{per_s / 1e3:.1f} k/s"
    return f"{per_s:.0f} /s"


def load(root, prefixes):
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        if os.path.basename(dirpath) != "new" or "benchmark.json" not in files:
            continue
        try:
            with open(os.path.join(dirpath, "benchmark.json")) as f:
                meta = json.load(f)
            with open(os.path.join(dirpath, "estimates.json")) as f:
                est = json.load(f)
        except (OSError, ValueError) as e:
            print(f"skipping {dirpath}: {e}", file=sys.stderr)
            continue
        name = meta["full_id"]
        if prefixes and not any(name.startswith(p) for p in prefixes):
            continue
        elems = (meta.get("throughput") or {}).get("Elements") or 1
        out[name] = (est["median"]["point_estimate"], elems)
    return out


def main():
    args = sys.argv[1:]
    prefixes, dirs = [], []
    while args:
        a = args.pop(0)
        if a == "--prefix" and args:
            prefixes.append(args.pop(0))
        else:
            dirs.append(a)
    if not dirs:
        dirs = ["target/criterion"]
    runs = [load(d, prefixes) for d in dirs]
    names = sorted(set().union(*runs))
    print("| benchmark | best median / iter | medians over runs | per element | per core |")
    print("|---|---|---|---|---|")
    for name in names:
        got = [r[name] for r in runs if name in r]
        meds = [m for m, _ in got]
        elems = got[0][1]
        best = min(meds)
        per = best / elems
        spread = fmt_time(min(meds)) if len(meds) == 1 else f"{fmt_time(min(meds))} – {fmt_time(max(meds))} ({len(meds)} runs)"
        print(f"| `{name}` | {fmt_time(best)} | {spread} | {fmt_time(per)} | {fmt_rate(1e9 / per)} |")


if __name__ == "__main__":
    main()
