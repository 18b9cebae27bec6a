"""task=findings (clika.report.findings): every number of two comparisons recomputed from the raw files, the
letter-only baseline by hand, the official layout with ChatGPT's variant files, the command's outputs."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf

from clika.eval.commands import findings as findings_task
from clika.eval.commands import rescore_task
from clika.eval.distributed import EvalWorld
from clika.eval.evaluate import evaluate_model
from clika.metrics.alignment import bootstrap_indices
from clika.models.load import ModelSpec
from clika.report import findings as F
from clika.report.rescore import find_outputs, rescore, skipped_variants
from clika.util.errors import ClikaError

ORDER = ("x_copa", "x_csqa", "x_geo", "x_name")  # dataset i is resampled with seed + i
OPTIONS = {"x_copa": 2, "x_csqa": 5, "x_geo": 4, "x_name": 4}
REF = {"x_csqa": 0.746, "x_copa": 0.964, "x_name": 0.922, "x_geo": 0.970}  # the paper's RA references
LANGS = ("en", "zh", "de", "fr", "it", "ja", "pl", "ru", "ar", "he")
TWO = [{"name": "continued", "base": "llama2_7b", "treated": "chinese_llama2_7b", "kind": "continued", "targets": ["zh"]},
       {"name": "instruction", "base": "bloom_7b1", "treated": "bloomz_7b1", "kind": "instruction",
        "targets": ["zh", "fr", "ar"]}]


def _yaml(path: Path, comps) -> Path:
    path.write_text(yaml.safe_dump({"comparisons": comps, "shallow_max": 0.05, "dominated_margin": 0.05}),
                    encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------ the letter-only baseline

def test_letter_baseline_by_hand():
    # English chooses A, A, A, B and the language A, A, B, B; gold A, B, A, B in both
    # q_en = (3/4, 1/4), q_l = (1/2, 1/2). Gold-A items: P(both right) = 3/4 * 1/2 = 3/8, P(either) = 3/4 + 1/2 - 3/8
    # = 7/8; gold-B items: 1/4 * 1/2 = 1/8 and 1/4 + 1/2 - 1/8 = 5/8. E|∩| = 2 (3/8 + 1/8) = 1, E|∪| = 2 (7/8 + 5/8) = 3
    assert F.letter_baseline([0, 0, 0, 1], [0, 1, 0, 1], [0, 0, 1, 1], [0, 1, 0, 1], 2) == pytest.approx(1 / 3)
    # an answer with no option letter (-1) counts in no share: q_en = (2/4, 1/4); gold A, A, B, B; q_l = (1, 0)
    # gold-A: 1/2 * 1 = 1/2, 1/2 + 1 - 1/2 = 1; gold-B: 1/4 * 0 = 0, 1/4 + 0 - 0 = 1/4 -> 2 (1/2) / 2 (1 + 1/4) = 0.4
    assert F.letter_baseline([0, -1, 0, 1], [0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 1, 1], 2) == pytest.approx(0.4)
    # two languages that always answer "B": both right on the gold-B items, both wrong on the others -> 1.0, the
    # en-CO such a system gets without any knowledge (what the audit subtracts)
    assert F.letter_baseline([1] * 4, [0, 1, 1, 1], [1] * 4, [0, 1, 1, 1], 4) == pytest.approx(1.0)


# --------------------------------------------------------------------- two comparisons, recomputed from the raw files

def _raw(results: Path, model: str, ds: str) -> dict:
    """{lang: (correct, choice, gold)} straight from the JSON lines, the release's first-character rule."""
    letters = "ABCDE"[:OPTIONS[ds]]
    out = {}
    for f in (results / model / ds).glob("*.jsonl"):
        lang = f.stem.lower().removesuffix("_trans")
        rows = [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
        first = [(r["res"] or "").strip()[:1] for r in rows]
        out[lang] = (np.array([a == r["label"] for a, r in zip(first, rows)]),
                     np.array([letters.find(a) if a else -1 for a in first]),
                     np.array([letters.find(r["label"]) for r in rows]))
    return out


def _by_gather(raw: dict, lang: str, idx: np.ndarray, ds: str) -> dict:
    """acc, ra, en-CO and the en-CO excess on the resamples `idx` (n, k), by indexing the items."""
    c, ch, g = raw[lang]
    acc = c[idx].mean(axis=1)
    chance = 1 / OPTIONS[ds]
    res = {"acc": acc, "ra": np.maximum(0, (acc - chance) / (REF[ds] - chance))}
    if lang != "en":
        ce, che, ge = raw["en"]
        co = (ce & c)[idx].sum(axis=1) / (ce | c)[idx].sum(axis=1)
        q_en = np.stack([(che == j)[idx].mean(axis=1) for j in range(OPTIONS[ds])], axis=1)
        q_l = np.stack([(ch == j)[idx].mean(axis=1) for j in range(OPTIONS[ds])], axis=1)
        p_en, p_l = np.take_along_axis(q_en, ge[idx], 1), np.take_along_axis(q_l, g[idx], 1)
        base = (p_en * p_l).sum(axis=1) / (p_en + p_l - p_en * p_l).sum(axis=1)
        res.update(en_co=co, en_co_excess=co - base)
    return res


def _pct(stats) -> tuple:
    s = np.sort(stats)
    return s[int(np.floor(0.025 * (len(s) - 1)))], s[int(np.ceil(0.975 * (len(s) - 1)))]


@pytest.fixture(scope="module")
def systems(data_root):
    return F.load_systems(data_root / "results")


@pytest.fixture(scope="module")
def two(systems, tmp_path_factory):
    path = _yaml(tmp_path_factory.mktemp("f") / "two.yaml", TWO)
    return F.findings(None, path, n=200, seed=7, systems=systems)


@pytest.mark.parametrize("which", [0, 1])
def test_every_number_equals_a_recomputation_from_the_raw_files(two, data_root, which):
    comp, r = TWO[which], two["comparisons"][which]
    results = data_root / "results"
    n, seed = 200, 7
    assert r["kind"] == comp["kind"] and list(r["datasets"]) == list(ORDER)
    means = {}
    for ds in ORDER:
        base, treated = _raw(results, comp["base"], ds), _raw(results, comp["treated"], ds)
        k = len(base["en"][0])
        idx = bootstrap_indices(k, n, seed + ORDER.index(ds))
        point = np.arange(k)[None, :]
        rows = r["datasets"][ds]["langs"]
        assert set(rows) == set(LANGS)
        deltas = {}
        for lang in LANGS:
            b_pt, t_pt = _by_gather(base, lang, point, ds), _by_gather(treated, lang, point, ds)
            b_rs, t_rs = _by_gather(base, lang, idx, ds), _by_gather(treated, lang, idx, ds)
            assert rows[lang]["target"] == (lang in comp["targets"])
            for m in b_pt:
                got = rows[lang][m]
                assert got["base"] == pytest.approx(b_pt[m][0], abs=1e-12), (ds, lang, m)
                assert got["treated"] == pytest.approx(t_pt[m][0], abs=1e-12), (ds, lang, m)
                assert got["delta"] == pytest.approx(t_pt[m][0] - b_pt[m][0], abs=1e-12)
                lo, hi = _pct(t_rs[m] - b_rs[m])
                assert (got["lo"], got["hi"]) == (pytest.approx(lo, abs=1e-9), pytest.approx(hi, abs=1e-9)), (ds, lang, m)
                assert got["lo"] <= got["delta"] <= got["hi"]  # the interval covers the point estimate
                deltas.setdefault(m, {})[lang] = np.concatenate([t_pt[m] - b_pt[m], t_rs[m] - b_rs[m]])
        for m, per in deltas.items():
            tg = np.mean([per[l] for l in comp["targets"] if l in per], axis=0) if any(
                l in per for l in comp["targets"]) else None
            ot = np.mean([per[l] for l in per if l not in comp["targets"]], axis=0)
            al = np.mean(list(per.values()), axis=0)
            g = r["datasets"][ds]["groups"][m]
            assert g["others"]["delta"] == pytest.approx(ot[0], abs=1e-12)
            assert (g["all"]["lo"], g["all"]["hi"]) == tuple(pytest.approx(v, abs=1e-9) for v in _pct(al[1:]))
            if tg is not None:
                assert g["targets"]["delta"] == pytest.approx(tg[0], abs=1e-12)
                assert (g["gap"]["lo"], g["gap"]["hi"]) == tuple(pytest.approx(v, abs=1e-9) for v in _pct((tg - ot)[1:]))
                means.setdefault((m, "targets"), []).append(tg)
            means.setdefault((m, "others"), []).append(ot)
    for (m, group), vs in means.items():  # all datasets: the mean of the four datasets' means, per resample
        if len(vs) == len(ORDER):
            v = np.mean(vs, axis=0)
            got = r["overall"][m][group]
            assert got["delta"] == pytest.approx(v[0], abs=1e-12)
            assert (got["lo"], got["hi"]) == tuple(pytest.approx(x, abs=1e-9) for x in _pct(v[1:]))


def test_reproducible_by_seed_and_a_verdict_per_comparison(two, systems):
    again = F.compare(systems, TWO[0], REF, n=200, seed=7)
    assert again["overall"] == two["comparisons"][0]["overall"]
    other = F.compare(systems, TWO[0], REF, n=200, seed=8)
    assert other["overall"]["acc"]["others"] != two["comparisons"][0]["overall"]["acc"]["others"]
    for r in two["comparisons"]:
        assert r["verdict"]["supported"] in (True, False, None) and r["verdict"]["sentence"]
        assert isinstance(r["survives_audit"], bool)
    md = F.markdown(two)
    assert "this project's reading" in md and "position-dominated" in md and "| continued | continued |" in md


def test_audit_of_the_released_files(two):
    au = two["audit"]
    assert au["summary"]["cells"] == 46 * 4 * 9 and len(au["files"]) == 46 * 4 * 10
    cell = next(c for c in au["cells"] if (c["model"], c["dataset"], c["lang"]) == ("llama2_7b", "x_copa", "zh"))
    assert cell["en_co"] == pytest.approx(0.842, abs=5e-4) and cell["baseline"] == pytest.approx(0.653, abs=5e-4)
    f = next(f for f in au["files"] if (f["model"], f["dataset"], f["lang"]) == ("llama2_7b", "x_copa", "en"))
    assert f["letter"] == "B" and f["share"] > 0.85
    assert au["summary"]["dominated"] == sum(c["en_co"] < c["baseline"] + 0.05 for c in au["cells"])


# ------------------------------------------------------------------------ official layout, ChatGPT's variant files

def _official(root: Path) -> dict:
    """x_copa in the official repo's layout: ChatGPT with its variants (one not JSON Lines), one other model."""
    labels = ["A", "B", "B", "A"]
    outs = {"chatgpt_res.jsonl": {"en": ["A", "B", "A", "A"], "DE": ["A.", " B", "B", "B"]},
            "chatgpt_res_without_uuid.jsonl": {"en": ["B"] * 4, "DE": ["B"] * 4},
            "chatgpt_res_fixed_en_prompt.jsonl": {"en": ["A"] * 4, "DE": ["A"] * 4},
            "llama2_7b_res_bf16_add_simple_example.jsonl": {"en": ["B", "B", "B", "A"], "DE": ["B", "", "B", "B"]}}
    for name, per in outs.items():
        for d, res in per.items():
            (root / "x_copa" / d).mkdir(parents=True, exist_ok=True)
            (root / "x_copa" / d / name).write_text("".join(
                json.dumps({"uuid": i, "res": o, "label": l}) + "\n" for i, (o, l) in enumerate(zip(res, labels))))
    for d in ("en", "DE"):
        (root / "x_copa" / d / "chatgpt_res_visual.jsonl").write_text("uuid\tres\n1\tA\n")  # not JSON Lines
    return {(m, d): sum(o.strip("\n").strip()[:1] == l for o, l in zip(per[d], labels)) / 4  # res_statistic.py's rule
            for m, per in (("chatgpt", outs["chatgpt_res.jsonl"]),
                           ("llama2_7b", outs["llama2_7b_res_bf16_add_simple_example.jsonl"])) for d in ("en", "DE")}


def test_official_layout_scores_the_file_res_statistic_reads(tmp_path, capsys):
    expected = _official(tmp_path)
    found = find_outputs(tmp_path)
    assert found["chatgpt"]["x_copa"]["en"].name == "chatgpt_res.jsonl" and set(found) == {"chatgpt", "llama2_7b"}
    rep = rescore(tmp_path)
    for (model, d), acc in expected.items():
        assert rep[model]["x_copa"][d.lower()]["acc"] == pytest.approx(acc)
    assert sorted(f.name for f in skipped_variants(tmp_path)) == sorted(
        ["chatgpt_res_fixed_en_prompt.jsonl", "chatgpt_res_visual.jsonl", "chatgpt_res_without_uuid.jsonl"] * 2)
    cfg = OmegaConf.create({"results_dir": str(tmp_path), "output_dir": str(tmp_path / "out"),
                            "clika": {"reference": {}}})
    rescore_task(cfg)
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("skipped")]
    assert len(lines) == 1 and "6 variant files" in lines[0] and "x_copa/DE/chatgpt_res_visual.jsonl" in lines[0]


