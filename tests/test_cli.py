"""The command line as a newcomer meets it, in real processes: `explainer serve` with and without
weights, with and without a Hub (HF_HUB_OFFLINE, a refused or silent endpoint, or a stand-in Hub
on 127.0.0.1 that huggingface_hub's own client downloads from), a bare `uvicorn app.main:app`,
and `explainer download`."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest
import torch
from transformers import GPT2LMHeadModel

from model.hub import GPT2_SMALL_PARAMS

from .conftest import build_checkpoint
from .fake_hub import COMMIT, fake_hub, silent_server
from .live_server import free_port, serving

SERVE = [sys.executable, "-m", "app.cli", "serve"]
UVICORN = [sys.executable, "-m", "uvicorn", "app.main:app"]
DOWNLOAD = [sys.executable, "-m", "app.cli", "download"]
VERSION = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]["version"]
PROMPT = "The cat sat on the mat"


def no_weights(tmp_path: Path, **extra: str | None) -> dict:
    """An empty Hugging Face cache and no model named by the environment."""
    return {"HF_HOME": str(tmp_path / "hf-home"), "EXPLAINER_MODEL": None, "EXPLAINER_RANDOM_WEIGHTS": None,
            "EXPLAINER_REVISION": None, **extra}


def run(command: list[str], env: dict, timeout_s: float = 120) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=timeout_s)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> str:
    return build_checkpoint(tmp_path_factory.mktemp("hub-gpt2"), seed=21)


# ---------------------------------------------------------------- the first run always serves

@pytest.mark.parametrize("command", [SERVE, UVICORN], ids=["explainer-serve", "bare-uvicorn"])
def test_first_run_offline_serves_untrained_and_says_how_to_fix(tmp_path, command):
    with serving(command, no_weights(tmp_path, HF_HUB_OFFLINE="1")) as server:
        info = httpx.get(f"{server.url}/api/model").json()
        page = httpx.get(f"{server.url}/").text
        log = server.log
    assert info["random_weights"] is True
    assert "HF_HUB_OFFLINE" in info["reason"] and "not in the Hugging Face cache" in info["reason"]
    assert info["n_params"] == GPT2_SMALL_PARAMS  # GPT-2 small's own shapes
    assert info["version"] == VERSION
    assert "UNTRAINED" in log and "explainer download" in log and "HF_HUB_OFFLINE" in log
    assert "Traceback" not in log
    # The page says so where it stays visible (the sticky bar) and gives the command.
    badge = page.split('data-testid="untrained-badge"', 1)[1].split(">", 1)[0]
    assert "hidden" not in badge
    assert '<code data-testid="download-command">explainer download</code>' in page
    assert "HF_HUB_OFFLINE" in page


def test_an_unreachable_hub_falls_back_within_seconds(tmp_path):
    """A Hub that accepts the connection and never answers: the client alone would wait and
    retry; the probe gives up at its deadline and the server still comes up."""
    with silent_server() as endpoint, serving(SERVE, no_weights(tmp_path, HF_ENDPOINT=endpoint)) as server:
        info = httpx.get(f"{server.url}/api/model").json()
    assert info["random_weights"] is True
    assert f"no answer from {endpoint} within 4 s" in info["reason"]


def fetch_into_cache(env: dict, endpoint: str, repo: str, *files: str) -> Path:
    """huggingface_hub's own client puts `files` of `repo` into env's cache, as another program
    (an AutoConfig, a tokenizer) would; the snapshot folder."""
    code = f"from huggingface_hub import hf_hub_download\nfor f in {list(files)!r}: hf_hub_download({repo!r}, f)"
    run([sys.executable, "-c", code], {**env, "HF_ENDPOINT": endpoint}, timeout_s=60).check_returncode()
    return Path(env["HF_HOME"]) / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots" / COMMIT


def test_a_cache_with_a_config_alone_or_damaged_weights_still_serves(tmp_path, tiny_dir):
    """A folder that another program left with config.json alone is no cached model; a
    truncated model.safetensors (a download cut short by an older client) cannot load. Either
    way the first run serves, and says why."""
    env = no_weights(tmp_path)
    with fake_hub({"openai-community/gpt2": tiny_dir}) as endpoint:
        snapshot = fetch_into_cache(env, endpoint, "openai-community/gpt2", "config.json")
    assert (snapshot / "config.json").exists()
    with serving(SERVE, {**env, "HF_HUB_OFFLINE": "1"}) as server:
        alone = httpx.get(f"{server.url}/api/model").json()
    assert alone["random_weights"] is True and "not in the Hugging Face cache" in alone["reason"]

    with fake_hub({"openai-community/gpt2": tiny_dir}) as endpoint:
        fetch_into_cache(env, endpoint, "openai-community/gpt2", "model.safetensors")
    blob = (snapshot / "model.safetensors").resolve()
    blob.write_bytes(blob.read_bytes()[: blob.stat().st_size // 2])
    with serving(SERVE, {**env, "HF_HUB_OFFLINE": "1"}) as server:
        damaged = httpx.get(f"{server.url}/api/model").json()
        log = server.log
    assert damaged["random_weights"] is True
    assert "looks damaged: `explainer download` fetches it anew" in damaged["reason"]
    assert "Traceback" not in log

    explicit = run(SERVE + ["--model", "openai-community/gpt2"], {**env, "HF_HUB_OFFLINE": "1"})
    assert explicit.returncode == 2 and "Traceback" not in explicit.stderr
    assert "looks damaged: `explainer download` fetches it anew" in lines(explicit.stderr)[-1]


def test_download_replaces_a_damaged_copy(tmp_path, tiny_dir):
    env = no_weights(tmp_path)
    with fake_hub({"tiny/gpt2": tiny_dir}) as endpoint:
        snapshot = fetch_into_cache(env, endpoint, "tiny/gpt2", "config.json", "model.safetensors")
        blob = (snapshot / "model.safetensors").resolve()
        blob.write_bytes(blob.read_bytes()[:1000])
        result = run(DOWNLOAD + ["tiny/gpt2"], {**env, "HF_ENDPOINT": endpoint})
    assert result.returncode == 0, result.stderr
    assert "does not load" in result.stderr and "fetching it anew" in result.stderr
    assert (snapshot / "model.safetensors").read_bytes() == (Path(tiny_dir) / "model.safetensors").read_bytes()


def test_downloadable_weights_are_fetched_then_served_from_the_cache(tmp_path, tiny_dir):
    """Without --model and with a reachable Hub, the server downloads GPT-2 (here: the stand-in
    Hub's openai-community/gpt2) into the cache; the next start needs no network. The numbers
    served are those of the checkpoint, by transformers' own forward pass."""
    env = no_weights(tmp_path)
    with fake_hub({"openai-community/gpt2": tiny_dir}) as endpoint:
        with serving(SERVE, {**env, "HF_ENDPOINT": endpoint}) as server:
            first = httpx.get(f"{server.url}/api/model").json()
    snapshot = tmp_path / "hf-home" / "hub" / "models--openai-community--gpt2" / "snapshots" / COMMIT
    assert (snapshot / "model.safetensors").read_bytes() == (Path(tiny_dir) / "model.safetensors").read_bytes()
    with serving(SERVE, {**env, "HF_HUB_OFFLINE": "1"}) as server:
        again = httpx.get(f"{server.url}/api/model").json()
        body = httpx.post(f"{server.url}/api/analyze", json={"text": PROMPT}).json()
    for info in (first, again):
        assert info["random_weights"] is False and info["reason"] is None and info["n_layers"] == 2
    reference = GPT2LMHeadModel.from_pretrained(tiny_dir).eval()
    ids = torch.tensor([[t["id"] for t in body["tokens"]]])
    with torch.no_grad():
        logits = reference(ids).logits[0, -1]
    assert [t["id"] for t in body["top"]] == torch.topk(logits, 10).indices.tolist()
    assert body["top"][0]["logit"] == pytest.approx(float(logits.max()), abs=1e-4)


# ---------------------------------------------------------------- an explicit model must load

@pytest.mark.parametrize("command, env", [
    (SERVE + ["--model", "/nonexistent"], {}),
    (SERVE + ["--model", "openai-community/gpt2", "--port", "0"], {"HF_HUB_OFFLINE": "1"}),
    (SERVE + ["--model", "not a hub id!"], {}),
    (SERVE + ["--revision", "."], {"EXPLAINER_MODEL": "openai-community/gpt2", "HF_HUB_OFFLINE": "1"}),
    (UVICORN + ["--port", "0"], {"EXPLAINER_MODEL": "/nonexistent"}),
], ids=["serve-missing-dir", "serve-uncached-hub-id", "serve-invalid-id", "serve-odd-revision", "uvicorn-missing-dir"])
def test_an_explicit_model_that_cannot_load_exits_2_with_one_line(tmp_path, command, env):
    result = run(command, {**no_weights(tmp_path), **env})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    # Under a bare uvicorn, uvicorn's own start-up lines come first; ours is one line.
    [line] = [line for line in lines(result.stderr) if " uvicorn.error: " not in line]
    assert line.startswith("error: ")
    assert "explainer download" in line and "save_pretrained" in line


@pytest.mark.parametrize("command, variable, value", [
    (SERVE, "EXPLAINER_MAX_CONCURRENT", "0"), (SERVE, "EXPLAINER_RANDOM_WEIGHTS", "maybe"),
    (SERVE, "EXPLAINER_DEVICE", "meta"), (UVICORN, "EXPLAINER_REQUEST_TIMEOUT", "soon"),
    (UVICORN, "EXPLAINER_CACHE_BYTES", "1 gallon"),
    (SERVE, "EXPLAINER_ALLOWED_HOSTS", ",,"), (UVICORN, "EXPLAINER_PUBLIC_URL", "class.example"),
    (SERVE, "EXPLAINER_TRUSTED_PROXIES", "my-proxy"),
], ids=lambda v: v if isinstance(v, str) else v[-1])
def test_a_bad_setting_exits_2_naming_the_variable(tmp_path, command, variable, value):
    result = run(command + ["--port", "0"], {**no_weights(tmp_path), variable: value}, timeout_s=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert lines(result.stderr)[-1].startswith(f"error: {variable} must be ")


def test_the_command_line_imports_no_torch_until_a_command_needs_it():
    """`explainer --help`, and a download that cannot reach the Hub, answer in well under a
    second: neither torch nor transformers is imported for them."""
    code = ("import sys, app.cli, app.download, model, model.hub\n"
            "heavy = sorted(m for m in ('torch', 'transformers', 'fastapi') if m in sys.modules)\n"
            "assert not heavy, heavy")
    run([sys.executable, "-c", code], {}, timeout_s=60).check_returncode()


# ---------------------------------------------------------------- explainer download

def test_download_offline_fails_fast_with_what_to_do(tmp_path):
    result = run(DOWNLOAD, no_weights(tmp_path, HF_HUB_OFFLINE="1"), timeout_s=10)
    assert result.returncode == 1
    [line] = lines(result.stderr)
    assert "HF_HUB_OFFLINE" in line and "machine with network" in line and "cache folder" in line


@pytest.mark.parametrize("endpoint_kind", ["refused", "silent"])
def test_download_without_a_hub_fails_within_seconds(tmp_path, endpoint_kind):
    if endpoint_kind == "refused":
        endpoint, silent = f"http://127.0.0.1:{free_port()}", None
    else:
        silent = silent_server()
        endpoint = silent.__enter__()
    try:
        result = run(DOWNLOAD, no_weights(tmp_path, HF_ENDPOINT=endpoint), timeout_s=10)
    finally:
        if silent:
            silent.__exit__(None, None, None)
    assert result.returncode == 1
    [line] = lines(result.stderr)
    assert f"Cannot download openai-community/gpt2: " in line
    assert "run `explainer download` on a machine with network" in line
    assert str(tmp_path / "hf-home" / "hub") in line  # the cache folder to copy over


def test_download_fetches_verifies_and_says_how_to_serve(tmp_path, tiny_dir):
    env = no_weights(tmp_path)
    with fake_hub({"tiny/gpt2": tiny_dir, "openai-community/gpt2": tiny_dir}) as endpoint:
        hub_env = {**env, "HF_ENDPOINT": endpoint}
        done = run(DOWNLOAD + ["tiny/gpt2"], hub_env)
        wrong_size = run(DOWNLOAD, hub_env)  # the stand-in's "GPT-2 small" is the tiny checkpoint
        unknown = run(DOWNLOAD + ["tiny/nope"], hub_env)
        bad_revision = run(DOWNLOAD + ["tiny/gpt2", "--revision", "v9"], hub_env)
    assert done.returncode == 0, done.stderr
    snapshot = tmp_path / "hf-home" / "hub" / "models--tiny--gpt2" / "snapshots" / COMMIT
    n_params = sum(p.numel() for p in GPT2LMHeadModel.from_pretrained(tiny_dir).parameters())
    assert done.stdout.splitlines() == [
        f"tiny/gpt2 is ready: it loads, with {n_params:,} parameters.",
        f"  weights: {snapshot}",
        "  serve them: explainer serve --model tiny/gpt2",
    ]
    assert (snapshot / "model.safetensors").read_bytes() == (Path(tiny_dir) / "model.safetensors").read_bytes()
    assert not list(snapshot.glob("*.bin")) and not list(snapshot.glob("*.h5"))

    assert wrong_size.returncode == 1
    assert f"has {n_params:,} parameters, but GPT-2 small has 124,439,808" in wrong_size.stderr
    assert unknown.returncode == 1 and "has no 'tiny/nope'" in lines(unknown.stderr)[-1]
    assert bad_revision.returncode == 1 and "no revision 'v9'" in lines(bad_revision.stderr)[-1]

    # Once cached, an unreachable Hub is no failure: the copy in the cache is checked and named.
    again = run(DOWNLOAD + ["tiny/gpt2"], {**env, "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}"}, timeout_s=60)
    assert again.returncode == 0, again.stderr
    assert "checking the copy of tiny/gpt2 already in the cache" in again.stderr
    assert f"  weights: {snapshot}" in again.stdout


def test_download_of_an_invalid_id_says_so_without_network(tmp_path):
    result = run(DOWNLOAD + ["not a hub id!"], no_weights(tmp_path, HF_ENDPOINT=f"http://127.0.0.1:{free_port()}"), timeout_s=10)
    assert result.returncode == 1
    assert lines(result.stderr) == ["error: 'not a hub id!' is not a Hugging Face Hub id (like openai-community/gpt2), nor a local directory."]


def test_download_of_a_local_directory_points_to_serve(tiny_dir):
    result = run(DOWNLOAD + [tiny_dir], {}, timeout_s=30)
    assert result.returncode == 1 and f"explainer serve --model {tiny_dir}" in result.stderr
