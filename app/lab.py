"""The Lab: the one front door of app/. A route parses its request, makes one call here, and
returns what comes back. The Lab owns analyze, resolve (run id -> run, recomputed on a miss),
generate, the lens, the cached answers and the analyses; underneath it, app/runs/ computes and
app/serving/ queues, budgets and batches. It takes no HTTP request: a `Caller` says what it
needs to know of the client."""

from __future__ import annotations

import math
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from model import Explainer
from model.batching import NO_EDITS
from model.embedding_space import EmbeddingSpace
from model.interventions import Editor
from model.logit_lens import check_positions

from app.errors import field_error
from app.runs import analysis, embedding_space, experiments, generation, heads, lens, tensors
from app.runs.anatomy import anatomy
from app.runs.cache import CachedRun, RunCache
from app.runs.model_info import model_info
from app.runs.responses import json_response, stored_response, tensors_response
from app.schemas import MAX_PATCHING_TOKENS, AnalyzeRequest, AnatomyResponse, DotResponse, GenerateRequest, InductionProbeRequest, PatchingRequest, SampleRequest
from app.serving.batcher import DecodeBatcher
from app.serving.budget import ByteBudget
from app.serving.concurrency import Coalescer, Costed, ForwardLimiter
from app.serving.settings import Settings


async def _present() -> bool:
    return False


@dataclass(frozen=True)
class Caller:
    """What the Lab needs to know of whoever asks: whether the answer may be sent gzipped, and
    whether they are still there (a stream stops computing once they leave)."""

    gzip: bool = False
    disconnected: Callable[[], Awaitable[bool]] = _present


