"""The run cache: analyzed prompts by opaque run id, bounded in entries and bytes, least
recently used evicted first. Each entry holds the Run (its residual stream, from which any
layer is recomputed) and the serialized analyze response, so a repeated prompt costs no
forward pass and no encoding."""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass

from model import Run


@dataclass
class CachedRun:
    run_id: str
    text: str
    run: Run
    # Analyze responses, gzipped JSON, keyed by whether they carry every layer's pattern (a
    # long prompt may be asked for with patterns left to the layer endpoint, and without).
    bodies: dict[bool, bytes]

    @property
    def nbytes(self) -> int:
        return self.run.nbytes + sum(len(b) for b in self.bodies.values())


class RunCache:
    def __init__(self, max_entries: int, max_bytes: int):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._by_id: OrderedDict[str, CachedRun] = OrderedDict()
        self._by_text: dict[str, str] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(12)

    def get(self, run_id: str) -> CachedRun | None:
        with self._lock:
            entry = self._by_id.get(run_id)
            if entry is not None:
                self._by_id.move_to_end(run_id)
            return entry

    def find(self, text: str) -> CachedRun | None:
        with self._lock:
            run_id = self._by_text.get(text)
        return self.get(run_id) if run_id else None

    def put(self, entry: CachedRun) -> None:
        with self._lock:
            if entry.run_id in self._by_id:
                self._remove(entry.run_id)
            self._by_id[entry.run_id] = entry
            self._by_text[entry.text] = entry.run_id
            self._bytes += entry.nbytes
            self._evict(keep=entry.run_id)

    def add_body(self, entry: CachedRun, with_patterns: bool, body: bytes) -> None:
        """Attach another form of the analyze response to a cached run, within the budget."""
        with self._lock:
            if entry.run_id not in self._by_id or with_patterns in entry.bodies:
                return
            entry.bodies[with_patterns] = body
            self._bytes += len(body)
            self._by_id.move_to_end(entry.run_id)
            self._evict(keep=entry.run_id)

    def _evict(self, keep: str) -> None:
        while self._by_id and (len(self._by_id) > self.max_entries or self._bytes > self.max_bytes):
            oldest = next(iter(self._by_id))
            if oldest == keep and len(self._by_id) == 1:
                break  # a single run larger than the budget is still served once
            self._remove(oldest)

    def _remove(self, run_id: str) -> None:
        entry = self._by_id.pop(run_id)
        self._bytes -= entry.nbytes
        if self._by_text.get(entry.text) == run_id:
            del self._by_text[entry.text]

    @property
    def stats(self) -> dict:
        with self._lock:
            return {"entries": len(self._by_id), "bytes": self._bytes,
                    "max_entries": self.max_entries, "max_bytes": self.max_bytes}
