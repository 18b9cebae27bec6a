"""Writes an evaluation's artefacts: results.json, predictions/, report.md and plots (atomically)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from clika.data import registry
from clika.data.registry import LETTERS
from clika.util.jsonl import atomic_write_text, write_json, write_jsonl
from clika.util.languages import LANGS
from clika.metrics.names import CIRCULAR, CIRCULAR_KEYS, PLAIN
from clika.scoring.release import GLM_RULES


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def _ci(v: dict) -> str:
    ci = v.get("acc_ci")
    return "–" if not ci or ci[0] is None or ci[0] == ci[1] == v.get("acc") else f"{_pct(ci[0])}–{_pct(ci[1])}"


def _evaluated(model: dict | None) -> list[str]:
    if not model:
        return []
    parts = [f"model `{model.get('name_or_path')}`"]
    parts += [f"{k} `{model[k]}`" for k in ("revision", "adapter") if model.get(k)]
    if model.get("weights_sha256"):
        parts.append(f"weights sha256 `{model['weights_sha256'][:16]}`")
    return [", ".join(parts) + ".", ""]


def stream_label(group: str, vals: dict) -> str:
    """A stream mean names the datasets it averages: `basic (x_copa)` when x_csqa was not evaluated."""
    ds = vals.get("datasets")
    return f"{group} ({', '.join(ds)})" if ds else group


def markdown_report(metrics: dict, title: str = "CLiKA evaluation", model: dict | None = None) -> str:
    lines = [f"# {title}", "", *_evaluated(model),
             f"protocol {_protocol_line(metrics)}, prompts `{metrics['prompt_style']}`"
             f", subset {metrics['limit'] or 'all'} items (seed {metrics['seed']})"
             + (", circular (every rotation of the options; acc/ra/en_co are rotation 0's = the plain run)"
                if metrics.get("circular") else "") + ". Values in %.", ""]
    for ds, m in metrics["datasets"].items():
        langs = [l for l in LANGS if l in m["langs"]]
        lines += [f"## {ds} ({m['n_options']} options, RA reference {m['ref']})", "",
                  "| metric | " + " | ".join(langs) + " |", "|---|" + "---:|" * len(langs)]
        keys = PLAIN + (CIRCULAR if m.get("circular") else ())
        for key in keys:
            lines.append(f"| {key} | " + " | ".join(_pct(m["langs"][l].get(key)) for l in langs) + " |")
            if key == "acc" and any(_ci(m["langs"][l]) != "–" for l in langs):
                lines.append("| acc 95% CI (bootstrap) | " + " | ".join(_ci(m["langs"][l]) for l in langs) + " |")
        lines.append("| n | " + " | ".join(str(m["langs"][l]["n"]) for l in langs) + " |")
        lines += _bias_rows(m, langs)
        lines.append("")
    s = metrics["summary"]
    extra = [k for k in CIRCULAR_KEYS if k in s["overall"]]
    lines += ["## Summary (mean over non-English languages)", "",
              "| group | acc | RA | en-CO |" + "".join(f" {k} |" for k in extra), "|---|---:|---:|---:|" + "---:|" * len(extra)]
    for group, vals in [*s["streams"].items(), ("overall", s["overall"])]:
        lines.append(f"| {stream_label(group, vals)} | {_pct(vals['acc'])} | {_pct(vals['ra'])} | {_pct(vals['en_co'])} |"
                     + "".join(f" {_pct(vals.get(k))} |" for k in extra))
    return "\n".join(lines) + "\n"


def headline(metrics: dict, label: str) -> str:
    """The console's last word on an evaluation: RA and en-CO per dataset and language, and the means."""
    out = [f"== CLiKA evaluation: {label} =="]
    for ds, m in metrics["datasets"].items():
        langs = [l for l in LANGS if l in m["langs"]]
        out.append(f"{ds:<10} {'':<6}" + "".join(f"{l:>7}" for l in langs))
        for key, name in (("ra", "RA"), ("en_co", "en-CO")):
            out.append(f"{'':<10} {name:<6}" + "".join(f"{_pct(m['langs'][l].get(key)):>7}" for l in langs))
    s = metrics["summary"]
    for group, vals in [*s["streams"].items(), ("overall", s["overall"])]:
        out.append(f"{stream_label(group, vals)}: RA {_pct(vals['ra'])}, en-CO {_pct(vals['en_co'])} "
                   "(mean over non-English languages, %)")
    return "\n".join(out)


def _bias_rows(m: dict, langs: list[str]) -> list[str]:
    """The position-bias report (clika.metrics.bias) under a dataset's table."""
    bias = [m["langs"][l].get("bias") or {} for l in langs]
    if not any(bias):
        return []

    def row(name: str, fmt) -> str:
        return f"| {name} | " + " | ".join(fmt(b) if b else "–" for b in bias) + " |"

    return [row("most-chosen letter (share %)", lambda b: f"{b['letter'] or '–'} ({_pct(b['share'])})"),
            row("chosen-letter entropy (normalised)", lambda b: "–" if b["entropy"] is None else f"{b['entropy']:.2f}"),
            row("RStd of recalls (%)", lambda b: _pct(b["rstd"]))]
def _protocol_line(metrics: dict) -> str:
    if metrics["protocol"] == "paper":
        rp = metrics["release_protocol"]
        dev = "; deviations: " + ", ".join(rp["deviations"]) if rp["deviations"] else ""
        length = (f"max_length = prompt tokens + {rp['max_new_tokens']} (ChatGLM's model.chat, sampled)"
                  if rp["output"] in GLM_RULES else f"{rp['max_new_tokens']} new tokens")
        return (f"`paper` (the release's inference protocol: family `{rp['family']}` = `{rp['release_class']}`, "
                f"{rp['num_beams']} beams, {length}, first-character rule{dev})")
    return (f"`{metrics['protocol']}` (this project's protocol, letter form `{metrics['letter_form']}`; "
            "not comparable item for item with the published outputs: use clika.protocol=paper)")


