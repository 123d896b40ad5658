"""Loading GPT-2: from the Hugging Face Hub, from a local `save_pretrained` directory, or
with seeded random weights in GPT-2 small's exact shapes."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from transformers import GPT2Config, GPT2LMHeadModel

DEFAULT_MODEL = "openai-community/gpt2"
RANDOM_WEIGHTS_SEED = 0


class ModelLoadError(RuntimeError):
    """The weights could not be found or downloaded. The message says what to do."""


@dataclass
class LoadedModel:
    model: GPT2LMHeadModel
    name: str
    random_weights: bool
    device: torch.device


def load_model(name: str = DEFAULT_MODEL, *, random_weights: bool = False, device: str = "cpu") -> LoadedModel:
    """Load GPT-2 in eval mode (dropout is the identity). `name` is a Hub id or a local directory.

    With `random_weights`, the shapes come from `name` when it is a local directory, otherwise
    they are GPT-2 small's; the weights are drawn with a fixed seed, so every server agrees.
    """
    try:
        torch_device = torch.device(device)
    except RuntimeError as error:
        raise ModelLoadError(f"Unknown device {device!r}: use 'cpu', or 'cuda' on a machine with a GPU.") from error
    if random_weights:
        config = GPT2Config.from_pretrained(name) if os.path.isdir(name) else GPT2Config()
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        try:
            model = GPT2LMHeadModel(config)
        finally:
            torch.random.set_rng_state(generator_state)
    else:
        model = _from_pretrained(name)
    model.to(torch_device).eval().requires_grad_(False)  # inference only: no autograd bookkeeping
    return LoadedModel(model=model, name=name, random_weights=random_weights, device=torch_device)


def _from_pretrained(name: str) -> GPT2LMHeadModel:
    local = os.path.isdir(name)
    if not local and (name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1)):
        raise ModelLoadError(f"No model directory at {name!r}. Pass a directory saved with save_pretrained, or a Hub id.")
    try:
        # The Hub client shows download progress bars on the first download, then uses its cache.
        return GPT2LMHeadModel.from_pretrained(name)
    except (OSError, ValueError) as error:
        if local:
            raise ModelLoadError(
                f"Could not load GPT-2 weights from the directory {name!r} ({error.__class__.__name__}: "
                f"{str(error).splitlines()[0] if str(error) else 'no detail'}). The directory must hold a "
                "checkpoint saved with save_pretrained (config.json and model.safetensors)."
            ) from error
        raise ModelLoadError(
            f"Could not get the weights of {name!r} from the Hugging Face Hub, and they are not in the local cache. "
            "Run once on a machine with network access (the weights are then cached), or pass --model PATH "
            "(EXPLAINER_MODEL=PATH) with a directory saved by save_pretrained, or use --random-weights "
            "(EXPLAINER_RANDOM_WEIGHTS=1) to explore an untrained model."
        ) from error
