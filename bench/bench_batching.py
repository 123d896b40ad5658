"""Benchmark: aggregate decode throughput, N sequences stepped together against one at a time,
on GPT-2 small's shapes (seeded random weights loaded through the product's own `Explainer.load`).

    python bench/bench_batching.py [--model DIR] [--sequences 16] [--new-tokens 32] [--repeats 3]

One at a time: model/generation.py `generate`, the single-sequence path (its own KV cache), run for
each sequence in turn. Together: model/batching.py `DecodeBatch`, every prompt prefilled alone and
then one forward pass per step for all of them. Both produce the same tokens (checked here, as in
tests/test_batching.py). Printed: generated tokens per second both ways and their ratio (target
>= 5x at 16 sequences), end to end and for the decode steps alone (the prompts' passes are the
same work both ways). Repeats are interleaved; medians.

Then, per batch size (`--sizes`, default 1,2,3,4,8,16) and for 1 thread and every core: the time
of one batched decode step (`DecodeBatch.step`, prompts of 24-40 tokens, 40 steps in), as a
multiple of one sequence's step in the same run; and the unembedding both ways
(`hidden @ W_U.T` against `W_U @ hidden.T`, the choice model/engine.py `unembed_rows` makes up to
UNEMBED_AS_COLUMNS rows), so that the rule can be checked on another machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from checkpoint import checkpoint_dir, median, prompt_ids  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a GPT-2-small-shaped checkpoint directory (built if missing)")
    parser.add_argument("--sequences", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="1,2,3,4,8,16", help="batch sizes for the per-step table ('' to skip)")
    args = parser.parse_args()

    import torch

    from model import Explainer
    from model.batching import DecodeBatch, Request
    from model.generation import generate

    torch.set_num_threads(os.cpu_count() or 1)
    explainer = Explainer.load(checkpoint_dir(args.model))
    requests = [Request(tuple(prompt_ids(24 + 4 * (i % 5), seed=100 + i)), args.new_tokens, 1.0, None, None, i)
                for i in range(args.sequences)]

    def one_at_a_time():
        tokens, prefill = [], 0.0
        for r in requests:
            t0 = time.perf_counter()
            steps = generate(explainer, list(r.ids), r.max_new_tokens, r.temperature, r.top_k, r.top_p, r.seed)
            out = [next(steps).token.id]
            prefill += time.perf_counter() - t0
            out += [s.token.id for s in steps]
            tokens.append(out)
        return tokens, prefill

    def together():
        batch = DecodeBatch(explainer)
        owner, tokens = {}, [[] for _ in requests]
        t0 = time.perf_counter()
        for i, r in enumerate(requests):
            sequence, first = batch.prefill(r)
            owner[id(sequence)] = i
            tokens[i].append(first.token.id)
            batch.join(sequence)
        prefill = time.perf_counter() - t0
        while len(batch):
            for sequence, step in batch.step():
                tokens[owner[id(sequence)]].append(step.token.id)
            for sequence in [s for s in batch.members if s.finished]:
                batch.leave(sequence)
        return tokens, prefill

    cases = {"one at a time": one_at_a_time, "together": together}
    answers = {name: fn()[0] for name, fn in cases.items()}  # warm-up, and the tokens to compare
    same = answers["one at a time"] == answers["together"]
    times = {name: [] for name in cases}
    prefills = {name: [] for name in cases}
    for r in range(args.repeats):
        for name in (list(cases) if r % 2 == 0 else list(cases)[::-1]):
            t0 = time.perf_counter()
            _, prefill = cases[name]()
            times[name].append(time.perf_counter() - t0)
            prefills[name].append(prefill)
    n_tokens = args.sequences * args.new_tokens
    print(f"GPT-2 small shapes (random weights), {torch.get_num_threads()} threads, {args.sequences} sequences x "
          f"{args.new_tokens} new tokens, prompts 24-40 tokens, medians of {args.repeats}")
    rate, decode_rate = {}, {}
    for name in cases:
        total, pre = median(times[name]), median(prefills[name])
        rate[name] = n_tokens / total
        decode_rate[name] = (n_tokens - args.sequences) / (total - pre)
        print(f"  {name:14s} {total:7.2f} s ({pre:5.2f} s of prompts)  {rate[name]:7.1f} tokens/s  "
              f"decode steps alone {decode_rate[name]:7.1f} tokens/s")
    print(f"  same tokens both ways: {same}")
    print(f"  together / one at a time, end to end   {rate['together'] / rate['one at a time']:5.2f}x")
    print(f"  together / one at a time, decode steps {decode_rate['together'] / decode_rate['one at a time']:5.2f}x   target >= 5x")
    if args.sizes:
        step_table(explainer, [int(n) for n in args.sizes.split(",")])
    return 0 if same else 1


def step_table(explainer, sizes: list[int], steps_in: int = 40, repeats: int = 15) -> None:
    import torch

    from model.batching import DecodeBatch, Request
    from model.engine import UNEMBED_AS_COLUMNS

    def timed(fn) -> float:
        fn()
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
        return median(samples) * 1e3

    weight = explainer.model.lm_head.weight.detach()
    everyone = os.cpu_count() or 1
    print(f"\nOne batched decode step, and the unembedding both ways ({UNEMBED_AS_COLUMNS=}), medians of {repeats}:")
    for threads in sorted({1, everyone}):
        torch.set_num_threads(threads)
        one = None
        for n in sizes:
            batch = DecodeBatch(explainer)
            for i in range(n):
                sequence, _ = batch.prefill(Request(tuple(prompt_ids(24 + 4 * (i % 5), seed=300 + i)), steps_in + 2 * repeats + 2,
                                                    1.0, None, None, i))
                batch.join(sequence)
            for _ in range(steps_in):
                batch.step()
            step = timed(batch.step)
            one = one or step
            hidden = torch.randn(n, weight.shape[1], generator=torch.Generator().manual_seed(n))
            with torch.inference_mode():
                rows, columns = timed(lambda: hidden @ weight.T), timed(lambda: (weight @ hidden.T).T)
            print(f"  {threads} thread{'s' * (threads > 1)}, {n:2d} sequences: step {step:6.1f} ms = {step / one:4.2f}x one "
                  f"sequence's ({step / one / n:4.2f}x per sequence); unembedding hidden @ W_U.T {rows:5.1f} ms, "
                  f"W_U @ hidden.T {columns:5.1f} ms")
    torch.set_num_threads(everyone)


if __name__ == "__main__":
    raise SystemExit(main())
