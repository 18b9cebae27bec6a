"""Scoring a model on the fictional stream (Conductivity level): test QA per language and Translate(X).

Pure on purpose (torch + transformers, no Lightning / Hydra): `eval.py task=conductivity` and the
training probe (`train/fictional_eval.py`) call the same functions, so a number seen during training
equals the number the evaluation task reports for the same checkpoint.

Two scorers, both reported, either one gating; by default ``generate`` gates and gives XRR (the
release's rule: the fictional README judges an answer by the continent in its tag) and ``mc`` is a
diagnostic reported beside it (``xrr_mc``):
- ``mc``: multiple-choice log-likelihood (this project's diagnostic). The context is the question rendered exactly as the training
  side renders an Alpaca record (``clika.templates.render_segments``, same template) followed by
  the reference answer up to the continent name (e.g. "... ### Response:\\nAstralyn Sands is located in
  the continent of"); the options are the continent names of that language (" Mythosia", ...), scored
  by `clika.scoring.ClozeScorer` (sum of log-probs / UTF-8 bytes). Translate(X) asks the training
  prompt with the English name as input; options are the X names of the same kind (all continents,
  or the gold city and #continents-1 seeded other cities), so every question has #continents options
  and chance is 1/#continents everywhere.
- ``generate``: greedy generation after the training prompt (`clika.generation.greedy`), correct when the
  output contains the gold name (the paper's rule, `clika.judges.contains`). Greedy decoding and the
  answer length are this project's choices: the release does not ship its fictional inference script. The output is cut at EOS and at the
  first blank line / "###" / "[INST]" so a model that runs on into an invented next turn is not
  credited for names it lists there.

Sharding: every rank scores `shard(probes, rank, world)` (padded to equal length, every question with
the same number of options) and `gather` returns every rank's rows; with world > 1 generation runs
exactly `max_new_tokens` steps per batch and prefix reuse is decided on the global prompt set, so every
rank runs the same number of forward passes (safe under ZeRO-3 / FSDP).
"""

from __future__ import annotations

import hashlib
import inspect
import os
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from clika.errors import ClikaError
from clika.fictional import (DIRECTIONS, City, Continent, FictionalItem, FictionalScores, Pred, Record,
                             World, _check_lang, answer_correct, fictional_root, fictional_scores,
                             load_fictional, load_translate, make_world, write_official_layout)
from clika.generation import greedy
from clika.languages import NON_EN
from clika.scoring import shares_prefix
from clika.suite import shard, unshard

SCORERS = ("mc", "generate")
_SENTINEL = "\uE000"  # private-use character: marks where the response starts in a rendered template
_STOPS = ("\n\n", "###", "[INST]")


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------

@dataclass
class FictionalData:
    """The (subset of) test items and Translate records to score, plus the name pools."""
    root: Path
    items: dict[str, list[FictionalItem]]  # lang -> test items (same cities in every language)
    translate: dict[str, list[Record]]  # x -> English -> X name translations
    continents: dict[str, list[str]]  # lang -> continent names, in the order of the EN test file
    cities: dict[str, list[str]]  # lang -> distinct city names of the full test file (X side of Translate)
    n_continents: int
    limit: int | None = None
    seed: int = 0


