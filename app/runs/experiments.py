"""The experiments service: interventions from a request turned into a checked Editor (with its
source runs found, recomputed if they were let go), and two runs' predictions compared."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import torch

from model import Explainer
from model.cancellation import NEVER, CancelToken
from model.interventions import Editor, check
from model.patching import HOOKS, RELIABLE_LOGITS, sweep, sweep_grain, sweep_macs
from model.threads import forward_macs

from app.runs import analysis
from app.serving.concurrency import Cost
from app.errors import ApiError, field_error


async def editor_for(specs, n_tokens: int, explainer: Explainer, resolve: Callable[[str], Awaitable],
                     generation: bool = False) -> Editor:
    """The Editor of `specs` (InterventionSpec) for a prompt of `n_tokens`, or a 422 naming the
    field; `resolve(run_id)` finds a patch's source run. `generation`: for a generation of that
    prompt (interventions.check says what differs)."""
    interventions = tuple(spec.intervention() for spec in specs)
    sources, lengths = {}, {}
    for source_id in dict.fromkeys(it.source_run_id for it in interventions if it.source_run_id):
        try:
            sources[source_id] = (await resolve(source_id)).run
            lengths[source_id] = len(sources[source_id])
        except ApiError as error:
            if error.status != 404:
                raise
            lengths[source_id] = None
    c = explainer.config
    check(interventions, c.n_layer, c.n_head, c.n_inner or 4 * c.n_embd, n_tokens, lengths, generation)
    return Editor(interventions, sources)


def log_softmax(logits: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.double(), dim=-1)


def compare(explainer: Explainer, a, b, k: int = 10) -> dict:
    """The two runs' last-position distributions side by side: the top tokens of each with their
    probability in both, the largest changes of log-probability, and KL(a‖b) in nats."""
    la, lb = log_softmax(a.run["logits"]), log_softmax(b.run["logits"])
    pa, pb = la.exp(), lb.exp()

    def token(i: int) -> dict:
        return {"id": i, "text": explainer.tokenizer.label(i), "prob_a": float(pa[i]), "prob_b": float(pb[i]),
                "logprob_a": float(la[i]), "logprob_b": float(lb[i]), "change": float(lb[i] - la[i])}

    change = lb - la
    # Changes that matter to a reader: among tokens likely in either run, not the far tail's noise.
    likely = torch.topk(torch.maximum(pa, pb), min(200, pa.numel())).indices
    order = likely[torch.argsort(change[likely].abs(), descending=True)][:k]
    kl = float(torch.sum(pa * (la - lb)))
    return {
        "a": a.run_id, "b": b.run_id,
        "top_a": [token(int(i)) for i in torch.topk(pa, k).indices],
        "top_b": [token(int(i)) for i in torch.topk(pb, k).indices],
        "biggest_changes": [token(int(i)) for i in order],
        "kl_a_b": kl if math.isfinite(kl) else None,
    }


def cached_run(explainer: Explainer, cache, text: str, cancel: CancelToken = NEVER):
    """The plain run of `text`, from the cache or analyzed into it (so the page can name it by id)."""
    ids = explainer.tokenize(text)
    entry = cache.get(analysis.run_id_for(explainer, ids))
    return entry or analysis.analyze_and_cache(explainer, cache, ids, include=False, cancel=cancel)


def check_patching(explainer: Explainer, request, limit: int) -> int:
    """The two prompts' lengths and the token ids, before any forward pass is queued: their
    number of tokens."""
    n_clean, n_corrupted = len(explainer.tokenize(request.clean)), len(explainer.tokenize(request.corrupted))
    if n_clean > limit:
        raise field_error("clean", f"{n_clean} tokens: the sweep patches every layer at every position, so it takes at most "
                                   f"{limit} tokens", code="too_costly")
    if n_corrupted != n_clean:
        raise field_error("corrupted", f"{n_corrupted} tokens, and the clean prompt {n_clean}: a patch copies position by "
                                       "position, so both must have the same number of tokens", code="not_applicable")
    for field in ("target_token", "baseline_token"):
        if getattr(request, field) >= explainer.config.vocab_size:
            raise field_error(field, f"must be a token id from 0 to {explainer.config.vocab_size - 1}", code="out_of_range")
    return n_clean


def patching_cost(explainer: Explainer, n: int, hook: str) -> Cost:
    """The sweep over prompts of `n` tokens, and the two prompts' analyses (if not cached)."""
    c = explainer.config
    cells = f"{c.n_head} heads" if HOOKS[hook][1] == "head" else f"{n} positions"
    return Cost("patching", 2 * forward_macs(c, n) + sweep_macs(c, n, hook), "clean",
                f"patching {hook} over {n} tokens ({cells} at each of {c.n_layer} layers)",
                "use shorter prompts" + ("" if hook == "z" else ", or patch z (one cell per head)"),
                grain=sweep_grain(c, n, hook))


def patching(explainer: Explainer, cache, request, cancel: CancelToken = NEVER) -> dict:
    clean = cached_run(explainer, cache, request.clean, cancel)
    corrupted = cached_run(explainer, cache, request.corrupted, cancel)
    found = sweep(explainer.model, clean.run, corrupted.run, request.target_token, request.baseline_token, request.hook, cancel)
    return {
        "hook": found.hook, "axis": found.axis, "clean_run_id": clean.run_id, "corrupted_run_id": corrupted.run_id,
        "tokens": analysis.token_list(corrupted.run), "ld_clean": found.ld_clean, "ld_corrupted": found.ld_corrupted,
        "denominator": found.denominator, "reliable": found.reliable, "threshold": RELIABLE_LOGITS,
        "grid": [[v if math.isfinite(v) else None for v in row] for row in found.grid],
    }
