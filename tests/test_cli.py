"""The command line as a newcomer meets it: `explainer serve` with and without weights, with and
without a Hub (HF_HUB_OFFLINE, a refused or silent endpoint, or a stand-in Hub on 127.0.0.1 that
huggingface_hub's own client downloads from), a bare `uvicorn app.main:app`, and `explainer
download`.

The commands run in this process (`app.cli.main`, and `app.main`'s `app` as uvicorn imports it)
with the environment set through monkeypatch and huggingface_hub's constants read again from it;
`explainer serve` goes as far as handing its app to uvicorn, and the app is then asked over
TestClient. Two smoke tests run real processes: `explainer serve` starts and answers, and
`explainer download`'s error exit (the installed wheel's entry point is test_install's)."""

from __future__ import annotations

import contextlib
import importlib
import os
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import httpx
import huggingface_hub.constants
import pytest
import torch
from fastapi.testclient import TestClient
from huggingface_hub import hf_hub_download
from transformers import GPT2LMHeadModel

import app.main as app_main
from app import cli
from app.serving import logs
from model.hub import GPT2_SMALL_PARAMS

from .conftest import build_checkpoint
from .fake_hub import COMMIT, fake_hub, silent_server
from .live_server import free_port, serving

VERSION = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]["version"]
PROMPT = "The cat sat on the mat"


def no_weights(tmp_path: Path, **extra: str | None) -> dict:
    """An empty Hugging Face cache and no model named by the environment."""
    return {"HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_CACHE": None, "HF_HUB_OFFLINE": None, "HF_ENDPOINT": None,
            "TRANSFORMERS_OFFLINE": None, "EXPLAINER_MODEL": None, "EXPLAINER_RANDOM_WEIGHTS": None,
            "EXPLAINER_REVISION": None, **extra}


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> str:
    return build_checkpoint(tmp_path_factory.mktemp("hub-gpt2"), seed=21)


@pytest.fixture
def environ(monkeypatch, tmp_path):
    """Set (None: remove) environment variables for an in-process command, as a shell would for a
    new process: huggingface_hub reads HF_HOME, HF_ENDPOINT and HF_HUB_OFFLINE into its constants
    when imported, so they are read again (and put back afterwards). Logging is left as the tests
    set it: logs.configure (and uvicorn.Config, given logs.config) would install a handler on
    this test's captured stderr and turn off the explainer logger's propagation for later tests."""
    monkeypatch.setattr(logs, "configure", lambda level: None)
    monkeypatch.setattr(logs, "config", lambda level: None)
    saved = dict(vars(huggingface_hub.constants))

    def set_env(**env: str | None) -> None:
        for name, value in env.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        importlib.reload(huggingface_hub.constants)

    set_env(**no_weights(tmp_path))
    yield set_env
    vars(huggingface_hub.constants).update(saved)


@contextlib.contextmanager
def served(monkeypatch, *args: str):
    """`explainer serve ARGS` in this process, up to handing its app to uvicorn; yields a TestClient
    of that app (its lifespan run). A non-zero exit fails here."""
    configs = []

    class Handed:  # in place of the uvicorn server: keeps the config, closes the bound socket
        def __init__(self, config):
            configs.append(config)

        def run(self, sockets):
            for sock in sockets:
                sock.close()

    monkeypatch.setattr(cli, "_stopping_server", lambda: Handed)
    assert cli.main(["serve", "--host", "127.0.0.1", "--port", "0", *args]) == 0
    [config] = configs
    with TestClient(config.app, base_url="http://127.0.0.1") as client:
        yield client


class Exited(Exception):
    """What os._exit(code) would have done to a bare uvicorn."""


@contextlib.contextmanager
def bare_uvicorn(monkeypatch):
    """`uvicorn app.main:app` in this process: the module's `app`, built on first use from the
    environment, then started; yields a TestClient. An exit (a setting that does not parse, a
    model that does not load) raises SystemExit or Exited with its status."""
    def exit_(code):
        raise Exited(code)

    monkeypatch.setattr(app_main, "os", types.SimpleNamespace(environ=os.environ, _exit=exit_))
    vars(app_main).pop("app", None)
    try:
        application = app_main.app  # the module's __getattr__, as uvicorn's import finds it
        with TestClient(application, base_url="http://127.0.0.1") as client:
            yield client
    finally:
        vars(app_main).pop("app", None)


def exits_2(call) -> None:
    with pytest.raises(SystemExit) as stop:
        call()
    assert stop.value.code == 2


def assert_untrained_page(info: dict, page: str, log: str) -> None:
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


