"""The evaluation suite: which CLiKA datasets to ask in which languages, how to prompt and score them, and
the metrics over them.

Each dataset is a task (`DatasetTask`: its items in every language, one request set per language); the
suite's metrics add the stream and overall means. Scoring goes through `clika.scoring.api.run_tasks`, used
identically by `eval.py` and by the training callback, so a number shown during training equals the number
`eval.py` reports for the same checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable, Mapping, Sequence

from clika.metrics import circular as circ
from clika.metrics.bias import answer_identity_metrics, position_bias
from clika.data import registry as facts
from clika.data.datasets import REGISTRY, DatasetInfo, Item, jsonl_dataset, load_parallel, subset_indices
from clika.util.errors import ClikaError
from clika.util.languages import LANGS
from clika.metrics.alignment import aggregate, dataset_metrics
from clika.metrics.pride import pride_metrics
from clika.data.prompts import STYLES, render
from clika.scoring.release import ProtocolSpec
from clika.scoring.loglik import PROTOCOLS, Request, Result, Scorer, make_scorer
from clika.scoring.api import Gather, RequestSet, run_tasks



@dataclass
class Suite:
    """The suite's settings; these defaults are the only ones (conf/clika/default.yaml lists the keys with null =
    this default, so `from_dict` drops None). Dataset facts are the registry's (clika.data.registry): the
    default datasets and streams, and the RA references, which `reference` only overrides or adds to."""

    data_root: str | None = None
    datasets: Sequence[str] = facts.MULTIPLE_CHOICE
    langs: Sequence[str] = LANGS
    streams: Mapping[str, Sequence[str]] = field(default_factory=facts.streams)
    custom: Mapping[str, str] = field(default_factory=dict)
    prompt_style: str = "paper"
    protocol: str = "letter"  # letter | cloze (this project's) | paper (the release's; clika.scoring.loglik)
    model_protocol: Mapping | None = None  # the model preset's `protocol` block (used by protocol=paper)
    spec: ProtocolSpec | None = field(default=None, repr=False)  # validated model_protocol (protocol=paper)
    letter_delimiter: str = ""
    limit: int | None = None
    seed: int = 1234
    batch_size: int = 16
    reference: Mapping[str, float] = field(default_factory=dict)  # overrides / additions to the registry's
    bootstrap: int = 1000
    circular: bool = False  # every cyclic rotation of the options (clika.circular)

    @property
    def references(self) -> dict[str, float]:
        """RA reference accuracy per dataset: the registry's, then `reference` (custom datasets need one)."""
        return {**facts.references(), **self.reference}

    @property
    def registry(self) -> dict[str, DatasetInfo]:
        """The release's datasets plus the user's own (clika.custom: name -> JSONL dir)."""
        return {**REGISTRY, **{name: jsonl_dataset(name, path) for name, path in self.custom.items()}}

    def validate(self) -> "Suite":
        registry = self.registry
        for ds in self.datasets:
            if ds not in registry:
                raise ClikaError(f"clika.datasets: unknown dataset '{ds}'",
                                 fix=f"choose from {sorted(registry)} or add it under clika.custom")
            if ds not in self.references:
                raise ClikaError(f"clika.reference has no accuracy for '{ds}'",
                                 fix=f"add clika.reference.{ds}=<reference accuracy in (chance, 1]>")
        for lang in self.langs:
            if lang not in LANGS:
                raise ClikaError(f"clika.langs: unknown language '{lang}'", fix=f"choose from {list(LANGS)}")
        if self.prompt_style not in STYLES:
            raise ClikaError(f"clika.prompt_style: unknown style '{self.prompt_style}'", fix=f"choose from {STYLES}")
        if self.protocol not in PROTOCOLS:
            make_scorer(self.protocol)  # one-line error naming the key (and `generate` -> `paper`)
        if self.protocol == "paper":
            if self.prompt_style != "paper":
                raise ClikaError(f"clika.protocol=paper fixes the prompt, but clika.prompt_style={self.prompt_style}",
                                 fix="set clika.prompt_style=paper (or use clika.protocol=letter)")
            self.spec = ProtocolSpec.from_dict(self.model_protocol)
        if self.limit is not None and self.limit <= 0:
            raise ClikaError("clika.limit must be a positive integer or null", fix="e.g. clika.limit=50")
        circ.check_rotatable(self.circular, self.protocol, "clika.protocol")
        return self

    @classmethod
    def from_dict(cls, d: Mapping) -> "Suite":
        """A suite from a `clika` config; a None value is the field's default (conf/clika/default.yaml's nulls)."""
        fields_ = cls.__dataclass_fields__
        unknown = [k for k in d if k not in fields_ or k == "spec"]
        if unknown:  # renamed keys get their own message first (clika.app.checks.renames)
            raise ClikaError(f"clika.{unknown[0]}: unknown key",
                             fix=f"use one of {sorted(k for k in fields_ if k != 'spec')}")
        known = {k: v for k, v in dict(d).items() if v is not None}
        for key in ("datasets", "langs"):
            if key in known:
                known[key] = list(known[key])
        return cls(**known).validate()


def load_suite_items(suite: Suite) -> dict[str, dict[str, list[Item]]]:
    """{dataset: {lang: items}} — parallel across languages, the same seeded subset in each."""
    out = {}
    langs = list(suite.langs)
    if "en" in langs:  # load en first so parallelism errors name the other language's file
        langs = ["en"] + [l for l in langs if l != "en"]
    registry = suite.registry
    for ds in suite.datasets:
        by_lang = load_parallel(suite.data_root, ds, langs, registry)
        keep = subset_indices(len(next(iter(by_lang.values()))), suite.limit, suite.seed)
        out[ds] = {lang: [items[i] for i in keep] for lang, items in by_lang.items()}
    return out


