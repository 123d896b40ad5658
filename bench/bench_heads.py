"""Benchmark: what each head does, on GPT-2 small's shapes (seeded random weights loaded through
the product's own `Explainer.load(dir)`).

    python bench/bench_heads.py [--model DIR] [--repeats 5]

- head scores of all 144 heads at 256 tokens, against one analyze of those tokens: target <= 1.2x;
- direct logit attribution at 256 tokens, against one analyze: target <= 1.5x;
- the induction probe at length 50, against one analyze of 100 tokens (1.6x is expected: the
  loss needs the logits of every position, 99 more unembeddings of 50,257 rows, which an analyze
  computes for the last position only), and against the cheapest way to get the same loss,
  `transformers`' own forward with `labels` on the same 100 tokens: target <= 1.2x.

Each measure starts from a fresh Run (a cached run would hide the layer recomputes), repeats
are interleaved, and the summary is a ratio of medians measured in this one run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from checkpoint import checkpoint_dir, median, prompt_ids, spread  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a GPT-2-small-shaped checkpoint directory (built if missing)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import torch

    from model import Explainer
    from model.attribution import attribution
    from model.head_scores import head_scores, key_masks, next_token_loss, probe_ids, scores

    torch.set_num_threads(os.cpu_count() or 1)
    explainer = Explainer.load(checkpoint_dir(args.model))
    model = explainer.model
    ids256, ids100 = prompt_ids(256, seed=3), prompt_ids(100, seed=4)

    def probe():
        ids = probe_ids(50, 0, explainer.config.vocab_size)
        run = explainer.analyze_ids(ids, keep=["attn.hook_pattern"])
        mask = key_masks(ids)["induction"]
        [scores(run[f"blocks.{l}.attn.hook_pattern"], mask) for l in range(run.n_layers)]
        next_token_loss(model, run)

    probe_tensor = torch.tensor([probe_ids(50, 0, explainer.config.vocab_size)])

    def hf_loss():
        with torch.inference_mode():
            model(probe_tensor, labels=probe_tensor)

    cases = {
        "analyze 256 tokens": lambda: explainer.analyze_ids(ids256),
        "head scores 256 (analyze + scores)": lambda: head_scores(explainer.analyze_ids(ids256)),
        "attribution 256 (analyze + parts)": lambda: attribution(model, explainer.analyze_ids(ids256), 11, 22),
        "analyze 100 tokens": lambda: explainer.analyze_ids(ids100),
        "induction probe, length 50": probe,
        "transformers forward + loss, 100": hf_loss,
    }
    for fn in cases.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            start = time.perf_counter()
            cases[name]()
            times[name].append(time.perf_counter() - start)
    print(f"GPT-2 small shapes (random weights), {torch.get_num_threads()} threads, medians of {args.repeats}")
    for name, xs in times.items():
        print(f"  {name:36s} {spread(xs)}")
    a256, a100 = median(times["analyze 256 tokens"]), median(times["analyze 100 tokens"])
    # The endpoints serve a cached run: their own cost is what they add to an analyze.
    print(f"  head scores / analyze (256)          {median(times['head scores 256 (analyze + scores)']) / a256 - 1:5.2f}x   target <= 1.2x")
    print(f"  attribution / analyze (256)          {median(times['attribution 256 (analyze + parts)']) / a256 - 1:5.2f}x   target <= 1.5x")
    probe_time = median(times["induction probe, length 50"])
    print(f"  probe (50) / analyze (100)           {probe_time / a100:5.2f}x   (the loss's 99 more unembeddings)")
    print(f"  probe (50) / transformers loss (100) {probe_time / median(times['transformers forward + loss, 100']):5.2f}x   target <= 1.2x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
