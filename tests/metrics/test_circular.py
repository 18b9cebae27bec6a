"""Circular evaluation, the position-bias report and the answer-identity CO (issue #15)."""

import json
import math
import statistics
from dataclasses import dataclass

import pytest
import torch

from clika.metrics.bias import answer_identity_co, answer_identity_co_adj, position_bias
from clika.metrics.circular import rotate, rotations
from clika.data.datasets import Item
from clika.util.errors import ClikaError
from clika.data.prompts import COPA_HEADER, DEMOS, MCQ_HEADER, render
from clika.scoring.loglik import Result
from clika.scoring.suite import DatasetTask, Suite, load_suite_items, run_suite, suite_metrics, suite_tasks
from clika.scoring.api import run_tasks


# ---------------------------------------------------------------- rotations
def _item(uid="q1", label=2, lang="en", k=4):
    return Item(uid, "x_geo", lang, f"Q{uid}?", [f"{lang}-opt{j}" for j in range(k)], label)


def test_rotation_moves_the_options_and_the_gold():
    it = _item(label=2)
    r1 = rotate(it, 1)
    assert r1.options == ["en-opt1", "en-opt2", "en-opt3", "en-opt0"] and r1.label == 1
    assert r1.options[r1.label] == it.options[it.label] and r1.uid == "q1@rot1" and r1.meta["rotation"] == 1
    every = rotations([it, _item("q2", 0)])
    assert [x.uid for x in every] == [f"q{i}@rot{r}" for i in (1, 2) for r in range(4)]
    assert {x.options[x.label] for x in every[:4]} == {"en-opt2"}  # gold content never moves
    assert [x.label for x in every[:4]] == [2, 1, 0, 3]  # gold visits every position once
    assert rotate(it, 0).options == it.options and it.uid == "q1"  # the item itself is untouched


def test_rotated_prompts_are_the_papers_format_built_by_hand(data_root):
    suite = Suite(data_root=str(data_root), datasets=["x_geo", "x_copa"], langs=["zh"], limit=2,
                  circular=True).validate()
    geo, copa = suite_tasks(suite, load_suite_items(suite))
    it = geo.items["zh"][0]
    o = it.options
    by_hand = (MCQ_HEADER + DEMOS["mcq4"] + f"Question:{it.question}\n"
               f"A. {o[3]}\nB. {o[0]}\nC. {o[1]}\nD. {o[2]}\nAnswer:")
    assert geo.prompts()["zh"][3] == by_hand  # item 0, rotation 3
    assert geo.prompts()["zh"][0] == render(it, "mcq")  # rotation 0: the published prompt
    c = copa.items["zh"][1]
    q = {"cause": "What was the cause of this?", "effect": "What happened as a result?"}[c.meta["kind"]]
    assert copa.prompts()["zh"][3] == (COPA_HEADER + DEMOS["copa"] + f"Premise:{c.question}\nQuestion:{q}\n"
                                       f"A. {c.options[1]}\nB. {c.options[0]}\nAnswer:")  # item 1, rotation 1


# ---------------------------------------------------------------- hand-made scorers
@dataclass
class AlwaysA:
    name: str = "letter"

    def score(self, model, tokenizer, requests):
        return [Result(r.uid, 0, r.label, [0.0] + [-9.0] * (len(r.letters) - 1)) for r in requests]


@dataclass
class Oracle:
    name: str = "letter"

    def score(self, model, tokenizer, requests):
        return [Result(r.uid, r.label, r.label, [0.0 if j == r.label else -9.0 for j in range(len(r.letters))])
                for r in requests]


LABELS = [0, 1, 2, 3, 0, 2, 1, 0]  # gold A on 3 of 8 items, parallel across languages


def _task(scorer, circular, k=4):
    items = {lang: [_item(f"q{i}", lab, lang, k) for i, lab in enumerate(LABELS)] for lang in ("en", "zh", "de")}
    return DatasetTask("x_geo", items, "mcq", "paper", scorer, ref=0.97, bootstrap=0, circular=circular)


def _metrics(scorer, circular):
    return run_tasks(None, None, [_task(scorer, circular)])["x_geo"].metrics


