"""Loading: local checkpoints, random weights, and clear errors when weights are missing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from model import Explainer, ModelLoadError, load_model


def test_random_weights_are_seeded_and_reported(checkpoint_dir):
    a = load_model(checkpoint_dir, random_weights=True)
    b = load_model(checkpoint_dir, random_weights=True)
    assert torch.equal(a.model.transformer.h[0].attn.c_attn.weight, b.model.transformer.h[0].attn.c_attn.weight)
    assert Explainer(a).info["random_weights"] is True
    saved = load_model(checkpoint_dir)
    assert not torch.equal(a.model.transformer.h[0].attn.c_attn.weight, saved.model.transformer.h[0].attn.c_attn.weight)


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="save_pretrained"):
        load_model(str(tmp_path / "nope"))
    with pytest.raises(ModelLoadError, match="save_pretrained"):
        load_model(str(tmp_path))  # exists, but holds no checkpoint


def test_cli_exits_nonzero_with_a_message_when_weights_are_missing(tmp_path):
    # Offline mode stands in for "the Hub cannot be reached": the same error path, with no
    # network wait; the empty HF_HOME means nothing is cached.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--model", "openai-community/gpt2", "--port", "0"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert "--model PATH" in result.stderr
    assert "Traceback" not in result.stderr


def test_asgi_app_exits_nonzero_with_a_message_when_weights_are_missing(tmp_path):
    env = {**os.environ, "EXPLAINER_MODEL": str(tmp_path / "missing"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--port", "0"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "save_pretrained" in result.stderr
    assert "Traceback" not in result.stderr
