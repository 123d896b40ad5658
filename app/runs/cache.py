"""The run cache: analyzed prompts by run id, bounded in entries and bytes, least recently used
evicted first. Each entry holds the Run (its residual stream, from which any layer is
recomputed) and the serialized analyze response, so a repeated prompt costs no forward pass
and no encoding.

A run id is derived from the content (the model's identity, the token ids and the
interventions), and the cache keeps an index from id to that recipe far larger than itself
(bounded in bytes), so that a run it evicted can be recomputed rather than lost. A recipe is
(the ids packed as 4-byte integers, the interventions' canonical JSON): ids, not text, since a
generated sequence is not always what its text tokenizes to."""

from __future__ import annotations

import base64
import hashlib
import sys
from array import array
import threading
from collections import OrderedDict
from dataclasses import dataclass

from model import Run


Recipe = tuple[bytes, str]  # (pack_ids(ids), interventions JSON)


def pack_ids(ids) -> bytes:
    """Token ids as little-endian 4-byte integers: a tenth of a tuple of Python ints."""
    packed = array("I", ids)
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tobytes()


def unpack_ids(blob: bytes) -> list[int]:
    packed = array("I")
    packed.frombytes(blob)
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tolist()


@dataclass
class CachedRun:
    run_id: str
    run: Run
    # Analyze responses, gzipped JSON, keyed by whether they carry every layer's pattern (a
    # long prompt may be asked for with patterns left to the layer endpoint, and without).
    bodies: dict[bool, bytes]
    interventions: str = ""  # canonical JSON of the run's interventions; "" for none

    @property
    def nbytes(self) -> int:
        return self.run.nbytes + sum(len(b) for b in self.bodies.values())

    @property
    def recipe(self) -> Recipe:
        return pack_ids(self.run.ids), self.interventions


INDEX_BYTES = 64 << 20  # of recipes: a hundred thousand prompts, for a few runs' worth of memory


class RecipeIndex:
    """run id -> (packed token ids, interventions JSON), least recently used forgotten first
    beyond `max_bytes`. One implementation for a server's own index (RunCache) and the one its
    replicas share (app/cluster.py). Not locked: its owner locks it."""

    def __init__(self, max_bytes: int = INDEX_BYTES):
        self.max_bytes = max_bytes
        self.bytes = 0
        self._recipes: OrderedDict[str, Recipe] = OrderedDict()

    def remember(self, run_id: str, recipe: Recipe) -> bool:
        """Keep `recipe` under `run_id`: whether the id was new to the index."""
        if run_id in self._recipes:
            self._recipes.move_to_end(run_id)
            return False
        self._recipes[run_id] = recipe
        self.bytes += _size(recipe)
        while self.bytes > self.max_bytes and len(self._recipes) > 1:
            self.bytes -= _size(self._recipes.popitem(last=False)[1])
        return True

    def lookup(self, run_id: str) -> Recipe | None:
        return _touch(self._recipes, run_id)

    def __len__(self) -> int:
        return len(self._recipes)


