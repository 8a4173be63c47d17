"""Two builds of gconv side by side: is a change a speed-up or a regression, on a shared, noisy machine?

Each build is a source checkout with its extensions built in place (``python setup.py build_ext --inplace``).
For every shape of benchmarks/bench.py (module path, weights set once) the two builds run in alternating
subprocesses, round after round, so that load from other processes hits both alike; the table gives each
build's median time and new / old (below 1: the new build is faster). Usage:

    python benchmarks/compare_builds.py OLD_CHECKOUT NEW_CHECKOUT [--threads 1 2] [--rounds 5]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# Runs inside each build's process: times every shape once (after a warm-up) and prints JSON.
_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
import numpy as np
import gconv
from bench import SHAPES
n_threads, repeats = int(sys.argv[3]), int(sys.argv[4])
times = {}
for name, dtype, x_shape, c_out, k, s, p, d, g in SHAPES:
    x = np.random.default_rng(0).standard_normal(x_shape).astype(dtype)
    m = gconv.Conv2d(x_shape[1], c_out, k, s, p, d, g, dtype=dtype, rng=0)
    out = m(x, n_threads=n_threads)
    best = []
    for _ in range(repeats):
        t = time.perf_counter()
        m(x, n_threads=n_threads, out=out)
        best.append(time.perf_counter() - t)
    times[name] = min(best)
print(json.dumps(times))
"""


def run_build(checkout, n_threads, repeats):
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(1 << 30), MALLOC_TRIM_THRESHOLD_=str(1 << 31))
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, os.path.abspath(checkout), HERE, str(n_threads), str(repeats)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(done.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="calls per shape per round (the best is kept)")
    parser.add_argument("--json")
    args = parser.parse_args()
    results = {}
    for n_threads in args.threads:
        rounds = {"old": [], "new": []}
        for r in range(args.rounds):
            for label in ("old", "new") if r % 2 == 0 else ("new", "old"):
                rounds[label].append(run_build(getattr(args, label), n_threads, args.repeats))
            print(f"  threads {n_threads}: round {r + 1}/{args.rounds}", file=sys.stderr)
        print("\n| shape | threads | old ms | new ms | new / old |\n|---|---|---|---|---|")
        for name in rounds["old"][0]:
            old = statistics.median(t[name] for t in rounds["old"]) * 1e3
            new = statistics.median(t[name] for t in rounds["new"]) * 1e3
            results[f"{name} | {n_threads}"] = dict(old_ms=old, new_ms=new, ratio=new / old)
            print(f"| {name} | {n_threads} | {old:.3g} | {new:.3g} | {new / old:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
