"""Evaluation throughput (items/s) on the same model and the same items, four ways, in one process:

1. `letter`   — the project's LetterScorer, batched, few-shot prefix KV cache computed once per file.
2. `official` — the official CLiKA approach: one item at a time, `generate` of 2 new tokens with
                `num_beams=2`, scored by the first non-blank character (reimplemented here).
3. `lm_eval`  — lm-evaluation-harness, HF backend (`HFLM(pretrained=model, tokenizer=tok, batch_size)`)
                on a local `multiple_choice` task built in a temp dir: doc_to_text = the prompt,
                doc_to_choice = the letters, target_delimiter = the letter delimiter.
4. `bare`     — the physical limit: a bare batched forward over exactly the tokens of the full prompts,
                pre-tokenized, pre-padded, same batches (length-sorted per file), nothing else timed.
                `bare_full` returns all-position logits (what a forward does); `bare_last` runs the
                decoder and projects only each row's last position (the stricter bound, informational).

Checks: (1) and (3) give the same per-item letter log-probs (max |diff| <= 1e-4) and the same accuracy.

    python bench/eval_throughput.py --model tiny --items-per-file 10
    python bench/eval_throughput.py --model gemma3_270m --datasets x_copa,x_geo --langs en,zh --items-per-file 100
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

try:
    from bench import common
except ImportError:  # run as a script: python bench/eval_throughput.py
    import common  # type: ignore[no-redef]

import torch

ALL_DATASETS = ("x_copa", "x_csqa", "x_geo", "x_name")
ALL_LANGS = ("en", "zh", "de", "fr", "it", "ja", "pl", "ru", "ar", "he")


# ---------------------------------------------------------------- items
def load_requests(datasets, langs, items_per_file, tokenizer, seed: int = 1234):
    """{(dataset, lang): [Request]} — the suite's seeded subset (`items_per_file=None`: every item)."""
    from clika.scoring.suite import Suite, suite_requests

    suite = Suite(data_root=common.data_root(), datasets=list(datasets), langs=list(langs),
                  limit=items_per_file, seed=seed).validate()
    return suite_requests(suite, tokenizer)


def take(reqs_by_file: dict, n: int | None) -> dict:
    """The first `n` requests of each file (a fixed sub-subset for the slow official baseline)."""
    return {k: (v if n is None else v[:n]) for k, v in reqs_by_file.items()}


def n_items(reqs_by_file: dict) -> int:
    return sum(len(v) for v in reqs_by_file.values())


def pick_delimiter(tok, reqs_by_file, wanted: str = "auto") -> str:
    """`auto`: the lm-eval form " " when every " <letter>" is one token after its prompt, else "" (paper form)."""
    from clika.util.errors import ClikaError
    from clika.scoring.loglik import LetterScorer

    if wanted != "auto":
        return wanted
    scorer, seen = LetterScorer(delimiter=" ", progress=False), set()
    for reqs in reqs_by_file.values():
        for r in reqs:
            ids = tok(r.context)["input_ids"]
            if (r.letters, ids[-1]) in seen:
                continue
            seen.add((r.letters, ids[-1]))
            try:
                scorer.letter_ids(tok, r, ids)
            except ClikaError:
                return ""
    return " "


# ---------------------------------------------------------------- (1) the project's letter scorer
def run_letter(model, tok, reqs_by_file, batch_size, delimiter, device="cpu", reuse_prefix=True):
    from clika.scoring.loglik import LetterScorer

    scorer = LetterScorer(batch_size=batch_size, delimiter=delimiter, reuse_prefix=reuse_prefix, progress=False)
    out = {}
    with common.Timer(device) as t:
        for key, reqs in reqs_by_file.items():
            out[key] = scorer.score(model, tok, reqs)
    return t.seconds, out