def test_always_a_model_has_no_circular_knowledge_full_bias_and_chance_answer_identity():
    plain, circ = _metrics(AlwaysA(), False), _metrics(AlwaysA(), True)
    zh = circ["langs"]["zh"]
    # the flaw: the paper's en-CO calls a model that always answers "A" perfectly consistent
    assert plain["langs"]["zh"]["en_co"] == 1.0 and plain["langs"]["zh"]["acc"] == 3 / 8
    assert zh["en_co"] == 1.0 and zh["acc"] == 3 / 8  # rotation 0 = the plain run
    assert zh["acc_circ"] == 0.0 and zh["acc_rot"] == 0.25 and zh["ra_circ"] == 0.0
    assert zh["en_co_circ"] == 0.0 and zh["en_co_circ_adj"] == 0.0
    assert zh["en_co_answer"] == pytest.approx(0.25) and zh["en_co_answer_adj"] == pytest.approx(0.0)  # chance 1/k
    bias = zh["bias"]
    assert bias["letter"] == "A" and bias["share"] == 1.0 and bias["entropy"] == 0.0
    assert bias["rstd"] == pytest.approx(statistics.pstdev([1, 0, 0, 0]))
    assert bias["chosen"] == {"A": 32, "B": 0, "C": 0, "D": 0} and bias["n"] == 32
    assert plain["langs"]["zh"]["bias"]["share"] == 1.0 and "acc_circ" not in plain["langs"]["zh"]


def test_oracle_circular_metrics_equal_the_plain_ones():
    plain, circ = _metrics(Oracle(), False), _metrics(Oracle(), True)
    for lang, v in circ["langs"].items():
        p = plain["langs"][lang]
        assert v["acc_circ"] == v["acc_rot"] == v["acc"] == p["acc"] == 1.0
        assert v["ra_circ"] == v["ra"] == p["ra"]
        assert v["en_co_circ"] == v["en_co"] == p["en_co"] and v["en_co_circ_adj"] == p["en_co_adj"]
        assert v["en_co_answer"] == 1.0 and v["en_co_answer_adj"] == 1.0
        assert v["bias"]["share"] == 0.25 and v["bias"]["entropy"] == pytest.approx(1.0) and v["bias"]["rstd"] == 0.0
    assert circ["co_matrix_circ"] == plain["co_matrix"]


def test_summary_report_and_curve_rows_carry_the_circular_metrics_and_bias(tmp_path):
    from clika.report.curves import metrics_to_rows, plot_curves, write_rows
    from clika.report.results import markdown_report

    suite = Suite(datasets=["x_geo"], langs=["en", "zh", "de"], circular=True)
    m = suite_metrics(suite, {"x_geo": _metrics(AlwaysA(), True)})
    assert m["circular"] is True
    assert m["summary"]["overall"]["acc_circ"] == 0.0 and m["summary"]["overall"]["en_co_answer"] == 0.25
    plain = suite_metrics(Suite(datasets=["x_geo"]), {"x_geo": _metrics(AlwaysA(), False)})
    assert "acc_circ" not in plain["summary"]["overall"]  # plain summaries unchanged
    text = markdown_report(m)
    assert "| acc_circ | 0.0 | 0.0 | 0.0 |" in text and "| most-chosen letter (share %) | A (100.0) |" in text
    assert "| en_co_answer |" in text and "RStd" in text and "circular" in text
    assert "acc_circ" not in markdown_report(plain) and "most-chosen letter" in markdown_report(plain)
    rows = metrics_to_rows(m, 0, 0, 0) + metrics_to_rows(_metrics_suite(Oracle()), 5, 50, 0)
    assert rows[0]["bias_letter"] == "A" and rows[0]["bias_share"] == 1.0 and rows[0]["acc_circ"] == 0.0
    csv = write_rows(tmp_path / "alignment.csv", rows)
    assert plot_curves([csv], tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def _metrics_suite(scorer):
    return suite_metrics(Suite(datasets=["x_geo"], circular=True), {"x_geo": _metrics(scorer, True)})


# ---------------------------------------------------------------- the report's numbers by hand
def test_position_bias_by_hand():
    b = position_bias([0, 0, 1, 0, 2, 0], [0, 1, 1, 2, 2, 0], "ABC")
    assert b["letter"] == "A" and b["share"] == pytest.approx(4 / 6)
    p = [4 / 6, 1 / 6, 1 / 6]
    assert b["entropy"] == pytest.approx(-sum(x * math.log(x) for x in p) / math.log(3))
    assert b["recall"] == {"A": 1.0, "B": 0.5, "C": 0.5}
    assert b["rstd"] == pytest.approx(statistics.pstdev([1.0, 0.5, 0.5]))
    none = position_bias([-1, -1], [0, 1], "AB")  # no answer at all (generation that named no letter)
    assert none["share"] is None and none["no_answer"] == 2 and none["letter"] is None


def test_answer_identity_co_by_hand():
    always_first = [[0, 1], [0, 1]]  # chose position A under both rotations of 2-option items
    knows = [[1, 1], [0, 0]]
    assert answer_identity_co(always_first, always_first) == 0.5  # chance for k = 2, not 1.0
    assert answer_identity_co(knows, knows) == 1.0
    assert answer_identity_co(knows, always_first) == 0.5
    assert answer_identity_co([[1, 1]], [[0, 0]]) == 0.0  # both sure, different contents
    assert answer_identity_co_adj(always_first, always_first) == 0.0
    assert answer_identity_co_adj(knows, knows) == 1.0


# ---------------------------------------------------------------- the real scorer on the tiny model
def _alone(model, tok, prompt, letters):
    ids = tok(prompt)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, -1].float(), -1)
    return [float(logp[tok(prompt + l)["input_ids"][-1]]) for l in letters]


