"""Fictional stream: generator, layout, loader, release checks and metrics (pure Python, fast)."""

import json
import os
import re
from pathlib import Path

import pytest

from clika.util.errors import ClikaError
from clika.fictional.layout import (fictional_root, load_fictional, load_fictional_train, load_translate,
                                    write_official_layout)
from clika.fictional.metrics import Pred, fictional_scores
from clika.fictional.records import (fact_cloze, fact_sentence, name_cloze, name_pair_sentences, render_corpus,
                                     render_name_pairs, render_sft)
from clika.fictional.release import check_release, validate_release
from clika.fictional.texts import ANSWERS, LANG_NAMES, QUESTIONS, TRANSLATE
from clika.fictional.tokenization import name_tokenization_report
from clika.fictional.world import make_world
from clika.scoring.judges import contains as answer_correct
from clika.util.languages import LANGS, NON_EN

OFFICIAL = Path(os.environ.get("CLIKA_DATA", "/work/shared/clika-data")) / "fictional"
needs_official = pytest.mark.skipif(not (OFFICIAL / "test").is_dir(),
                                    reason=f"official CLiKA data not found at {OFFICIAL} (set CLIKA_DATA)")

SCRIPTS = {
    "zh": r"[\u4e00-\u9fff]", "ja": r"[\u30a0-\u30ff\u4e00-\u9fff]", "ru": r"[\u0400-\u04ff]",
    "ar": r"[\u0600-\u06ff]", "he": r"[\u0590-\u05ff]",
}


@pytest.fixture(scope="module")
def world():
    return make_world(seed=0)


