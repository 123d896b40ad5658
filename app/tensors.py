"""The wire format of a tensor: {"dtype", "shape", "data": base64 of little-endian C-order bytes}."""

from __future__ import annotations

import base64

import numpy as np
import torch

WIRE_DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}


def encode(tensor: torch.Tensor, dtype: str = "float32") -> dict:
    array = tensor.detach().to("cpu", torch.float32).contiguous().numpy().astype(WIRE_DTYPES[dtype], copy=False)
    return {"dtype": dtype, "shape": list(array.shape), "data": base64.b64encode(array.tobytes()).decode("ascii")}


def decode(wire: dict) -> np.ndarray:
    """The inverse of `encode`, for tests and notebooks."""
    data = np.frombuffer(base64.b64decode(wire["data"]), dtype=WIRE_DTYPES[wire["dtype"]])
    return data.reshape(wire["shape"])