@pytest.mark.parametrize("dataset", ["x_geo", "x_copa"])
def test_each_rotation_scores_like_its_prompt_built_by_hand_and_scored_alone(tiny, data_root, dataset):
    model, tok = tiny
    suite = Suite(data_root=str(data_root), datasets=[dataset], langs=["en", "zh"], limit=3, batch_size=5,
                  circular=True).validate()
    items = load_suite_items(suite)
    (task,) = suite_tasks(suite, items)
    out = run_tasks(model, tok, [task])[dataset]
    res = out.results[(dataset, "zh")]
    its = items[dataset]["zh"]
    k = len(its[0].options)
    assert len(res) == 3 * k and [r.uid for r in res] == [f"{it.uid}@rot{r}" for it in its for r in range(k)]
    for i, it in enumerate(its):
        for r in range(k):
            o = [it.options[(j + r) % k] for j in range(k)]
            if dataset == "x_copa":
                q = {"cause": "What was the cause of this?", "effect": "What happened as a result?"}[it.meta["kind"]]
                prompt = (COPA_HEADER + DEMOS["copa"] + f"Premise:{it.question}\nQuestion:{q}\n"
                          f"A. {o[0]}\nB. {o[1]}\nAnswer:")
            else:
                prompt = MCQ_HEADER + DEMOS["mcq4"] + f"Question:{it.question}\n" + "".join(
                    f"{l}. {t}\n" for l, t in zip("ABCD", o)) + "Answer:"
            got = res[i * k + r]
            assert got.label == (it.label - r) % k
            assert max(abs(a - b) for a, b in zip(got.scores, _alone(model, tok, prompt, "ABCD"[:k]))) < 1e-4, (i, r)
    # rotation 0 is the plain run: same scores, same plain metrics
    plain_suite = Suite(data_root=str(data_root), datasets=[dataset], langs=["en", "zh"], limit=3, batch_size=5)
    plain = run_tasks(model, tok, suite_tasks(plain_suite, items))[dataset]
    for a, b in zip(plain.results[(dataset, "zh")], res[::k]):
        assert a.pred == b.pred and max(abs(x - y) for x, y in zip(a.scores, b.scores)) < 1e-4
    for lang in ("en", "zh"):
        for key in ("acc", "ra", "en_co", "en_co_adj"):
            assert out.metrics["langs"][lang][key] == pytest.approx(plain.metrics["langs"][lang][key])


def test_circular_evaluation_writes_its_metrics_and_every_rotation(tiny, data_root, tmp_path):
    from clika.report.results import write_evaluation

    model, tok = tiny
    suite = Suite(data_root=str(data_root), datasets=["x_copa"], langs=["en", "zh"], limit=4, bootstrap=10,
                  circular=True).validate()
    metrics, results = run_suite(model, tok, suite)
    paths = write_evaluation(tmp_path, metrics, results, "tiny")
    res = json.loads(paths["results"].read_text())
    zh = res["datasets"]["x_copa"]["langs"]["zh"]
    assert res["circular"] is True and zh["n"] == 4 and {"acc_circ", "acc_rot", "en_co_answer", "bias"} <= set(zh)
    assert zh["acc_circ"] <= zh["acc_rot"] and zh["bias"]["n"] == 8
    assert 0 <= zh["acc_pride"] <= 1 and sum(zh["pride_prior"].values()) == pytest.approx(1.0)
    preds = (tmp_path / "predictions" / "x_copa" / "zh.jsonl").read_text().splitlines()
    assert len(preds) == 8 and json.loads(preds[1])["uuid"].endswith("@rot1")
    assert "acc_circ" in paths["report"].read_text()


