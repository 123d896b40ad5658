"""The page's words: one catalog per language, read from static/i18n/<lang>/<namespace>.json and
merged into one flat dictionary with keys "<namespace>.<key>".

The page is rendered in one language: Jinja's `t(key, **params)` fills the templates, and the
same catalog is embedded in the page for the scripts (static/i18n.js). A value may hold a little
inline HTML (<em>, <code>, <sub>, <span class="w">...), written by us and so trusted; parameters
are escaped. `{name}` is a placeholder.

"en-XA" is the pseudo-language of Android and Chrome: English with every letter accented
("Ĺàýéŕ"), made from the English catalog. Nothing is lost in reading it, and any English
left on a page shown in it is a string that does not come from the catalog.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

from markupsafe import Markup, escape

from app.page.resources import data_dir

DEFAULT = "en"
PSEUDO = "en-XA"
PLACEHOLDER = re.compile(r"\{(\w+)\}")
# What the pseudo-language leaves alone: tags, entities and placeholders.
UNTOUCHED = re.compile(r"(<[^>]*>|&\w+;|&#\d+;|\{\w+\})")
ACCENTED = str.maketrans(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "àƀçđéƒĝĥíĵķĺɱñóþǫŕšţúṽŵẋýžÀƁÇĐÉƑĜĤÍĴĶĹṀÑÓƤǪŔŠŢÚṼŴẊÝŽ",
)


def catalog_dir() -> Path:
    return data_dir("static") / "i18n"


@cache
def languages() -> tuple[str, ...]:
    """The languages with a catalog, the default first, then the pseudo-language."""
    found = sorted(p.name for p in catalog_dir().iterdir() if p.is_dir() and p.name != DEFAULT)
    return (DEFAULT, *found, PSEUDO)


def read(lang: str) -> dict[str, str]:
    """The merged catalog of `lang` as written, "<namespace>.<key>" -> text."""
    merged: dict[str, str] = {}
    for path in sorted((catalog_dir() / lang).glob("*.json")):
        for key, text in json.loads(path.read_text(encoding="utf-8")).items():
            merged[f"{path.stem}.{key}"] = text
    return merged


def pseudo(text: str) -> str:
    return "".join(piece if UNTOUCHED.fullmatch(piece) else piece.translate(ACCENTED)
                   for piece in UNTOUCHED.split(text))


@cache
def catalog(lang: str) -> dict[str, str]:
    if lang == PSEUDO:
        return {key: pseudo(text) for key, text in read(DEFAULT).items()}
    return read(lang)


def offered() -> tuple[str, ...]:
    """The languages a person can choose: every catalog but the pseudo-language (a test aid)."""
    return tuple(lang for lang in languages() if lang != PSEUDO)


def from_accept_language(header: str | None) -> str:
    """The offered language the browser prefers most (RFC 9110 `Accept-Language`, q-values):
    an exact tag first, else the same primary language ("zh", "zh-TW" and "zh-Hans" read the
    zh-CN page, the only Chinese one), never one it refuses (q=0); the default if none matches."""
    ranked, refused = [], set()
    for order, part in enumerate((header or "").split(",")):
        tag, *params = (piece.strip() for piece in part.split(";"))
        tag, q = tag.lower(), 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        if not tag:
            continue
        if q > 0:
            ranked.append((-q, order, tag))
        else:
            refused.add(tag)
    acceptable = [lang for lang in offered() if lang.lower() not in refused]
    for _, _, tag in sorted(ranked):
        if tag == "*":
            return DEFAULT
        exact = [lang for lang in acceptable if lang.lower() == tag]
        same_language = [lang for lang in acceptable if lang.lower().split("-")[0] == tag.split("-")[0]]
        if exact or same_language:
            return (exact or same_language)[0]
    return DEFAULT


class Translator:
    """`t` for Jinja in one language: t("attention.title", layer=3) -> Markup."""

    def __init__(self, lang: str):
        self.lang = lang
        self.strings = catalog(lang)

    def __call__(self, key: str, **params) -> Markup:
        text = self.strings.get(key)
        if text is None:
            raise KeyError(f"the {self.lang} catalog has no string {key!r}")
        values = {name: escape(value) for name, value in params.items()}
        return Markup(PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), m.group(0))), text))
