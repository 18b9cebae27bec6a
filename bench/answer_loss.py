"""Loss at answer positions only vs every position (issue #25): LoRA step time of the real PyPI models on the
conductivity preset's own batches, measured in one run, one thread.

The batches are the first `--batches` of `experiment=fictional_conductivity` (sft, the world's records for `--lang`,
through `--template`), built by the project's own data module. For each model the LoRA-wrapped model (q_proj,v_proj,
r 8) runs forward + backward on each batch with the model's own loss (every position projected onto the vocabulary)
and with `clika.train.loss.causal_lm_loss` (the lm_head on positions that predict a label), alternating, after one
warm-up each; reported: the median step time of each, their ratio, and the largest loss difference (must be float
rounding). Process CPU time (bench.common.clock) so other jobs' load does not enter the ratio.

    python bench/answer_loss.py --models smollm2_135m,gemma3_270m --write
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

try:
    from bench import common
except ImportError:
    import common  # type: ignore[no-redef]

ROOT = common.ROOT


def batches(model: str, lang: str, template: str, batch_size: int, n: int) -> list:
    from clika.app.compose import compose
    from clika.app.launch import register_config
    from clika.train.data.datamodule import MixtureDataModule
    from omegaconf import OmegaConf

    register_config()
    cfg = compose("train", [f"experiment=fictional_conductivity", f"lang={lang}", f"model={model}",
                            f"data.template={template}", f"data.batch_size={batch_size}"])
    from clika.models.load import load_tokenizer

    tok = load_tokenizer(common.model_spec(model))
    dm = MixtureDataModule(OmegaConf.to_container(cfg.data, resolve=True), tok, seed=0)
    dm.prepare()
    dm.setup("fit")
    out = []
    for b in dm.train_dataloader():
        out.append(b)
        if len(out) == n:
            return out
    return out


def measure(model_name: str, lang: str, template: str, batch_size: int, n: int) -> dict:
    import torch

    from clika.train.loss import causal_lm_loss
    from clika.train.module import apply_method

    common.set_threads(1)
    torch.manual_seed(0)
    data = batches(model_name, lang, template, batch_size, n + 1)
    model = apply_method(common.load(model_name)[0], {"name": "lora", "r": 8, "alpha": 16, "dropout": 0.0,
                                                  "target_modules": ["q_proj", "v_proj"]})
    model.train()
    times = {"all": [], "labelled": []}
    diffs = []
    for i, b in enumerate(data):
        losses = {}
        for mode in ("all", "labelled"):
            model.zero_grad(set_to_none=True)
            with common.Timer() as t:
                loss = causal_lm_loss(model, b, sparse=mode == "labelled")
                loss.backward()
            losses[mode] = float(loss)
            if i:  # batch 0 is the warm-up of both
                times[mode].append(t.seconds)
        diffs.append(abs(losses["all"] - losses["labelled"]))
    tokens = [int(b["attention_mask"].sum()) for b in data[1:]]
    labelled = [int((b["labels"][:, 1:] != -100).sum()) for b in data[1:]]
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"model": model_name, "lang": lang, "template": template, "batch_size": batch_size, "batches": n,
            "tokens_per_batch": statistics.mean(tokens), "labelled_per_batch": statistics.mean(labelled),
            "step_s_all": med["all"], "step_s_labelled": med["labelled"], "speedup": med["all"] / med["labelled"],
            "tok_s_all": statistics.mean(tokens) / med["all"],
            "tok_s_labelled": statistics.mean(tokens) / med["labelled"], "max_loss_diff": max(diffs)}


def write(rows: list[dict]) -> None:
    path = ROOT / "bench" / "results.md"
    head = "## Loss at answer positions only (issue #25)"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    text = text.split(head)[0].rstrip() + "\n\n" if head in text else text.rstrip() + "\n\n"
    lines = [head, "", "`python bench/answer_loss.py --write` — LoRA (q_proj,v_proj, r 8) forward + backward on the "
             "conductivity preset's own sft batches, one thread, process CPU time, median over the batches; "
             "`all` = the model's own loss (every position through the lm_head), `labelled` = "
             "`clika.train.loss.causal_lm_loss` (lm_head only at positions that predict a label).", "",
             "| model | template | batch | tokens / labelled per batch | step all (s) | step labelled (s) | speedup "
             "| tokens/s all → labelled | max loss diff |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['template']} | {r['batch_size']} | {r['tokens_per_batch']:.0f} / "
                     f"{r['labelled_per_batch']:.0f} | {r['step_s_all']:.2f} | {r['step_s_labelled']:.2f} | "
                     f"**{r['speedup']:.2f}×** | {r['tok_s_all']:.0f} → {r['tok_s_labelled']:.0f} | "
                     f"{r['max_loss_diff']:.1e} |")
    path.write_text(text + "\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="smollm2_135m,gemma3_270m")
    ap.add_argument("--templates", default="plain,alpaca")
    ap.add_argument("--lang", default="de")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--batches", type=int, default=5)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    rows = [measure(m, a.lang, t, a.batch_size, a.batches) for m in a.models.split(",")
            for t in a.templates.split(",")]
    print(json.dumps(rows, indent=2))
    if a.write:
        write(rows)


if __name__ == "__main__":
    main()
