"""Fixtures: real GPT-2 checkpoints with tiny shapes and seeded random weights, saved with
`save_pretrained` and loaded back through the product's own loading code; for the tests over
real sockets and in the browser, checkpoints built once per run (`checkpoints`), live servers
shared by the run (`live_servers`) and one Chromium (`chromium`)."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from fastapi.testclient import TestClient

from app.main import create_app
from app.serving.settings import Settings
from model import Explainer

from .browser import SHARED_CHROMIUM, chromium  # noqa: F401 (chromium: a fixture for every module)
from .live_server import SharedServers

TINY = dict(n_layer=2, n_head=4, n_embd=64, n_positions=1024, vocab_size=50257)


def build_checkpoint(path, seed: int = 1234, **shapes) -> str:
    """Save a GPT-2 with random weights whose LayerNorms are moved away from (1, 0), so that a
    step that forgets a LayerNorm weight or bias cannot pass by accident."""
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(**{**TINY, **shapes}))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".ln_" in name or name.startswith("transformer.ln_f"):
                param.add_(torch.randn_like(param) * 0.3)
            elif name.endswith(".bias"):
                param.add_(torch.randn_like(param) * 0.02)
    model.save_pretrained(path)
    return str(path)


def build_echo_checkpoint(path, words: tuple[str, ...], seed: int = 1234, scale: float = 5.0, **shapes) -> str:
    """A tiny GPT-2 that echoes these words: their (tied) embedding rows are made `scale` times
    longer, so that a prompt ending in one of them predicts it again by a few logits (the last
    position's residual stream is mostly that row, and the unembedding reads it back)."""
    from model.tokenizer import get_tokenizer

    build_checkpoint(path, seed=seed, **shapes)
    model = GPT2LMHeadModel.from_pretrained(path)
    ids = [id for word in words for id in get_tokenizer().encode(word)]
    assert len(ids) == len(words), f"each of {words} must be one token"
    with torch.no_grad():
        model.transformer.wte.weight[ids] *= scale
    model.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory) -> str:
    return build_checkpoint(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def explainer(checkpoint_dir) -> Explainer:
    return Explainer.load(checkpoint_dir)


@pytest.fixture(scope="session")
def hf_eager(checkpoint_dir) -> GPT2LMHeadModel:
    """An independent copy of the same checkpoint, with eager attention that returns its weights."""
    return GPT2LMHeadModel.from_pretrained(checkpoint_dir, attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def client(explainer, checkpoint_dir):
    """The app over HTTP (in process), its lifespan run, on the tiny checkpoint."""
    app = create_app(Settings(model=checkpoint_dir), explainer=explainer)
    with TestClient(app) as client:
        yield client


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """checkpoints(seed=7, n_layer=3, ...): the folder of that tiny checkpoint, built once for the
    run, whichever module asks first; checkpoints(seed=7, build=build_echo_checkpoint,
    words=(" cat",)) for another builder, called as build(path, **arguments)."""
    built: dict[tuple, str] = {}

    def checkpoint(build=build_checkpoint, **arguments) -> str:
        key = (build.__module__, build.__qualname__, tuple(sorted(arguments.items())))
        if key not in built:
            built[key] = build(tmp_path_factory.mktemp(build.__name__), **arguments)
        return built[key]

    return checkpoint


SHARED_SERVERS = SharedServers()


@pytest.fixture(scope="session")
def live_servers():
    """The run's shared live servers (tests/live_server.py SharedServers): live_servers.url(
    checkpoint, env={...}) is the base URL of a server on that checkpoint with those settings,
    started once. Ask for it in a module-scoped fixture: servers are trimmed between modules."""
    yield SHARED_SERVERS
    SHARED_SERVERS.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """After a test's fixtures are torn down, between modules: stop the shared servers used least
    recently past the few kept, and close the shared Chromium if the next test needs none."""
    yield
    if nextitem is None or nextitem.module is not item.module:
        SHARED_SERVERS.trim()
        if nextitem is None or "chromium" not in nextitem.fixturenames:
            SHARED_CHROMIUM.close()