# ---------------------------------------------------------------- the first run always serves

@pytest.mark.parametrize("how", ["explainer-serve", "bare-uvicorn"])
def test_first_run_offline_serves_untrained_and_says_how_to_fix(environ, monkeypatch, capsys, how):
    environ(HF_HUB_OFFLINE="1")
    with served(monkeypatch) if how == "explainer-serve" else bare_uvicorn(monkeypatch) as http:
        info, page = http.get("/api/model").json(), http.get("/").text
    assert_untrained_page(info, page, capsys.readouterr().err)


def test_an_unreachable_hub_falls_back_within_seconds(environ, monkeypatch):
    """A Hub that accepts the connection and never answers: the client alone would wait and
    retry; the probe gives up at its deadline and the server still comes up."""
    with silent_server() as endpoint:
        environ(HF_ENDPOINT=endpoint)
        with served(monkeypatch) as http:
            info = http.get("/api/model").json()
    assert info["random_weights"] is True
    assert f"no answer from {endpoint} within 4 s" in info["reason"]


def fetch_into_cache(environ, endpoint: str, repo: str, *files: str) -> Path:
    """huggingface_hub's own client puts `files` of `repo` into the cache, as another program
    (an AutoConfig, a tokenizer) would; the snapshot folder."""
    environ(HF_ENDPOINT=endpoint, HF_HUB_OFFLINE=None)
    for name in files:
        hf_hub_download(repo, name)
    environ(HF_ENDPOINT=None)
    return Path(huggingface_hub.constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" / "snapshots" / COMMIT


def test_a_cache_with_a_config_alone_or_damaged_weights_still_serves(environ, monkeypatch, capsys, tiny_dir):
    """A folder that another program left with config.json alone is no cached model; a
    truncated model.safetensors (a download cut short by an older client) cannot load. Either
    way the first run serves, and says why."""
    with fake_hub({"openai-community/gpt2": tiny_dir}) as endpoint:
        snapshot = fetch_into_cache(environ, endpoint, "openai-community/gpt2", "config.json")
    assert (snapshot / "config.json").exists()
    environ(HF_HUB_OFFLINE="1")
    with served(monkeypatch) as http:
        alone = http.get("/api/model").json()
    assert alone["random_weights"] is True and "not in the Hugging Face cache" in alone["reason"]

    with fake_hub({"openai-community/gpt2": tiny_dir}) as endpoint:
        fetch_into_cache(environ, endpoint, "openai-community/gpt2", "model.safetensors")
    blob = (snapshot / "model.safetensors").resolve()
    blob.write_bytes(blob.read_bytes()[: blob.stat().st_size // 2])
    environ(HF_HUB_OFFLINE="1")
    capsys.readouterr()
    with served(monkeypatch) as http:
        damaged = http.get("/api/model").json()
    assert damaged["random_weights"] is True
    assert "looks damaged: `explainer download` fetches it anew" in damaged["reason"]
    assert "looks damaged" in capsys.readouterr().err  # the terminal says it too

    exits_2(lambda: cli.main(["serve", "--model", "openai-community/gpt2", "--port", "0"]))
    assert "looks damaged: `explainer download` fetches it anew" in lines(capsys.readouterr().err)[-1]


def test_download_replaces_a_damaged_copy(environ, capsys, tiny_dir):
    with fake_hub({"tiny/gpt2": tiny_dir}) as endpoint:
        snapshot = fetch_into_cache(environ, endpoint, "tiny/gpt2", "config.json", "model.safetensors")
        blob = (snapshot / "model.safetensors").resolve()
        blob.write_bytes(blob.read_bytes()[:1000])
        environ(HF_ENDPOINT=endpoint)
        assert cli.main(["download", "tiny/gpt2"]) == 0
    err = capsys.readouterr().err
    assert "does not load" in err and "fetching it anew" in err
    assert (snapshot / "model.safetensors").read_bytes() == (Path(tiny_dir) / "model.safetensors").read_bytes()


def test_downloadable_weights_are_fetched_then_served_from_the_cache(environ, monkeypatch, tmp_path, tiny_dir):
    """Without --model and with a reachable Hub, the server downloads GPT-2 (here: the stand-in
    Hub's openai-community/gpt2) into the cache; the next start needs no network. The numbers
    served are those of the checkpoint, by transformers' own forward pass."""
    with fake_hub({"openai-community/gpt2": tiny_dir}) as endpoint:
        environ(HF_ENDPOINT=endpoint)
        with served(monkeypatch) as http:
            first = http.get("/api/model").json()
    snapshot = tmp_path / "hf-home" / "hub" / "models--openai-community--gpt2" / "snapshots" / COMMIT
    assert (snapshot / "model.safetensors").read_bytes() == (Path(tiny_dir) / "model.safetensors").read_bytes()
    environ(HF_ENDPOINT=None, HF_HUB_OFFLINE="1")
    with served(monkeypatch) as http:
        again = http.get("/api/model").json()
        body = http.post("/api/analyze", json={"text": PROMPT}).json()
    for info in (first, again):
        assert info["random_weights"] is False and info["reason"] is None and info["n_layers"] == 2
    reference = GPT2LMHeadModel.from_pretrained(tiny_dir).eval()
    ids = torch.tensor([[t["id"] for t in body["tokens"]]])
    with torch.no_grad():
        logits = reference(ids).logits[0, -1]
    assert [t["id"] for t in body["top"]] == torch.topk(logits, 10).indices.tolist()
    assert body["top"][0]["logit"] == pytest.approx(float(logits.max()), abs=1e-4)


# ---------------------------------------------------------------- an explicit model must load

@pytest.mark.parametrize("how, args, env", [
    ("serve", ["--model", "/nonexistent"], {}),
    ("serve", ["--model", "openai-community/gpt2"], {"HF_HUB_OFFLINE": "1"}),
    ("serve", ["--model", "not a hub id!"], {}),
    ("serve", ["--revision", "."], {"EXPLAINER_MODEL": "openai-community/gpt2", "HF_HUB_OFFLINE": "1"}),
    ("uvicorn", [], {"EXPLAINER_MODEL": "/nonexistent"}),
], ids=["serve-missing-dir", "serve-uncached-hub-id", "serve-invalid-id", "serve-odd-revision", "uvicorn-missing-dir"])
def test_an_explicit_model_that_cannot_load_exits_2_with_one_line(environ, monkeypatch, capsys, how, args, env):
    environ(**env)
    if how == "serve":
        exits_2(lambda: cli.main(["serve", *args, "--port", "0"]))
    else:  # under uvicorn the lifespan ends the process: a traceback is no use to a person
        with pytest.raises(Exited) as stop, bare_uvicorn(monkeypatch):
            pass
        assert stop.value.args == (2,)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    [line] = lines(err)
    assert line.startswith("error: ")
    assert "explainer download" in line and "save_pretrained" in line


@pytest.mark.parametrize("how, variable, value", [
    ("serve", "EXPLAINER_MAX_CONCURRENT", "0"), ("serve", "EXPLAINER_RANDOM_WEIGHTS", "maybe"),
    ("serve", "EXPLAINER_DEVICE", "meta"), ("uvicorn", "EXPLAINER_REQUEST_TIMEOUT", "soon"),
    ("uvicorn", "EXPLAINER_CACHE_BYTES", "1 gallon"),
    ("serve", "EXPLAINER_ALLOWED_HOSTS", ",,"), ("uvicorn", "EXPLAINER_PUBLIC_URL", "class.example"),
    ("serve", "EXPLAINER_TRUSTED_PROXIES", "my-proxy"),
], ids=lambda v: v if v.startswith("EXPLAINER") else None)
def test_a_bad_setting_exits_2_naming_the_variable(environ, monkeypatch, capsys, how, variable, value):
    environ(**{variable: value})
    if how == "serve":
        assert cli.main(["serve", "--port", "0"]) == 2
    else:
        with pytest.raises(SystemExit) as stop, bare_uvicorn(monkeypatch):
            pass
        assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert lines(err)[-1].startswith(f"error: {variable} must be ")


def test_the_command_line_imports_no_torch_until_a_command_needs_it():
    """`explainer --help`, and a download that cannot reach the Hub, answer at once: neither torch
    nor transformers is imported for them. (A fresh interpreter: this one has imported them.)"""
    code = ("import sys, app.cli, app.download, model, model.hub\n"
            "heavy = sorted(m for m in ('torch', 'transformers', 'fastapi') if m in sys.modules)\n"
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60).check_returncode()


# ---------------------------------------------------------------- explainer download

def test_download_offline_fails_with_what_to_do(environ, capsys):
    environ(HF_HUB_OFFLINE="1")
    assert cli.main(["download"]) == 1
    [line] = lines(capsys.readouterr().err)
    assert "HF_HUB_OFFLINE" in line and "machine with network" in line and "cache folder" in line


@pytest.mark.parametrize("endpoint_kind", ["refused", "silent"])
def test_download_without_a_hub_fails_with_the_cache_folder_to_copy(environ, capsys, tmp_path, endpoint_kind):
    with contextlib.ExitStack() as stack:
        if endpoint_kind == "refused":
            endpoint = f"http://127.0.0.1:{free_port()}"
        else:
            endpoint = stack.enter_context(silent_server())
        environ(HF_ENDPOINT=endpoint)
        assert cli.main(["download"]) == 1
    [line] = lines(capsys.readouterr().err)
    assert "Cannot download openai-community/gpt2: " in line
    assert "run `explainer download` on a machine with network" in line
    assert str(tmp_path / "hf-home" / "hub") in line  # the cache folder to copy over


def test_download_fetches_verifies_and_says_how_to_serve(environ, capsys, tmp_path, tiny_dir):
    def download(*args: str) -> tuple[int, str, str]:
        status = cli.main(["download", *args])
        out, err = capsys.readouterr()
        return status, out, err

    with fake_hub({"tiny/gpt2": tiny_dir, "openai-community/gpt2": tiny_dir}) as endpoint:
        environ(HF_ENDPOINT=endpoint)
        done = download("tiny/gpt2")
        wrong_size = download()  # the stand-in's "GPT-2 small" is the tiny checkpoint
        unknown = download("tiny/nope")
        bad_revision = download("tiny/gpt2", "--revision", "v9")
    assert done[0] == 0, done[2]
    snapshot = tmp_path / "hf-home" / "hub" / "models--tiny--gpt2" / "snapshots" / COMMIT
    n_params = sum(p.numel() for p in GPT2LMHeadModel.from_pretrained(tiny_dir).parameters())
    assert done[1].splitlines() == [
        f"tiny/gpt2 is ready: it loads, with {n_params:,} parameters.",
        f"  weights: {snapshot}",
        "  serve them: explainer serve --model tiny/gpt2",
    ]
    assert (snapshot / "model.safetensors").read_bytes() == (Path(tiny_dir) / "model.safetensors").read_bytes()
    assert not list(snapshot.glob("*.bin")) and not list(snapshot.glob("*.h5"))

    assert wrong_size[0] == 1
    assert f"has {n_params:,} parameters, but GPT-2 small has 124,439,808" in wrong_size[2]
    assert unknown[0] == 1 and "has no 'tiny/nope'" in lines(unknown[2])[-1]
    assert bad_revision[0] == 1 and "no revision 'v9'" in lines(bad_revision[2])[-1]

    # Once cached, an unreachable Hub is no failure: the copy in the cache is checked and named.
    environ(HF_ENDPOINT=f"http://127.0.0.1:{free_port()}")
    status, out, err = download("tiny/gpt2")
    assert status == 0, err
    assert "checking the copy of tiny/gpt2 already in the cache" in err
    assert f"  weights: {snapshot}" in out


def test_download_of_an_invalid_id_says_so_without_network(environ, capsys, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the Hub was asked")

    monkeypatch.setattr("model.hub.HfApi.repo_info", no_network)
    environ(HF_ENDPOINT=f"http://127.0.0.1:{free_port()}")
    assert cli.main(["download", "not a hub id!"]) == 1
    assert lines(capsys.readouterr().err) == [
        "error: 'not a hub id!' is not a Hugging Face Hub id (like openai-community/gpt2), nor a local directory."]


def test_download_of_a_local_directory_points_to_serve(environ, capsys, tiny_dir):
    assert cli.main(["download", tiny_dir]) == 1
    assert f"explainer serve --model {tiny_dir}" in capsys.readouterr().err


# ---------------------------------------------------------------- smoke tests: real processes

def run(command: list[str], env: dict, timeout_s: float = 120) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=timeout_s)


def test_smoke_explainer_serve_starts_offline_and_answers(tmp_path):
    """The real command in a real process: the port, uvicorn, its logging and the page."""
    with serving([sys.executable, "-m", "app.cli", "serve"], no_weights(tmp_path, HF_HUB_OFFLINE="1")) as server:
        info = httpx.get(f"{server.url}/api/model").json()
        page = httpx.get(f"{server.url}/").text
        log = server.log
    assert_untrained_page(info, page, log)


def test_smoke_explainer_download_offline_exits_1_with_one_line(tmp_path):
    result = run([sys.executable, "-m", "app.cli", "download"], no_weights(tmp_path, HF_HUB_OFFLINE="1"))
    assert result.returncode == 1
    [line] = lines(result.stderr)
    assert "HF_HUB_OFFLINE" in line and "machine with network" in line and "cache folder" in line
