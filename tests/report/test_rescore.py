import json

import pytest

from clika.util.errors import ClikaError
from clika.report.rescore import correctness, find_outputs, rescore


def test_rescore_hand_made_official_repo_layout(tmp_path):
    """The official repo's `<dataset>/<dir>/<model>_res*.jsonl` naming, values computed by hand."""
    rows = {"en": ["A. yes", " B", "", "B"], "DE": ["A", "A.", "B", "  b"]}
    labels = ["A", "B", "B", "B"]
    for d, outs in rows.items():
        p = tmp_path / "x_copa" / d
        p.mkdir(parents=True)
        (p / "m1_res.jsonl").write_text("".join(json.dumps({"uuid": i, "res": o, "label": l}) + "\n"
                                                for i, (o, l) in enumerate(zip(outs, labels))), encoding="utf-8")
    rep = rescore(tmp_path)["m1"]["x_copa"]
    # en: correct = [1,1,0,1] (empty output is wrong); de: [1,0,1,0] (lower-case 'b' is not 'B')
    assert rep["en"]["acc"] == 0.75 and rep["de"]["acc"] == 0.5
    assert rep["en"]["ra"] == pytest.approx((0.75 - 0.5) / (0.964 - 0.5))
    assert rep["de"]["en_co"] == pytest.approx(1 / 4)  # {0,1,3} ∩ {0,2} = {0} over a union of 4
    assert rep["de"]["n"] == 4


def test_rescore_published_systems(data_root):
    results = data_root / "results"
    found = find_outputs(results)
    assert len(found) == 46
    rep = rescore(results)
    for model in ("llama2_7b", "chatgpt", "bloomz_7b1_mt"):
        for ds, lang, fname in (("x_copa", "zh", "zh.jsonl"), ("x_csqa", "de", "DE_trans.jsonl")):
            lines = (results / model / ds / fname).read_text(encoding="utf-8").splitlines()
            rows = [json.loads(l) for l in lines]
            by_hand = sum(1 for r in rows if (r["res"] or "").strip()[:1] == r["label"]) / len(rows)
            assert rep[model][ds][lang]["acc"] == pytest.approx(by_hand)
    assert rep["chatgpt"]["x_csqa"]["en"]["acc"] == pytest.approx(0.746)  # the paper's RA reference
    assert rep["chatgpt"]["x_csqa"]["en"]["ra"] == pytest.approx(1.0)


def test_rescore_errors(tmp_path):
    with pytest.raises(ClikaError, match="does not exist"):
        rescore(tmp_path / "missing")
    with pytest.raises(ClikaError, match="no published outputs"):
        rescore(tmp_path)
    bad = tmp_path / "f.jsonl"
    bad.write_text('{"uuid": 1}\n')
    with pytest.raises(ClikaError, match=":1: missing 'res'"):
        correctness(bad)
