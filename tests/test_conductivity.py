"""Conductivity scoring on a real tiny model: prompts as trained, MC = highest log-likelihood,
shard/unshard equivalence, the training probe. Gate / XRR on hand-made predictions: test_fictional.py."""

import math

import pytest
import torch

from clika import conductivity as C
from clika.fictional import make_world, write_official_layout
from clika.suite import shard, unshard
from train.data.processing import encode_sft

CONTINENTS, CITIES = 4, 4  # 16 cities: 8 of type 0, 8 of type 1


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    out = tmp_path_factory.mktemp("cond")
    write_official_layout(make_world(seed=3, continents=CONTINENTS, cities_per_continent=CITIES), out, ["zh", "de"])
    return out


@pytest.fixture(scope="module")
def data(layout):
    return C.load_data(layout, ["en", "de"], ["de"])


@pytest.fixture(scope="module")
def probes(data, tiny):
    return C.build_probes(data, tiny[1])


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
    p = C.build_probes(data, tiny[1], "llama2")[0]
    assert "[/INST]" in p.prompt and not p.mc_context.endswith(" ") and p.options[0].startswith(" ")


def test_limit_is_a_seeded_type_stratified_city_subset(layout):
    a = C.load_data(layout, ["en", "zh"], ["zh"], limit=6, seed=1)
    assert [i.type for i in a.items["en"]].count(0) == 3 and len(a.items["en"]) == 6
    assert [i.idx for i in a.items["en"]] == [i.idx for i in a.items["zh"]]
    assert len(a.translate["zh"]) == 6 and a.continents["zh"] and len(a.cities["zh"]) == CONTINENTS * CITIES
    b = C.load_data(layout, ["en", "zh"], ["zh"], limit=6, seed=1)
    c = C.load_data(layout, ["en", "zh"], ["zh"], limit=6, seed=2)
    assert a.items == b.items and a.items != c.items


def test_clean_output_stops_at_an_invented_next_turn():
    text = "Tipur is located on Zobivia.\n\n### Instruction:\nWhere is Lezaria?"
    assert C.clean_output(text) == "Tipur is located on Zobivia."
    assert C.clean_output("Zobivia") == "Zobivia"


# --- scoring on the tiny model ---------------------------------------------------------------

def _loglik(model, tok, context: str, option: str) -> float:
    ctx = tok(context)["input_ids"]
    cont = tok(option, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ctx + cont])).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    return float(sum(logp[len(ctx) - 1 + k, t] for k, t in enumerate(cont))) / len(option.encode("utf-8"))


def test_mc_picks_the_option_with_the_highest_loglik(probes, tiny):
    model, tok = tiny
    some = [p for p in probes if p.lang == "de"][:3] + [p for p in probes if p.kind == "translate"][-2:]
    rows = C.score_probes(model, tok, some, "mc", batch_size=5)
    for p, r in zip(some, rows):
        want = [_loglik(model, tok, p.mc_context, o) for o in p.options]
        assert r["scores"] == pytest.approx(want, abs=1e-4)
        best = max(range(len(want)), key=want.__getitem__)
        assert r["pred"] == p.options[best].strip() and r["correct"] == (best == p.label)


def test_sharded_scoring_equals_unsharded(probes, tiny):
    model, tok = tiny
    sub = probes[::5]  # 11 probes: world 2 and 3 both pad a shard
    full = C.score_probes(model, tok, sub, "mc", batch_size=4)
    for world in (2, 3):
        parts = [C.score_probes(model, tok, shard(sub, r, world), "mc", batch_size=4, lockstep=True)
                 for r in range(world)]
        assert len({len(p) for p in parts}) == 1  # padded: same work on every rank
        merged = unshard(parts, len(sub))
        assert [r["uid"] for r in merged] == [p.uid for p in sub]
        assert [(r["pred"], r["correct"]) for r in merged] == [(r["pred"], r["correct"]) for r in full]
        for a, b in zip(merged, full):
            assert a["scores"] == pytest.approx(b["scores"], abs=1e-4)
    # score_fictional wires shard -> gather -> unshard (gather faked with the other rank's rows)
    other = {"mc": C.score_probes(model, tok, shard(sub, 1, 2), "mc", batch_size=4, lockstep=True)}
    calls = []
    got = C.score_fictional(model, tok, sub, ["mc"], batch_size=4, rank=0, world=2,
                            gather=lambda obj: calls.append(obj) or [obj, other])
    assert len(calls) == 1 and [r["pred"] for r in got["mc"]] == [r["pred"] for r in full]
    with pytest.raises(ValueError):
        C.score_fictional(model, tok, sub, ["mc"], rank=0, world=2, gather=None)


