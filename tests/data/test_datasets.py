import json

import pytest

from clika.data.datasets import load_items, load_parallel, jsonl_dataset, subset_indices
from clika.util.errors import ClikaError
from clika.util.languages import LANGS

SIZES = {"x_copa": 500, "x_csqa": 1000, "x_geo": 200, "x_name": 180}


@pytest.mark.parametrize("dataset", list(SIZES))
def test_all_languages_load_and_are_parallel(data_root, dataset):
    by_lang = load_parallel(data_root, dataset, list(LANGS))
    assert set(by_lang) == set(LANGS)
    for lang, items in by_lang.items():
        assert len(items) == SIZES[dataset], lang
        assert all(it.lang == lang and it.dataset == dataset for it in items)
    en, zh = by_lang["en"], by_lang["zh"]
    assert [i.uid for i in en] == [i.uid for i in zh] and [i.label for i in en] == [i.label for i in zh]


def test_copa_fields(data_root):
    first = load_items(data_root, "x_copa", "en")[0]
    assert (first.uid, first.question, first.options, first.label, first.meta["kind"]) == (
        "501", "The item was packaged in bubble wrap.", ["It was fragile.", "It was small."], 0, "cause")
    csqa = load_items(data_root, "x_csqa", "zh")[0]
    assert csqa.uid == "d3845adc08414fda" and csqa.label == 2 and len(csqa.options) == 5


def _make_root(tmp_path, rows_by_lang, dataset="x_geo"):
    for lang, rows in rows_by_lang.items():
        d = tmp_path / dataset / lang
        d.mkdir(parents=True)
        (d / f"{lang}_geo_data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return tmp_path


def _row(i, label=0):
    return {"id": i, "questions": f"q{i}", "answers": ["a", "b", "c", "d"], "label": label}


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p.write_text('{"id": 0, "questions": "q", "answers": ["a","b"], "label": 0}\n{"id": 1, "quest',
                            encoding="utf-8"), ":2: malformed JSON"),
    (lambda p: p.write_bytes(b'{"id": 0, "questions": "\xff", "answers": ["a","b"], "label": 0}\n'), ":1: invalid UTF-8"),
    (lambda p: p.write_text('{"id": 0, "answers": ["a","b"], "label": 0}\n'), ":1: missing field 'questions'"),
    (lambda p: p.write_text('{"id": 0, "questions": "q", "answers": ["a","b"], "label": 7}\n'), ":1: label 7 out of range"),
    (lambda p: p.write_text(""), "file is empty"),
    (lambda p: p.write_text('{"id": 0, "questions": "q", "answers": ["a","b"], "label": 0}\n' * 2), "duplicate id"),
])
def test_malformed_files_name_file_and_line(tmp_path, mutate, message):
    root = _make_root(tmp_path, {"en": [_row(0)]})
    path = root / "x_geo" / "en" / "en_geo_data.jsonl"
    mutate(path)
    with pytest.raises(ClikaError) as err:
        load_items(root, "x_geo", "en")
    assert message in str(err.value) and str(path) in str(err.value) and "fix:" in str(err.value)


def test_non_parallel_languages_rejected(tmp_path):
    root = _make_root(tmp_path, {"en": [_row(0), _row(1)], "de": [_row(0), _row(1, label=2)]})
    with pytest.raises(ClikaError, match="record 2 .* not parallel"):
        load_parallel(root, "x_geo", ["en", "de"])
    root2 = _make_root(tmp_path / "b", {"en": [_row(0), _row(1)], "de": [_row(0)]})
    with pytest.raises(ClikaError, match="1 items but en has 2"):
        load_parallel(root2, "x_geo", ["en", "de"])


def test_unknown_names_and_missing_root(tmp_path, data_root):
    with pytest.raises(ClikaError, match="unknown dataset 'x_foo'"):
        load_items(data_root, "x_foo", "en")
    with pytest.raises(ClikaError, match="unknown language 'xx'"):
        load_items(data_root, "x_copa", "xx")
    with pytest.raises(ClikaError, match="does not exist"):
        load_items(tmp_path / "nope", "x_copa", "en")
    with pytest.raises(ClikaError, match="CLIKA_DATA"):
        load_items(None, "x_copa", "en")
    (tmp_path / "x_copa").mkdir()
    with pytest.raises(ClikaError, match="language folder .* is missing"):
        load_items(tmp_path, "x_copa", "de")


def test_generic_jsonl_dataset(tmp_path):
    for lang in ("en", "de"):
        (tmp_path / f"{lang}.jsonl").write_text(
            json.dumps({"id": "q1", "question": "2+2?", "options": ["3", "4", "5"], "label": "B"}) + "\n", encoding="utf-8")
    items = load_parallel(tmp_path, "mine", ["en", "de"], {"mine": jsonl_dataset("mine", tmp_path)})
    assert items["de"][0].label == 1 and items["de"][0].letters == "ABC"


def test_subset_is_seeded_and_shared():
    a, b = subset_indices(500, 50, 7), subset_indices(500, 50, 7)
    assert a == b and len(a) == 50 and a == sorted(a) and subset_indices(500, 50, 8) != a
    assert subset_indices(10, None, 0) == list(range(10))
