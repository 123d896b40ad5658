"""Benchmark: experiments on the model, on GPT-2 small's shapes (seeded random weights loaded
through the product's own `Explainer.load(dir)`).

    python bench/bench_experiments.py [--model DIR] [--repeats 7] [--tokens 15]

- An ablated analyze (head 9.9's z zeroed) against a plain analyze of the same 15 tokens:
  target <= 1.1x.
- The patching sweep (12 layers x 15 positions, resid_pre) against 12 plain forwards of the
  corrupted prompt: target <= 3x. Also the z sweep (12 layers x 12 heads).

Repeats are interleaved and summarised by medians: only ratios within one run mean anything on
this shared machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from checkpoint import checkpoint_dir, median, prompt_ids, spread  # noqa: E402


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a GPT-2-small-shaped checkpoint directory (built if missing)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--tokens", type=int, default=15)
    args = parser.parse_args()

    import torch

    from model import Explainer
    from model.interventions import Editor, Intervention
    from model.patching import sweep

    torch.set_num_threads(os.cpu_count() or 1)
    explainer = Explainer.load(checkpoint_dir(args.model))
    n_layers = explainer.config.n_layer
    clean_ids = prompt_ids(args.tokens, seed=1)
    corrupted_ids = clean_ids[:]
    corrupted_ids[args.tokens // 2] = (corrupted_ids[args.tokens // 2] + 1) % explainer.config.vocab_size
    ablation = Editor((Intervention("blocks.9.attn.hook_z", "zero", head=9),))
    clean, corrupted = explainer.analyze_ids(clean_ids), explainer.analyze_ids(corrupted_ids)

    cases = {
        "plain analyze": lambda: explainer.analyze_ids(clean_ids),
        "ablated analyze": lambda: explainer.analyze_ids(clean_ids, editor=ablation),
        f"{n_layers} plain forwards": lambda: [explainer.analyze_ids(corrupted_ids) for _ in range(n_layers)],
        "sweep resid_pre": lambda: sweep(explainer.model, clean, corrupted, 11, 22, "resid_pre"),
        "sweep z": lambda: sweep(explainer.model, clean, corrupted, 11, 22, "z"),
    }
    for fn in cases.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            times[name].append(timed(cases[name]))

    print(f"GPT-2 small shapes (random weights), {args.tokens} tokens, {torch.get_num_threads()} threads, medians of {args.repeats}")
    for name, xs in times.items():
        print(f"  {name:24s} {spread(xs)}")
    plain, forwards = median(times["plain analyze"]), median(times[f"{n_layers} plain forwards"])
    print(f"  ablated / plain analyze          {median(times['ablated analyze']) / plain:5.2f}x   target <= 1.1x")
    print(f"  resid_pre sweep / {n_layers} forwards      {median(times['sweep resid_pre']) / forwards:5.2f}x   "
          f"target <= 3x ({n_layers} x {args.tokens} cells)")
    print(f"  z sweep / {n_layers} forwards              {median(times['sweep z']) / forwards:5.2f}x   "
          f"({n_layers} x {explainer.config.n_head} cells)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