def test_findings_command_on_the_official_layout(tmp_path):
    expected = _official(tmp_path / "res")
    comps = _yaml(tmp_path / "c.yaml", [{"name": "gpt vs llama", "base": "llama2_7b", "treated": "chatgpt",
                                         "kind": "instruction", "targets": ["de"]}])
    cfg = OmegaConf.create({"results_dir": str(tmp_path / "res"), "output_dir": str(tmp_path / "out"),
                            "comparisons": str(comps), "clika": {"reference": {}, "bootstrap": 50, "seed": 0,
                                                                  "data_root": str(tmp_path / "none")}})
    out = findings_task(cfg)
    r = out["report"]["comparisons"][0]
    for d in ("en", "DE"):
        assert r["datasets"]["x_copa"]["langs"][d.lower()]["acc"]["delta"] == pytest.approx(
            expected[("chatgpt", d)] - expected[("llama2_7b", d)])
    for name in ("findings.md", "findings.json", "position_bias.png", F.figure_name(r)):
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert json.loads((tmp_path / "out" / "findings.json").read_text())["comparisons"][0]["name"] == "gpt vs llama"


def test_bad_comparisons(tmp_path, data_root):
    _official(tmp_path / "res")
    with pytest.raises(ClikaError, match="no system 'nope'"):
        F.findings(tmp_path / "res", _yaml(tmp_path / "a.yaml", [{**TWO[0], "base": "nope", "treated": "chatgpt"}]))
    with pytest.raises(ClikaError, match=r"comparisons\[0\].*bad kind"):
        F.load_comparisons(_yaml(tmp_path / "b.yaml", [{**TWO[0], "kind": "magic"}]))
    with pytest.raises(ClikaError, match="does not exist"):
        F.load_comparisons(tmp_path / "missing.yaml")
    with pytest.raises(ClikaError, match="more than one results dir"):
        F.load_systems([tmp_path / "res", tmp_path / "res"])