class RunCache:
    """Runs, and the answers of other queries (logit-lens bodies, embedding-space answers), in
    one least-recently-used order under one byte budget (EXPLAINER_CACHE_BYTES), which the
    responses being built and sent share (app/serving/budget.py, `make_room`): memory stays bounded
    whatever mix of requests a class sends. The entry limit counts runs only; an answer
    about a run (its logit lens, its map) leaves with that run, so that memory levels off once
    the run limit is reached instead of creeping up to the byte budget (in the 10-minute soak,
    RSS rose 11% after the second minute while lens bodies of long-gone runs piled up)."""

    def __init__(self, max_entries: int, max_bytes: int, index_bytes: int = INDEX_BYTES):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.in_flight = 0  # bytes of responses being built or sent (app/serving/budget.py): room the cache gives up
        self.index_bytes = index_bytes
        # ("run", run_id) -> CachedRun, or ("answer", key) -> bytes; oldest first
        self._items: OrderedDict[tuple, CachedRun | bytes] = OrderedDict()
        self._sizes: dict[tuple, int] = {}
        self._runs = 0
        self._answers_of: dict[str, set[tuple]] = {}  # run id -> keys of the answers about it
        self._run_of: dict[tuple, str] = {}  # and back
        self._recipes = RecipeIndex(index_bytes)  # every id issued -> its recipe
        self._bytes = 0
        self.hits = 0  # run lookups by get(), for the metrics
        self.misses = 0
        self._lock = threading.Lock()
        # Optional index shared between server processes (app/cluster.py's SharedRecipes, under
        # Ray Serve): duck-typed, remember(run_id, recipe) and async lookup(run_id). None: this
        # process's index is the only one.
        self.shared = None

    @staticmethod
    def id_for(identity: str, ids, interventions: str = "") -> str:
        """22 URL-safe characters (128 bits of SHA-256) of the model's identity, the token ids and
        the interventions' canonical JSON."""
        content = f"{identity}\0{','.join(map(str, ids))}" + (f"\0{interventions}" if interventions else "")
        digest = hashlib.sha256(content.encode()).digest()[:16]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def recipe_of(self, run_id: str) -> Recipe | None:
        """(packed ids, interventions JSON) of a run this cache issued, while the index remembers it."""
        with self._lock:
            return self._recipes.lookup(run_id)

    def remember(self, run_id: str, recipe: Recipe) -> None:
        """Issue `run_id` without computing it (a generation's run, computed when first asked for)."""
        with self._lock:
            new = self._recipes.remember(run_id, recipe)
        if new and self.shared is not None:  # outside the lock: it may wait on another process
            self.shared.remember(run_id, recipe)

    def get(self, run_id: str) -> CachedRun | None:
        with self._lock:
            entry = _touch(self._items, ("run", run_id))
            if entry is None:
                self.misses += 1
            else:
                self.hits += 1
            return entry

    def put(self, entry: CachedRun) -> None:
        with self._lock:
            self._store(("run", entry.run_id), entry, entry.nbytes)
        self.remember(entry.run_id, entry.recipe)

    def add_body(self, entry: CachedRun, with_patterns: bool, body: bytes) -> None:
        """Attach another form of the analyze response to a cached run, within the budget."""
        with self._lock:
            key = ("run", entry.run_id)
            if self._items.get(key) is not entry or with_patterns in entry.bodies:
                return
            entry.bodies[with_patterns] = body
            self._store(key, entry, entry.nbytes)

    def get_answer(self, key: tuple) -> bytes | None:
        with self._lock:
            return _touch(self._items, ("answer", key))

    def put_answer(self, key: tuple, body: bytes, run_id: str | None = None) -> None:
        """Keep `body` for `key`; with `run_id`, only while that run is in the cache."""
        with self._lock:
            if run_id is not None:
                if ("run", run_id) not in self._items:
                    return  # its run left already: served once, not kept
                self._answers_of.setdefault(run_id, set()).add(("answer", key))
                self._run_of[("answer", key)] = run_id
            self._store(("answer", key), body, len(body))

    def _store(self, key: tuple, value, nbytes: int) -> None:
        if key in self._items:
            self._remove(key)
        self._items[key] = value
        self._sizes[key] = nbytes
        self._bytes += nbytes
        self._runs += key[0] == "run"
        self._evict(keep=key)

    def make_room(self, in_flight: int) -> None:
        """`in_flight` bytes of responses share the budget now: least recently used items leave
        until the cache and they fit in it together (or one item is left)."""
        with self._lock:
            self.in_flight = in_flight
            self._evict(keep=None)

    def _evict(self, keep: tuple | None) -> None:
        while len(self._items) > 1 and (self._runs > self.max_entries or self._bytes + self.in_flight > self.max_bytes):
            if self._runs > self.max_entries:
                victim = next(k for k in self._items if k[0] == "run" and k != keep)
            else:
                victim = next(k for k in self._items if k != keep)
            self._remove(victim)
        # A single item larger than the budget is still served once; the next one evicts it.

    def _remove(self, key: tuple) -> None:
        del self._items[key]
        self._bytes -= self._sizes.pop(key)
        self._runs -= key[0] == "run"
        if key[0] == "run":
            for answer in self._answers_of.pop(key[1], ()):
                if answer in self._items:
                    self._remove(answer)
        elif key in self._run_of:
            self._answers_of.get(self._run_of.pop(key), set()).discard(key)

    @property
    def stats(self) -> dict:
        with self._lock:
            return {"entries": self._runs, "answers": len(self._items) - self._runs, "bytes": self._bytes,
                    "max_entries": self.max_entries, "max_bytes": self.max_bytes, "in_flight": self.in_flight,
                    "known_runs": len(self._recipes), "index_bytes": self._recipes.bytes, "hits": self.hits, "misses": self.misses}


def _size(recipe: Recipe) -> int:
    return sys.getsizeof(recipe[0]) + (sys.getsizeof(recipe[1]) if recipe[1] else 0)


def _touch(mapping: OrderedDict, key: str):
    """mapping[key], marked most recently used; None if absent."""
    value = mapping.get(key)
    if value is not None:
        mapping.move_to_end(key)
    return value
