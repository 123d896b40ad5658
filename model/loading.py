"""Loading GPT-2: from the Hugging Face cache or Hub, from a local `save_pretrained` directory,
or with seeded random weights in GPT-2 small's exact shapes."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from . import hub
from .hub import DEFAULT_MODEL, download_command

RANDOM_WEIGHTS_SEED = 0
REQUESTED = "Random weights were requested."


class ModelLoadError(RuntimeError):
    """The weights could not be found, downloaded or loaded. The message says what to do."""


@dataclass
class LoadedModel:
    model: GPT2LMHeadModel
    name: str
    random_weights: bool
    device: torch.device
    reason: str | None = None  # why the weights are random; None when they are the trained ones
    folder: str | None = None  # where the trained weights were read from


def load_model(name: str = DEFAULT_MODEL, *, random_weights: bool = False, device: str = "cpu",
               revision: str | None = None, fallback_to_random: bool = False) -> LoadedModel:
    """Load GPT-2 in eval mode (dropout is the identity). `name` is a Hub id or a local directory.

    With `random_weights`, the shapes come from `name` when it is a local directory, otherwise
    they are GPT-2 small's; the weights are drawn with a fixed seed, so every server agrees.
    With `fallback_to_random`, weights that cannot be had (not cached, not downloadable, or a
    damaged copy in the cache) give that random model instead of an error, and `reason` says why.
    """
    torch_device = _device(device)
    folder, reason = None, REQUESTED if random_weights else None
    if random_weights:
        model = _random_model(name)
    else:
        try:
            folder = _weights_folder(name, revision)
            model = _pretrained(folder, None if os.path.isdir(name) else download_command(name, revision))
        except (hub.WeightsUnavailable, hub.HubRefused, ModelLoadError) as error:
            if not fallback_to_random:
                raise _with_guidance(error, name, revision) from error
            model, random_weights, reason, folder = _random_model(name), True, _sentence(error), None
    model.to(torch_device).eval().requires_grad_(False)  # inference only: no autograd bookkeeping
    return LoadedModel(model=model, name=name, random_weights=random_weights, device=torch_device,
                       reason=reason, folder=folder)


def _device(device: str) -> torch.device:
    try:
        torch_device = torch.device(device)
    except RuntimeError as error:
        raise ModelLoadError(f"Unknown device {device!r}: use 'cpu', or 'cuda' on a machine with a GPU.") from error
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"Device {device!r} (--device, EXPLAINER_DEVICE) asks for a CUDA GPU, and this machine's "
                             "torch has none: use 'cpu'.")
    if torch_device.type not in ("cpu", "cuda"):
        raise ModelLoadError(f"Device {device!r} is not supported here: use 'cpu', or 'cuda' on a machine with a GPU.")
    return torch_device


def _with_guidance(error: Exception, name: str, revision: str | None) -> ModelLoadError:
    if isinstance(error, ModelLoadError):
        return error  # says what to do already
    # Only a model that exists is worth downloading; otherwise, point to GPT-2 small.
    command = download_command(name, revision) if isinstance(error, hub.WeightsUnavailable) else download_command()
    return ModelLoadError(
        f"Could not load {name!r}: {_sentence(error)} Get the weights with `{command}` "
        "on a machine with network (or copy its Hugging Face cache folder to this one), "
        "or pass --model DIR with a directory saved by save_pretrained.")


def _sentence(error: Exception) -> str:
    text = str(error).strip().rstrip(".")
    return text[:1].upper() + text[1:] + "."


def _random_model(name: str) -> GPT2LMHeadModel:
    config = GPT2Config.from_pretrained(name) if os.path.isdir(name) else GPT2Config()
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(RANDOM_WEIGHTS_SEED)
    try:
        return GPT2LMHeadModel(config)
    finally:
        torch.random.set_rng_state(generator_state)


def _weights_folder(name: str, revision: str | None) -> str:
    """A local directory: `name` itself, or the Hub snapshot of `name` (cached or downloaded)."""
    if os.path.isdir(name):
        return name
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1):
        raise ModelLoadError(f"No model directory at {name!r}. Pass a directory saved with save_pretrained, "
                             f"or a Hub id such as {DEFAULT_MODEL} (`{download_command()}` fetches it).")
    return hub.locate(name, revision)


def _pretrained(folder: str, refetch: str | None = None) -> GPT2LMHeadModel:
    """The checkpoint in `folder`. `refetch`: the command that fetches it anew, when the folder
    is a copy in the Hugging Face cache."""
    if not hub.has_weights(folder):
        raise ModelLoadError(
            f"{folder!r} holds no config.json and *.safetensors weights. "
            + (f"Only safetensors weights are fetched and read: if `{refetch}` downloaded none, the repository "
               "offers none." if refetch else "The directory must hold a checkpoint saved with save_pretrained."))
    try:
        model, info = GPT2LMHeadModel.from_pretrained(folder, output_loading_info=True)
    except Exception as error:  # OSError, ValueError, safetensors' own error for a truncated file...
        raise ModelLoadError(
            f"Could not load GPT-2 weights from {folder!r} ({error.__class__.__name__}: {hub.first_line(error)}). "
            + (f"The copy in the Hugging Face cache looks damaged: `{refetch}` fetches it anew."
               if refetch else "The directory must hold a checkpoint saved with save_pretrained (config.json and model.safetensors).")
        ) from error
    if info["missing_keys"] or info["mismatched_keys"]:
        # transformers would fill them with random numbers and only warn: every figure would be wrong.
        bad = sorted(info["missing_keys"]) + [str(k) for k in info["mismatched_keys"]]
        raise ModelLoadError(f"The checkpoint in {folder!r} lacks or misshapes {len(bad)} weight tensors "
                             f"(for example {bad[0]}): it is not a complete GPT-2 checkpoint.")
    return model