def plot_accuracy(metrics: dict, path: Path) -> Path:
    import matplotlib  # deferred (0.55 s with pyplot): eval.py's side tasks and the checks draw nothing

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    names = list(metrics["datasets"])
    width = 0.8 / max(1, len(names))
    for k, ds in enumerate(names):
        m = metrics["datasets"][ds]
        langs = [l for l in LANGS if l in m["langs"]]
        xs = [LANGS.index(l) + k * width for l in langs]
        accs = [m["langs"][l]["acc"] for l in langs]
        cis = [m["langs"][l].get("acc_ci") or [None, None] for l in langs]
        err = [[a - (c[0] if c[0] is not None else a) for a, c in zip(accs, cis)],
               [(c[1] if c[1] is not None else a) - a for a, c in zip(accs, cis)]]
        ax.bar(xs, accs, width, label=ds, yerr=err if any(map(any, err)) else None, capsize=2,
                      error_kw={"elinewidth": 0.8})
        chance = 1 / m["n_options"]  # each dataset's own chance level, over its bars
        ax.hlines([chance] * len(xs), [x - width / 2 for x in xs], [x + width / 2 for x in xs],
                  colors="black", linestyles=":", linewidth=1.2, zorder=3)
    ax.plot([], [], "k:", label="chance (1/#options)")
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(LANGS))], LANGS)
    ax.set_ylabel("accuracy"), ax.set_ylim(0, 1), ax.legend(fontsize=7)
    ax.set_title("Accuracy per language (bars: 95% bootstrap CI; dotted: chance)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_co_heatmap(metrics: dict, path: Path, step: int | None = None) -> Path:
    import matplotlib  # deferred (0.55 s with pyplot): eval.py's side tasks and the checks draw nothing

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(metrics["datasets"])
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.4), squeeze=False)
    for ax, ds in zip(axes[0], names):
        mat = metrics["datasets"][ds]["co_matrix"]
        langs = [l for l in LANGS if l in mat]
        im = ax.imshow([[mat[a][b] for b in langs] for a in langs], vmin=0, vmax=1, cmap="viridis")
        for i, a in enumerate(langs):
            for j, b in enumerate(langs):
                ax.text(j, i, f"{mat[a][b]:.2f}", ha="center", va="center", fontsize=5 if len(langs) > 6 else 7,
                        color="white" if mat[a][b] < 0.6 else "black")
        ax.set_xticks(range(len(langs)), langs, fontsize=7), ax.set_yticks(range(len(langs)), langs, fontsize=7)
        ax.set_title(f"CO {ds}" + (f" (step {step})" if step is not None else ""), fontsize=9)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    return save_figure(fig, path)


def save_figure(fig, path: Path) -> Path:
    """Write a figure atomically (temp file, then rename) and close it (pyplot figures only hold state)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}-{threading.get_ident()}.tmp{path.suffix}")
    try:
        fig.savefig(tmp, dpi=110)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
        if getattr(fig, "canvas", None) is not None and getattr(fig.canvas, "manager", None) is not None:
            import matplotlib.pyplot as plt

            plt.close(fig)
    return path


def release_file(root: Path, model_name: str, dataset: str, lang: str) -> Path:
    """`<root>/<model>/<dataset>/<dir>.jsonl`, `<dir>` the release's folder name of the language (DE, ZH_trans,
    zh, ...; users' own datasets: the code): the layout `clika.report.rescore` reads for the 46 published systems."""
    return registry.results_file(root, model_name, dataset, lang)


def write_evaluation(out_dir: str | Path, metrics: dict, results: dict, model: str | dict) -> dict[str, Path]:
    """results.json, predictions/<dataset>/<lang>.jsonl (with the raw output `res` where there is one),
    report.md, plots; protocol=paper also writes results/<model>/<dataset>/<dir>.jsonl ({uuid, res, label})
    so `eval.py task=rescore results_dir=<run dir>/results` scores them as the published systems.
    `model`: a label, or clika.models.load.describe's dict (path / hub id, revision, adapter, weights hash)."""
    out = Path(out_dir)
    info = model if isinstance(model, dict) else None
    label = info["label"] if info else str(model)
    paths = {"results": write_json(out / "results.json", {"model": label, **({"evaluated": info} if info else {}),
                                                          **metrics})}
    for (ds, lang), res in results.items():
        write_jsonl(out / "predictions" / ds / f"{lang}.jsonl",
                    [{"uuid": r.uid, "pred": r.pred, "label": r.label, "correct": r.correct, "scores": r.scores,
                      **({"res": r.output} if r.output is not None else {})} for r in res])
        if metrics.get("protocol") == "paper":
            write_jsonl(release_file(out / "results", info["name"] if info else label, ds, lang),
                        [{"uuid": r.uid, "res": r.output, "label": LETTERS[r.label]} for r in res])
    if metrics.get("protocol") == "paper":
        paths["release_results"] = out / "results"
    paths["report"] = atomic_write_text(out / "report.md", markdown_report(metrics, f"CLiKA evaluation: {label}", info))
    paths["accuracy_png"] = plot_accuracy(metrics, out / "accuracy.png")
    paths["co_png"] = plot_co_heatmap(metrics, out / "co_heatmap.png")
    return paths