def test_a_tiny_paper_run_is_a_system_of_the_findings_tables(data_root, tmp_path):
    """Item 3: a `clika.protocol=paper` run of the tiny model (x_geo and x_name, en and zh, every item so that it
    pairs with the release's), its results/ dir passed beside the release's, named in a comparison: rows of
    findings.json / findings.md (acc equal to the run's own results.json), audited, and its figure drawn."""
    run = tmp_path / "run"
    tiny = OmegaConf.to_container(OmegaConf.load(Path(__file__).resolve().parents[2] / "conf/model/tiny.yaml"))
    suite = {"protocol": "paper", "datasets": ["x_geo", "x_name"], "langs": ["en", "zh"], "data_root": str(data_root),
             "model_protocol": tiny["protocol"]}
    evaluate_model(ModelSpec(), suite, run, EvalWorld())
    own = json.loads((run / "results.json").read_text())
    assert own["protocol"] == "paper" and (run / "results" / "tiny" / "x_geo" / "zh.jsonl").is_file()

    comps = _yaml(tmp_path / "mine.yaml", [{"name": "tiny vs llama2", "base": "llama2_7b", "treated": "tiny",
                                            "kind": "instruction", "targets": ["zh"]}])
    release = tmp_path / "release"  # the release's results dir, cut to the base system (the whole: test above)
    release.mkdir()
    (release / "llama2_7b").symlink_to(data_root / "results" / "llama2_7b", target_is_directory=True)
    cfg = OmegaConf.create({"results_dir": [str(release), str(run / "results")],
                            "output_dir": str(tmp_path / "out"), "comparisons": str(comps),
                            "clika": {"reference": {}, "bootstrap": 50, "seed": 0, "data_root": str(data_root)}})
    findings_task(cfg)
    rep = json.loads((tmp_path / "out" / "findings.json").read_text())
    assert rep["systems"] == ["llama2_7b", "tiny"]
    r = rep["comparisons"][0]
    assert (r["base"], r["treated"]) == ("llama2_7b", "tiny") and list(r["datasets"]) == ["x_geo", "x_name"]
    for ds in ("x_geo", "x_name"):
        rows = r["datasets"][ds]["langs"]
        assert set(rows) == {"en", "zh"} and rows["zh"]["target"] and "en_co" in rows["zh"]
        for lang in ("en", "zh"):
            assert rows[lang]["acc"]["treated"] == pytest.approx(own["datasets"][ds]["langs"][lang]["acc"])
    assert sorted((f["dataset"], f["lang"]) for f in rep["audit"]["files"] if f["model"] == "tiny") == [
        ("x_geo", "en"), ("x_geo", "zh"), ("x_name", "en"), ("x_name", "zh")]
    assert sum(c["model"] == "tiny" for c in rep["audit"]["cells"]) == 2
    md = (tmp_path / "out" / "findings.md").read_text()
    assert "## tiny vs llama2 (instruction; targets zh)" in md and "| tiny vs llama2 | instruction |" in md
    zh_row = next(l for l in md.splitlines() if l.startswith("| x_geo | zh * |"))
    assert f"| {100 * own['datasets']['x_geo']['langs']['zh']['acc']:.1f} |" in zh_row
    assert (tmp_path / "out" / F.figure_name(r)).stat().st_size > 0
