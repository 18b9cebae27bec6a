"""clika.data.registry is the one place of the datasets' facts: every consumer reads it, and the facts match
the release (folder names, option counts, the ChatGPT reference accuracies' stated source)."""

import json
import shutil
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from clika.app.compose import compose
from clika.data import registry
from clika.data import release as rel
from clika.data.datasets import REGISTRY, load_items
from clika.report import rescore as rs
from clika.report.results import release_file
from clika.scoring.suite import Suite
from clika.util.errors import ClikaError
from clika.util.languages import LANGS, lang_from_dir

ROOT = Path(__file__).resolve().parents[2]
MC = registry.MULTIPLE_CHOICE


def test_the_table():
    assert MC == ("x_copa", "x_csqa", "x_geo", "x_name")
    assert registry.streams() == {"basic": ["x_copa", "x_csqa"], "factual": ["x_geo", "x_name"]}
    assert registry.get("fictional").stream == "fictional" and not registry.get("fictional").multiple_choice
    assert {d: registry.get(d).letters for d in MC} == {"x_copa": "AB", "x_csqa": "ABCDE", "x_geo": "ABCD",
                                                         "x_name": "ABCD"}
    assert all(registry.get(d).reference.source == registry.CHATGPT_EN for d in MC)
    with pytest.raises(TypeError):
        registry.get("x_copa").dirs["de"] = "de"  # read-only
    with pytest.raises(ValueError, match="stream"):
        registry.Dataset("x", "other", ("x/{dir}.jsonl",), {l: l for l in LANGS})


def test_suite_defaults_are_the_registry_s():
    s = Suite()
    assert tuple(s.datasets) == MC and s.streams == registry.streams() and s.references == registry.references()
    # the composed config repeats none of it: the same suite from conf/clika/default.yaml
    for app in ("eval", "train"):
        c = Suite.from_dict(OmegaConf.to_container(compose(app, []).clika, resolve=True))
        assert tuple(c.datasets) == MC and c.streams == registry.streams() and c.references == registry.references()
        assert {k: getattr(c, k) for k in ("prompt_style", "protocol", "seed", "batch_size", "bootstrap", "circular",
                                           "letter_delimiter", "limit")} == \
               {k: getattr(s, k) for k in ("prompt_style", "protocol", "seed", "batch_size", "bootstrap", "circular",
                                           "letter_delimiter", "limit")}


def test_conf_clika_lists_every_key_once_with_null_defaults():
    """Each default lives in clika.scoring.suite.Suite; the YAML lists the keys (so they can be set) as null."""
    conf = yaml.safe_load((ROOT / "conf" / "clika" / "default.yaml").read_text())
    fields = set(Suite.__dataclass_fields__) - {"spec"}
    assert set(conf) == fields
    wiring = {"data_root", "model_protocol"}  # interpolations of other config groups
    open_nodes = {"custom": {}, "reference": {}}  # empty maps the user adds to (+clika.custom.<name>=...)
    assert {k: v for k, v in conf.items() if k in open_nodes} == open_nodes
    assert all(conf[k] is None for k in fields - wiring - set(open_nodes)), conf


def test_reference_overrides_and_custom_datasets(tmp_path):
    s = Suite(reference={"x_copa": 0.9})
    assert s.references == {**registry.references(), "x_copa": 0.9}
    d = tmp_path / "mine"
    d.mkdir()
    (d / "en.jsonl").write_text(json.dumps({"id": 1, "question": "q", "options": ["a", "b"], "label": 0}) + "\n")
    with pytest.raises(ClikaError, match="clika.reference has no accuracy for 'mine'"):
        Suite(datasets=["mine"], custom={"mine": str(d)}, langs=["en"]).validate()
    assert Suite(datasets=["mine"], custom={"mine": str(d)}, langs=["en"], reference={"mine": 0.8}
                 ).validate().references["mine"] == 0.8


def test_loaders_read_the_registry_s_files(data_root):
    for ds in MC:
        facts = registry.get(ds)
        assert REGISTRY[ds].template == facts.template and REGISTRY[ds].n_options == facts.n_options
        for lang in LANGS:
            assert REGISTRY[ds].path(data_root, lang) == facts.file(data_root, lang)
            assert facts.file(data_root, lang).is_file() and lang_from_dir(facts.dirs[lang]) == lang
        items = load_items(data_root, ds, "en")
        assert {len(it.options) for it in items} == {facts.n_options}


def test_a_release_file_with_another_option_count_fails(data_root, tmp_path):
    facts = registry.get("x_geo")
    src = facts.file(data_root, "en")
    dst = facts.file(tmp_path, "en")
    dst.parent.mkdir(parents=True)
    rows = [json.loads(l) for l in src.read_text(encoding="utf-8").splitlines()[:3]]
    rows[1]["answers"] = rows[1]["answers"][:3]
    rows[1]["label"] = min(rows[1]["label"], 2)
    dst.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(ClikaError, match=r":2: 3 options, but x_geo has 4"):
        load_items(tmp_path, "x_geo", "en")


def test_release_fetcher_lists_the_registry_s_files(data_root):
    assert rel.PATTERNS == registry.release_globs()
    manifest = [e.path for e in rel.load_manifest()]
    for path in manifest:  # every fetched file belongs to exactly one dataset
        owners = [d.name for d in registry.DATASETS.values() if any(fnmatch(path, g) for g in d.release_globs)]
        assert len(owners) == 1, (path, owners)
    for ds in MC:  # and every language of every dataset is fetched
        assert {registry.get(ds).file(Path(), lang).as_posix() for lang in LANGS} <= set(manifest)


def test_rescore_reads_the_registry_and_its_references_are_chatgpt_s(data_root):
    assert rs.DATASETS == MC and rs.PAPER_REF == registry.references()
    assert rs.N_OPTIONS == {d: registry.get(d).n_options for d in MC}
    chatgpt = rs.rescore(data_root / "results")["chatgpt"]
    for ds in MC:  # the stated source: ChatGPT's English accuracy in the published outputs
        assert chatgpt[ds]["en"]["acc"] == pytest.approx(registry.get(ds).reference.acc, abs=5e-4)


def test_release_layout_results_and_prompts_use_the_registry_s_folder_names(data_root, tmp_path):
    for ds in MC:
        facts = registry.get(ds)
        published = {p.stem for p in (data_root / "results" / "chatgpt" / ds).glob("*.jsonl")}
        prompts = {p.stem for p in (data_root / "prompts" / ds).glob("*.jsonl")}
        assert published == prompts == set(facts.dirs.values())
        for lang in LANGS:
            assert release_file(tmp_path, "m", ds, lang) == tmp_path / "m" / ds / f"{facts.dirs[lang]}.jsonl"
            assert facts.prompts_file(data_root, lang).is_file()
    assert release_file(tmp_path, "m", "mine", "zh") == tmp_path / "m" / "mine" / "zh.jsonl"  # users' own data


def test_written_release_results_are_found_by_rescore(data_root, tmp_path):
    """The layout results.release_file writes is the one rescore reads, for every dataset and language."""
    for ds in MC:
        src = data_root / "results" / "chatgpt" / ds
        for lang in LANGS:
            dst = release_file(tmp_path, "copy", ds, lang)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src / f"{registry.get(ds).dirs[lang]}.jsonl", dst)
    found = rs.find_outputs(tmp_path)["copy"]
    assert {ds: set(v) for ds, v in found.items()} == {ds: set(LANGS) for ds in MC}
