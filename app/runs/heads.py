"""The head-analysis service: head detector scores, the induction probe and direct logit
attribution, as JSON bodies computed in a worker (through the forward limiter)."""

from __future__ import annotations

import statistics

from model import Explainer, Run
from model.attribution import attribution
from model.cancellation import NEVER, CancelToken
from model.head_scores import DEFINITIONS, head_scores, next_token_loss, probe_ids, scores, key_masks
from model.engine import layer_hook
from model.interventions import Editor, check
from model.threads import block_macs, forward_macs

from app.serving.concurrency import Cost
from app.errors import field_error
from app.runs.responses import model_bytes
from app.schemas import AttributionResponse, HeadScoresResponse, InductionProbeResponse

# Interventions that write the residual stream other than through a head's z or an MLP's output
# break the decomposition: its parts would no longer add up to the logits.
NOT_DECOMPOSABLE = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out")


def scores_body(run: Run, cancel: CancelToken = NEVER) -> bytes:
    cancel.check()
    return model_bytes(HeadScoresResponse, {**head_scores(run), "definitions": DEFINITIONS})


def probe_editor(explainer: Explainer, specs, length: int) -> Editor:
    """The probe's interventions, checked like an analyze's, after refusing any patch: the
    probe's tokens are random and made for it, so there is no run to patch from."""
    interventions = tuple(spec.intervention() for spec in specs)
    for i, it in enumerate(interventions):
        if it.op == "patch":
            raise field_error(f"interventions.{i}.op", "the induction probe cannot patch: its tokens are random ones made "
                              "for it, so it has no source run to patch from; use 'zero' or 'mean'", code="not_applicable")
    c = explainer.config
    check(interventions, c.n_layer, c.n_head, c.n_inner or 4 * c.n_embd, 2 * length,
          {it.source_run_id: None for it in interventions if it.source_run_id})
    return Editor(interventions)


def probe_cost(explainer: Explainer, length: int) -> Cost:
    """The probe's pass over its 2·length tokens, and the unembedding of every position for the loss."""
    c = explainer.config
    return Cost("probe", forward_macs(c, 2 * length, observed=True) + (2 * length - 1) * c.n_embd * c.vocab_size, "length",
                f"the induction probe of {length} tokens repeated", "use a shorter length",
                grain=block_macs(c, 2 * length, observed=True), counted=True)


def probe_body(explainer: Explainer, length: int, seed: int, editor: Editor, cancel: CancelToken = NEVER) -> bytes:
    ids = probe_ids(length, seed, explainer.config.vocab_size)
    run = explainer.analyze_ids(ids, keep=["attn.hook_pattern"], cancel=cancel, editor=editor)  # kept: no second pass
    mask = key_masks(ids)["induction"]
    induction = [scores(run[layer_hook(l, "attn.hook_pattern")], mask) for l in range(run.n_layers)]
    # loss[p]: predicting token p + 1. The repeated half is tokens length … 2·length − 1; its first
    # (token `length`, predicted at p = length − 1) has no earlier copy to follow, so an induction
    # head cannot predict it: the second half's mean starts at the one after (p = length).
    loss = next_token_loss(explainer.model, run)
    return model_bytes(InductionProbeResponse, {
        "length": length, "seed": seed, "tokens": ids, "induction": induction, "loss": loss,
        "loss_first_half": statistics.fmean(loss[: length - 1]),
        "loss_second_half": statistics.fmean(loss[length:]),
        "interventions": [it.as_dict() for it in editor.interventions],
    })


def check_attribution(explainer: Explainer, run: Run, target: int, baseline: int) -> None:
    vocab = explainer.config.vocab_size
    for field, value in (("target", target), ("baseline", baseline)):
        if value >= vocab:
            raise field_error(field, f"must be a token id from 0 to {vocab - 1}, got {value}", code="out_of_range")
    edits = [it.hook for it in run.interventions if it.hook.split(".", 2)[-1] in NOT_DECOMPOSABLE]
    if edits:
        raise field_error("run_id", f"this run edits {edits[0]}: its residual stream is no longer the sum of the heads, "
                                    "MLPs and embeddings, so it cannot be split into them", code="not_applicable")


def attribution_body(explainer: Explainer, run: Run, target: int, baseline: int, cancel: CancelToken = NEVER) -> bytes:
    cancel.check()
    return model_bytes(AttributionResponse, attribution(explainer.model, run, target, baseline))
