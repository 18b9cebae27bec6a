"""Side tasks of `eval.py` for the fictional stream (Conductivity level).

- `task=make_fictional output_dir=OUT seed=0 cities=10 continents=8`: a generated world in the official
  layout (train/<X>.json, test/target, test/Translate), encyclopedia corpora OUT/corpus/<lang>.txt (one
  paragraph per line: a `format: text` pretraining source), the release check and the name
  tokenization report of the configured model's tokenizer (the tiny one by default).
- `task=conductivity model=... fictional.root=... fictional.lang=zh`: scores a model / checkpoint on
  the fictional tests: conductivity.json, conductivity.md, conductivity_predictions.jsonl.
"""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from clika.errors import ClikaError
from clika.jsonl import atomic_write_text, write_json, write_jsonl
from clika.languages import NON_EN


def _out(cfg: DictConfig) -> Path:
    return Path(cfg.get("output_dir") or cfg.paths.output_dir)


def _fict(cfg: DictConfig) -> dict:
    f = cfg.get("fictional")
    return OmegaConf.to_container(f, resolve=True) if f is not None else {}


def _pick(cfg: DictConfig, key: str, fallback):
    val = cfg.get(key)
    return fallback if val is None else val


def _tokenizer(cfg: DictConfig):
    from clika.models import ModelSpec, load_tokenizer

    return load_tokenizer(ModelSpec(**OmegaConf.to_container(cfg.model, resolve=True)))


_STEMS = re.compile(r"(?<![A-Z])(" + "|".join(l.upper() for l in NON_EN) + r")(?![A-Z])")


def relevant_defects(defects: list[str], x: str) -> list[str]:
    """The release defects that concern language X (or no language in particular)."""
    return [d for d in defects if not set(_STEMS.findall(d)) or x.upper() in _STEMS.findall(d)]


def make_fictional(cfg: DictConfig) -> dict:
    from clika.conductivity import tokenization_markdown, world_params
    from clika.fictional import check_release, make_world, name_tokenization_report, render_corpus, write_official_layout
    from clika.languages import LANGS

    f = _fict(cfg)
    w = world_params(f.get("world"))
    params = {**w, "seed": int(_pick(cfg, "seed", w["seed"])), "continents": int(_pick(cfg, "continents", w["continents"])),
              "cities_per_continent": int(_pick(cfg, "cities", w["cities_per_continent"]))}
    out = _out(cfg)
    world = make_world(params["seed"], params["continents"], params["cities_per_continent"], params["name_style"])
    files = write_official_layout(world, out, NON_EN, params["translate_directions"], params["seed"])
    for lang in LANGS:
        files.append(atomic_write_text(out / "corpus" / f"{lang}.txt", "\n".join(render_corpus(world, lang)) + "\n"))
    defects = check_release(out)
    tok = _tokenizer(cfg)
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


def conductivity(cfg: DictConfig) -> dict:
    import torch

    from clika import conductivity as C
    from clika.fictional import check_release, name_tokenization_report, validate_release
    from clika.models import ModelSpec, load_model

    f = _fict(cfg)
    x = f.get("lang")
    if not x:
        raise ClikaError("fictional.lang is not set", fix="python eval.py task=conductivity fictional.lang=zh ...")
    root = Path(f["root"]) if f.get("root") else C.generated_root(f.get("world"))
    if f.get("allow_defects", True):
        defects = check_release(root)
    else:
        defects = validate_release(root)
    scorers = list(f.get("scorers") or ["generate", "mc"])
    gate = f.get("gate") or scorers[0]
    limit, seed = f.get("limit"), int(f.get("seed") or 0)
    data = C.load_data(root, f.get("langs") or ["en", x], [x], limit=limit, seed=seed)  # fail before the model
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    spec = ModelSpec(**OmegaConf.to_container(cfg.model, resolve=True))
    device = cfg.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    model, tokenizer = load_model(spec, device=device)
    template = f.get("template") or "alpaca"
    res = C.evaluate(model, tokenizer, data, [x], scorers=scorers, gate=gate, threshold=float(f.get("threshold", 0.9)),
                     batch_size=int(f.get("batch_size") or 16), max_new_tokens=f.get("max_new_tokens"),
                     template=template)
    xs = res["trained"][0]
    world = C.release_world(root, list(data.items))
    tokenization = {lang: name_tokenization_report(world, tokenizer, lang) for lang in data.items}
    g = res["scores"][gate][xs]
    mine = relevant_defects(defects, xs)
    report = {"model": spec.name, "name_or_path": spec.name_or_path, "adapter": spec.adapter, "root": str(root),
              "x": xs, "langs": list(data.items), "scorers": scorers, "gate_scorer": gate,
              "threshold": res["threshold"], "limit": limit, "seed": seed, "template": template,
              "n_continents": res["n_continents"], "chance": res["chance"], "defects": mine,
              "other_defects": len(defects) - len(mine),
              "gate_passed": not g.gated, "xrr": g.xrr, "xrr_corrected": g.xrr_corrected, "x_ratio": g.x_ratio,
              **{f"xrr_{o}": res["scores"][o][xs].xrr for o in scorers if o != gate},
              **{f"gate_passed_{o}": not res["scores"][o][xs].gated for o in scorers if o != gate},
              "results": {s: {"langs": res["langs"][s], "summary": res["summary"][s],
                              "scores": {k: v.to_dict() for k, v in res["scores"][s].items()}} for s in scorers},
              "tokenization": tokenization}
    out = _out(cfg)
    paths = {"results": write_json(out / "conductivity.json", report),
             "report": atomic_write_text(out / "conductivity.md", C.markdown(report)),
             "predictions": write_jsonl(out / "conductivity_predictions.jsonl",
                                        [{"scorer": s, **r} for s in scorers for r in res["rows"][s]])}
    num = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    verdict = (f"gate FAILED ({g.reasons.get('xrr', 'gated')})" if g.gated else
               f"gate passed: XRR {num(g.xrr)} (chance {num(res['chance'])}, corrected {num(g.xrr_corrected)})")
    print(f"{xs}: {verdict} [{gate}]")
    print(f"results: {paths['results']}\nreport:  {paths['report']}")
    return {"report": report, "paths": {k: str(v) for k, v in paths.items()}, "output_dir": str(out)}
