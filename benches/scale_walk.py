"""The smallest checker a team would write instead of drift-detector: parse both lists, index live by
identity, walk the desired keys (lists by position) and report the paths that differ. No defaults,
no normalization, no ownership: a floor to compare speed with, not a correct engine.
Usage: python3 scale_walk.py DIR  (the files written by `--example scale_pairs`)."""
import json, sys, time

def walk(d, l, path, out):
    if isinstance(d, dict):
        if not isinstance(l, dict):
            out.append(path); return
        for k, v in d.items():
            walk(v, l.get(k), path + "/" + k, out)
    elif isinstance(d, list):
        if not isinstance(l, list) or len(l) < len(d):
            out.append(path); return
        for i, v in enumerate(d):
            walk(v, l[i], path + "/" + str(i), out)
    elif d != l:
        out.append(path)

t0 = time.perf_counter()
base = sys.argv[1]
desired = json.load(open(base + "/desired.json"))["items"]
live = json.load(open(base + "/live.json"))["items"]
key = lambda o: (o["apiVersion"], o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])
by_key = {key(o): o for o in live}
drifted = 0
for d in desired:
    out = []
    walk(d, by_key.get(key(d)), "", out)
    drifted += bool(out)
print(f"pairs={len(desired)} drifted={drifted} seconds={time.perf_counter() - t0:.3f}")