# ---------------------------------------------------------------- (2) the official approach
def run_official(model, tok, reqs_by_file, device="cpu", max_new_tokens=2, num_beams=2):
    """One item at a time: generate(max_new_tokens=2, num_beams=2); correct iff first non-blank char == gold."""
    from clika.scoring.judges import first_letter as first_char_letter

    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    correct, total, answered = 0, 0, 0
    per_file = {}
    with common.Timer(device) as t:
        for key, reqs in reqs_by_file.items():
            c = 0
            for r in reqs:
                enc = tok(r.context, return_tensors="pt").to(device)
                with torch.no_grad():
                    gen = model.generate(**enc, max_new_tokens=max_new_tokens, num_beams=num_beams,
                                         do_sample=False, pad_token_id=pad)
                text = tok.decode(gen[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
                first = first_char_letter(text)
                answered += bool(first and first in r.letters)
                c += first == r.letters[r.label]
            per_file["/".join(key)] = c / max(1, len(reqs))
            correct += c
            total += len(reqs)
    return t.seconds, {"acc": correct / max(1, total), "answered": answered / max(1, total), "per_file": per_file}


# ---------------------------------------------------------------- (3) lm-evaluation-harness
TASK_YAML = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: context
doc_to_choice: choices
doc_to_target: label
target_delimiter: "{delim}"
metric_list:
  - metric: acc
"""


def run_lm_eval(model, tok, reqs_by_file, batch_size, delimiter, device="cpu"):
    """simple_evaluate on a local multiple_choice task holding every item; returns per-uid letter log-probs.

    Timed end to end (task building, dataset loading, requests, model) — what a user of the harness
    waits for — and separately the time spent inside HFLM.loglikelihood. Bootstrap of stderr is off.
    """
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    for name in ("lm-eval", "lm_eval", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)
    rows = [{"uid": f"{ds}/{lang}/{r.uid}", "context": r.context, "choices": list(r.letters), "label": r.label}
            for (ds, lang), reqs in reqs_by_file.items() for r in reqs]
    with tempfile.TemporaryDirectory(prefix="clika-bench-lmeval-") as tmp:
        data = Path(tmp) / "items.jsonl"
        data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        name = f"clika_bench_{int(time.time() * 1000)}"
        (Path(tmp) / f"{name}.yaml").write_text(TASK_YAML.format(name=name, data=data, delim=delimiter))
        with common.Timer(device) as t:
            lm = HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size, device=device)
            inner = {"seconds": 0.0}
            orig = lm.loglikelihood

            def timed(*a, **k):
                t0 = common.clock(device)
                try:
                    return orig(*a, **k)
                finally:
                    common.sync(device)
                    inner["seconds"] += common.clock(device) - t0

            lm.loglikelihood = timed
            tm = TaskManager(include_path=tmp, include_defaults=False)
            res = lm_eval.simple_evaluate(model=lm, tasks=[name], task_manager=tm, log_samples=True,
                                          bootstrap_iters=0, verbosity="ERROR")
    scores = {}
    for s in res["samples"][name]:
        lls = [float(x[0]) for x in (s.get("filtered_resps") or s["resps"])]
        if lls and isinstance(lls[0], list):  # some versions nest [[ll, greedy]]
            lls = [float(x[0]) for x in lls]
        scores[s["doc"]["uid"]] = lls
    acc = float(res["results"][name].get("acc,none", float("nan")))
    return t.seconds, {"wall_seconds": t.wall, "loglikelihood_seconds": inner["seconds"], "acc": acc, "scores": scores}


# ---------------------------------------------------------------- (4) the physical limit
def bare_batches(tok, reqs_by_file, batch_size, device="cpu"):
    """Pre-tokenized, right-padded tensors of the full prompts, batched as the scorer does (per file, longest first)."""
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    batches, n_tokens = [], 0
    for reqs in reqs_by_file.values():
        enc = [tok(r.context, add_special_tokens=True)["input_ids"] for r in reqs]
        n_tokens += sum(map(len, enc))
        order = sorted(range(len(enc)), key=lambda i: -len(enc[i]))
        for i in range(0, len(order), batch_size):
            rows = [enc[j] for j in order[i: i + batch_size]]
            width = max(map(len, rows))
            ids = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for k, r in enumerate(rows):
                ids[k, : len(r)] = torch.tensor(r)
                mask[k, : len(r)] = 1
            last = torch.tensor([len(r) - 1 for r in rows])
            batches.append((ids.to(device), mask.to(device), last.to(device)))
    return batches, n_tokens


def run_bare(model, batches, device="cpu", last_only=False):
    decoder = model.get_decoder() if last_only else None
    head = model.get_output_embeddings() if last_only else None
    with common.Timer(device) as t, torch.no_grad():
        for ids, mask, last in batches:
            if last_only:
                h = decoder(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
                head(h[torch.arange(len(last), device=h.device), last])
            else:
                model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    return t.seconds


# ---------------------------------------------------------------- checks
def compare(letter_out, lm_scores, reqs_by_file) -> dict:
    max_diff, n, agree, ours_correct, theirs_correct, missing = 0.0, 0, 0, 0, 0, 0
    for (ds, lang), results in letter_out.items():
        for res in results:
            theirs = lm_scores.get(f"{ds}/{lang}/{res.uid}")
            if theirs is None or len(theirs) != len(res.scores):
                missing += 1
                continue
            max_diff = max(max_diff, max(abs(a - b) for a, b in zip(res.scores, theirs)))
            tp = max(range(len(theirs)), key=theirs.__getitem__)
            agree += tp == res.pred
            ours_correct += res.correct
            theirs_correct += tp == res.label
            n += 1
    return {"items_compared": n, "missing": missing, "max_abs_logprob_diff": max_diff,
            "logprobs_match_1e-4": missing == 0 and max_diff <= 1e-4, "pred_agreement": agree / max(1, n),
            "acc_letter": ours_correct / max(1, n), "acc_lm_eval": theirs_correct / max(1, n),
            "acc_equal": ours_correct == theirs_correct and missing == 0}


# ---------------------------------------------------------------- driver
def bench_eval(model_name: str, datasets=ALL_DATASETS, langs=ALL_LANGS, items_per_file: int | None = 10,
               official_items_per_file: int | None = None, batch_size: int = 16, delimiter: str = "auto",
               device: str = "cpu", dtype: str = "float32",
               methods=("letter", "official", "lm_eval", "bare"), log=print) -> dict:
    """Every figure of one model's evaluation benchmark (items/s and ratios from this one run)."""
    t_load = time.perf_counter()
    model, tok = common.load(model_name, device=device, dtype=dtype)
    reqs = load_requests(datasets, langs, items_per_file, tok)
    n = n_items(reqs)
    delimiter = pick_delimiter(tok, reqs, delimiter)
    out: dict = {"model": model_name, "params": sum(p.numel() for p in model.parameters()), "device": device,
                 "dtype": dtype, "datasets": list(datasets), "langs": list(langs), "files": len(reqs),
                 "items_per_file": items_per_file, "items": n, "batch_size": batch_size,
                 "letter_form": f"Answer:{delimiter}<letter>", "clock": common.clock_name(device),
                 "threads": torch.get_num_threads(), "load_seconds": time.perf_counter() - t_load,
                 "methods": {}}
    log(f"[eval {model_name}] {n} items in {len(reqs)} files, batch {batch_size}, threads {torch.get_num_threads()}")

    def record(name, seconds, items, **extra):
        out["methods"][name] = {"seconds": seconds, "items": items, "items_per_s": items / seconds, **extra}
        log(f"[eval {model_name}] {name:<10} {items:>6} items {seconds:8.2f}s  {items / seconds:9.2f} items/s")

    # warm-up (allocator, first-call paths) on a few items, untimed
    from clika.scoring.loglik import LetterScorer
    first = next(iter(reqs.values()))[:2]
    LetterScorer(batch_size, delimiter, progress=False).score(model, tok, first)

    letter_out = None
    if "letter" in methods:
        secs, letter_out = run_letter(model, tok, reqs, batch_size, delimiter, device)
        tokens = sum(len(tok(r.context)["input_ids"]) for v in reqs.values() for r in v)
        correct = sum(r.correct for v in letter_out.values() for r in v)
        record("letter", secs, n, acc=correct / n, prompt_tokens=tokens)
    if "bare" in methods:
        batches, tokens = bare_batches(tok, reqs, batch_size, device)
        record("bare_full", run_bare(model, batches, device), n, prompt_tokens=tokens)
        try:
            record("bare_last", run_bare(model, batches, device, last_only=True), n, prompt_tokens=tokens)
        except Exception as e:  # architectures without get_decoder(): informational figure only
            log(f"[eval {model_name}] bare_last skipped: {e}")
        del batches
    if "lm_eval" in methods:
        secs, lm = run_lm_eval(model, tok, reqs, batch_size, delimiter, device)
        record("lm_eval", secs, n, acc=lm["acc"], loglikelihood_seconds=lm["loglikelihood_seconds"])
        if letter_out is not None:
            out["check_letter_vs_lm_eval"] = compare(letter_out, lm["scores"], reqs)
            log(f"[eval {model_name}] check vs lm-eval: {out['check_letter_vs_lm_eval']}")
    if "official" in methods:
        sub = take(reqs, official_items_per_file)
        secs, off = run_official(model, tok, sub, device)
        record("official", secs, n_items(sub), acc=off["acc"], answered=off["answered"],
               items_per_file=official_items_per_file or items_per_file)

    m = out["methods"]
    ratios, targets = {}, {}
    if "letter" in m:
        lv = m["letter"]["items_per_s"]
        for base, goal in (("official", 3.0), ("lm_eval", 2.0), ("bare_full", 1.5), ("bare_last", None)):
            if base in m:
                ratios[f"letter/{base}"] = lv / m[base]["items_per_s"]
                if goal is not None:
                    targets[f"letter/{base} >= {goal}"] = ratios[f"letter/{base}"] >= goal
    out["ratios"], out["targets"] = ratios, targets
    for k, v in ratios.items():
        log(f"[eval {model_name}] ratio {k:<20} {v:6.2f}x")
    out["peak_rss_mb"] = common.peak_rss_mb()
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--datasets", default=",".join(ALL_DATASETS))
    ap.add_argument("--langs", default=",".join(ALL_LANGS))
    ap.add_argument("--items-per-file", type=int, default=10, help="0 = every item")
    ap.add_argument("--official-items-per-file", type=int, default=0, help="0 = same items as the others")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--delimiter", default="auto",
                    help="letter form: ' ' (lm-eval form), '' (paper form) or auto (' ' when one token)")
    ap.add_argument("--methods", default="letter,official,lm_eval,bare")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--json", default=None, help="write the figures here")
    a = ap.parse_args(argv)
    common.set_threads(a.threads)
    res = bench_eval(a.model, a.datasets.split(","), a.langs.split(","), a.items_per_file or None,
                     a.official_items_per_file or None, a.batch_size, a.delimiter, a.device, a.dtype,
                     tuple(a.methods.split(",")))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2, default=str) + "\n")
    return res


if __name__ == "__main__":
    main()
