"""The string catalog: every key the templates and scripts ask for exists, every key in it is
asked for, the pseudo-language keeps markup and placeholders, and the page renders in every
language the server offers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app import catalog

ROOT = Path(__file__).resolve().parents[1]


def used_keys() -> tuple[set[str], set[str], set[str]]:
    """(keys asked for by t() and tn(), keys named anywhere, prefixes of keys built at run time).

    t("ns.key") asks for a key; tn("ns.key", n) for its plural forms ns.key_one and ns.key_other.
    A key can also be named as a literal elsewhere (t(x ? "a.b" : "a.c")), and built at run time,
    t(`ns.kind_${key}`) or t("ns.column_" + key): then the prefix is what is named."""
    namespaces = "|".join(sorted({key.split(".")[0] for key in catalog.read("en")}))
    call = re.compile(r"""\b(tn?)\(\s*["'`]([\w.]+)["'`]\s*[,)]""")
    literal = re.compile(rf"""["'`]((?:{namespaces})\.\w+)["'`]""")
    prefix = re.compile(rf"""`((?:{namespaces})\.\w*)\$\{{|["']((?:{namespaces})\.\w*)["']\s*\+""")
    asked: set[str] = set()
    named: set[str] = set()
    prefixes: set[str] = set()
    for path in [*(ROOT / "templates").rglob("*.html"), *(ROOT / "static").glob("*.js")]:
        text = path.read_text()
        for fn, key in call.findall(text):
            asked |= {f"{key}_one", f"{key}_other"} if fn == "tn" else {key}
        named |= set(literal.findall(text))
        prefixes |= {a or b for a, b in prefix.findall(text)}
    return asked, named | asked, prefixes


def test_every_key_asked_for_is_in_the_english_catalog():
    strings = catalog.read("en")
    keys, _, _ = used_keys()
    missing = sorted(k for k in keys if k not in strings)
    assert not missing, f"asked for but not in static/i18n/en: {missing}"


def test_every_key_in_the_english_catalog_is_asked_for():
    strings = catalog.read("en")
    _, named, prefixes = used_keys()
    unused = sorted(k for k in strings if k not in named and not any(k.startswith(p) for p in prefixes))
    assert not unused, f"in static/i18n/en but asked for nowhere: {unused}"


def test_english_strings_are_not_empty_and_their_braces_are_placeholders():
    for key, text in catalog.read("en").items():
        assert text.strip(), key
        # A brace that is not a {name} placeholder would be left on the page as it is.
        assert text.count("{") == text.count("}") == len(catalog.PLACEHOLDER.findall(text)), key


def test_the_pseudo_language_accents_letters_and_keeps_markup_and_placeholders():
    text = 'Each <span class="w">table W<sub>E</sub></span> has {d_model} numbers &amp; more'
    out = catalog.pseudo(text)
    assert out == 'Éàçĥ <span class="w">ţàƀĺé Ŵ<sub>É</sub></span> ĥàš {d_model} ñúɱƀéŕš &amp; ɱóŕé'
    assert not re.search(r"[A-Za-z]", re.sub(r"<[^>]*>|\{\w+\}|&\w+;", "", out))
    # Every string of the catalog survives it with the same placeholders.
    pseudo = catalog.catalog(catalog.PSEUDO)
    for key, text in catalog.read("en").items():
        assert catalog.PLACEHOLDER.findall(pseudo[key]) == catalog.PLACEHOLDER.findall(text), key


def test_translator_escapes_parameters_and_fails_loudly_on_a_missing_key():
    t = catalog.Translator("en")
    assert str(t("page.untrained_why", reason="<b>x</b>")) == "Why: &lt;b&gt;x&lt;/b&gt;"
    with pytest.raises(KeyError, match="no string 'page.nope'"):
        t("page.nope")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from app.main import create_app
    from app.settings import Settings

    from .conftest import build_checkpoint

    path = build_checkpoint(tmp_path_factory.mktemp("catalog"), seed=3)
    with TestClient(create_app(Settings(model=str(path)))) as c:
        yield c


@pytest.mark.parametrize("page", ["/", "/compare"])
def test_the_pages_render_in_every_language_with_its_catalog_embedded(client, page):
    for lang in catalog.languages():
        html = client.get(page, params={"lang": lang}).text
        assert f'<html lang="{lang}">' in html
        title = catalog.catalog(lang)["compare.title" if page == "/compare" else "page.title"]
        assert f"<title>{title}" in html
        assert '<script id="catalog" type="application/json">' in html
    # An unknown language is English, not an error.
    assert '<html lang="en">' in client.get(page, params={"lang": "xx-unknown"}).text
