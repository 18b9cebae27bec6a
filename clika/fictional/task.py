"""The fictional stream as an evaluation task (Conductivity level): test QA per language and Translate(X).

`eval.py task=conductivity` and the training callback run this same task through `clika.scoring.api.run_tasks`, so a
number seen during training equals the number the evaluation task reports for the same checkpoint. Its
settings are one schema, `conf/fictional` (root or generated world, lang, scorers, gate, limit, seed, ...).

Two forms of question (`form`): "qa" asks the instruction records' question and scores the answer (below);
"cloze" asks in the pretraining corpus's own sentences, cut before the answer ("<city> is a city in" over the
continent names; Translate(X): "The English <name> is called in X" over X names), for pretrained models.

Two scorers, both reported, either one gating:
- ``mc``: multiple-choice log-likelihood. The context is the question rendered exactly as the training
  side renders an Alpaca record (``clika.data.templates.render_segments``, same template) followed by
  the reference answer up to the continent name (e.g. "... ### Response:\\nAstralyn Sands is located in
  the continent of"); the options are the continent names of that language (" Mythosia", ...), scored
  by `clika.scoring.loglik.ClozeScorer` (sum of log-probs / UTF-8 bytes). Translate(X) asks the training
  prompt with the English name as input; options are the X names of the same kind (all continents,
  or the gold city and #continents-1 seeded other cities), so every question has #continents options
  and chance is 1/#continents everywhere.
- ``generate``: greedy generation after the training prompt (`clika.scoring.generate.greedy`), correct when the
  answer part of the output contains the gold name (the paper's rule, `clika.scoring.judges.by_name`). Greedy decoding
  and the answer length are this project's choices: the release does not ship its fictional inference script.

By default ``generate`` gates and gives XRR (the release's rule: the fictional README judges an answer by the
continent in its tag) and ``mc`` is a diagnostic reported beside it (``xrr_mc``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Hashable, Iterable, Mapping, Sequence

from clika.util.errors import ClikaError
from clika.fictional.generated import generated_root
from clika.fictional.layout import FictionalItem, Record, fictional_root, load_fictional, load_translate
from clika.fictional.metrics import lang_table, scores_by_lang, summary
from clika.fictional.records import fact_cloze, name_cloze
from clika.fictional.release import check_release, validate_release
from clika.scoring.judges import answer_part
from clika.util.languages import LANGS, check_lang
from clika.scoring.loglik import ClozeScorer, GenerateScorer, Request, Result
from clika.scoring.api import RequestSet
from clika.data.templates import render_segments

SCORERS = ("mc", "generate")


class _NoSpecials:  # a tokenizer stand-in for rendering: alpaca / plain / llama2 only read the bos / eos strings
    bos_token = eos_token = ""
    chat_template = None


_NO_SPECIALS = _NoSpecials()
_SENTINEL = "\uE000"  # private-use character: marks where the response starts in a rendered template


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
              seed: int = 0, translate_limit: int | None = None) -> FictionalData:
    """Load test items of `langs` (English is always added) and Translate(X) of `translate_langs`.

    `limit` keeps a seeded, type-stratified subset of cities (the same cities in every language) and
    a seeded subset of `translate_limit` (default: `limit`) Translate records per X; the name pools always come
    from the full files.
    """
    root = fictional_root(root)
    langs = _ordered_unique(["en", *(check_lang(l) for l in langs)])
    translate_langs = _ordered_unique(check_lang(x, allow_en=False) for x in translate_langs)
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
    t_limit = limit if translate_limit is None else translate_limit
    for x in translate_langs:
        recs = load_translate(root, x)
        if t_limit is not None and t_limit < len(recs):
            idx = sorted(random.Random(f"{seed}/translate").sample(range(len(recs)), t_limit))
            recs = [recs[i] for i in idx]
        translate[x] = recs
    return FictionalData(root, items, translate, continents, cities, len(order), limit, seed)


def render_prompt(instruction: str, input: str = "", template: str = "alpaca", tokenizer=None) -> tuple[str, str]:
    """(prompt, lead): the training text before the response, and what the template puts before the
    answer inside the response segment ("" for alpaca, " " for llama2).

    Uses the training side's own renderer so a model is asked exactly as it was taught.
    """
    if tokenizer is None:
        tokenizer = _NO_SPECIALS
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


FORMS = ("qa", "cloze")


def build_probes(data: FictionalData, tokenizer=None, template: str = "alpaca", form: str = "qa") -> list[Probe]:
    """Every question of `data`: test items of each language, then Translate(X) records.

    form "qa": the training prompt of the QA records (rendered through `template`) and the reference answer up to
    the continent. form "cloze": the pretraining corpus's own sentences (`clika.fictional.records.fact_cloze`:
    "<city> is a city in", `name_cloze`: "The English <name> is called in X"), no template.
    """
    if form not in FORMS:
        raise ClikaError(f"fictional.form: unknown form {form!r}", fix=f"use one of {list(FORMS)}")
    probes = []
    cache: dict[tuple[str, str], tuple[str, str]] = {}

    def prompt_of(instr, inp):
        if (instr, inp) not in cache:
            cache[(instr, inp)] = render_prompt(instr, inp, template, tokenizer)
        return cache[(instr, inp)]

    for lang, items in data.items.items():
        names = data.continents[lang]
        for it in items:
            if form == "cloze":
                ctx, delim = fact_cloze(lang, it.city)
                prompt = ctx
            else:
                prompt, lead = prompt_of(it.question, "")
                ctx, delim = _split_cue(prompt, lead, _cue(it.answer, it.continent))
            probes.append(Probe(f"{lang}/{it.type}/{it.idx}", lang, str(it.type), it.idx, it.continent,
                                it.answer, prompt, ctx, tuple(delim + n for n in names),
                                names.index(it.continent)))
    for x, recs in data.translate.items():
        conts, cities = data.continents[x], data.cities[x]
        for r in recs:
            if form == "cloze":
                ctx, delim = name_cloze(x, r.input)
                prompt = ctx
            else:
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


def _ordered_langs(langs: Iterable[str]) -> list[str]:
    return _ordered_unique(check_lang(l) for l in langs)


class FictionalTask:
    """The fictional stream as a task. Arguments are the keys of `conf/fictional` (one schema for `eval.py
    task=conductivity` and the training callback):

    root: a fictional folder (official or generated); None generates `world` (`clika.fictional.generated`)
      once into the cache. lang: X, the language trained on (gets Translate(X), the gate and XRR); None: every
      non-English language of `langs` counts as trained. langs: languages scored (English always added);
      None: [en, lang], or all ten when lang is None. scorers / gate: which scorers run and which one gates.
      limit / seed: a seeded, type-stratified subset of cities (and of Translate records; translate_limit: of
      Translate records only). template: the
      training data.template the prompts are rendered with (must match training; form qa). form: qa (the
      training QA prompt) or cloze (the pretraining corpus's sentences). max_new_tokens: generation
      length (None: the longest reference answer + 8 tokens). allow_defects: False refuses a defective release.
    """

    name = "fictional"

    def __init__(self, root: str | None = None, lang: str | None = None, langs: Sequence[str] | None = None,
                 world: Mapping | None = None, scorers: Sequence[str] = ("generate", "mc"), gate: str | None = None,
                 threshold: float = 0.9, limit: int | None = None, seed: int = 1234, batch_size: int = 16,
                 max_new_tokens: int | None = None, template: str = "alpaca", allow_defects: bool = True,
                 cache_dir: str | None = None, form: str = "qa", translate_limit: int | None = None):
        self.scorers = list(scorers or SCORERS)
        for s in self.scorers:
            if s not in SCORERS:
                raise ClikaError(f"fictional.scorers: unknown scorer {s!r}", fix=f"use a subset of {list(SCORERS)}")
        self.gate = gate or self.scorers[0]
        if self.gate not in self.scorers:
            raise ClikaError(f"fictional.gate: {self.gate!r} is not among fictional.scorers {self.scorers}",
                             fix="add it to fictional.scorers or pick one of them")
        self.root = Path(root) if root else generated_root(world, cache_dir)
        self.lang = check_lang(lang, allow_en=False) if lang else None
        if langs is None:
            langs = ["en", self.lang] if self.lang else list(LANGS)
        self.langs = _ordered_langs(["en", *langs, *([self.lang] if self.lang else [])])
        self.trained = [self.lang] if self.lang else [l for l in self.langs if l != "en"]
        if form not in FORMS:
            raise ClikaError(f"fictional.form: unknown form {form!r}", fix=f"use one of {list(FORMS)}")
        self.threshold, self.batch_size, self.template, self.form = float(threshold), int(batch_size), template or "alpaca", form
        self.limit, self.seed, self.max_new_tokens = limit, int(seed), max_new_tokens
        # read now: a bad path or file fails before a model is loaded or training starts
        self.defects = check_release(self.root) if allow_defects else validate_release(self.root)
        self.data = load_data(self.root, self.langs, self.trained, limit=limit, seed=self.seed,
                              translate_limit=translate_limit)
        self._probes: tuple[object, list[Probe]] | None = None

    @classmethod
    def from_config(cls, cfg: Mapping) -> "FictionalTask":
        """From a `conf/fictional` mapping, where null means this class's default (the defaults live here only,
        as `Suite.from_dict` does for conf/clika)."""
        return cls(**{k: v for k, v in cfg.items() if v is not None})

    def probes(self, tokenizer) -> list[Probe]:
        if self._probes is None or self._probes[0] is not tokenizer:
            self._probes = (tokenizer, build_probes(self.data, tokenizer, self.template, self.form))
        return self._probes[1]

    def request_sets(self, tokenizer) -> list[RequestSet]:
        probes = self.probes(tokenizer)
        sets = []
        for s in self.scorers:
            if s == "mc":
                sets.append(RequestSet((self.name, s), ClozeScorer(self.batch_size, ""),
                                       [Request(p.uid, p.mc_context, "", list(p.options), p.label) for p in probes]))
            else:
                mnt = self.max_new_tokens or auto_max_new_tokens(tokenizer, probes)
                sets.append(RequestSet((self.name, s), GenerateScorer(self.batch_size, mnt),
                                       [Request(p.uid, p.prompt, "", [p.gold], 0) for p in probes]))
        return sets

    def rows(self, scorer: str, results: Sequence[Result]) -> list[dict]:
        """One row per probe: uid, lang, kind, idx, gold, pred (the chosen name / the answer part of the output),
        correct (+ the option scores for mc)."""
        out = []
        for p, r in zip(self._probes[1], results):
            row = {"uid": p.uid, "lang": p.lang, "kind": p.kind, "idx": p.idx, "gold": p.gold}
            if scorer == "mc":
                row.update(pred=p.options[r.pred].strip(), correct=r.correct, scores=[round(x, 6) for x in r.scores])
            else:
                row.update(pred=answer_part(r.output or ""), correct=r.correct)
            out.append(row)
        return out

    def metrics(self, results: Mapping[Hashable, list[Result]]) -> dict:
        """{"gate_scorer", "n_continents", "chance", "threshold", "trained", "rows": {scorer: rows},
        "scores": {scorer: {x: FictionalScores}}, "langs": {scorer: per-language table}, "summary": {scorer: flat
        numbers}}."""
        n = self.data.n_continents
        rows = {s: self.rows(s, results[(self.name, s)]) for s in self.scorers}
        scores = {s: scores_by_lang(rows[s], self.trained, threshold=self.threshold, n_continents=n)
                  for s in self.scorers}
        langs = {s: lang_table(rows[s], scores[s]) for s in self.scorers}
        return {"gate_scorer": self.gate, "n_continents": n, "chance": 1.0 / n, "threshold": self.threshold,
                "trained": self.trained, "rows": rows, "scores": scores, "langs": langs,
                "summary": {s: summary(langs[s], self.trained, 1.0 / n) for s in self.scorers}}

    def stream(self, metrics: Mapping) -> tuple[dict, dict]:
        """(dataset entry, stream summary) as the alignment curves log them: the gating scorer's numbers, and
        every other scorer's beside them with its name as suffix (acc_mc, xrr_mc, gate_passed_mc, ...)."""
        g = metrics["gate_scorer"]
        langs = {lang: dict(v) for lang, v in metrics["langs"][g].items()}
        summary = dict(metrics["summary"][g])
        for other in (s for s in self.scorers if s != g):
            for lang, v in metrics["langs"][other].items():
                langs.setdefault(lang, {}).update({f"{k}_{other}": v.get(k) for k in
                                                   ("acc", "acc_type0", "acc_type1", "xrr", "gate_passed")})
            summary.update({f"{k}_{other}": v for k, v in metrics["summary"][other].items() if k != "chance"})
        dataset = {"langs": langs, "scorer": g, "scorers": list(self.scorers), "chance": metrics["chance"],
                   "n_continents": metrics["n_continents"], "threshold": self.threshold, "trained": self.trained,
                   "limit": self.limit, "seed": self.seed, "root": str(self.root)}
        return dataset, summary
