"""Embedding space: tokens as points in a 768-dimensional space where directions mean something.

Everything here reads the token embedding matrix W_E = wte.weight [d_vocab, d_model] (GPT-2
ties it to the unembedding) and the position embedding W_pos = wpe.weight [n_ctx, d_model]:
nearest neighbours by cosine similarity, word arithmetic (`king - man + woman`), dot products,
a 3D PCA map and the similarity between positions.

Words. A word is read as GPT-2 sees it in the middle of a sentence, with a leading space:
`king` means the token ' king'. Quotes take the text exactly: `"king"` is 'king' with no
space. A word that is several tokens is represented by the average of their embeddings, and
every answer says so (a note); nothing is silently dropped.

Cost. The row-normalised matrix is computed once per model (50,257 x 768 float32, 154 MB);
a neighbour query is then one matrix-vector product and a top-k. Answers depend only on the
weights (fixed at inference) and the query, so they are kept in a bounded LRU cache.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
from transformers import GPT2LMHeadModel

from .tokenizer import Tokenizer, is_blank, strip_blank
from .errors import FieldError

T = TypeVar("T")

MAX_WORD_CHARS = 100
MAX_TERM_TOKENS = 16
MAX_TERMS = 12
MAX_K = 100
MAP_SAMPLE = 1000
MAP_SAMPLE_SEED = 0
CACHE_ENTRIES = 4096


class EmbeddingQueryError(FieldError):
    """A query that cannot be answered; `field` names the input at fault. A token id or k out of
    range breaks the request's own rules (invalid); anything else is about what the tokenizer or
    the arithmetic made of the words (bad_words)."""

    def __init__(self, field: str, message: str):
        super().__init__(message, field, "invalid" if field in ("k", "token_id", "a_id", "b_id") else "bad_words")

    def __str__(self) -> str:
        return self.detail


@dataclass(frozen=True)
class Term:
    """A word (or token) in a query, with the tokens that carry it."""

    text: str  # exactly the text that was tokenized, e.g. ' king'
    ids: tuple[int, ...]
    tokens: tuple[str, ...]  # each id's text, as the tokenizer labels it
    sign: int = 1  # +1 or -1 in an arithmetic expression

    @property
    def note(self) -> str | None:
        if len(self.ids) == 1:
            return None
        pieces = ", ".join(repr(label) for label in self.tokens)
        return (f"{self.text!r} is {len(self.ids)} tokens ({pieces}); its vector is the average "
                f"of their {len(self.ids)} embeddings.")


@dataclass(frozen=True)
class Neighbour:
    id: int
    text: str
    cosine: float


@dataclass(frozen=True)
class Neighbours:
    terms: tuple[Term, ...]
    neighbours: tuple[Neighbour, ...]
    excluded: tuple[int, ...]  # token ids left out of the answer (the query's own tokens)

    @property
    def notes(self) -> list[str]:
        return [t.note for t in self.terms if t.note]


@dataclass(frozen=True)
class Comparison:
    a: Term
    b: Term
    dot: float
    cosine: float
    norm_a: float
    norm_b: float


@dataclass(frozen=True)
class MapPoint:
    id: int | None  # None for a multi-token word (an average of embeddings)
    text: str
    xyz: tuple[float, float, float]
    group: str  # 'sample' | 'prompt' | 'word'
    positions: tuple[int, ...] = ()  # for prompt tokens: where they occur in the prompt


@dataclass(frozen=True)
class EmbeddingMap:
    points: tuple[MapPoint, ...]
    explained: tuple[float, float, float]  # share of the points' variance along each axis
    terms: tuple[Term, ...]  # the words added by the user
    d_model: int  # the space the points were projected from

    @property
    def notes(self) -> list[str]:
        return [t.note for t in self.terms if t.note]


class _LRU:
    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_compute(self, key, compute: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            self.misses += 1
        value = compute()  # outside the lock: two threads may compute the same answer once each
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)


# An operator (+, - or the minus sign U+2212 that the page itself prints), a "quoted" word, or a bare word.
_OPERATOR = re.compile(r'\s*([+\-\u2212])\s*|("[^"]*")|([^+\-\u2212"]+)')


class EmbeddingSpace:
    def __init__(self, model: GPT2LMHeadModel, tokenizer: Tokenizer, cache_entries: int = CACHE_ENTRIES):
        self.tokenizer = tokenizer
        with torch.inference_mode():
            self.W_E = model.transformer.wte.weight.detach()  # [d_vocab, d_model]
            self.W_pos = model.transformer.wpe.weight.detach()  # [n_ctx, d_model]
            self.norms = self.W_E.norm(dim=-1)  # [d_vocab]
            self.unit = (self.W_E / self.norms.clamp_min(1e-12)[:, None]).contiguous()  # [d_vocab, d_model]
        self.d_vocab, self.d_model = self.W_E.shape
        self.cache = _LRU(cache_entries)
        self._sample: list[int] | None = None

    _instances: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    _instances_lock = threading.Lock()

    @classmethod
    def of(cls, model: GPT2LMHeadModel, tokenizer: Tokenizer) -> EmbeddingSpace:
        """The one EmbeddingSpace of a model, built on first use."""
        with cls._instances_lock:
            space = cls._instances.get(model)
            if space is None:
                space = cls._instances[model] = cls(model, tokenizer)
            return space

    # -- words and tokens -------------------------------------------------------------------

    def term(self, word: str, field: str = "word", sign: int = 1) -> Term:
        """A word as GPT-2 reads it mid-sentence (' ' + word), or exactly when in double quotes."""
        stripped = strip_blank(word)
        if len(stripped) >= 2 and stripped[0] == stripped[-1] == '"':
            text = stripped[1:-1]
        else:
            text = " " + stripped if stripped else ""
        if not text:
            raise EmbeddingQueryError(field, "is empty: type a word")
        if len(text) > MAX_WORD_CHARS:
            raise EmbeddingQueryError(field, f"is {len(text)} characters long; at most {MAX_WORD_CHARS}")
        ids = self.tokenizer.encode(text)
        if len(ids) > MAX_TERM_TOKENS:
            raise EmbeddingQueryError(field, f"{text!r} is {len(ids)} tokens; at most {MAX_TERM_TOKENS} per word")
        return Term(text, tuple(ids), tuple(self.tokenizer.label(i) for i in ids), sign)

    def token(self, token_id: int, field: str = "token_id") -> Term:
        if not 0 <= token_id < self.d_vocab:
            raise EmbeddingQueryError(field, f"must be a token id from 0 to {self.d_vocab - 1}, got {token_id}")
        label = self.tokenizer.label(token_id)
        return Term(label, (token_id,), (label,))

    def vector(self, term: Term) -> torch.Tensor:
        """The term's embedding; the average of its tokens' embeddings when it has several. [d_model]"""
        return self.W_E[list(term.ids)].mean(0)

    def parse(self, expression: str, field: str = "expression") -> tuple[Term, ...]:
        """'king - man + woman' -> (+' king', -' man', +' woman'). Words with + or - go in quotes."""
        if len(expression) > MAX_TERMS * (MAX_WORD_CHARS + 3):
            raise EmbeddingQueryError(field, "is too long")
        if expression.count('"') % 2:
            raise EmbeddingQueryError(field, "has an unclosed double quote")
        terms: list[Term] = []
        sign: int | None = None
        for match in _OPERATOR.finditer(expression):
            op, quoted, bare = match.groups()
            if op:
                if sign is not None:
                    raise EmbeddingQueryError(field, f"two operators in a row near {match.group(0).strip()!r}")
                sign = 1 if op == "+" else -1
                continue
            word = quoted if quoted else (bare or "")
            if is_blank(word):
                continue
            if terms and sign is None:
                raise EmbeddingQueryError(field, f"put + or - between the words (before {word.strip()!r}); "
                                                 "a word with + or - in it goes in double quotes")
            terms.append(self.term(word, field, sign if sign is not None else 1))
            sign = None
            if len(terms) > MAX_TERMS:
                raise EmbeddingQueryError(field, f"has more than {MAX_TERMS} words")
        if sign is not None:
            raise EmbeddingQueryError(field, "ends with an operator: add a word after it")
        if not terms:
            raise EmbeddingQueryError(field, "is empty: type words joined by + and -, e.g. king - man + woman")
        return tuple(terms)

    # -- queries ----------------------------------------------------------------------------

    def _check_k(self, k: int) -> None:
        if not 1 <= k <= min(MAX_K, self.d_vocab - 1):
            raise EmbeddingQueryError("k", f"must be from 1 to {min(MAX_K, self.d_vocab - 1)}, got {k}")

    @torch.inference_mode()
    def nearest(self, vector: torch.Tensor, k: int = 10, exclude: Sequence[int] = ()) -> list[tuple[int, float]]:
        """The k tokens whose embeddings have the highest cosine similarity with `vector`,
        over the whole vocabulary, leaving out `exclude`. -> [(id, cosine)]"""
        norm = vector.norm()
        if not torch.isfinite(norm) or norm <= 0:
            raise EmbeddingQueryError("expression", "the resulting vector is zero: cosine similarity is undefined")
        cosines = torch.mv(self.unit, vector / norm)  # [d_vocab]
        if exclude:
            cosines[list(exclude)] = float("-inf")
        values, ids = torch.topk(cosines, k)
        return list(zip(ids.tolist(), values.tolist()))

    def _neighbours(self, terms: tuple[Term, ...], vector: torch.Tensor, k: int) -> Neighbours:
        exclude = tuple(sorted({i for t in terms for i in t.ids}))
        found = self.nearest(vector, k, exclude)
        return Neighbours(terms, tuple(Neighbour(i, self.tokenizer.label(i), c) for i, c in found), exclude)

    def neighbours_of_word(self, word: str, k: int = 10) -> Neighbours:
        """The k nearest tokens to a word, by cosine, leaving out the word's own tokens."""
        self._check_k(k)
        term = self.term(word)
        return self.cache.get_or_compute(("nb", term.ids, k), lambda: self._neighbours((term,), self.vector(term), k))

    def neighbours_of_token(self, token_id: int, k: int = 10) -> Neighbours:
        self._check_k(k)
        term = self.token(token_id)
        return self.cache.get_or_compute(("nb", term.ids, k), lambda: self._neighbours((term,), self.vector(term), k))

    def arithmetic(self, expression: str, k: int = 10) -> Neighbours:
        """Nearest tokens to sum(sign * word vector), leaving out the input words' tokens."""
        self._check_k(k)
        terms = self.parse(expression)
        key = ("ar", tuple((t.sign, t.ids) for t in terms), k)

        def compute() -> Neighbours:
            vector = torch.stack([t.sign * self.vector(t) for t in terms]).sum(0)
            return self._neighbours(terms, vector, k)

        return self.cache.get_or_compute(key, compute)

    @torch.inference_mode()
    def compare(self, a: Term, b: Term) -> Comparison:
        """Dot product and cosine similarity of two embeddings."""
        va, vb = self.vector(a), self.vector(b)
        na, nb = float(va.norm()), float(vb.norm())
        dot = float(va @ vb)
        cosine = dot / (na * nb) if na > 0 and nb > 0 else 0.0
        return Comparison(a, b, dot, cosine, na, nb)

    # -- the map ----------------------------------------------------------------------------

    def sample_ids(self) -> list[int]:
        """A fixed sample of readable word tokens (a space, then 3+ letters) from the 20,000
        most frequent merges, so the map's background is words a student recognises."""
        if self._sample is None:
            pattern = re.compile(r"^ [A-Za-z]{3,}$")
            limit = min(20_000, self.d_vocab)
            candidates = [i for i in range(limit) if pattern.match(self.tokenizer.label(i))]
            generator = torch.Generator().manual_seed(MAP_SAMPLE_SEED)
            chosen = torch.randperm(len(candidates), generator=generator)[:MAP_SAMPLE]
            self._sample = sorted(candidates[i] for i in chosen.tolist())
        return self._sample

    def map(self, prompt_ids: Sequence[int], words: Sequence[str] = ()) -> EmbeddingMap:
        """Token embeddings projected on their top 3 principal directions. The directions are
        computed from the vocabulary sample plus the prompt's tokens; added words are placed
        on the same axes."""
        terms = tuple(self.term(w, f"word[{i}]") for i, w in enumerate(words))
        key = ("map", tuple(prompt_ids), tuple(t.ids for t in terms))
        return self.cache.get_or_compute(key, lambda: self._map(list(prompt_ids), terms))

    @torch.inference_mode()
    def _map(self, prompt_ids: list[int], terms: tuple[Term, ...]) -> EmbeddingMap:
        sample = self.sample_ids()
        prompt_unique = list(dict.fromkeys(prompt_ids))
        basis_ids = sorted(set(sample) | set(prompt_unique))
        X = self.W_E[basis_ids]  # [n, d_model]
        mean = X.mean(0)
        centered = X - mean
        # Principal directions: eigenvectors of the d_model x d_model scatter matrix, largest
        # first (the same as the SVD of `centered`, several times faster on a CPU).
        eigenvalues, eigenvectors = torch.linalg.eigh(centered.T @ centered)  # ascending
        axes = eigenvectors[:, -3:].flip(1).T.contiguous()  # [3, d_model]
        # A deterministic orientation: the largest loading of each axis is positive.
        signs = torch.sign(axes.gather(1, axes.abs().argmax(1, keepdim=True)))
        axes = axes * signs
        total = centered.pow(2).sum()
        explained = tuple(float(v) for v in (eigenvalues[-3:].flip(0) / total))

        def project(v: torch.Tensor) -> list[tuple[float, float, float]]:
            return [tuple(row) for row in ((v - mean) @ axes.T).tolist()]

        points: list[MapPoint] = []
        prompt_set = set(prompt_unique)
        background = [i for i in sample if i not in prompt_set]
        for i, xyz in zip(background, project(self.W_E[background])):
            points.append(MapPoint(i, self.tokenizer.label(i), xyz, "sample"))
        where: dict[int, list[int]] = {}
        for p, i in enumerate(prompt_ids):
            where.setdefault(i, []).append(p)
        for i, xyz in zip(prompt_unique, project(self.W_E[prompt_unique]) if prompt_unique else []):
            points.append(MapPoint(i, self.tokenizer.label(i), xyz, "prompt", tuple(where[i])))
        if terms:
            vectors = torch.stack([self.vector(t) for t in terms])
            for t, xyz in zip(terms, project(vectors)):
                points.append(MapPoint(t.ids[0] if len(t.ids) == 1 else None, t.text, xyz, "word"))
        return EmbeddingMap(tuple(points), explained, terms, self.d_model)

    # -- positions --------------------------------------------------------------------------

    @torch.inference_mode()
    def positions(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first n position embeddings [n, d_model] and their cosine similarities [n, n]."""
        W = self.W_pos[:n]
        unit = W / W.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return W, unit @ unit.T
