"""Self time by function of a V8 .cpuprofile (node --cpu-prof): the top N, with the JS file and line.

Usage: python3 bench/cpuprof_top.py PROFILE [N]
"""
import collections
import json
import sys

profile = json.load(open(sys.argv[1]))
top = int(sys.argv[2]) if len(sys.argv) > 2 else 30
nodes = {n["id"]: n for n in profile["nodes"]}
self_us = collections.Counter()
for sample, delta in zip(profile["samples"], profile["timeDeltas"]):
    cf = nodes[sample]["callFrame"]
    self_us[(cf["functionName"] or "(anonymous)", cf["url"].split("/")[-1], cf["lineNumber"] + 1)] += delta
total = sum(self_us.values())
print(f"{total / 1e6:.2f} s sampled")
for (fn, url, line), us in self_us.most_common(top):
    print(f"{us / 1e3:10.1f} ms {100 * us / total:5.1f}%  {fn}  {url}:{line}")
