"""GPT-2 small, opened up: loading, the tokenizer, the capture engine, sampling and generation.

Knows nothing about HTTP; usable from a notebook:

    from model import Explainer
    explainer = Explainer.load()            # or Explainer.load("path/to/checkpoint")
    run = explainer.analyze("The cat sat")
    run["blocks.3.attn.hook_pattern"]       # [head, q_pos, k_pos]
"""

from .explainer import EmptyPromptError, Explainer, PromptError, PromptTooLongError
from .loading import DEFAULT_MODEL, ModelLoadError, load_model
from .run import Run

__all__ = ["DEFAULT_MODEL", "EmptyPromptError", "Explainer", "ModelLoadError", "PromptError",
           "PromptTooLongError", "Run", "load_model"]
