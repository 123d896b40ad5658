"""Benchmark: one decode step of an earlier commit's DecodeBatch against this tree's, in one process.

    python bench/bench_step_ab.py --ref 53b96a3 [--threads 1] [--sizes 1,3,8,16] [--model DIR]

Whole-script before/after runs (bench/before_after.py) differ by 10-20% from one run to the next
on this shared machine, more than the change measured. Here both versions step their own batch
of the same prompts (GPT-2 small's shapes, random weights) in one process, alternately, 60 times
per batch size: the earlier commit's `model/` is unpacked with `git archive` under another
package name (its imports are relative), so both load side by side. Prints the medians and
new / old per batch size.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from checkpoint import checkpoint_dir, prompt_ids  # noqa: E402


def batch_of(batching, explainer, n: int):
    batch = batching.DecodeBatch(explainer)
    for i in range(n):
        sequence, _ = batch.prefill(batching.Request(tuple(prompt_ids(24 + 4 * (i % 5), seed=300 + i)), 200, 1.0, None, None, i))
        batch.join(sequence)
    for _ in range(10):
        batch.step()
    return batch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", required=True, help="the earlier commit (old)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sizes", default="1,3,8,16")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--model", help="a GPT-2-small-shaped checkpoint directory (built if missing)")
    args = parser.parse_args()
    import importlib

    import torch

    torch.set_num_threads(args.threads)
    model_dir = checkpoint_dir(args.model)
    with tempfile.TemporaryDirectory(prefix="explainer-old-") as folder:
        archive = subprocess.run(["git", "-C", ROOT, "archive", args.ref, "model"], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
        os.rename(os.path.join(folder, "model"), os.path.join(folder, "model_old"))
        sys.path.insert(0, folder)
        sys.path.insert(0, ROOT)
        versions = {}
        for name, package in (("old", "model_old"), ("new", "model")):
            explainer = importlib.import_module(f"{package}.explainer").Explainer.load(model_dir)
            versions[name] = (importlib.import_module(f"{package}.batching"), explainer)
        print(f"{args.ref} (old) against this tree (new), {torch.get_num_threads()} thread(s), medians of {args.steps} steps")
        for n in [int(s) for s in args.sizes.split(",")]:
            batches = {name: batch_of(batching, explainer, n) for name, (batching, explainer) in versions.items()}
            times = {name: [] for name in batches}
            for r in range(args.steps):
                for name in ("old", "new") if r % 2 else ("new", "old"):
                    t0 = time.perf_counter()
                    batches[name].step()
                    times[name].append(time.perf_counter() - t0)
            old, new = statistics.median(times["old"]), statistics.median(times["new"])
            print(f"  {n:2d} sequences: old {old * 1e3:6.1f} ms, new {new * 1e3:6.1f} ms, new / old {new / old:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
