"""Side tasks of `eval.py`: dump_prompts, rescore, findings, curves, get_data (and the others registered in COMMANDS)."""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf import DictConfig

from clika.report.curves import plot_curves
from clika.util.errors import ClikaError
from clika.util.jsonl import atomic_write_text, write_json, write_jsonl
from clika.models.load import load_tokenizer
from clika.report import findings as fnd
from clika.report.rescore import markdown, rescore, skipped_variants
from clika.scoring.suite import load_suite_items, suite_tasks
from clika.eval.conductivity import conductivity, make_fictional
from clika.eval.common import model_spec, out_dir
from clika.eval.evaluate import suite_from_cfg


def dump_prompts(cfg: DictConfig) -> dict:
    """OUT/prompts/<dataset>/<lang>.jsonl with {"uuid", "input"} per item, to inspect before a costly run."""
    suite = suite_from_cfg(cfg)
    tokenizer = None
    if suite.prompt_style == "chat":
        tokenizer = load_tokenizer(model_spec(cfg))
    out = out_dir(cfg)
    written = []
    for task in suite_tasks(suite, load_suite_items(suite)):
        for lang, prompts in task.prompts(tokenizer).items():
            rows = [{"uuid": it.uid, "input": p} for it, p in zip(task.presented()[lang], prompts)]
            written.append(write_jsonl(out / "prompts" / task.name / f"{lang}.jsonl", rows))
    print(f"wrote {len(written)} prompt files under {out / 'prompts'}")
    return {"files": [str(p) for p in written]}


def rescore_task(cfg: DictConfig) -> dict:
    results_dir = cfg.get("results_dir")
    if not results_dir:
        raise ClikaError("results_dir is not set", fix="python eval.py task=rescore results_dir=DIR output_dir=OUT")
    report = rescore(results_dir, dict(cfg.clika.reference))
    skipped = skipped_variants(results_dir)
    if skipped:
        print(f"skipped {len(skipped)} variant files that the release's res_statistic.py does not read: "
              + ", ".join(str(f.relative_to(results_dir)) for f in skipped))
    out = out_dir(cfg)
    write_json(out / "rescore.json", report)
    atomic_write_text(out / "rescore.md", markdown(report))
    print(f"rescored {len(report)} systems -> {out / 'rescore.json'}")
    return {"report": report, "output_dir": str(out)}


def findings(cfg: DictConfig) -> dict:
    """The paper's comparisons (clika/report/findings.yaml or `comparisons=FILE`) over `results_dir` (default: the
    release's results under CLIKA_DATA; a list adds your own runs' results dirs): findings.md / .json + figures."""
    results_dir = cfg.get("results_dir") or str(Path(cfg.clika.data_root) / "results")
    dirs = [results_dir] if isinstance(results_dir, str) else list(results_dir)
    t0 = time.perf_counter()
    rep = fnd.findings(dirs, cfg.get("comparisons"), dict(cfg.clika.reference), n=int(cfg.clika.bootstrap or 1000),
                       seed=int(cfg.clika.get("seed") or 0))
    out = out_dir(cfg)
    figures = [str(fnd.plot_comparison(r, out / fnd.figure_name(r))) for r in rep["comparisons"]]
    figures.append(str(fnd.plot_bias_heatmap(rep["audit"], out / "position_bias.png")))
    rep["wall_s"] = time.perf_counter() - t0
    write_json(out / "findings.json", rep)
    atomic_write_text(out / "findings.md", fnd.markdown(rep))
    au = rep["audit"]["summary"]
    print(f"{len(rep['comparisons'])} comparisons over {len(rep['systems'])} systems; {au['dominated']} of {au['cells']} "
          f"en-CO cells position-dominated; {rep['wall_s']:.1f} s -> {out / 'findings.md'}")
    return {"report": rep, "output_dir": str(out), "figures": figures}


def curves(cfg: DictConfig) -> dict:
    """Redraw alignment curves of one or more training runs: `task=curves run_dir=A` or `run_dir=[A,B]`."""
    run_dirs = cfg.get("run_dir")
    if not run_dirs:
        raise ClikaError("run_dir is not set", fix="python eval.py task=curves run_dir=RUN (or run_dir=[RUN1,RUN2])")
    run_dirs = [run_dirs] if isinstance(run_dirs, str) else list(run_dirs)
    csvs = [Path(d) / "alignment.csv" for d in run_dirs]
    for c in csvs:
        if not c.exists():
            raise ClikaError(f"{c}: no alignment.csv in this run dir",
                             fix="point run_dir at a training run dir made with the CLiKA callback on")
    single = len(csvs) == 1 and not cfg.get("output_dir")
    out = csvs[0].parent / "alignment_curves.png" if single else out_dir(cfg) / "alignment_curves.png"
    plot_curves(csvs, out, x=cfg.get("curves_x") or "step")
    print(f"curves -> {out}")
    return {"png": str(out)}


def get_data(cfg: DictConfig) -> dict:
    """Fetch the official release at the pinned commit into the cache and verify it (clika.data.release)."""
    from clika.data import release as rel

    base_url = cfg.get("base_url") or rel.BASE_URL
    print(f"CLiKA release {rel.REPO} @ {rel.COMMIT[:12]}: fetching {len(rel.load_manifest())} files from {base_url}")
    out = rel.get_data(base_url)
    how = "downloaded and verified" if out["downloaded"] else "already present, verified again"
    print(f"{how}: {out['files']} files, {out['lines']:,} lines, {out['bytes'] / 1e6:.1f} MB -> {out['root']}\n"
          "train.py and eval.py use it whenever CLIKA_DATA is unset (Basic + Factual streams); "
          f"elsewhere: export CLIKA_DATA={out['root']}")
    return out


COMMANDS = {"dump_prompts": dump_prompts, "rescore": rescore_task, "curves": curves, "get_data": get_data,
         "make_fictional": make_fictional, "conductivity": conductivity, "findings": findings}