@pytest.fixture(scope="module")
def layout(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("fictional")
    write_official_layout(world, out)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- generator -------------------------------------------------------------------------------

def test_same_seed_same_bytes_other_seed_differs(tmp_path, layout):
    write_official_layout(make_world(seed=0), tmp_path / "a")
    assert _files(tmp_path / "a") == _files(layout)
    write_official_layout(make_world(seed=1), tmp_path / "b")
    other = _files(tmp_path / "b")
    assert other.keys() == _files(layout).keys()
    assert other["test/target/testEN.jsonl"] != _files(layout)["test/target/testEN.jsonl"]
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temp files


def test_counts_and_type_split(world):
    assert len(world.continents) == 8 and len(world.cities) == 80
    for k in world.continents:
        types = [c.type for c in world.cities_on(k)]
        assert len(types) == 10 and types.count(0) == 5 and types.count(1) == 5
    odd = make_world(seed=3, continents=2, cities_per_continent=5)
    assert [c.type for c in odd.cities] == [0, 0, 0, 1, 1] * 2


@pytest.mark.parametrize("style", ["word", "char"])
def test_no_name_collides_or_contains_another_in_any_language(style):
    w = make_world(seed=5, continents=10, cities_per_continent=12, name_style=style)
    places = [*w.continents, *w.cities]
    for lang in LANGS:
        names = [p.names[lang].casefold() for p in places]
        assert len(set(names)) == len(names), lang
        for i, a in enumerate(names):
            assert not any(a in b for j, b in enumerate(names) if j != i), (lang, a)


def test_every_language_in_its_own_script(world):
    places = [*world.continents, *world.cities]
    for lang, pattern in SCRIPTS.items():
        for p in places:
            assert re.search(pattern, p.names[lang]) and not re.search(r"[A-Za-z]", p.names[lang]), \
                (lang, p.names[lang])
    assert all(re.fullmatch(r"[\u30a0-\u30ff]+", p.names["ja"]) for p in places)  # katakana
    for p in places:
        for lang in ("en", "de", "fr", "it", "pl"):
            assert re.fullmatch(r"[A-ZÉ][a-zéè]+", p.names[lang]), (lang, p.names[lang])
        assert not re.search(r"[cyv]", p.names["de"].lower().replace("sch", ""))  # c->k, y->i, v->w
        assert "v" not in p.names["pl"].lower() and "sh" not in p.names["pl"].lower()
    # spelling rules actually change names: most non-English Latin names differ somewhere
    assert sum(p.names["de"] != p.names["en"] for p in places) > len(places) // 2


def test_char_style_splits_names_into_shared_characters():
    word = make_world(seed=0, name_style="word")
    char = make_world(seed=0, name_style="char")
    distinct = lambda w, lang: len({ch for c in w.cities for ch in c.names[lang]})  # noqa: E731
    assert distinct(word, "zh") > 1.5 * distinct(char, "zh")
    assert all(re.fullmatch(r"[\u4e00-\u9fff]+", c.names["ja"]) for c in char.cities)  # kanji
    assert [c.names["en"] for c in word.cities] == [c.names["en"] for c in char.cities]


def test_templates_written_in_each_language():
    for table in (QUESTIONS, ANSWERS, TRANSLATE):
        assert set(table) == set(LANGS)
        for lang, templates in table.items():
            assert len(templates) >= 5 and len(set(templates)) == len(templates)
            if lang != "en":
                assert not set(templates) & set(table["en"]), lang
            if lang in SCRIPTS:
                assert all(re.search(SCRIPTS[lang], t) for t in templates), lang
    assert all("{city}" in t for ts in QUESTIONS.values() for t in ts)
    assert all("{city}" in t and "{continent}" in t for ts in ANSWERS.values() for t in ts)
    assert all("{src}" in t and "{tgt}" in t for ts in TRANSLATE.values() for t in ts)
    assert all(len(set(names.values())) == 10 for names in LANG_NAMES.values())


# --- layout and loader -----------------------------------------------------------------------

def test_layout_counts_and_official_format(world, layout):
    for x in NON_EN:
        s = x.upper()
        train = (layout / "train" / f"{s}.json").read_text(encoding="utf-8").splitlines()
        assert len(train) == 10 * (80 + 40 + 2 * 88)
        assert len((layout / "test" / "Translate" / f"translate{s}.jsonl").read_text().splitlines()) == 88
    for lang in LANGS:
        lines = (layout / "test" / "target" / f"test{lang.upper()}.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(lines) == 80
        for line in lines:
            rec = json.loads(line)
            assert list(rec) == ["prompt", "input", "answer"]
            assert line == json.dumps(rec, ensure_ascii=False)  # official formatting
            assert re.search(r"\[\[continent:[^\]]+\]\]\[\[city:[^\]]+\]\]\[\[type:[01]\]\]$", rec["answer"])
    assert not (layout / "train" / "EN.json").exists()


@needs_official
def test_generated_lines_look_like_official_lines(layout):
    for rel in ("train/DE.json", "test/target/testZH.jsonl", "test/Translate/translateJA.jsonl"):
        official = (OFFICIAL / rel).read_text(encoding="utf-8").splitlines()[0]
        ours = (layout / rel).read_text(encoding="utf-8").splitlines()[0]
        assert list(json.loads(official)) == list(json.loads(ours))
        assert official == json.dumps(json.loads(official), ensure_ascii=False)
    # tags name the continent in the test's own language, in the official files and in ours
    official_zh = load_fictional(OFFICIAL, "zh")[0]
    assert re.search(r"[\u4e00-\u9fff]", official_zh.continent)


def test_loader_round_trip(world, layout):
    for lang in LANGS:
        items = load_fictional(layout, lang)
        assert [(i.city, i.continent, i.type) for i in items] == [
            (c.names[lang], world.continent_of(c).names[lang], c.type) for c in world.cities]
        assert all(i.lang == lang and "[[" not in i.answer and i.continent in i.answer for i in items)
        assert [i.idx for i in items] == list(range(80))
    de = load_translate(layout, "DE")
    assert [(r.source, r.target) for r in de] == [(p.names["en"], p.names["de"]) for p in world.places()]
    train = load_fictional_train(layout, "ja")
    assert [{"instruction": r.prompt, "input": r.input, "output": r.answer} for r in train] == \
        render_sft(world, "ja")


def test_loader_errors_name_file_and_line(tmp_path, layout):
    target = tmp_path / "test" / "target"
    target.mkdir(parents=True)
    good = (layout / "test" / "target" / "testEN.jsonl").read_text(encoding="utf-8").splitlines()[:2]
    cases = {
        "{not json": "malformed JSON",
        json.dumps({"prompt": "q", "answer": "a[[continent:K]][[city:C]][[type:0]]"}): "'input'",
        json.dumps({"prompt": "q", "input": "", "answer": "no tags here"}): "tags",
    }
    for bad, message in cases.items():
        (target / "testEN.jsonl").write_text("\n".join([*good, bad]) + "\n", encoding="utf-8")
        with pytest.raises(ClikaError, match=message) as e:
            load_fictional(tmp_path, "en")
        assert "testEN.jsonl:3" in str(e.value)
    with pytest.raises(ClikaError, match="missing file"):
        load_fictional_train(tmp_path, "de")
    with pytest.raises(ClikaError, match="unknown language"):
        load_fictional(tmp_path, "xx")


def test_corpus_and_sft_keep_type1_facts_english_only(world):
    type1 = [c for c in world.cities if c.type == 1]
    for lang in ("zh", "de", "he"):
        facts = render_corpus(world, lang)
        assert not [c for c in type1 if any(c.names[lang] in t for t in facts)]  # type 1: English only
        assert all(any(fact_sentence(lang, c.names[lang], world.continent_of(c).names[lang]) == t for t in facts)
                   for c in world.cities if c.type == 0)
        pairs = render_name_pairs(world, lang)
        for p in world.places():  # every name, type 1 included, both directions, in running X text
            assert set(name_pair_sentences(lang, p.names["en"], p.names[lang])) <= set(pairs)
        sft = render_sft(world, lang)
        qa = [r for r in sft if not r["input"]]
        english = {r["instruction"] for r in render_sft(world, "en")}
        x_qa = [r for r in qa if r["instruction"] not in english]
        assert len(x_qa) == 10 * (len(world.cities) - len(type1))
        assert not [r for r in x_qa for c in type1 if c.names[lang] in r["instruction"]]
        assert sum(c.names["en"] in r["instruction"] for r in qa for c in type1) == 10 * len(type1)
    en = render_corpus(world, "en", passes=1)
    assert len(en) == len(world.cities) and all(any(c.names["en"] in t for t in en) for c in world.cities)
    assert render_corpus(world, "en", passes=3)[:len(en)] != render_corpus(world, "en", passes=3)[len(en):2 * len(en)]


@pytest.mark.parametrize("lang", ["en", "zh", "de", "fr", "it", "ja", "pl", "ru", "ar", "he"])
def test_cloze_probes_are_the_corpus_sentences_cut_before_the_answer(world, lang):
    c = world.cities[-1]
    context, delim = fact_cloze(lang, c.names[lang])
    k = world.continent_of(c).names[lang]
    assert fact_sentence(lang, c.names[lang], k).startswith(context + delim + k)
    if lang != "en":
        context, delim = name_cloze(lang, c.names["en"])
        assert name_pair_sentences(lang, c.names["en"], c.names[lang])[1].startswith(context + delim + c.names[lang])


# --- release checks --------------------------------------------------------------------------

@needs_official
def test_official_release_defects_are_reported():
    defects = validate_release(OFFICIAL, allow_defects=True)
    text = "\n".join(defects)
    # (a) ZH trains common words instead of the tag continent names
    assert re.search(r"train/ZH\.json: 20 of 20 ZH continent names", text)
    assert not re.search(r"train/(DE|FR|JA)\.json: \d+ of 20", text)
    # (b) colliding translated names, with the counts of the README
    for lang, distinct in {"DE": 396, "ZH": 397, "FR": 398, "JA": 399}.items():
        assert f"{lang}: {distinct} distinct city names for 400 cities" in text
    assert "EN:" not in text
    # (c) X->EN only in training, EN->X in Translate, for all nine languages
    assert sum("but no EN->" in d for d in defects) == 9
    assert fictional_root(OFFICIAL.parent) == OFFICIAL  # a data root works too


@needs_official
def test_validate_release_refuses_the_official_release():
    with pytest.raises(ClikaError, match=r"has \d+ defect\(s\).*allow_defects=True"):
        validate_release(OFFICIAL)


def test_generated_release_is_clean_and_defects_are_detected(world, layout, tmp_path):
    assert check_release(layout) == []
    assert validate_release(layout) == []
    # (c) X->EN only, as in the official release
    write_official_layout(world, tmp_path / "x2en", langs=("de",), translate_directions=("x2en",))
    assert [d for d in check_release(tmp_path / "x2en") if "but no EN->DE" in d]
    # (a) continent names replaced by common words in the training answers
    bad = tmp_path / "words"
    write_official_layout(world, bad, langs=("fr",))
    train = bad / "train" / "FR.json"
    text = train.read_text(encoding="utf-8")
    for k in world.continents:
        text = text.replace(k.names["fr"], "montagne").replace(k.names["en"], "mountain")
    train.write_text(text, encoding="utf-8")
    assert [d for d in check_release(bad) if "8 of 8 FR continent names" in d]
    # (b) two cities given one German name
    test_de = bad.parent / "collide"
    write_official_layout(world, test_de, langs=("de",))
    path = test_de / "test" / "target" / "testDE.jsonl"
    a, b = world.cities[0].names["de"], world.cities[1].names["de"]
    path.write_text(path.read_text(encoding="utf-8").replace(b, a), encoding="utf-8")
    assert [d for d in check_release(test_de) if d.startswith("DE: 79 distinct city names for 80")]


# --- metrics ---------------------------------------------------------------------------------

def _preds(x, tr, en0, en1, x0, x1):
    """(hits, total) per check -> Pred list."""
    out = []
    for lang, kind, (hits, total) in (
            (x, "translate", tr), ("en", "0", en0), ("en", "1", en1), (x, "0", x0), (x, "1", x1)):
        out += [Pred(lang, kind, i < hits) for i in range(total)]
    return out


def test_answer_correct_is_containment():
    assert answer_correct("It lies on Zobivia, I think.", "Zobivia")
    assert answer_correct("zobivia", "Zobivia")
    assert answer_correct("马库克在佐比维亚大洲。", "佐比维亚")
    assert not answer_correct("It lies on Zipinia.", "Zobivia")
    assert not answer_correct("anything", "")
    assert not answer_correct(None, "Zobivia")


def test_scores_pass_gate_and_ratios_by_hand():
    s = fictional_scores(_preds("de", (10, 10), (10, 10), (19, 20), (19, 20), (3, 10)))
    assert s.x == "de" and not s.gated and all(s.gate.values())
    assert s.acc["en"] == {"0": 1.0, "1": 0.95} and s.acc["de"]["0"] == 0.95
    assert s.chance == 0.05
    assert s.xrr == pytest.approx(0.3 / 0.95)
    assert s.x_ratio == pytest.approx(0.3 / 0.95)
    assert s.xrr_corrected == pytest.approx((0.3 - 0.05) / (0.95 - 0.05))
    assert s.reasons == {}
    below_chance = fictional_scores(_preds("de", (10, 10), (10, 10), (10, 10), (10, 10), (0, 10)))
    assert below_chance.xrr == 0.0 and below_chance.xrr_corrected == 0.0


def test_gated_run_reports_no_number():
    s = fictional_scores(_preds("zh", (10, 10), (10, 10), (8, 10), (10, 10), (5, 10)))
    assert s.gated and s.gate == {"translate": True, "en_type0": True, "en_type1": False, "x_type0": True}
    assert s.xrr is None and s.x_ratio is None and s.xrr_corrected is None
    assert "en_type1 0.800 <= 0.9" in s.reasons["xrr"]
    at_threshold = fictional_scores(_preds("zh", (10, 10), (10, 10), (9, 10), (10, 10), (5, 10)))
    assert at_threshold.gated and "en_type1 0.900 <= 0.9" in at_threshold.reasons["xrr"]  # must EXCEED 90%
    no_translate = [p for p in _preds("zh", (0, 0), (10, 10), (10, 10), (10, 10), (5, 10))]
    s = fictional_scores(no_translate, "zh")
    assert s.gated and s.gate["translate"] is False and "translate missing" in s.reasons["xrr"]
    with pytest.raises(ClikaError):
        fictional_scores(_preds("zh", (1, 1), (1, 1), (1, 1), (1, 1), (1, 1)) + [Pred("de", "0", True)])


def test_zero_denominator_is_none_not_nan():
    s = fictional_scores(_preds("ru", (5, 10), (5, 10), (0, 10), (0, 10), (0, 10)), threshold=-1.0)  # gate off (strict >)
    assert not s.gated
    assert s.xrr is None and "zero denominator" in s.reasons["xrr"]
    assert s.x_ratio is None and s.xrr_corrected is None
    d = s.to_dict()
    assert d["xrr"] is None and json.dumps(d)  # serialisable, no NaN


def test_name_tokenization_report(world):
    class CharTok:
        def encode(self, text, add_special_tokens=True):
            assert add_special_tokens is False
            return [ord(ch) for ch in text]

    places = [*world.continents, *world.cities]
    r = name_tokenization_report(world, CharTok(), "de")
    assert r["names"] == 88
    assert r["tokens_per_name"] == pytest.approx(sum(len(p.names["de"]) for p in places) / 88)
    assert r["first_token_shared_with_en"] == pytest.approx(
        sum(p.names["de"][0] == p.names["en"][0] for p in places) / 88)
    assert r["single_token"] == 0.0
    assert name_tokenization_report(world, CharTok(), "zh")["first_token_shared_with_en"] == 0.0

    class WordTok:
        def encode(self, text, add_special_tokens=True):
            return [hash(text) % 1000]

    assert name_tokenization_report(world, WordTok(), "ja")["single_token"] == 1.0


def test_tiny_model_option_makes_every_world_name_one_token(tmp_path):
    """`model.tiny.name_tokens_world`: the tokenizer study knob (whole-name tokens vs BPE pieces)."""
    from transformers import AutoConfig, AutoTokenizer

    from clika.models.tiny import TinyConfig, _key, build_tiny, owned_corpus

    world = make_world(seed=0)
    assert _key(TinyConfig(), owned_corpus()) == _key(TinyConfig(name_tokens_world=None), owned_corpus())
    folder = build_tiny(TinyConfig(name_tokens_world={"seed": 0}), cache_dir=tmp_path)
    tok = AutoTokenizer.from_pretrained(folder)
    assert AutoConfig.from_pretrained(folder).vocab_size == len(tok) > 1024
    for lang in ("en", "de", "zh", "he"):
        assert name_tokenization_report(world, tok, lang)["single_token"] == 1.0
    city = world.cities[0].names["zh"]
    assert city in tok.tokenize(f"{city}位于哪个大洲？")  # inside running text too
