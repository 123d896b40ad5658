"""Loading, in process: local checkpoints, random weights, incomplete checkpoints, devices. The
fallback to random weights and the Hub are tested in real processes, in test_cli.py."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from model import Explainer, ModelLoadError, download_command, load_model
from model.loading import REQUESTED


def test_random_weights_are_seeded_and_reported(checkpoint_dir):
    a = load_model(checkpoint_dir, random_weights=True)
    b = load_model(checkpoint_dir, random_weights=True)
    assert torch.equal(a.model.transformer.h[0].attn.c_attn.weight, b.model.transformer.h[0].attn.c_attn.weight)
    info = Explainer(a).info
    assert info["random_weights"] is True and info["reason"] == REQUESTED
    saved = load_model(checkpoint_dir)
    assert not torch.equal(a.model.transformer.h[0].attn.c_attn.weight, saved.model.transformer.h[0].attn.c_attn.weight)
    assert Explainer(saved).info["reason"] is None and saved.folder == checkpoint_dir


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="save_pretrained"):
        load_model(str(tmp_path / "nope"))
    with pytest.raises(ModelLoadError, match="save_pretrained"):
        load_model(str(tmp_path))  # exists, but holds no checkpoint


def test_a_checkpoint_missing_a_tensor_is_refused(checkpoint_dir, tmp_path):
    """transformers fills a missing tensor with random numbers and only warns: every number on
    the page would be wrong while looking trained."""
    state = load_file(f"{checkpoint_dir}/model.safetensors")
    del state["transformer.h.1.mlp.c_proj.weight"]
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    shutil.copy(f"{checkpoint_dir}/config.json", tmp_path)
    with pytest.raises(ModelLoadError, match=r"transformer\.h\.1\.mlp\.c_proj\.weight"):
        load_model(str(tmp_path))


@pytest.mark.parametrize("device", ["cuda", "mps", "tpu:0"])
def test_a_device_this_machine_lacks_is_a_clear_error(checkpoint_dir, device):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(ModelLoadError, match="use 'cpu'"):
        load_model(checkpoint_dir, device=device)


def test_download_command_names_only_what_differs_from_the_default():
    assert download_command() == "explainer download"
    assert download_command("openai-community/gpt2", "v1") == "explainer download --revision v1"
    assert download_command("distilbert/distilgpt2") == "explainer download distilbert/distilgpt2"
    assert download_command(revision="a b") == "explainer download --revision 'a b'"  # pasteable
