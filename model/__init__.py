"""GPT-2 small, opened up: loading, the tokenizer, the capture engine, sampling and generation.

Knows nothing about HTTP; usable from a notebook:

    from model import Explainer
    explainer = Explainer.load()            # or Explainer.load("path/to/checkpoint")
    run = explainer.analyze("The cat sat")
    run["blocks.3.attn.hook_pattern"]       # [head, q_pos, k_pos]
    run[hook_name("attn.hook_pattern", 3)]  # the same: hook_name builds every name (model/hooks.py)
    ablated = explainer.analyze("The cat sat", interventions=[Intervention("blocks.3.attn.hook_z", "zero", head=5)])

The names below are imported on first use: `explainer download` and `explainer --help` must
not wait seconds for torch and transformers before they can say anything.
"""

from __future__ import annotations

import importlib

_HOMES = {
    "DEFAULT_MODEL": "hub", "GPT2_SMALL_PARAMS": "hub", "download_command": "hub",
    "EmptyPromptError": "explainer", "FieldError": "errors", "TokenIdError": "explainer", "Explainer": "explainer", "PromptError": "explainer",
    "PromptTooLongError": "explainer",
    "ModelLoadError": "loading", "load_model": "loading",
    "Run": "run",
    "Cancelled": "cancellation", "CancelToken": "cancellation",
    "Intervention": "interventions", "InterventionError": "interventions",
    "HookNameError": "hooks", "hook_name": "hooks", "parse_hook": "hooks",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'model' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