def test_lockstep_generation_cuts_at_eos_like_early_stopping(probes, tiny):
    model, tok = tiny
    ctx = [p.prompt for p in probes[:6]]
    first = C.generate(model, tok, ctx[:1], max_new_tokens=4)
    ids = tok(first[0], add_special_tokens=False)["input_ids"]
    saved = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = ids[2] if len(ids) > 2 else ids[-1]  # a token it does emit
    try:
        early = C.generate(model, tok, ctx, batch_size=3, max_new_tokens=6)
        lock = C.generate(model, tok, ctx, batch_size=3, max_new_tokens=6, lockstep=True)
    finally:
        model.generation_config.eos_token_id = saved
    assert early == lock and len(early[0]) < len(C.generate(model, tok, ctx[:1], max_new_tokens=6)[0])


def test_evaluate_reports_both_scorers_and_gates_by_one(data, probes, tiny):
    model, tok = tiny
    sub = [p for p in probes if p.idx % 4 == 0]
    res = C.evaluate(model, tok, data, ["de"], scorers=["mc", "generate"], gate="generate", probes=sub,
                     max_new_tokens=4)
    assert res["gate_scorer"] == "generate" and res["chance"] == 1 / CONTINENTS
    for s in ("mc", "generate"):
        assert len(res["rows"][s]) == len(sub) and set(res["langs"][s]) == {"en", "de"}
        de = res["langs"][s]["de"]
        assert de["n"] == len([p for p in sub if p.lang == "de" and p.kind != "translate"])
        assert de["gate_passed"] is False and de["xrr"] is None  # untrained: gated, no number
        assert res["scores"][s]["de"].gated and res["summary"][s]["gate_passed"] == 0.0
    with pytest.raises(Exception, match="gate scorer"):
        C.evaluate(model, tok, data, ["de"], scorers=["mc"], gate="generate", probes=sub)


def test_markdown_states_xrr_next_to_chance():
    rows = []
    for lang, kind, n, hits in (("en", "0", 10, 10), ("en", "1", 10, 10), ("zh", "0", 10, 10), ("zh", "1", 10, 4),
                                ("zh", "translate", 10, 10)):
        rows += [{"lang": lang, "kind": kind, "correct": i < hits} for i in range(n)]
    scores = C.scores_by_lang(rows, ["zh"], n_continents=4)
    table = C.lang_table(rows, scores)
    assert table["zh"]["xrr"] == pytest.approx(0.4) and table["zh"]["gate_passed"] is True
    assert math.isclose(table["zh"]["xrr_corrected"], (0.4 - 0.25) / 0.75)
    report = {"x": "zh", "gate_scorer": "mc", "root": "R", "n_continents": 4, "chance": 0.25, "threshold": 0.9,
              "results": {"mc": {"langs": table, "scores": {"zh": scores["zh"].to_dict()}}},
              "tokenization": {"zh": {"names": 20, "tokens_per_name": 3.5, "single_token": 0.1,
                                      "first_token_shared_with_en": 0.0}}}
    md = C.markdown(report)
    assert "| XRR = acc(zh type 1) / acc(en type 1) | 0.400 | 0.250 |" in md
    assert "| chance-corrected XRR | 0.200 |" in md and "**passed**" in md and "| zh | 20 | 3.50 |" in md


# --- the training probe ----------------------------------------------------------------------

def test_probe_generates_its_world_once_and_reports_the_callback_shape(tmp_path, tiny):
    from train.fictional_eval import FictionalProbe

    world = {"seed": 1, "continents": 3, "cities_per_continent": 2}
    probe = FictionalProbe(world=world, trained_lang="zh", limit=4, seed=0, cache_dir=str(tmp_path))
    assert probe.langs == ["en", "zh"] and probe.defects == []
    assert FictionalProbe(world=world, trained_lang="zh", cache_dir=str(tmp_path)).root == probe.root
    assert FictionalProbe(world={**world, "seed": 2}, trained_lang="zh", cache_dir=str(tmp_path)).root != probe.root
    out = probe.evaluate(*tiny, 0, 1, None)
    assert out["scorer"] == "generate" and "co_matrix" not in out["dataset"]  # gates; mc reported beside it
    assert "xrr_mc" in out["summary"] and "gate_passed_mc" in out["summary"] and "acc_mc" in out["dataset"]["langs"]["zh"]
    langs = out["dataset"]["langs"]
    assert set(langs) == {"en", "zh"} and langs["en"]["n"] == 4 and langs["en"]["acc_type0"] is not None
    for key in ("acc", "acc_type0", "acc_type1", "xrr", "n"):
        assert key in langs["zh"]
    s = out["summary"]
    assert s["gate_passed"] in (0.0, 1.0) and s["chance"] == pytest.approx(1 / 3)
    assert all(v is None or isinstance(v, float) for v in s.values())