def _stratified(items: Sequence[FictionalItem], limit: int | None, seed: int) -> list[int]:
    """Seeded subset of item indices, half type 0 and half type 1 where possible (sorted)."""
    n = len(items)
    if limit is None or limit >= n:
        return list(range(n))
    if limit <= 0:
        raise ClikaError(f"fictional limit must be a positive integer or null, got {limit}",
                         fix="e.g. limit=40")
    rng = random.Random(seed)
    by_type = [[i for i, it in enumerate(items) if it.type == t] for t in (0, 1)]
    k1 = min(len(by_type[1]), limit // 2)
    k0 = min(len(by_type[0]), limit - k1)
    k1 = limit - k0
    return sorted(rng.sample(by_type[0], k0) + rng.sample(by_type[1], k1))


def _ordered_unique(seq: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(seq))


def load_data(root, langs: Sequence[str], translate_langs: Sequence[str] = (), *, limit: int | None = None,
              seed: int = 0) -> FictionalData:
    """Load test items of `langs` (English is always added) and Translate(X) of `translate_langs`.

    `limit` keeps a seeded, type-stratified subset of cities (the same cities in every language) and
    a seeded subset of `limit` Translate records per X; the name pools always come from the full files.
    """
    root = fictional_root(root)
    langs = _ordered_unique(["en", *(_check_lang(l) for l in langs)])
    translate_langs = _ordered_unique(_check_lang(x, allow_en=False) for x in translate_langs)
    full = {lang: load_fictional(root, lang) for lang in _ordered_unique([*langs, *translate_langs])}
    en = full["en"]
    for lang, items in full.items():
        if len(items) != len(en) or any(a.type != b.type for a, b in zip(items, en)):
            raise ClikaError(f"{root}: test{lang.upper()}.jsonl is not aligned with testEN.jsonl "
                             f"({len(items)} vs {len(en)} items or differing types)",
                             fix="regenerate the layout with write_official_layout")
    order = _ordered_unique(it.continent for it in en)
    continents, cities = {}, {}
    for lang, items in full.items():
        name_of = {}
        for e, it in zip(en, items):
            name_of.setdefault(e.continent, it.continent)
        continents[lang] = [name_of[k] for k in order]
        cities[lang] = _ordered_unique(it.city for it in items)
    keep = _stratified(en, limit, seed)
    items = {lang: [full[lang][i] for i in keep] for lang in langs}
    translate = {}
    for x in translate_langs:
        recs = load_translate(root, x)
        if limit is not None and limit < len(recs):
            idx = sorted(random.Random(f"{seed}/translate").sample(range(len(recs)), limit))
            recs = [recs[i] for i in idx]
        translate[x] = recs
    return FictionalData(root, items, translate, continents, cities, len(order), limit, seed)


def release_world(root, langs: Sequence[str]) -> World:
    """A `World` rebuilt from test files (official or generated), for `name_tokenization_report`."""
    root = fictional_root(root)
    langs = _ordered_unique(["en", *(_check_lang(l) for l in langs)])
    by_lang = {lang: load_fictional(root, lang) for lang in langs}
    en = by_lang["en"]
    order = _ordered_unique(it.continent for it in en)
    conts = []
    for k, name in enumerate(order):
        i = next(j for j, it in enumerate(en) if it.continent == name)
        conts.append(Continent(k, {lang: by_lang[lang][i].continent for lang in langs}))
    cities = tuple(City(i, order.index(e.continent), e.type, {lang: by_lang[lang][i].city for lang in langs})
                   for i, e in enumerate(en))
    return World(-1, "release", tuple(conts), cities)


def _generator_version() -> str:
    import clika.fictional as f
    import clika.fictional_names as fn

    src = inspect.getsource(f) + inspect.getsource(fn)
    return hashlib.sha256(src.encode()).hexdigest()[:12]


WORLD_KEYS = ("seed", "continents", "cities_per_continent", "name_style", "translate_directions")


def world_params(world: Mapping | None) -> dict:
    """Normalised generator parameters (defaults: the world of the embedded fictional_* data)."""
    w = dict(world or {})
    if "cities" in w and "cities_per_continent" not in w:
        w["cities_per_continent"] = w.pop("cities")
    unknown = sorted(set(w) - set(WORLD_KEYS))
    if unknown:
        raise ClikaError(f"fictional.world: unknown key(s) {unknown}", fix=f"use {list(WORLD_KEYS)}")
    out = {"seed": 0, "continents": 8, "cities_per_continent": 10, "name_style": "word",
           "translate_directions": list(DIRECTIONS)}
    out.update({k: v for k, v in w.items() if v is not None})
    out["translate_directions"] = list(out["translate_directions"])
    for k in ("seed", "continents", "cities_per_continent"):
        out[k] = int(out[k])
    return out


def generated_root(world: Mapping | None = None, cache_dir: str | Path | None = None) -> Path:
    """Write the world's official layout (all languages) once into the cache; return its folder.

    Keyed by the generator source and the parameters; written into a temp folder then renamed, so
    concurrent ranks or runs never see a half-written layout.
    """
    import json

    from clika.env import cache_root

    params = world_params(world)
    key = hashlib.sha256(json.dumps([_generator_version(), params], sort_keys=True).encode()).hexdigest()[:16]
    base = Path(cache_dir) if cache_dir is not None else cache_root() / "fictional"
    out = base / key
    if (out / "test" / "target" / "testEN.jsonl").is_file():
        return out
    base.mkdir(parents=True, exist_ok=True)
    w = make_world(params["seed"], params["continents"], params["cities_per_continent"], params["name_style"])
    tmp = Path(tempfile.mkdtemp(dir=base, prefix=f".{key}."))
    try:
        write_official_layout(w, tmp, NON_EN, params["translate_directions"], params["seed"])
        (tmp / "world.json").write_text(json.dumps(params, indent=1) + "\n", encoding="utf-8")
        try:
            os.replace(tmp, out)
        except OSError:  # another process finished first: use its folder
            if not (out / "test" / "target" / "testEN.jsonl").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


# ----------------------------------------------------------------------------------------------
# Prompts
# ----------------------------------------------------------------------------------------------

def render_prompt(instruction: str, input: str = "", template: str = "alpaca", tokenizer=None) -> tuple[str, str]:
    """(prompt, lead): the training text before the response, and what the template puts before the
    answer inside the response segment ("" for alpaca, " " for llama2).

    Uses the training side's own renderer so a model is asked exactly as it was taught.
    """
    from clika.templates import render_segments

    if tokenizer is None:
        class _NoSpecials:  # alpaca / plain / llama2 only read the bos / eos strings
            bos_token = eos_token = ""
            chat_template = None
        tokenizer = _NoSpecials()
    segs = render_segments({"instruction": instruction, "input": input, "output": _SENTINEL}, template, tokenizer)
    cut = next(i for i, (text, _) in enumerate(segs) if _SENTINEL in text)
    prompt = "".join(text for text, _ in segs[:cut])
    bos = getattr(tokenizer, "bos_token", None)
    if bos and prompt.startswith(bos) and _adds_bos(tokenizer):  # the scorers' tokenizer call adds it again
        prompt = prompt[len(bos):]
    return prompt, segs[cut][0].split(_SENTINEL)[0]


def _adds_bos(tokenizer) -> bool:
    ids = tokenizer("x")["input_ids"] if callable(tokenizer) else []
    return bool(ids) and ids[0] == getattr(tokenizer, "bos_token_id", None)


@dataclass(frozen=True)
class Probe:
    """One question: a test item (kind "0"/"1") or a Translate record (kind "translate")."""
    uid: str
    lang: str  # language of the question; X for Translate(X)
    kind: str
    idx: int  # line in its file
    gold: str  # continent name, or the X name of a Translate record
    reference: str  # reference answer text (tags removed)
    prompt: str  # training prompt: the generation context
    mc_context: str  # prompt + answer cue: the multiple-choice context
    options: tuple[str, ...] = field(default=())  # candidates, each with its leading delimiter
    label: int = 0


def _split_cue(prompt: str, lead: str, cue: str) -> tuple[str, str]:
    """Context and option delimiter: trailing whitespace of the cue moves into the options."""
    tail = lead + cue
    body = tail.rstrip()
    return prompt + body, tail[len(body):]


def _cue(answer: str, continent: str) -> str:
    pos = answer.find(continent)
    if pos < 0:
        pos = answer.casefold().find(continent.casefold())
    return answer[:pos] if pos > 0 else ""


def build_probes(data: FictionalData, tokenizer=None, template: str = "alpaca") -> list[Probe]:
    """Every question of `data`: test items of each language, then Translate(X) records."""
    probes = []
    cache: dict[tuple[str, str], tuple[str, str]] = {}

    def prompt_of(instr, inp):
        if (instr, inp) not in cache:
            cache[(instr, inp)] = render_prompt(instr, inp, template, tokenizer)
        return cache[(instr, inp)]

    for lang, items in data.items.items():
        names = data.continents[lang]
        for it in items:
            prompt, lead = prompt_of(it.question, "")
            ctx, delim = _split_cue(prompt, lead, _cue(it.answer, it.continent))
            probes.append(Probe(f"{lang}/{it.type}/{it.idx}", lang, str(it.type), it.idx, it.continent,
                                it.answer, prompt, ctx, tuple(delim + n for n in names),
                                names.index(it.continent)))
    for x, recs in data.translate.items():
        conts, cities = data.continents[x], data.cities[x]
        for r in recs:
            prompt, lead = prompt_of(r.prompt, r.input)
            ctx, delim = _split_cue(prompt, lead, "")
            if r.answer in conts:
                names = list(conts)
            else:  # gold + (#continents - 1) other cities, seeded per record, in a seeded order
                rng = random.Random(f"{data.seed}/{x}/{r.idx}")
                pool = sorted(set(cities) - {r.answer})
                names = [r.answer, *rng.sample(pool, min(len(pool), data.n_continents - 1))]
                rng.shuffle(names)
            probes.append(Probe(f"translate/{x}/{r.idx}", x, "translate", r.idx, r.answer, r.answer, prompt,
                                ctx, tuple(delim + n for n in names), names.index(r.answer)))
    return probes


def auto_max_new_tokens(tokenizer, probes: Sequence[Probe], margin: int = 8) -> int:
    """Tokens of the longest reference answer plus a margin (computed on all probes, not a shard)."""
    refs = {p.reference for p in probes}
    longest = max((len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in refs), default=0)
    return longest + margin


# ----------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------

def clean_output(text: str) -> str:
    """The answer part of a generated text: up to the first blank line, '###' or '[INST]'."""
    cut = min((i for i in (text.find(s) for s in _STOPS) if i >= 0), default=len(text))
    return text[:cut].strip()


def generate(model, tokenizer, contexts: Sequence[str], *, batch_size: int = 16, max_new_tokens: int = 48,
             lockstep: bool = False) -> list[str]:
    """Greedy continuations (decoded, cut at EOS, not cleaned): the project's one generation loop,
    `clika.generation.greedy`."""
    return greedy(model, tokenizer, contexts, batch_size=batch_size, max_new_tokens=max_new_tokens, lockstep=lockstep)


def score_probes(model, tokenizer, probes: Sequence[Probe], scorer: str = "mc", *, batch_size: int = 16,
                 max_new_tokens: int | None = None, reuse_prefix: bool = True, lockstep: bool = False) -> list[dict]:
    """One row per probe, in order: uid, lang, kind, idx, gold, pred, correct (+ scores for mc)."""
    if scorer not in SCORERS:
        raise ClikaError(f"unknown fictional scorer {scorer!r}", fix=f"use one of {SCORERS}")
    if not probes:
        return []
    base = lambda p: {"uid": p.uid, "lang": p.lang, "kind": p.kind, "idx": p.idx, "gold": p.gold}  # noqa: E731
    if scorer == "mc":
        from clika.scoring import ClozeScorer, Request

        reqs = [Request(p.uid, p.mc_context, "", list(p.options), p.label) for p in probes]
        res = ClozeScorer(batch_size, "", reuse_prefix).score(model, tokenizer, reqs)
        return [{**base(p), "pred": p.options[r.pred].strip(), "correct": r.pred == p.label,
                 "scores": [round(s, 6) for s in r.scores]} for p, r in zip(probes, res)]
    mnt = max_new_tokens or auto_max_new_tokens(tokenizer, probes)
    texts = generate(model, tokenizer, [p.prompt for p in probes], batch_size=batch_size,
                     max_new_tokens=mnt, lockstep=lockstep)
    rows = []
    for p, t in zip(probes, texts):
        ans = clean_output(t)
        rows.append({**base(p), "pred": ans, "correct": answer_correct(ans, p.gold)})
    return rows


def score_fictional(model, tokenizer, probes: Sequence[Probe], scorers: Sequence[str] = ("mc",), *,
                    batch_size: int = 16, max_new_tokens: int | None = None, rank: int = 0, world: int = 1,
                    gather: Callable[[object], list] | None = None) -> dict[str, list[dict]]:
    """{scorer: rows in probe order}; with world > 1 each rank scores its padded shard and `gather`
    (the only collective) returns every rank's rows."""
    scorers = list(scorers)
    for s in scorers:
        if s not in SCORERS:
            raise ClikaError(f"unknown fictional scorer {s!r}", fix=f"use a subset of {SCORERS}")
    if world > 1 and gather is None:
        raise ValueError("score_fictional with world > 1 needs a gather function")
    lockstep = world > 1
    reuse = shares_prefix(tokenizer, [p.mc_context for p in probes]) if lockstep else True
    if "generate" in scorers and max_new_tokens is None:
        max_new_tokens = auto_max_new_tokens(tokenizer, probes)
    mine = shard(probes, rank, world)
    local = {s: score_probes(model, tokenizer, mine, s, batch_size=batch_size, max_new_tokens=max_new_tokens,
                             reuse_prefix=reuse, lockstep=lockstep) for s in scorers}
    if world <= 1:
        return local
    parts = gather(local)
    return {s: unshard([p[s] for p in parts], len(probes)) for s in scorers}


# ----------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------

def preds_of(rows: Iterable[Mapping]) -> list[Pred]:
    return [Pred(r["lang"], r["kind"], bool(r["correct"])) for r in rows]


def scores_by_lang(rows: Sequence[Mapping], trained: Sequence[str], *, threshold: float = 0.9,
                   n_continents: int = 20) -> dict[str, FictionalScores]:
    """`fictional_scores` for each trained language X, on the English and X rows."""
    preds = preds_of(rows)
    out = {}
    for x in trained:
        mine = [p for p in preds if p.lang in ("en", x)]
        out[x] = fictional_scores(mine, x, threshold=threshold, n_continents=n_continents)
    return out


def lang_table(rows: Sequence[Mapping], scores: Mapping[str, FictionalScores]) -> dict[str, dict]:
    """Per language: acc (types 0 and 1), acc_type0/1, acc_translate, n, and for trained languages the
    gate and the (gated) ratios."""
    table: dict[str, dict] = {}
    for lang in _ordered_unique(r["lang"] for r in rows):
        mine = [r for r in rows if r["lang"] == lang]
        qa = [r for r in mine if r["kind"] in ("0", "1")]

        def acc(rs):
            return sum(bool(r["correct"]) for r in rs) / len(rs) if rs else None

        entry = {"acc": acc(qa), "acc_type0": acc([r for r in qa if r["kind"] == "0"]),
                 "acc_type1": acc([r for r in qa if r["kind"] == "1"]),
                 "acc_translate": acc([r for r in mine if r["kind"] == "translate"]), "n": len(qa),
                 "xrr": None, "xrr_corrected": None, "x_ratio": None, "gate_passed": None}
        s = scores.get(lang)
        if s is not None:
            entry.update(xrr=s.xrr, xrr_corrected=s.xrr_corrected, x_ratio=s.x_ratio, gate_passed=not s.gated,
                         gate=dict(s.gate), reasons=dict(s.reasons))
        table[lang] = entry
    return table


def _mean(vals):
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else None


def summary(table: Mapping[str, Mapping], trained: Sequence[str], chance: float) -> dict:
    """Flat numbers for stream-level logging: means over the trained languages (ratios over those
    that passed the gate; None when none did), gate_passed (1.0 when every trained language passed)."""
    tr = [table[x] for x in trained if x in table]
    en = table.get("en", {})
    passed = [bool(t.get("gate_passed")) for t in tr]
    return {"xrr": _mean(t["xrr"] for t in tr), "xrr_corrected": _mean(t["xrr_corrected"] for t in tr),
            "x_ratio": _mean(t["x_ratio"] for t in tr),
            "gate_passed": float(bool(passed) and all(passed)),
            "gates_passed": (sum(passed) / len(passed)) if passed else None,
            "chance": chance, "acc_en_type0": en.get("acc_type0"), "acc_en_type1": en.get("acc_type1"),
            "acc_x_type0": _mean(t["acc_type0"] for t in tr), "acc_x_type1": _mean(t["acc_type1"] for t in tr),
            "acc_translate": _mean(t["acc_translate"] for t in tr)}


def evaluate(model, tokenizer, data: FictionalData, trained: Sequence[str], *, scorers: Sequence[str] = ("mc",),
             gate: str | None = None, threshold: float = 0.9, batch_size: int = 16,
             max_new_tokens: int | None = None, template: str = "alpaca", probes: Sequence[Probe] | None = None,
             rank: int = 0, world: int = 1, gather: Callable[[object], list] | None = None) -> dict:
    """Score `data` with each scorer and compute the gate and XRR per trained language.

    Returns {"gate_scorer", "n_continents", "chance", "threshold", "trained",
    "rows": {scorer: rows}, "scores": {scorer: {x: FictionalScores}}, "langs": {scorer: lang_table},
    "summary": {scorer: summary}}; `gate` (default: the first scorer) names the one that gates.
    """
    scorers = list(scorers)
    gate = gate or scorers[0]
    if gate not in scorers:
        raise ClikaError(f"gate scorer {gate!r} is not among the scorers {scorers}",
                         fix="add it to the scorers or pick one of them")
    trained = [_check_lang(x, allow_en=False) for x in trained]
    probes = list(probes) if probes is not None else build_probes(data, tokenizer, template)
    rows = score_fictional(model, tokenizer, probes, scorers, batch_size=batch_size, max_new_tokens=max_new_tokens,
                           rank=rank, world=world, gather=gather)
    chance = 1.0 / data.n_continents
    scores = {s: scores_by_lang(rows[s], trained, threshold=threshold, n_continents=data.n_continents)
              for s in scorers}
    langs = {s: lang_table(rows[s], scores[s]) for s in scorers}
    return {"gate_scorer": gate, "n_continents": data.n_continents, "chance": chance, "threshold": threshold,
            "trained": trained, "rows": rows, "scores": scores, "langs": langs,
            "summary": {s: summary(langs[s], trained, chance) for s in scorers}}


# ----------------------------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------------------------

def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def _num(v) -> str:
    return "–" if v is None else f"{v:.3f}"


def tokenization_markdown(reports: Mapping[str, Mapping]) -> list[str]:
    lines = ["| lang | names | tokens / name | single-token names | first token shared with EN |",
             "|---|---:|---:|---:|---:|"]
    for lang, r in reports.items():
        lines.append(f"| {lang} | {r['names']} | {r['tokens_per_name']:.2f} | {_pct(r['single_token'])}% | "
                     f"{_pct(r['first_token_shared_with_en'])}% |")
    return lines


def markdown(report: Mapping) -> str:
    """conductivity.md from the conductivity.json object written by `eval.py task=conductivity`."""
    x, gate = report["x"], report["gate_scorer"]
    lines = [f"# Conductivity of `{report.get('model', '?')}` trained on {x.upper()}", "",
             f"data `{report['root']}`: {report['n_continents']} continents (chance {_pct(report['chance'])}%), "
             f"subset {report.get('limit') or 'all'} (seed {report.get('seed')}), template `{report.get('template')}`, "
             f"gate threshold {report['threshold']}, gating scorer `{gate}`. Accuracies in %.", ""]
    if report.get("defects"):
        lines += ["**Release defects** (scored anyway; a run on a defective release may be unable to pass the gate):", ""]
        lines += [f"- {d}" for d in report["defects"]] + [""]
    if report.get("other_defects"):
        lines += [f"({report['other_defects']} more defect(s) of the release concern other languages: see "
                  "`eval.py task=make_fictional` / `clika.fictional.check_release`.)", ""]
    for scorer, res in report["results"].items():
        s = res["scores"][x]
        lines += [f"## Scorer `{scorer}`" + (" (gates)" if scorer == gate else " (reported, does not gate)"), "",
                  "| lang | acc | type 0 | type 1 | translate | n |", "|---|---:|---:|---:|---:|---:|"]
        for lang, v in res["langs"].items():
            lines.append(f"| {lang} | {_pct(v['acc'])} | {_pct(v['acc_type0'])} | {_pct(v['acc_type1'])} | "
                         f"{_pct(v['acc_translate'])} | {v['n']} |")
        checks = ", ".join(f"{k} {'pass' if ok else 'FAIL'}" for k, ok in s["gate"].items())
        lines += ["", f"Gate (>= {s['threshold']}): **{'FAILED' if s['gated'] else 'passed'}** ({checks}).", ""]
        if s["gated"]:
            lines += [f"XRR not reported: {s['reasons'].get('xrr', 'gated')}.", ""]
        else:
            lines += ["| metric | value | chance |", "|---|---:|---:|",
                      f"| XRR = acc({x} type 1) / acc(en type 1) | {_num(s['xrr'])} | {_num(s['chance'])} |",
                      f"| chance-corrected XRR | {_num(s['xrr_corrected'])} | 0 |",
                      f"| acc({x} type 1) / acc({x} type 0) | {_num(s['x_ratio'])} | |", ""]
            lines += [f"- {k}: {v}" for k, v in s["reasons"].items()]
    if report.get("tokenization"):
        lines += ["## Name tokenization", "",
                  "Conductivity depends on how names tokenize: names split into characters shared by many "
                  "other names conduct near chance, names with tokens of their own conduct well.", ""]
        lines += tokenization_markdown(report["tokenization"]) + [""]
    return "\n".join(lines) + "\n"
