"""The fictional stream as a task on a real tiny model: prompts as trained, MC = highest log-likelihood,
shard/unshard equivalence, the training probe. Gate / XRR on hand-made predictions: test_fictional.py."""

import math

import pytest
import torch

from clika.fictional.layout import write_official_layout
from clika.fictional.metrics import lang_table, scores_by_lang
from clika.fictional.markdown import markdown
from clika.fictional.task import FictionalTask, build_probes, load_data
from clika.fictional.world import make_world
from clika.scoring.generate import greedy as generate
from clika.scoring.judges import answer_part
from clika.scoring.api import lockstep, run_tasks, score_sets, shard, unshard
from clika.train.data.processing import encode_sft

CONTINENTS, CITIES = 4, 4  # 16 cities: 8 of type 0, 8 of type 1


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    out = tmp_path_factory.mktemp("cond")
    write_official_layout(make_world(seed=3, continents=CONTINENTS, cities_per_continent=CITIES), out, ["zh", "de"])
    return out


@pytest.fixture(scope="module")
def task(layout):
    return FictionalTask(root=str(layout), lang="de", seed=0)


@pytest.fixture(scope="module")
def data(task):
    return task.data


@pytest.fixture(scope="module")
def probes(task, tiny):
    return task.probes(tiny[1])


def _mc_set(task, tok, keep=None):
    """The task's mc request set, restricted to the probes `keep` (uids) when given."""
    s = next(s for s in task.request_sets(tok) if s.key == ("fictional", "mc"))
    if keep is not None:
        s.requests = [r for r in s.requests if r.uid in keep]
    return s


# --- data and prompts ------------------------------------------------------------------------

def test_probes_cover_items_and_translations_with_equal_option_counts(data, probes):
    assert data.n_continents == CONTINENTS
    qa = [p for p in probes if p.kind in ("0", "1")]
    tr = [p for p in probes if p.kind == "translate"]
    assert len(qa) == 2 * CONTINENTS * CITIES and len(tr) == CONTINENTS * (CITIES + 1)
    assert sorted({p.lang for p in qa}) == ["de", "en"] and {p.lang for p in tr} == {"de"}
    assert len({p.uid for p in probes}) == len(probes)
    for p in probes:  # same option count everywhere: every rank runs the same forward passes
        assert len(p.options) == CONTINENTS and len(set(p.options)) == CONTINENTS
        assert p.options[p.label].strip() == p.gold
    for p in qa:
        assert [o.strip() for o in p.options] == data.continents[p.lang]
    cities = [p for p in tr if p.gold in data.cities["de"]]
    assert cities and all(o.strip() in data.cities["de"] for p in cities for o in p.options)


def test_mc_context_is_the_training_text_token_for_token(data, probes, tiny):
    """Context + gold option tokenize exactly as the start of the training example (alpaca)."""
    tok = tiny[1]
    en = next(p for p in probes if p.lang == "en")
    de = next(p for p in probes if p.lang == "de" and p.kind == "1")
    tr = next(p for p in probes if p.kind == "translate")
    item = {(i.lang, i.idx): i for lang in data.items for i in data.items[lang]}
    rec = next(r for r in data.translate["de"] if r.idx == tr.idx)
    cases = [(en, {"instruction": item["en", en.idx].question, "input": "", "output": item["en", en.idx].answer}),
             (de, {"instruction": item["de", de.idx].question, "input": "", "output": item["de", de.idx].answer}),
             (tr, {"instruction": rec.prompt, "input": rec.input, "output": rec.answer})]
    for p, record in cases:
        ids, labels = encode_sft(record, tok, "alpaca", 512)
        ctx = tok(p.mc_context)["input_ids"]
        opt = tok(p.options[p.label], add_special_tokens=False)["input_ids"]
        assert ids[: len(ctx) + len(opt)] == ctx + opt, p.uid
        assert p.mc_context.startswith(p.prompt) and p.prompt.endswith("### Response:\n")
        n_prompt = len(tok(p.prompt, add_special_tokens=False)["input_ids"])  # training masks exactly this
        assert set(labels[:n_prompt]) == {-100} and labels[n_prompt] != -100
    assert en.mc_context.endswith("the continent of") and en.options[0].startswith(" ")
    # LLaMA-Factory's alpaca: the input follows the instruction after a newline (no "### Input:" block)
    assert tr.mc_context == tr.prompt and f"### Instruction:\n{rec.prompt}\n{rec.input}\n\n" in tr.prompt


def test_llama2_template_moves_the_leading_space_into_the_options(data, tiny):
    p = build_probes(data, tiny[1], "llama2")[0]
    assert "[/INST]" in p.prompt and not p.mc_context.endswith(" ") and p.options[0].startswith(" ")