# ---------------------------------------------------------------- PriDe (clika.metrics.pride)
@dataclass
class KnowsButPrefersA:
    """Knows every answer (+2 on the gold option) but favours position A more (+3): always answers A."""
    name: str = "letter"

    def score(self, model, tokenizer, requests):
        out = []
        for r in requests:
            s = [3.0 * (j == 0) + 2.0 * (j == r.label) for j in range(len(r.letters))]
            out.append(Result(r.uid, max(range(len(s)), key=s.__getitem__), r.label, s))
        return out


def test_pride_removes_a_position_prior_and_keeps_what_the_model_knows():
    m = _metrics(KnowsButPrefersA(), True)
    zh = m["langs"]["zh"]
    assert zh["acc"] == 3 / 8 and zh["bias"]["share"] == 1.0  # plain: always A
    assert zh["acc_pride"] == 1.0 and zh["en_co_pride"] == 1.0 and zh["ra_pride"] == pytest.approx(0.75 / 0.72)
    e3 = math.exp(3)
    assert zh["pride_prior"] == pytest.approx({"A": e3 / (e3 + 3), "B": 1 / (e3 + 3), "C": 1 / (e3 + 3),
                                               "D": 1 / (e3 + 3)})  # the content term cancels over rotations
    oracle = _metrics(Oracle(), True)["langs"]["zh"]  # no prior to remove: PriDe changes nothing
    assert oracle["acc_pride"] == oracle["acc"] == 1.0 and oracle["pride_prior"]["A"] == pytest.approx(0.25)
    assert _metrics(AlwaysA(), True)["langs"]["zh"]["pride_prior"]["A"] > 0.99  # all prior, nothing known
    assert "acc_pride" not in _metrics(Oracle(), False)["langs"]["zh"]  # circular runs only


def test_pride_prior_and_choice_by_hand():
    from clika.metrics.pride import debiased_choice, item_prior, log_softmax

    # two options, two rotations; observed P(A) = 0.8 then 0.6: log-prior = mean of the log-softmaxes
    scores = [[math.log(0.8), math.log(0.2)], [math.log(0.6), math.log(0.4)]]
    la, lb = (math.log(0.8) + math.log(0.6)) / 2, (math.log(0.2) + math.log(0.4)) / 2
    expect = [math.exp(la) / (math.exp(la) + math.exp(lb)), math.exp(lb) / (math.exp(la) + math.exp(lb))]
    assert item_prior(scores) == pytest.approx(expect)
    assert log_softmax([0.0, 0.0]) == pytest.approx([math.log(0.5)] * 2)
    assert debiased_choice([math.log(0.6), math.log(0.4)], [0.75, 0.25]) == 1  # 0.6/0.75 < 0.4/0.25
    assert debiased_choice([math.log(0.6), math.log(0.4)], [0.5, 0.5]) == 0


def test_pride_needs_per_option_scores():
    from clika.metrics.pride import pride_metrics

    groups = {"en": [[Result("q@rot0", 0, 0), Result("q@rot1", 1, 1)]]}
    assert pride_metrics(groups, "AB", 2, 0.9) == {}


def test_report_and_curve_rows_carry_pride():
    from clika.report.curves import metrics_to_rows
    from clika.report.results import markdown_report

    m = suite_metrics(Suite(datasets=["x_geo"], langs=["en", "zh", "de"], circular=True),
                      {"x_geo": _metrics(KnowsButPrefersA(), True)})
    assert m["summary"]["overall"]["acc_pride"] == 1.0 and m["summary"]["overall"]["acc"] == 3 / 8
    assert "| acc_pride | 100.0 | 100.0 | 100.0 |" in markdown_report(m)
    assert metrics_to_rows(m, 0, 0, 0)[1]["acc_pride"] == 1.0


# ---------------------------------------------------------------- bad input
def test_circular_with_a_protocol_that_cannot_rotate_is_a_one_line_error():
    with pytest.raises(ClikaError, match=r"clika.circular=true .*clika.protocol=paper.*fix: set clika.protocol=letter"):
        Suite.from_dict({"datasets": ["x_copa"], "protocol": "paper", "circular": True})
    for ok in ("letter", "cloze"):
        assert Suite.from_dict({"datasets": ["x_copa"], "protocol": ok, "circular": True}).circular
    with pytest.raises(ClikaError) as err:
        Suite(protocol="paper", circular=True).validate()
    assert "\n" not in str(err.value)