@dataclass
class Lab:
    explainer: Explainer
    cache: RunCache
    limiter: ForwardLimiter
    coalescer: Coalescer
    budget: ByteBudget
    batcher: DecodeBatcher
    settings: Settings
    _space: EmbeddingSpace | None = field(default=None, repr=False)
    _space_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # ------------------------------------------------------------------ runs ----

    async def resolve(self, run_id: str) -> CachedRun:
        """The run `run_id`, from the cache or recomputed; 404 only for an id never issued."""
        return await analysis.resolve(run_id, self.explainer, self.cache, self.limiter, self.coalescer)

    async def editor(self, specs, n_tokens: int, generation: bool = False) -> Editor:
        """The checked interventions of a request, their source runs found (a 422 naming the field)."""
        return await experiments.editor_for(specs, n_tokens, self.explainer, self.resolve, generation)

    async def analyze(self, request: AnalyzeRequest, caller: Caller) -> Response:
        """POST /api/analyze: the run of a prompt (with its interventions), computed once and cached."""
        explainer, limit = self.explainer, self.settings.auto_pattern_bytes
        ids = await run_in_threadpool(analysis.prompt_ids, explainer, request.text, request.ids)  # 422 before queueing
        cost = analysis.analysis_cost(explainer, len(ids), "ids" if request.ids is not None else "text",
                                      analysis.with_patterns(explainer, len(ids), request.patterns, limit))
        self.limiter.estimate(cost)  # too_costly: a 422 before anything is queued (a source run's recompute included)
        editor, interventions = None, ""
        if request.interventions:  # checked, and their source runs found, before anything is queued
            editor = await self.editor(request.interventions, len(ids))
            interventions = analysis.canonical(editor.interventions)
        run_id = analysis.run_id_for(explainer, ids, interventions)
        entry, plain = self.cache.get(run_id), None
        if entry is None:
            analysis.check_pattern_budget(explainer, len(ids), request.patterns, limit)
            include = analysis.with_patterns(explainer, len(ids), request.patterns, limit)
            entry, plain = await self.coalescer.run((run_id, include), lambda: self.limiter.run(
                Costed(partial(analysis.analyze_into_cache, editor=editor), cost), explainer, self.cache, ids, include,
                cancellable=True))
        analysis.check_pattern_budget(explainer, len(entry.run), request.patterns, limit)
        include = analysis.with_patterns(explainer, len(entry.run), request.patterns, limit)
        body = entry.bodies.get(include)
        if body is None:
            body, plain = await self.limiter.run(analysis.add_body, explainer, self.cache, entry, include)
        return await stored_response(body, plain, caller.gzip)

    async def summary(self, run_id: str) -> dict:
        return analysis.run_summary(self.explainer, await self.resolve(run_id))

    async def embeddings(self, run_id: str, caller: Caller) -> Response:
        """The token and position embeddings and their sum, the first residual stream [pos, d_model]."""
        run = (await self.resolve(run_id)).run
        shapes = dict.fromkeys(("hook_embed", "hook_pos_embed", "blocks.0.hook_resid_pre"), (len(run), self.explainer.config.n_embd))
        return await tensors_response(self.budget, caller.gzip, {}, shapes, "float32",
                                      lambda: run_in_threadpool(lambda: {name: run[name] for name in shapes}))

    async def layer(self, run_id: str, layer: int, fields: str | None, dtype: str, caller: Caller) -> Response:
        """Hooks of one layer, recomputed from the residual stream up to the last one asked for.
        Hundreds of MB at 1,024 tokens: reserved in the byte budget, then encoded in pieces off the loop."""
        suffixes = analysis.layer_hooks(self.explainer, layer, fields)
        run = (await self.resolve(run_id)).run
        until = max(suffixes, key=analysis.LAYER_HOOKS.index)
        shapes = tensors.block_shapes(self.explainer.config, len(run))
        computed = analysis.LAYER_HOOKS[:analysis.LAYER_HOOKS.index(until) + 1]

        def recompute() -> dict:  # in the forward slot; the hooks not asked for are dropped there
            captured = run.layer(layer, until)
            return {f"blocks.{layer}.{s}": captured[s] for s in suffixes}

        return await tensors_response(self.budget, caller.gzip, {"layer": layer},
                                      {f"blocks.{layer}.{s}": shapes[s] for s in suffixes}, dtype, lambda: self.limiter.run(recompute),
                                      held=sum(4 * math.prod(shapes[s]) for s in computed if s not in suffixes))

    # -------------------------------------------------------------- sampling ----

    async def sample(self, request: SampleRequest) -> dict:
        run = (await self.resolve(request.run_id)).run
        return await run_in_threadpool(generation.sample, self.explainer, run, request.temperature, request.top_k,
                                       request.top_p, request.seed)

    async def generate(self, request: GenerateRequest, caller: Caller) -> AsyncIterator[bytes]:
        """The events of a generation. The 422s (the prompt, then the interventions) and a full
        queue's 503 come before the stream starts."""
        ids = await run_in_threadpool(analysis.prompt_ids, self.explainer, request.text, request.ids)
        editor = await self.editor(request.interventions, len(ids), generation=True) if request.interventions else NO_EDITS
        self.limiter.admit()
        stepped = generation.steps(self.explainer, self.limiter, self.batcher, self.settings.decode_batch > 1, ids, request, editor)
        return generation.events(self.explainer, self.cache, ids, analysis.canonical(editor.interventions), editor, stepped,
                                 caller.disconnected)

    # ---------------------------------------------------------- cached answers ----

    async def answer(self, key: tuple, compute: Callable[..., bytes], *args, cancellable: bool = False,
                     run_id: str | None = None) -> bytes:
        """The JSON body for `key`: from the cache, or compute(*args) (with cancel=token when
        `cancellable`) run once through the forward limiter for everyone asking the same thing
        at once, then cached under the byte budget (with `run_id`: kept only as long as the run)."""
        body = self.cache.get_answer(key)
        if body is not None:
            return body

        async def once() -> bytes:
            fresh = await self.limiter.run(compute, *args, cancellable=cancellable)
            self.cache.put_answer(key, fresh, run_id)
            return fresh

        return await self.coalescer.run(key, once)

    async def _answered(self, caller: Caller, key: tuple, compute: Callable[..., bytes], *args, **options) -> Response:
        return await json_response(self.budget, await self.answer(key, compute, *args, **options), caller.gzip)

    async def lens(self, run_id: str, positions: list[int] | None, k: int, stream: str, caller: Caller) -> Response:
        """The logit lens over `positions` (all when None, for a prompt short enough)."""
        run = (await self.resolve(run_id)).run
        positions = check_positions(run, positions)
        cost = lens.lens_cost(self.explainer, run, positions, stream)
        # A page toggling between streams asks the same things again; a class asks the same at once.
        return await self._answered(caller, ("lens", run_id, tuple(positions), k, stream), Costed(lens.lens_body, cost),
                                    self.explainer, run, positions, k, stream, cancellable=True, run_id=run_id)

    async def head_scores(self, run_id: str, caller: Caller) -> Response:
        run = (await self.resolve(run_id)).run
        return await self._answered(caller, ("head-scores", run_id), heads.scores_body, run, cancellable=True, run_id=run_id)

    async def induction_probe(self, request: InductionProbeRequest, caller: Caller) -> Response:
        if 2 * request.length > self.explainer.n_ctx:
            raise field_error("length", f"twice the length must fit the model's context of {self.explainer.n_ctx} tokens",
                              code="out_of_range")
        editor = heads.probe_editor(self.explainer, request.interventions, request.length)
        return await self._answered(caller, ("probe", request.length, request.seed, analysis.canonical(editor.interventions)),
                                    Costed(heads.probe_body, heads.probe_cost(self.explainer, request.length)),
                                    self.explainer, request.length, request.seed, editor, cancellable=True)

    async def attribution(self, run_id: str, target: int, baseline: int, caller: Caller) -> Response:
        run = (await self.resolve(run_id)).run
        heads.check_attribution(self.explainer, run, target, baseline)
        return await self._answered(caller, ("attribution", run_id, target, baseline), heads.attribution_body,
                                    self.explainer, run, target, baseline, cancellable=True, run_id=run_id)

    # ----------------------------------------------------------- embedding space ----

    @property
    def space(self) -> EmbeddingSpace:
        """Built on first use (it normalises W_E: 150 MB in GPT-2 small). Its own result cache
        is off: answers are cached as bodies in the run cache, under the one byte budget."""
        if self._space is None:
            with self._space_lock:
                if self._space is None:
                    self._space = EmbeddingSpace(self.explainer.model, self.explainer.tokenizer, cache_entries=0)
        return self._space

    # The space's answers go through the forward limiter: the map and a neighbour search each scan
    # the whole vocabulary.

    async def neighbours(self, word: str | None, token_id: int | None, k: int, caller: Caller) -> Response:
        if (word is None) == (token_id is None):  # before the space is built
            raise field_error("word", "give either a word or a token_id", code="one_of")
        return await self._answered(caller, ("neighbours", word, token_id, k),
                                        lambda: embedding_space.neighbours(self.space, word, token_id, k))

    async def arithmetic(self, expression: str, k: int, caller: Caller) -> Response:
        return await self._answered(caller, ("arithmetic", expression, k),
                                        lambda: embedding_space.arithmetic(self.space, expression, k))

    async def dot(self, a: str | None, b: str | None, a_id: int | None, b_id: int | None) -> DotResponse:
        return await run_in_threadpool(lambda: embedding_space.dot(self.space, a, b, a_id, b_id))

    async def embedding_map(self, run_id: str, words: list[str], caller: Caller) -> Response:
        run = (await self.resolve(run_id)).run
        return await self._answered(caller, ("map", run_id, tuple(words)),
                                        lambda: embedding_space.embedding_map(self.space, run.ids, words), run_id=run_id)

    async def positions(self, run_id: str) -> dict:
        run = (await self.resolve(run_id)).run
        return await run_in_threadpool(lambda: embedding_space.positions(self.space, len(run)))

    # -------------------------------------------------------------- experiments ----

    async def compare(self, a: str, b: str) -> dict:
        run_a, run_b = await self.resolve(a), await self.resolve(b)
        return await run_in_threadpool(experiments.compare, self.explainer, run_a, run_b)

    async def patching(self, request: PatchingRequest) -> dict:
        n_tokens = await run_in_threadpool(experiments.check_patching, self.explainer, request, MAX_PATCHING_TOKENS)  # 422s first
        cost = experiments.patching_cost(self.explainer, n_tokens, request.hook)
        return await self.limiter.run(Costed(experiments.patching, cost), self.explainer, self.cache, request, cancellable=True)

    # ------------------------------------------------------------------ model ----

    def health(self) -> dict:
        return {"status": "ok", "cache": self.cache.stats,
                "forward_passes": {"running": self.limiter.running, "waiting": self.limiter.waiting}}

    def model_info(self) -> dict:
        return model_info(self.explainer)

    def anatomy(self) -> AnatomyResponse:
        return anatomy(self.explainer)
