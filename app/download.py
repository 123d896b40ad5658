"""`explainer download [MODEL] [--revision R]`: GPT-2's weights into the standard Hugging Face
cache (with huggingface_hub's progress bars), checked by loading them through the product's own
code, then where they are and the one line that serves them.

Without network it fails within seconds, with one line that says what to do. Exit status: 0
when the weights are in the cache and load, 1 when they could not be had or do not load."""

from __future__ import annotations

import os
import sys

from model import hub


def download(name: str, revision: str | None = None) -> int:
    try:
        return _download(name, revision)
    except KeyboardInterrupt:
        _fail("Interrupted. Run the command again: the files fetched so far are kept.")
        return 130


def _download(name: str, revision: str | None) -> int:
    if os.path.isdir(name):
        return _fail(f"{name!r} is a local directory, not a Hub id: serve it with `{hub.serve_command(name)}`.")
    where = f"{name}" + (f" (revision {revision})" if revision else "")
    copy_hint = (f"run `{hub.download_command(name, revision)}` on a machine with network, or copy the Hugging Face "
                 f"cache folder ({hub.cache_dir()}) over from a machine that has the weights (or point HF_HOME at a copy)")
    online = False
    try:
        hub.check_id(name)
        if hub.offline():
            folder = hub.cached(name, revision)
            if folder is None:
                return _fail(f"HF_HUB_OFFLINE is set and {where} is not in the Hugging Face cache: unset it, or {copy_hint}.")
            _say(f"HF_HUB_OFFLINE is set: checking the copy of {where} already in the cache.")
        elif reason := hub.unreachable(name, revision):
            folder = hub.cached(name, revision)
            if folder is None:
                return _fail(f"Cannot download {where}: {reason}. To fix it, {copy_hint}.")
            _say(f"The Hub cannot be reached ({reason}): checking the copy of {where} already in the cache.")
        else:
            online = True
            _say(f"Downloading {where} into the Hugging Face cache ({hub.cache_dir()}) ...")
            folder = hub.download(name, revision)
        explainer, problem = _load(folder)
        if problem and online:  # the cache keeps a damaged file as it is, unless told to fetch anew
            _say(f"The copy in the cache does not load ({problem}); fetching it anew ...")
            folder = hub.download(name, revision, again=True)
            explainer, problem = _load(folder)
    except hub.HubRefused as error:
        return _fail(str(error))
    except Exception as error:  # the network dropped mid-download, the disk is full...
        return _fail(f"The download of {where} failed: {hub.first_line(error)}. Run the command again: finished files are kept.")
    if problem:
        return _fail(f"The weights of {where} in {folder} do not load: {problem}")

    n_params = sum(p.numel() for p in explainer.model.parameters())
    if name in hub.GPT2_SMALL_IDS and n_params != hub.GPT2_SMALL_PARAMS:
        return _fail(f"{where} in {folder} has {n_params:,} parameters, but GPT-2 small has {hub.GPT2_SMALL_PARAMS:,}.")
    print(f"{where} is ready: it loads, with {n_params:,} parameters.")
    print(f"  weights: {folder}")
    print(f"  serve them: {hub.serve_command(name, revision)}")
    return 0


def _load(folder: str):
    """(the explainer, None), or (None, why the checkpoint does not load), through the
    product's own loading code: no tensor missing, and the tokenizer's vocabulary matching."""
    _say("Checking that the weights load ...")
    from model import Explainer, ModelLoadError, load_model

    try:
        return Explainer(load_model(folder)), None
    except (ModelLoadError, ValueError) as error:
        return None, str(error)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _fail(line: str) -> int:
    print(f"error: {line}", file=sys.stderr, flush=True)
    return 1
