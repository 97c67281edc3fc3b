#!/usr/bin/env python3
"""Prints the latest criterion results (target/criterion/**/new/) as a
Markdown table: median time per iteration, the 95% interval of the mean,
time per element and elements/s on one core.

Usage: python3 benches/summarize.py [CRITERION_DIR] [PREFIX...]
"""
import json
import os
import sys


def fmt_time(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.1f} ns"


def fmt_rate(per_s):
    if per_s >= 1e6:
        return f"{per_s / 1e6:.2f} M/s"
    if per_s >= 1e3:
        return f"{per_s / 1e3:.1f} k/s"
    return f"{per_s:.0f} /s"


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "target/criterion"
    prefixes = sys.argv[2:]
    rows = []
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
        med = est["median"]["point_estimate"]
        lo = est["mean"]["confidence_interval"]["lower_bound"]
        hi = est["mean"]["confidence_interval"]["upper_bound"]
        rows.append((name, med, lo, hi, elems))
    rows.sort()
    print("| benchmark | median / iter | mean 95% CI | per element | per core |")
    print("|---|---|---|---|---|")
    for name, med, lo, hi, elems in rows:
        per = med / elems
        print(
            f"| `{name}` | {fmt_time(med)} | {fmt_time(lo)} – {fmt_time(hi)} "
            f"| {fmt_time(per)} | {fmt_rate(1e9 / per)} |"
        )


if __name__ == "__main__":
    main()
