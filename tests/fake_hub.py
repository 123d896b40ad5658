"""A stand-in for the Hugging Face Hub on 127.0.0.1, for testing the real download path here,
where the Hub cannot be reached: huggingface_hub's own client (HF_ENDPOINT pointed at it) lists
a repository, resolves its revision and downloads its files into a real cache.

It serves the few routes that `snapshot_download` uses: repository info by revision, the file
tree, and HEAD/GET of a file; an unknown repository or revision is a 404 with the Hub's error
code. `silent_server` is the other extreme: it accepts connections and never answers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class _Handler(BaseHTTPRequestHandler):
    repos: dict[str, str] = {}  # repo id -> folder whose files it holds

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, value, status: int = 200, headers: dict | None = None) -> None:
        self._send(status, json.dumps(value).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _files(self, repo: str) -> dict[str, str]:
        folder = self.repos[repo]
        return {name: os.path.join(folder, name) for name in sorted(os.listdir(folder))}

    def _route(self, head: bool) -> None:
        path = self.path.split("?", 1)[0]
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/(revision|tree)/([^/]+)(/.*)?)?", path):
            repo, kind, revision = m.group(1), m.group(2) or "revision", m.group(3) or "main"
            if problem := self._missing(repo, revision):
                return problem
            files = self._files(repo)
            if kind == "revision":
                return self._json({"id": repo, "modelId": repo, "sha": COMMIT, "private": False,
                                   "siblings": [{"rfilename": name} for name in files]})
            return self._json([{"type": "file", "path": name, "size": os.path.getsize(p),
                                "oid": hashlib.sha1(open(p, "rb").read()).hexdigest()} for name, p in files.items()])
        if m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            repo, revision, name = m.groups()
            if problem := self._missing(repo, revision):
                return problem
            files = self._files(repo)
            if name not in files:
                return self._json({"error": "Entry not found"}, 404, {"X-Error-Code": "EntryNotFound"})
            body = open(files[name], "rb").read()
            return self._send(200, body, {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha256(body).hexdigest()}"',
                                          "Content-Type": "application/octet-stream"}, head=head)
        self._json({"error": "Not found"}, 404)

    def _missing(self, repo: str, revision: str):
        if repo not in self.repos:
            return self._json({"error": "Repository not found"}, 404, {"X-Error-Code": "RepoNotFound"})
        if revision not in ("main", COMMIT):
            return self._json({"error": "Invalid rev id"}, 404, {"X-Error-Code": "RevisionNotFound"})
        return None

    def do_GET(self) -> None:
        self._route(head=False)

    def do_HEAD(self) -> None:
        self._route(head=True)


@contextlib.contextmanager
def fake_hub(repos: dict[str, str]) -> Iterator[str]:
    """Serve `repos` (repo id -> checkpoint folder); yields the endpoint for HF_ENDPOINT."""
    handler = type("Handler", (_Handler,), {"repos": dict(repos)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """An endpoint that accepts TCP connections (the kernel's backlog does) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