def test_limit_is_a_seeded_type_stratified_city_subset(layout):
    a = load_data(layout, ["en", "zh"], ["zh"], limit=6, seed=1)
    assert [i.type for i in a.items["en"]].count(0) == 3 and len(a.items["en"]) == 6
    assert [i.idx for i in a.items["en"]] == [i.idx for i in a.items["zh"]]
    assert len(a.translate["zh"]) == 6 and a.continents["zh"] and len(a.cities["zh"]) == CONTINENTS * CITIES
    b = load_data(layout, ["en", "zh"], ["zh"], limit=6, seed=1)
    c = load_data(layout, ["en", "zh"], ["zh"], limit=6, seed=2)
    assert a.items == b.items and a.items != c.items


def test_clean_output_stops_at_an_invented_next_turn():
    text = "Tipur is located on Zobivia.\n\n### Instruction:\nWhere is Lezaria?"
    assert answer_part(text) == "Tipur is located on Zobivia."
    assert answer_part("Zobivia") == "Zobivia"


# --- scoring on the tiny model ---------------------------------------------------------------

def _loglik(model, tok, context: str, option: str) -> float:
    ctx = tok(context)["input_ids"]
    cont = tok(option, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ctx + cont])).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    return float(sum(logp[len(ctx) - 1 + k, t] for k, t in enumerate(cont))) / len(option.encode("utf-8"))


def test_mc_picks_the_option_with_the_highest_loglik(task, probes, tiny):
    model, tok = tiny
    some = [p for p in probes if p.lang == "de"][:3] + [p for p in probes if p.kind == "translate"][-2:]
    res = score_sets(model, tok, [_mc_set(task, tok, {p.uid for p in some})])[("fictional", "mc")]
    by_uid = {p.uid: p for p in some}
    for r in res:
        p = by_uid[r.uid]
        want = [_loglik(model, tok, p.mc_context, o) for o in p.options]
        assert r.scores == pytest.approx(want, abs=1e-4)
        best = max(range(len(want)), key=want.__getitem__)
        assert r.pred == best and r.correct == (best == p.label)


def test_sharded_scoring_equals_unsharded(task, probes, tiny):
    model, tok = tiny
    mc = _mc_set(task, tok, {p.uid for p in probes[::5]})  # 11 probes: world 2 and 3 both pad a shard
    full = score_sets(model, tok, [mc])[mc.key]
    for world in (2, 3):
        scorer = lockstep(mc.scorer, tok, mc.requests, world)
        parts = [scorer.score(model, tok, shard(mc.requests, r, world)) for r in range(world)]
        assert len({len(p) for p in parts}) == 1  # padded: same work on every rank
        merged = unshard(parts, len(mc.requests))
        assert [r.uid for r in merged] == [r.uid for r in full]
        assert [r.pred for r in merged] == [r.pred for r in full]
        for a, b in zip(merged, full):
            assert a.scores == pytest.approx(b.scores, abs=1e-4)
    # run_tasks wires shard -> one gather -> unshard (gather faked with the other rank's results)
    small = FictionalTask(root=str(task.root), lang="de", scorers=["mc"], limit=6, seed=0)
    sets = small.request_sets(tok)
    other = {s.key: lockstep(s.scorer, tok, s.requests, 2).score(model, tok, shard(s.requests, 1, 2)) for s in sets}
    calls = []
    got = run_tasks(model, tok, [small], 0, 2, gather=lambda obj: calls.append(obj) or [obj, other])
    alone = run_tasks(model, tok, [small])
    assert len(calls) == 1
    assert [r["pred"] for r in got["fictional"].metrics["rows"]["mc"]] == \
        [r["pred"] for r in alone["fictional"].metrics["rows"]["mc"]]
    with pytest.raises(ValueError):
        run_tasks(model, tok, [small], 0, 2, gather=None)


def test_lockstep_generation_cuts_at_eos_like_early_stopping(probes, tiny):
    model, tok = tiny
    ctx = [p.prompt for p in probes[:6]]
    first = generate(model, tok, ctx[:1], max_new_tokens=4)
    ids = tok(first[0], add_special_tokens=False)["input_ids"]
    saved = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = ids[2] if len(ids) > 2 else ids[-1]  # a token it does emit
    try:
        early = generate(model, tok, ctx, batch_size=3, max_new_tokens=6)
        lock = generate(model, tok, ctx, batch_size=3, max_new_tokens=6, lockstep=True)
    finally:
        model.generation_config.eos_token_id = saved
    assert early == lock and len(early[0]) < len(generate(model, tok, ctx[:1], max_new_tokens=6)[0])


