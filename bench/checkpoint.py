"""A GPT-2-small-shaped checkpoint with seeded random weights, for the benchmarks.

The Hub is unreachable here, and random weights cost exactly what the real ones do. The
checkpoint is built with `transformers.GPT2Config()` (GPT-2 small: 12 layers, 12 heads,
d_model 768, 1024 positions, 50,257 tokens) and saved with `save_pretrained`, so the product
loads it through its own loading code (`Explainer.load(dir)`, `serve --model DIR`).
"""

from __future__ import annotations

import atexit
import os
import shutil
import statistics
import tempfile

SEED = 1234


def build_checkpoint(path: str, seed: int = SEED) -> str:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config())
    with torch.no_grad():  # LayerNorms away from (1, 0), as in the tests: same cost, less degenerate numbers
        for name, param in model.named_parameters():
            if ".ln_" in name or name.startswith("transformer.ln_f"):
                param.add_(torch.randn_like(param) * 0.3)
    model.save_pretrained(path)
    return path


def checkpoint_dir(given: str | None) -> str:
    """`given` if it is a checkpoint directory; otherwise build one in a temporary directory
    that is removed at exit (BENCH_KEEP_CHECKPOINT=DIR builds it there and keeps it)."""
    if given:
        if not os.path.isfile(os.path.join(given, "config.json")):
            build_checkpoint(given)
        return given
    keep = os.environ.get("BENCH_KEEP_CHECKPOINT")
    if keep:
        return checkpoint_dir(keep)
    path = tempfile.mkdtemp(prefix="gpt2-small-bench-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return build_checkpoint(path)


def prompt_ids(n: int, seed: int, vocab: int = 50257) -> list[int]:
    """n pseudo-random token ids (deterministic per seed)."""
    import random

    rng = random.Random(seed)
    return [rng.randrange(vocab) for _ in range(n)]


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def spread(xs: list[float]) -> str:
    """'median [min..max]' in ms."""
    return f"{statistics.median(xs) * 1e3:8.1f} ms [{min(xs) * 1e3:.1f}..{max(xs) * 1e3:.1f}]"
