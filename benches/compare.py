#!/usr/bin/env python3
"""Side-by-side, in one run, on the same Deployment pairs (ARCHITECTURE §10):
drift-core's engine, a bare desired-leaf walk, json_patch::diff of whole objects (criterion), and the
Python `deepdiff` a do-it-yourself script would use.

    pip install deepdiff
    python3 benches/compare.py            # from the workspace root

It runs `cargo bench -p drift-benches --bench diff -- deployment_pair`, reads criterion's medians from
target/criterion, times DeepDiff on the pairs `dump_pairs` writes, and prints one table.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

try:
    from deepdiff import DeepDiff
except ImportError:
    sys.exit("deepdiff is not installed: pip install deepdiff")

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.chdir(root)
tmp = tempfile.mkdtemp(prefix="drift-pairs-")
subprocess.run(["cargo", "run", "-q", "--release", "-p", "drift-benches", "--example", "dump_pairs", "--", tmp], check=True)
subprocess.run(["cargo", "bench", "-q", "-p", "drift-benches", "--bench", "diff", "--", "deployment_pair",
                "--warm-up-time", "2", "--measurement-time", "6"], check=True,
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def criterion_median_ns(name):
    path = os.path.join(root, "target", "criterion", "deployment_pair", name.replace("/", "_"), "new", "estimates.json")
    with open(path) as f:
        return json.load(f)["median"]["point_estimate"]


def deepdiff_median_ns(case, runs=300):
    with open(os.path.join(tmp, f"{case}.desired.json")) as f:
        desired = json.load(f)
    with open(os.path.join(tmp, f"{case}.live.json")) as f:
        live = json.load(f)
    samples = []
    for _ in range(runs):
        t = time.perf_counter_ns()
        DeepDiff(desired, live, ignore_order=True)
        samples.append(time.perf_counter_ns() - t)
    return statistics.median(samples)


rows = []
for case in ("no_drift", "one_drift"):
    engine = criterion_median_ns(f"engine/{case}")
    rows.append((case, "drift-core engine", engine))
    rows.append((case, "bare desired-leaf walk (floor)", criterion_median_ns(f"bare_leaf_walk/{case}")))
    rows.append((case, "json_patch::diff (whole objects)", criterion_median_ns(f"json_patch_diff/{case}")))
    rows.append((case, "python deepdiff (ignore_order)", deepdiff_median_ns(case)))

print(f"{'pair':<10} {'tool':<36} {'median':>12} {'vs engine':>10}")
for case, tool, ns in rows:
    engine = next(n for c, t, n in rows if c == case and t == "drift-core engine")
    unit = f"{ns / 1000:.2f} µs" if ns < 1e6 else f"{ns / 1e6:.2f} ms"
    print(f"{case:<10} {tool:<36} {unit:>12} {ns / engine:>9.1f}x")
