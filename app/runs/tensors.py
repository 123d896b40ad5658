"""The wire format of a tensor: {"dtype", "shape", "data": base64 of little-endian C-order bytes}."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import numpy as np
import torch

WIRE_DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}
# Elements per base64 piece of a big tensor: a multiple of 3, so that the pieces join into one
# base64 string (3 elements of 2 or 4 bytes are whole base64 groups); 4 MiB of base64 in float32.
PIECE_ELEMENTS = 3 << 18


def wire_array(tensor: torch.Tensor) -> np.ndarray:
    """The tensor as a float32 C-order array (a view of it when it is one already)."""
    return tensor.detach().to("cpu", torch.float32).contiguous().numpy()


def encode(tensor: torch.Tensor, dtype: str = "float32") -> dict:
    array = wire_array(tensor).astype(WIRE_DTYPES[dtype], copy=False)
    return {"dtype": dtype, "shape": list(array.shape), "data": base64.b64encode(array).decode("ascii")}


def decode(wire: dict) -> np.ndarray:
    """The inverse of `encode`, for tests and notebooks."""
    data = np.frombuffer(base64.b64decode(wire["data"]), dtype=WIRE_DTYPES[wire["dtype"]])
    return data.reshape(wire["shape"])


def base64_size(n_elements: int, dtype: str) -> int:
    """Bytes of the base64 of `n_elements` in `dtype`."""
    return 4 * -(-n_elements * WIRE_DTYPES[dtype].itemsize // 3)


def body_size(head: dict, shapes: dict[str, tuple[int, ...]], dtype: str) -> int:
    """An upper bound of len(b"".join(body_pieces(head, tensors of these shapes, dtype)))."""
    return len(json.dumps(head)) + 16 + sum(
        len(json.dumps(name)) + 64 + 12 * len(shape) + base64_size(int(np.prod(shape)), dtype)
        for name, shape in shapes.items())


def body_pieces(head: dict, tensors: dict[str, torch.Tensor], dtype: str) -> Iterator[bytes]:
    """The JSON {**head, "tensors": {name: wire}} in pieces, without ever holding it whole: one
    tensor at a time, PIECE_ELEMENTS of it per base64 piece (converted to `dtype` a piece at a
    time). Each tensor leaves `tensors` once written, so its memory goes as the body grows."""
    opening = json.dumps(head, separators=(",", ":"))[:-1]
    yield f'{opening}{"," if head else ""}"tensors":{{'.encode()
    first = True
    while tensors:
        name = next(iter(tensors))
        array = wire_array(tensors.pop(name))
        meta = {"dtype": dtype, "shape": list(array.shape)}
        yield f'{"" if first else ","}{json.dumps(name)}:{json.dumps(meta, separators=(",", ":"))[:-1]},"data":"'.encode()
        first = False
        flat = array.reshape(-1)
        del array
        for start in range(0, flat.size, PIECE_ELEMENTS):
            yield base64.b64encode(flat[start:start + PIECE_ELEMENTS].astype(WIRE_DTYPES[dtype], copy=False))
        del flat
        yield b'"}'
    yield b"}}"


def block_shapes(config, n_tokens: int) -> dict[str, tuple[int, ...]]:
    """The shape of each hook of a block (LAYER_HOOKS' suffixes) for a run of `n_tokens`, from
    the model's config: what a layer's recompute holds, before it is computed."""
    d, heads = config.n_embd, config.n_head
    shapes = dict.fromkeys(("hook_resid_pre", "ln1.hook_out", "hook_attn_out", "hook_resid_mid", "ln2.hook_out",
                            "hook_mlp_out", "hook_resid_post"), (n_tokens, d))
    shapes.update(dict.fromkeys(("attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_z"), (n_tokens, heads, d // heads)))
    shapes.update(dict.fromkeys(("attn.hook_attn_scores", "attn.hook_pattern"), (heads, n_tokens, n_tokens)))
    shapes.update(dict.fromkeys(("mlp.hook_pre", "mlp.hook_post"), (n_tokens, config.n_inner or 4 * d)))
    return shapes
