"""Side tasks of `eval.py` for the fictional stream (Conductivity level).

- `task=make_fictional output_dir=OUT seed=0 cities=10 continents=8`: a generated world in the official
  layout (train/<X>.json, test/target, test/Translate), the pretraining corpora OUT/corpus/<lang>.txt (one
  sentence per line, facts then name correspondences: a `format: text` pretraining source), the release check and the name
  tokenization report of the configured model's tokenizer (the tiny one by default).
- `task=conductivity model=... fictional.root=... fictional.lang=zh`: scores a model / checkpoint on
  the fictional tests: conductivity.json, conductivity.md, conductivity_predictions.jsonl.
"""

from __future__ import annotations

import re

import torch
from omegaconf import DictConfig, OmegaConf

from clika.util.errors import ClikaError
from clika.fictional.generated import build_world, world_params
from clika.fictional.layout import write_official_layout
from clika.fictional.records import render_corpus, render_name_pairs
from clika.fictional.release import check_release
from clika.fictional.markdown import markdown, tokenization_markdown
from clika.fictional.task import FictionalTask
from clika.fictional.tokenization import name_tokenization_report, release_world
from clika.util.jsonl import atomic_write_text, write_json, write_jsonl
from clika.util.languages import LANGS, NON_EN
from clika.models.load import load_model, load_tokenizer, training_record
from clika.scoring.api import run_tasks
from clika.eval.common import model_spec, out_dir
from clika.eval.distributed import start


def _fict(cfg: DictConfig) -> dict:
    f = cfg.get("fictional")
    return OmegaConf.to_container(f, resolve=True) if f is not None else {}


def _pick(cfg: DictConfig, key: str, fallback):
    val = cfg.get(key)
    return fallback if val is None else val


_STEMS = re.compile(r"(?<![A-Z])(" + "|".join(l.upper() for l in NON_EN) + r")(?![A-Z])")


def relevant_defects(defects: list[str], x: str) -> list[str]:
    """The release defects that concern language X (or no language in particular)."""
    return [d for d in defects if not set(_STEMS.findall(d)) or x.upper() in _STEMS.findall(d)]


def make_fictional(cfg: DictConfig) -> dict:
    f = _fict(cfg)
    w = world_params(f.get("world"))
    params = {**w, "seed": int(_pick(cfg, "seed", w["seed"])), "continents": int(_pick(cfg, "continents", w["continents"])),
              "cities_per_continent": int(_pick(cfg, "cities", w["cities_per_continent"]))}
    out = out_dir(cfg)
    world = build_world(params)
    files = write_official_layout(world, out, NON_EN, params["translate_directions"], params["seed"])
    for lang in LANGS:
        text = render_corpus(world, lang) + ([] if lang == "en" else render_name_pairs(world, lang))
        files.append(atomic_write_text(out / "corpus" / f"{lang}.txt", "\n".join(text) + "\n"))
    defects = check_release(out)
    tok = load_tokenizer(model_spec(cfg))
    tokenization = {lang: name_tokenization_report(world, tok, lang) for lang in LANGS}
    write_json(out / "make_fictional.json", {"world": params, "model": cfg.model.name, "defects": defects,
                                             "tokenization": tokenization, "files": len(files)})
    print(f"wrote {len(files)} files under {out}: {params['continents']} continents x "
          f"{params['cities_per_continent']} cities, seed {params['seed']}, names '{params['name_style']}', "
          f"translations {'+'.join(params['translate_directions'])}")
    print("release check: " + ("clean" if not defects else f"{len(defects)} defect(s)"))
    for d in defects:
        print(f"  - {d}")
    print(f"name tokenization ({cfg.model.name} tokenizer):")
    print("\n".join(tokenization_markdown(tokenization)))
    return {"output_dir": str(out), "defects": defects, "tokenization": tokenization, "world": params}


def training_template(asked: str | None, record: dict, where: str) -> str:
    """The template the fictional prompts are rendered with: the one the evaluated export was trained with (its
    training record); `fictional.template` may only repeat it. No record: `fictional.template`, else alpaca."""
    taught = record.get("data.template")
    if taught and asked and asked != taught:
        raise ClikaError(f"fictional.template={asked} but {where} was trained with data.template={taught}",
                         fix=f"drop fictional.template (the run's template is used) or set fictional.template={taught}")
    return taught or asked or "alpaca"


def conductivity(cfg: DictConfig) -> dict:
    f = _fict(cfg)
    if not f.get("lang"):
        raise ClikaError("fictional.lang is not set", fix="python eval.py task=conductivity fictional.lang=zh ...")
    f["langs"] = f.get("langs") or ["en", f["lang"]]
    spec = model_spec(cfg)
    f["template"] = training_template(f.get("template"), training_record(spec), spec.name_or_path)
    task = FictionalTask.from_config(f)  # reads the data: fails before the model is loaded
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    model, tokenizer = load_model(spec, device=start(cfg.get("device")).device)  # one process: the device choice
    res = run_tasks(model, tokenizer, [task])[task.name].metrics
    xs, gate = task.trained[0], task.gate
    world = release_world(task.root, list(task.data.items))
    tokenization = {lang: name_tokenization_report(world, tokenizer, lang) for lang in task.data.items}
    g = res["scores"][gate][xs]
    mine = relevant_defects(task.defects, xs)
    report = {"model": spec.name, "name_or_path": spec.name_or_path, "adapter": spec.adapter, "root": str(task.root),
              "x": xs, "langs": list(task.data.items), "scorers": task.scorers, "gate_scorer": gate,
              "threshold": res["threshold"], "limit": task.limit, "seed": task.seed, "template": task.template,
              "n_continents": res["n_continents"], "chance": res["chance"], "defects": mine,
              "other_defects": len(task.defects) - len(mine),
              "gate_passed": not g.gated, "xrr": g.xrr, "xrr_corrected": g.xrr_corrected, "x_ratio": g.x_ratio,
              **{f"xrr_{o}": res["scores"][o][xs].xrr for o in task.scorers if o != gate},
              **{f"gate_passed_{o}": not res["scores"][o][xs].gated for o in task.scorers if o != gate},
              "results": {s: {"langs": res["langs"][s], "summary": res["summary"][s],
                              "scores": {k: v.to_dict() for k, v in res["scores"][s].items()}} for s in task.scorers},
              "tokenization": tokenization}
    out = out_dir(cfg)
    paths = {"results": write_json(out / "conductivity.json", report),
             "report": atomic_write_text(out / "conductivity.md", markdown(report)),
             "predictions": write_jsonl(out / "conductivity_predictions.jsonl",
                                        [{"scorer": s, **r} for s in task.scorers for r in res["rows"][s]])}
    num = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    verdict = (f"gate FAILED ({g.reasons.get('xrr', 'gated')})" if g.gated else
               f"gate passed: XRR {num(g.xrr)} (chance {num(res['chance'])}, corrected {num(g.xrr_corrected)})")
    print(f"{xs}: {verdict} [{gate}]")
    print(f"results: {paths['results']}\nreport:  {paths['report']}")
    return {"report": report, "paths": {k: str(v) for k, v in paths.items()}, "output_dir": str(out)}
