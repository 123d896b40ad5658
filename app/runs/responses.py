"""JSON bodies built and compressed off the event loop, inside the memory budget: a layer of a
1,024-token run is over 200 MB of JSON, and the event loop must only route (the GZip middleware
would compress it on the loop, and FastAPI would validate a returned dict there).

A big body is reserved in the byte budget (app/serving/budget.py) before it is built, built in pieces
(never whole in one string, then again in bytes, then again gzipped), and sent piece by piece;
its room is given back once it has been sent."""

from __future__ import annotations

import gzip as gzip_module
import json
import zlib
from collections.abc import Awaitable, Callable, Iterable

import torch
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel

from app.runs import tensors as wire
from app.serving.budget import ByteBudget, Reservation

MIN_GZIP = 2048  # the GZip middleware's own minimum
SEND_BYTES = 1 << 20  # small pieces are gathered into sends of about this size
BIG = 1 << 20  # a cached body from this size up reserves room for its gzipped copy


def json_bytes(payload) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def model_bytes(schema: type[BaseModel], value) -> bytes:
    """`value` (model/'s dataclass, or a dict) as the JSON of the route's response model: checked
    against it and written by it (pydantic's serializer), so the schema is the contract. A key a
    dict leaves out stays out (an intervention's unused fields)."""
    return schema.model_validate(value, from_attributes=True).model_dump_json(exclude_unset=True).encode()



def gzipped(data: bytes) -> bytes:
    """gzip with run-length matches only (zlib's Z_RLE). The analyze body is mostly base64 of
    float16 weights: long matches are rare, but the zeros above the diagonal make long runs.
    On a 64-token body (1.8 MB) this is measured 3x faster than level 1 and 4% smaller than
    level 5 (0.80 MB)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31, 8, zlib.Z_RLE)  # wbits 31: gzip framing
    return compressor.compress(data) + compressor.flush()


class Pieces(Response):
    """A body given as pieces, sent one after the other with its Content-Length, each dropped
    once sent; the body's reservation is released when the last is sent, or the sending fails
    (the client left), or, for a response never sent, when it is collected."""

    def __init__(self, pieces: list[bytes], reservation: Reservation | None, gzipped_body: bool):
        headers = {"Content-Length": str(sum(map(len, pieces))), "Vary": "Accept-Encoding"}
        if gzipped_body:
            headers["Content-Encoding"] = "gzip"
        super().__init__(None, headers=headers, media_type="application/json")
        self.pieces = pieces[::-1]  # popped from the end
        self.reservation = reservation
        if reservation is not None:
            reservation.until_collected(self)

    async def __call__(self, scope, receive, send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            pieces, self.pieces = self.pieces or [b""], []
            while pieces:
                await send({"type": "http.response.body", "body": pieces.pop(), "more_body": bool(pieces)})
        finally:
            if self.reservation is not None:
                self.reservation.release()


def gathered(pieces: Iterable[bytes], gzip: bool) -> list[bytes]:
    """`pieces` gzipped as they come when `gzip` (each dropped once compressed), gathered into
    sends of about SEND_BYTES."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31, 8, zlib.Z_RLE) if gzip else None  # as gzipped
    out: list[bytes] = []
    pending: list[bytes] = []
    size = 0

    def add(piece: bytes) -> None:
        nonlocal size
        if piece:
            pending.append(piece)
            size += len(piece)
        if size >= SEND_BYTES:
            flush()

    def flush() -> None:
        nonlocal size
        if pending:
            out.append(pending[0] if len(pending) == 1 else b"".join(pending))
            pending.clear()
            size = 0

    for piece in pieces:
        add(compressor.compress(piece) if compressor else piece)
    if compressor:
        add(compressor.flush())
    flush()
    return out


async def tensors_response(budget: ByteBudget, gzip: bool, head: dict, shapes: dict[str, tuple[int, ...]],
                           dtype: str, compute: Callable[[], Awaitable[dict[str, torch.Tensor]]],
                           held: int = 0) -> Response:
    """The JSON {**head, "tensors": {name: wire}} of the tensors `compute()` gives (named and
    shaped as `shapes`), inside the budget: room for `held` (bytes the computation holds besides
    its result) plus the tensors in float32 plus their body is reserved first (waiting for it,
    or 503 busy), then they are computed, encoded and compressed in a worker thread a piece at a
    time, and the room is narrowed to the body, kept until it is sent."""
    raw = sum(4 * int(torch.Size(shape).numel()) for shape in shapes.values())
    largest = max((4 * int(torch.Size(shape).numel()) for shape in shapes.values()), default=0)  # a contiguous copy
    reservation = await budget.reserve(held + raw + largest + wire.body_size(head, shapes, dtype))
    try:
        found = await compute()
        pieces = await run_in_threadpool(gathered, wire.body_pieces(head, found, dtype), gzip)
        del found
        reservation.shrink(sum(map(len, pieces)))
        return Pieces(pieces, reservation, gzip)
    except BaseException:
        reservation.release()
        raise


async def json_response(budget: ByteBudget, body: bytes, gzip: bool) -> Response:
    """`body` (JSON bytes), gzipped in a worker thread when the client accepts it; the GZip
    middleware passes a response that is encoded already. A big body's gzipped copy is reserved
    in the budget until it is sent."""
    if len(body) <= MIN_GZIP or not gzip:
        return Response(body, media_type="application/json", headers={"Vary": "Accept-Encoding"})
    if len(body) < BIG:
        return Response(await run_in_threadpool(gzipped, body), media_type="application/json",
                        headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding"})
    reservation = await budget.reserve(len(body))  # gzip output is smaller than its input
    try:
        pieces = await run_in_threadpool(gathered, [memoryview(body)[i:i + SEND_BYTES] for i in range(0, len(body), SEND_BYTES)], True)
        reservation.shrink(sum(map(len, pieces)))
        return Pieces(pieces, reservation, True)
    except BaseException:
        reservation.release()
        raise


async def stored_response(gzipped_body: bytes, plain: bytes | None, gzip: bool) -> Response:
    """A body kept gzipped (an analysis's), as is, or decompressed (`plain`, when the caller has
    it already) for a client that does not accept gzip. The GZip middleware passes a response
    that is encoded already."""
    if gzip:
        return Response(gzipped_body, media_type="application/json",
                        headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding"})
    return Response(plain or await run_in_threadpool(gzip_module.decompress, gzipped_body), media_type="application/json",
                    headers={"Vary": "Accept-Encoding"})
