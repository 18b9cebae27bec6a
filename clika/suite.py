"""The evaluation suite: which items to ask, how to prompt and score them, and the metrics over them.

Used identically by `eval.py` and by the training callback, so a number shown during training equals
the number `eval.py` reports for the same checkpoint. Sharding across ranks is explicit: each rank
scores `shard(requests, rank, world)` (padded to equal length so collective ranks stay in lockstep) and
a caller-supplied `gather` returns every rank's results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from clika.datasets import REGISTRY, Item, load_parallel, register_jsonl_dataset, subset_indices
from clika.errors import ClikaError
from clika.languages import LANGS
from clika.metrics import aggregate, dataset_metrics
from clika.prompts import STYLES, render
from clika.protocol import ProtocolSpec
from clika.scoring import PROTOCOLS, Request, Result, make_scorer, shares_prefix

DEFAULT_REF = {"x_csqa": 0.746, "x_copa": 0.964, "x_name": 0.922, "x_geo": 0.970}


@dataclass
class Suite:
    data_root: str | None = None
    datasets: Sequence[str] = ("x_copa", "x_csqa", "x_geo", "x_name")
    langs: Sequence[str] = LANGS
    streams: Mapping[str, Sequence[str]] = field(
        default_factory=lambda: {"basic": ["x_copa", "x_csqa"], "factual": ["x_geo", "x_name"]})
    custom: Mapping[str, str] = field(default_factory=dict)
    prompt_style: str = "paper"
    protocol: str = "letter"  # letter | cloze (this project's) | paper (the release's; clika.scoring)
    model_protocol: Mapping | None = None  # the model preset's `protocol` block (used by protocol=paper)
    spec: ProtocolSpec | None = field(default=None, repr=False)  # validated model_protocol (protocol=paper)
    letter_delimiter: str = ""
    limit: int | None = None
    seed: int = 1234
    batch_size: int = 16
    reference: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_REF))
    bootstrap: int = 1000

    def validate(self) -> "Suite":
        for name, path in self.custom.items():
            register_jsonl_dataset(name, path)
        for ds in self.datasets:
            if ds not in REGISTRY:
                raise ClikaError(f"clika.datasets: unknown dataset '{ds}'",
                                 fix=f"choose from {sorted(REGISTRY)} or add it under clika.custom")
            if ds not in self.reference:
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
        return self

    @classmethod
    def from_dict(cls, d: Mapping) -> "Suite":
        if "scorer" in d:
            raise ClikaError("clika.scorer was renamed clika.protocol", fix="set clika.protocol=letter|cloze|paper")
        known = {k: v for k, v in dict(d).items() if k in cls.__dataclass_fields__}
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
    for ds in suite.datasets:
        by_lang = load_parallel(suite.data_root, ds, langs)
        keep = subset_indices(len(next(iter(by_lang.values()))), suite.limit, suite.seed)
        out[ds] = {lang: [items[i] for i in keep] for lang, items in by_lang.items()}
    return out


def build_requests(items: dict[str, dict[str, list[Item]]], suite: Suite, tokenizer=None
                   ) -> dict[tuple[str, str], list[Request]]:
    return {(ds, lang): [Request(it.uid, render(it, REGISTRY[ds].template, suite.prompt_style, tokenizer),
                                 it.letters, it.options, it.label) for it in its]
            for ds, by_lang in items.items() for lang, its in by_lang.items()}


def shard(seq: Sequence, rank: int, world: int) -> list:
    """Strided shard padded (by repeating the last element) so every rank gets the same count."""
    if world <= 1:
        return list(seq)
    per = -(-len(seq) // world)
    part = list(seq[rank::world])
    return part + [seq[-1]] * (per - len(part)) if seq else part


def unshard(parts: Sequence[Sequence], n: int) -> list:
    """Inverse of `shard`: interleave every rank's results and drop the padding."""
    world = len(parts)
    out = [None] * n
    for r, part in enumerate(parts):
        for k, res in enumerate(part):
            i = r + k * world
            if i < n:
                out[i] = res
    return out


def _scorer_for(scorer, tokenizer, requests: Sequence[Request], world: int):
    """Under several ranks every rank must run the same number of forward passes (ZeRO-3 gathers weights
    in each one): the shared-prefix forward is done by all ranks or by none, decided on the whole file
    rather than on each rank's shard (a shard of prompts without BOS may share no prefix)."""
    if world <= 1 or not hasattr(scorer, "reuse_prefix"):
        return scorer
    from dataclasses import replace

    extra = {"lockstep": True} if hasattr(scorer, "lockstep") else {}
    return replace(scorer, reuse_prefix=scorer.reuse_prefix and shares_prefix(tokenizer, [r.context for r in requests]),
                   **extra)


def score_suite(model, tokenizer, suite: Suite, requests: dict[tuple[str, str], list[Request]],
                rank: int = 0, world: int = 1,
                gather: Callable[[object], list] | None = None) -> dict[tuple[str, str], list[Result]]:
    scorer = make_scorer(suite.protocol, suite.batch_size, suite.letter_delimiter, spec=suite.spec)
    local = {key: _scorer_for(scorer, tokenizer, reqs, world).score(model, tokenizer, shard(reqs, rank, world))
             for key, reqs in requests.items()}
    if world <= 1:
        return local
    if gather is None:
        raise ValueError("score_suite with world > 1 needs a gather function")
    parts = gather(local)
    return {key: unshard([p[key] for p in parts], len(reqs)) for key, reqs in requests.items()}


def compute_metrics(results: dict[tuple[str, str], list[Result]], suite: Suite,
                    n_options: Mapping[str, int]) -> dict:
    per_dataset = {}
    for ds in suite.datasets:
        correct = {lang: [r.correct for r in results[(ds, lang)]] for lang in suite.langs if (ds, lang) in results}
        per_dataset[ds] = dataset_metrics(correct, n_options[ds], suite.reference[ds], suite.bootstrap, suite.seed)
    return {"datasets": per_dataset, "summary": aggregate(per_dataset, suite.streams),
            "protocol": suite.protocol, "letter_form": f"Answer:{suite.letter_delimiter}<letter>",
            **({"release_protocol": suite.spec.to_dict()} if suite.protocol == "paper" else {}),
            "prompt_style": suite.prompt_style, "limit": suite.limit, "seed": suite.seed}


def run_suite(model, tokenizer, suite: Suite, rank: int = 0, world: int = 1, gather=None,
              items: dict | None = None) -> tuple[dict, dict]:
    """Score the suite and return (metrics, per-item results); metrics are computed on every rank."""
    items = items if items is not None else load_suite_items(suite)
    requests = build_requests(items, suite, tokenizer)
    results = score_suite(model, tokenizer, suite, requests, rank, world, gather)
    n_options = {ds: len(next(iter(by_lang.values()))[0].options) for ds, by_lang in items.items()}
    return compute_metrics(results, suite, n_options), results