@dataclass
class DatasetTask:
    """One multiple-choice dataset in several languages: a request set per language, the CLiKA metrics
    (accuracy, RA, en-CO, the CO matrix) and the position-bias report over them. `circular`: each language's
    set holds every rotation of every item (clika.circular); the plain metrics are rotation 0's."""

    name: str
    items: Mapping[str, list[Item]]  # lang -> items, parallel across languages
    template: str  # prompt family (clika.data.prompts)
    prompt_style: str
    scorer: Scorer
    ref: float
    bootstrap: int = 1000
    seed: int = 1234
    circular: bool = False

    def presented(self) -> dict[str, list[Item]]:
        """The items as asked: as published, or (circular) every rotation of each, item-major."""
        return {lang: circ.rotations(its) if self.circular else list(its) for lang, its in self.items.items()}

    def prompts(self, tokenizer=None) -> dict[str, list[str]]:
        return {lang: [render(it, self.template, self.prompt_style, tokenizer) for it in its]
                for lang, its in self.presented().items()}

    def request_sets(self, tokenizer) -> list[RequestSet]:
        presented, prompts = self.presented(), self.prompts(tokenizer)
        return [RequestSet((self.name, lang), self.scorer,
                           [Request(it.uid, p, it.letters, it.options, it.label) for it, p in zip(its, prompts[lang])])
                for lang, its in presented.items()]

    def metrics(self, results: Mapping[Hashable, list[Result]]) -> dict:
        res = {lang: results[(self.name, lang)] for lang in self.items}
        groups = {lang: circ.group(res[lang], its) for lang, its in self.items.items()} if self.circular else None
        plain = {lang: [g[0] for g in groups[lang]] for lang in groups} if groups else res
        n_options = len(next(iter(self.items.values()))[0].options)
        letters = max((it.letters for its in self.items.values() for it in its), key=len)
        out = dataset_metrics({lang: [r.correct for r in rs] for lang, rs in plain.items()}, n_options, self.ref,
                              self.bootstrap, self.seed)
        for lang, rs in res.items():  # every prompt shown (all rotations when circular)
            out["langs"][lang]["bias"] = position_bias([r.pred for r in rs], [r.label for r in rs], letters)
        out["circular"] = self.circular
        if groups:
            extra = circ.circular_metrics(groups, n_options, self.ref)
            answer = answer_identity_metrics({lang: circ.chosen_options(g) for lang, g in groups.items()})
            pride = pride_metrics(groups, letters, n_options, self.ref)
            for lang in out["langs"]:
                out["langs"][lang].update(extra["langs"][lang], **answer.get(lang, {}), **pride.get(lang, {}))
            out["co_matrix_circ"] = extra["co_matrix_circ"]
        return out


def suite_tasks(suite: Suite, items: Mapping[str, Mapping[str, list[Item]]]) -> list[DatasetTask]:
    scorer = make_scorer(suite.protocol, suite.batch_size, suite.letter_delimiter, spec=suite.spec)
    registry = suite.registry
    return [DatasetTask(ds, {lang: by_lang[lang] for lang in suite.langs if lang in by_lang},
                        registry[ds].template, suite.prompt_style, scorer, suite.references[ds], suite.bootstrap,
                        suite.seed, suite.circular)
            for ds, by_lang in items.items()]


def suite_requests(suite: Suite, tokenizer=None, items: Mapping | None = None) -> dict[tuple[str, str], list[Request]]:
    """{(dataset, lang): requests} of the suite's tasks, as `run_tasks` would score them (for benches and tests)."""
    items = items if items is not None else load_suite_items(suite)
    return {s.key: s.requests for t in suite_tasks(suite, items) for s in t.request_sets(tokenizer)}


def suite_metrics(suite: Suite, per_dataset: Mapping[str, dict]) -> dict:
    return {"datasets": dict(per_dataset), "summary": aggregate(per_dataset, suite.streams),
            "protocol": suite.protocol, "letter_form": f"Answer:{suite.letter_delimiter}<letter>",
            **({"release_protocol": suite.spec.to_dict()} if suite.protocol == "paper" else {}),
            "prompt_style": suite.prompt_style, "limit": suite.limit, "seed": suite.seed, "circular": suite.circular}


def run_suite(model, tokenizer, suite: Suite, rank: int = 0, world: int = 1, gather: Gather | None = None,
              items: dict | None = None, progress: bool = True,
              journal=None, lockstep_ranks: bool = True,
              should_stop=None) -> tuple[dict, dict[tuple[str, str], list[Result]]]:
    """Score the suite; (metrics, per-item results keyed by (dataset, lang)), computed on every rank.
    `journal`: resume an interrupted evaluation (clika.scoring.journal); `lockstep_ranks`, `should_stop`
    (clika.scoring.api.score_sets)."""
    items = items if items is not None else load_suite_items(suite)
    outs = run_tasks(model, tokenizer, suite_tasks(suite, items), rank, world, gather, progress, journal,
                     lockstep_ranks, should_stop=should_stop)
    results = {key: res for out in outs.values() for key, res in out.results.items()}
    return suite_metrics(suite, {name: out.metrics for name, out in outs.items()}), results
