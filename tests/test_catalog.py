"""The string catalog: every key the templates and scripts ask for exists, every key in it is
asked for, the pseudo-language keeps markup and placeholders, and the page renders in every
language the server offers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.page import catalog

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
    # static/stages.json names each stage's title key (the stage registry).
    for path in [*(ROOT / "templates").rglob("*.html"), *(ROOT / "static").glob("*.js"), ROOT / "static" / "stages.json",
                 *(ROOT / "app").rglob("*.py")]:
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


TRANSLATIONS = [lang for lang in catalog.languages() if lang not in (catalog.DEFAULT, catalog.PSEUDO)]
NAMESPACES = sorted(p.stem for p in (catalog.catalog_dir() / catalog.DEFAULT).glob("*.json"))
TAG = re.compile(r"<[^>]*>")
# What a translation keeps as it is: code, keys, subscripts and what is marked translate="no"
# (formulas, hook names), placeholders, entities, token texts in “quotes”, hook names and other
# snake_case names (resid_pre), single letters (symbols: q, z, x₀, L3, 1.5e-8), and these names
# and units.
KEPT = re.compile(r"<(code|kbd|sub|sup)\b[^>]*>.*?</\1>|<(\w+)[^>]*translate=\"no\"[^>]*>.*?</\2>|\{\w+\}|&\w+;|“[^”]*”"
                  r"|[\w.]*hook_\w+|\b[A-Za-z]+(?:_[A-Za-z0-9]+)+\b|(?<![A-Za-z])[A-Za-z](?![A-Za-z])")
KEPT_WORDS = {
    "GPT", "small", "MLP", "MLPs", "QK", "OV", "softmax", "logit", "logits", "top", "GELU", "LayerNorm", "ln", "BPE",
    "PCA", "ID", "IDs", "QR", "SSE", "API", "JSON", "URL", "MB", "kB", "ms", "KL", "LD", "IOI", "ROME", "TransformerLens",
    "Hub", "Hugging", "Face", "Esc", "Shift", "Enter", "Tab",
    "queen", "Paris", "seven",  # examples of words to type: GPT-2's vocabulary is English
}


def english_words(text: str) -> set[str]:
    """The English words of a catalog value, apart from what every language keeps."""
    return set(re.findall(r"[A-Za-z]+", TAG.sub(" ", KEPT.sub(" ", text)))) - KEPT_WORDS


def placeholders(text: str) -> list[str]:
    return sorted(catalog.PLACEHOLDER.findall(text))


@pytest.mark.parametrize("lang", TRANSLATIONS)
def test_every_language_has_exactly_the_english_keys(lang):
    english, translated = catalog.read(catalog.DEFAULT), catalog.read(lang)
    assert sorted(set(english) - set(translated)) == [], f"missing in static/i18n/{lang}"
    assert sorted(set(translated) - set(english)) == [], f"in static/i18n/{lang} but not in English"


@pytest.mark.parametrize("lang,namespace", [(lang, ns) for lang in TRANSLATIONS for ns in NAMESPACES])
def test_each_translation_keeps_the_placeholders_and_markup_and_leaves_no_english(lang, namespace):
    """Per namespace, so that a translator can check one file: `-k "zh-CN and attention"`."""
    english = json.loads((catalog.catalog_dir() / catalog.DEFAULT / f"{namespace}.json").read_text(encoding="utf-8"))
    path = catalog.catalog_dir() / lang / f"{namespace}.json"
    assert path.exists(), f"{path} is missing"
    translated = json.loads(path.read_text(encoding="utf-8"))
    assert list(translated) == list(english), "the keys differ from English (or their order)"
    for key, text in translated.items():
        where = f"{lang}/{namespace}.json {key}"
        assert isinstance(text, str) and text.strip(), f"{where} is empty"
        assert placeholders(text) == placeholders(english[key]), f"{where}: placeholders differ from English"
        assert text.count("{") == text.count("}") == len(catalog.PLACEHOLDER.findall(text)), f"{where}: a stray brace"
        assert sorted(TAG.findall(text)) == sorted(TAG.findall(english[key])), f"{where}: its tags differ from English"
        words = english_words(text)
        assert not words, f"{where}: English words left {sorted(words)}"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from app.main import create_app
    from app.serving.settings import Settings

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


@pytest.mark.parametrize("header,lang", [
    (None, "en"), ("", "en"), ("zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"), ("zh", "zh-CN"), ("zh-Hans-CN", "zh-CN"),
    ("zh-TW", "zh-CN"), ("ZH-cn", "zh-CN"), ("en-US,en;q=0.9,zh-CN;q=0.8", "en"), ("fr-FR, zh;q=0.5", "zh-CN"),
    ("fr, de;q=0.9", "en"), ("zh;q=0, en", "en"), ("en;q=0.1, zh-CN;q=0.2", "zh-CN"), ("*", "en"),
    ("en-XA", "en"),  # the pseudo-language is a test aid: asked for by ?lang= only
    ("zh;q=abc, en;q=0.5", "en"), (";;,,", "en"),
    ("zh ;q=0.8, en;q=0.5", "zh-CN"), ("zh;Q=0.8, en;q=0.5", "zh-CN"),  # spaces before ";", a capital Q
    ("zh-CN;q=0, zh", "en"), ("zh-CN;q=0, zh, en;q=0.5", "en"),  # zh-CN refused outright
])
def test_accept_language_chooses_among_the_languages_offered(header, lang):
    assert catalog.from_accept_language(header) == lang


def test_the_first_visit_follows_accept_language_then_the_choice_and_a_link_wins(client):
    html_lang = re.compile(r'<html lang="([^"]+)">')
    zh = {"Accept-Language": "zh-CN,zh;q=0.9"}
    client.cookies.clear()
    first = client.get("/", headers=zh)
    assert html_lang.search(first.text).group(1) == "zh-CN"
    assert "Accept-Language" in first.headers["vary"] and "Cookie" in first.headers["vary"]
    # A link's ?lang= shows that language, and is not remembered: the server sets no cookie.
    linked = client.get("/", params={"lang": "en"}, headers=zh)
    assert html_lang.search(linked.text).group(1) == "en" and "set-cookie" not in linked.headers
    # The switch's choice (the cookie static/language.js sets) wins over the browser on every page.
    client.cookies.set("lang", "en")
    for path in ("/", "/compare", "/r/ABCDEF"):
        assert html_lang.search(client.get(path, headers=zh).text).group(1) == "en", path
    assert html_lang.search(client.get("/", params={"lang": "zh-CN"}).text).group(1) == "zh-CN"  # a link still wins
    client.cookies.set("lang", "en-XA")  # the pseudo-language is not a choice to remember
    assert html_lang.search(client.get("/", headers=zh).text).group(1) == "zh-CN"
    # Each language named in itself in the switch, the page's own selected.
    page = client.get("/", params={"lang": "zh-CN"}).text
    assert '<option value="zh-CN" lang="zh-CN" selected>简体中文</option>' in page
    assert '<option value="en" lang="en">English</option>' in page
    assert 'value="en-XA"' not in page
    client.cookies.clear()


def language_texts(node, where=""):
    """Every {"en": ...} object in a scene file, with where it is."""
    if isinstance(node, dict):
        if "en" in node:
            yield where, node
            return
        for key, value in node.items():
            yield from language_texts(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from language_texts(value, f"{where}[{i}]")


@pytest.mark.parametrize("lang", TRANSLATIONS)
def test_every_scene_text_is_translated(lang):
    scene_files = sorted((ROOT / "static" / "scenes").glob("*.json"))
    assert scene_files
    for path in scene_files:
        for where, texts in language_texts(json.loads(path.read_text(encoding="utf-8"))):
            at = f"{path.name}{where}"
            assert texts.get(lang, "").strip(), f"{at} has no {lang} text"
            assert placeholders(texts[lang]) == placeholders(texts["en"]), f"{at}: placeholders differ from English"
            assert not english_words(texts[lang]), f"{at}: English words left {sorted(english_words(texts[lang]))}"