# --- eval.py side tasks ----------------------------------------------------------------------

def test_make_fictional_then_conductivity_tasks(tmp_path, capsys):
    import json
    from pathlib import Path

    from omegaconf import OmegaConf

    from eval.conductivity_tasks import conductivity, make_fictional

    root = Path(__file__).resolve().parent.parent
    fict = OmegaConf.load(root / "conf" / "fictional" / "default.yaml")
    base = {"model": OmegaConf.load(root / "conf" / "model" / "tiny.yaml"), "fictional": fict, "threads": None,
            "device": "cpu"}
    cfg = OmegaConf.create({**base, "output_dir": str(tmp_path / "gen"), "seed": 5, "cities": 2, "continents": 3})
    made = make_fictional(cfg)
    assert made["defects"] == [] and made["world"]["continents"] == 3
    assert (tmp_path / "gen" / "train" / "ZH.json").is_file() and (tmp_path / "gen" / "corpus" / "he.txt").is_file()
    assert len((tmp_path / "gen" / "corpus" / "de.txt").read_text(encoding="utf-8").splitlines()) == 3
    assert "release check: clean" in capsys.readouterr().out
    cfg = OmegaConf.create({**base, "output_dir": str(tmp_path / "cond")})
    cfg.fictional.root, cfg.fictional.lang, cfg.fictional.limit, cfg.fictional.scorers = str(tmp_path / "gen"), "ja", 4, ["mc"]
    cfg.fictional.gate = "mc"
    res = conductivity(cfg)
    report = json.loads((tmp_path / "cond" / "conductivity.json").read_text(encoding="utf-8"))
    assert report["x"] == "ja" and report["chance"] == pytest.approx(1 / 3) and report["gate_passed"] is False
    assert set(report["results"]["mc"]["langs"]) == {"en", "ja"} and set(report["tokenization"]) == {"en", "ja"}
    assert "chance 33.3%" in (tmp_path / "cond" / "conductivity.md").read_text(encoding="utf-8")
    rows = (tmp_path / "cond" / "conductivity_predictions.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 4 + 4 + 4 and res["report"]["xrr"] is None
    cfg.fictional.lang = None
    with pytest.raises(Exception, match="fictional.lang"):
        conductivity(cfg)


# --- the embedded conductivity experiment, end to end ---------------------------------------

@pytest.mark.slow
def test_fictional_conductivity_preset_reaches_the_gate(train_cfg):
    """`python train.py experiment=fictional_conductivity lang=de` on the tiny model: the probe's gate
    (Translate, en type 0/1, de type 0 all >= 0.9) passes, and only then an XRR is reported."""
    import csv
    from pathlib import Path

    from train.run import train

    out = train(train_cfg("experiment=fictional_conductivity", "lang=de", "trainer.max_steps=750",
                          "export.enabled=false"))
    run = Path(out["run_dir"])
    rows = [r for r in csv.DictReader((run / "alignment.csv").open()) if r["dataset"] == "fictional"]
    assert sorted({int(r["step"]) for r in rows}) == [0, 250, 500, 750]
    first = {r["lang"]: r for r in rows if r["step"] == "0"}
    last = {r["lang"]: r for r in rows if r["step"] == "750"}
    assert first["de"]["xrr"] == ""  # gated at step 0: no conductivity number
    assert float(last["en"]["acc_type0"]) >= 0.9 and float(last["en"]["acc_type1"]) >= 0.9
    assert float(last["de"]["acc_type0"]) >= 0.9
    assert float(last["de"]["xrr"]) > 0.5  # single-language names conduct well above chance (1/8)
    logged = [r for f in run.glob("csv/version_*/metrics.csv") for r in csv.DictReader(f.open())
              if r.get("clika/fictional/gate_passed")]
    assert float(logged[-1]["clika/fictional/gate_passed"]) == 1.0
    assert float(logged[-1]["clika/fictional/xrr"]) == pytest.approx(float(last["de"]["xrr"]))
    from train.launch_checks import optimized_value  # what a sweeper gets from `python train.py -m ...`

    cfg = train_cfg("experiment=fictional_conductivity", "lang=de")
    assert optimized_value(cfg, out) == pytest.approx(float(last["de"]["xrr"]))