def test_task_reports_both_scorers_and_gates_by_one(task, tiny):
    model, tok = tiny
    both = FictionalTask(root=str(task.root), lang="de", scorers=["mc", "generate"], gate="generate", limit=8,
                         seed=0, max_new_tokens=4)
    res = run_tasks(model, tok, [both])["fictional"].metrics
    n = len(both.probes(tok))
    assert res["gate_scorer"] == "generate" and res["chance"] == 1 / CONTINENTS
    for s in ("mc", "generate"):
        assert len(res["rows"][s]) == n and set(res["langs"][s]) == {"en", "de"}
        de = res["langs"][s]["de"]
        assert de["n"] == 8
        assert de["gate_passed"] is False and de["xrr"] is None  # untrained: gated, no number
        assert res["scores"][s]["de"].gated and res["summary"][s]["gate_passed"] == 0.0
    with pytest.raises(Exception, match="fictional.gate"):
        FictionalTask(root=str(task.root), lang="de", scorers=["mc"], gate="generate")


def test_markdown_states_xrr_next_to_chance():
    rows = []
    for lang, kind, n, hits in (("en", "0", 10, 10), ("en", "1", 10, 10), ("zh", "0", 10, 10), ("zh", "1", 10, 4),
                                ("zh", "translate", 10, 10)):
        rows += [{"lang": lang, "kind": kind, "correct": i < hits} for i in range(n)]
    scores = scores_by_lang(rows, ["zh"], n_continents=4)
    table = lang_table(rows, scores)
    assert table["zh"]["xrr"] == pytest.approx(0.4) and table["zh"]["gate_passed"] is True
    assert math.isclose(table["zh"]["xrr_corrected"], (0.4 - 0.25) / 0.75)
    report = {"x": "zh", "gate_scorer": "mc", "root": "R", "n_continents": 4, "chance": 0.25, "threshold": 0.9,
              "results": {"mc": {"langs": table, "scores": {"zh": scores["zh"].to_dict()}}},
              "tokenization": {"zh": {"names": 20, "tokens_per_name": 3.5, "single_token": 0.1,
                                      "first_token_shared_with_en": 0.0}}}
    md = markdown(report)
    assert "| XRR = acc(zh type 1) / acc(en type 1) | 0.400 | 0.250 |" in md
    assert "| chance-corrected XRR | 0.200 |" in md and "**passed**" in md and "| zh | 20 | 3.50 |" in md


# --- the training probe ----------------------------------------------------------------------

def test_probe_generates_its_world_once_and_reports_the_callback_shape(tmp_path, tiny):
    world = {"seed": 1, "continents": 3, "cities_per_continent": 2}
    probe = FictionalTask(world=world, lang="zh", limit=4, seed=0, cache_dir=str(tmp_path))
    assert probe.langs == ["en", "zh"] and probe.defects == []
    assert FictionalTask(world=world, lang="zh", cache_dir=str(tmp_path)).root == probe.root
    assert FictionalTask(world={**world, "seed": 2}, lang="zh", cache_dir=str(tmp_path)).root != probe.root
    dataset, s = probe.stream(run_tasks(*tiny, [probe])["fictional"].metrics)
    assert dataset["scorer"] == "generate" and "co_matrix" not in dataset  # gates; mc reported beside it
    assert "xrr_mc" in s and "gate_passed_mc" in s and "acc_mc" in dataset["langs"]["zh"]
    langs = dataset["langs"]
    assert set(langs) == {"en", "zh"} and langs["en"]["n"] == 4 and langs["en"]["acc_type0"] is not None
    for key in ("acc", "acc_type0", "acc_type1", "xrr", "n"):
        assert key in langs["zh"]
    assert s["gate_passed"] in (0.0, 1.0) and s["chance"] == pytest.approx(1 / 3)
    assert all(v is None or isinstance(v, float) for v in s.values())


def test_en_co_pairs_type0_items_by_index():
    """Consistency of the fictional stream: en-CO over type-0 items, paired with English by item index."""
    rows = [{"lang": l, "kind": k, "idx": i, "correct": c} for l, k, i, c in (
        ("en", "0", 0, True), ("en", "0", 1, True), ("en", "0", 2, False), ("en", "1", 3, True),
        ("zh", "0", 0, True), ("zh", "0", 1, False), ("zh", "0", 2, True), ("zh", "1", 3, True))]
    table = lang_table(rows, scores_by_lang(rows, ["zh"], n_continents=4))
    assert table["zh"]["en_co"] == pytest.approx(1 / 3)  # {0, 1} vs {0, 2}; type-1 item 3 not counted
    assert table["en"]["en_co"] == 1.0
