"""The fictional-stream probe of the CLiKA callback: per-language type 0 / type 1 accuracy, gate and XRR
on the live model during training.

Glue only: data, prompts, scoring and metrics come from `clika.conductivity`, so the numbers equal
those of `eval.py task=conductivity` on the same checkpoint (same scorer, template, limit and seed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from clika.conductivity import (SCORERS, build_probes, evaluate, generated_root, load_data, world_params)
from clika.errors import ClikaError
from clika.fictional import _check_lang, check_release
from clika.languages import LANGS


class FictionalProbe:
    """Scores the fictional test set (official release or a generated world) on the live model.

    root: a fictional folder (official or generated; `world` is then ignored); None generates `world` (seed, continents,
      cities_per_continent, name_style, translate_directions; defaults = the world of the embedded
      fictional_* training data) once into `<cache>/fictional/<hash>`.
    langs: languages scored (English is always added); None: [en, trained_lang], or all ten.
    trained_lang: X of the run (gets Translate(X), the gate and XRR); None: every non-English
      language of `langs` counts as trained.
    scorers: the first gates and gives XRR; the others are reported beside it with a suffix (`xrr_mc`).
      Default ("generate", "mc"): greedy generation + "the answer contains the continent name" (the
      paper's rule) gates; "mc" (log-likelihood over the continent names) is the diagnostic.
    limit / seed: a seeded, type-stratified subset of cities (and of Translate records) per evaluation.
    template: the training data.template the prompts are rendered with (must match training).
    """

    def __init__(self, root: str | None = None, world: dict | None = None, langs: Sequence[str] | None = None,
                 trained_lang: str | None = None, scorers: Sequence[str] = ("generate", "mc"), limit: int | None = None,
                 seed: int = 0, threshold: float = 0.9, batch_size: int = 16, template: str = "alpaca",
                 max_new_tokens: int | None = None, cache_dir: str | None = None, scorer: str | None = None):
        if scorer is not None:
            raise ClikaError("fictional.scorer was renamed fictional.scorers (the first one gates)",
                             fix="e.g. callbacks.clika.fictional.scorers=[generate,mc]")
        scorers = [scorers] if isinstance(scorers, str) else list(scorers)
        for s in scorers:
            if s not in SCORERS:
                raise ClikaError(f"fictional.scorers: unknown scorer {s!r}", fix=f"use a list from {list(SCORERS)}")
        if not scorers:
            raise ClikaError("fictional.scorers is empty", fix="e.g. fictional.scorers=[generate,mc]")
        self.root = Path(root) if root is not None else generated_root(world_params(world), cache_dir)
        self.trained_lang = _check_lang(trained_lang, allow_en=False) if trained_lang else None
        if langs is None:
            langs = ["en", self.trained_lang] if self.trained_lang else list(LANGS)
        self.langs = list(dict.fromkeys(["en", *(_check_lang(l) for l in langs)]))
        self.trained = [self.trained_lang] if self.trained_lang else [l for l in self.langs if l != "en"]
        if self.trained_lang and self.trained_lang not in self.langs:
            self.langs.append(self.trained_lang)
        self.scorers, self.threshold, self.batch_size = scorers, float(threshold), int(batch_size)
        self.scorer = scorers[0]  # gates
        self.template, self.max_new_tokens = template, max_new_tokens
        self.limit, self.seed = limit, int(seed)
        # load now: a bad path or file fails before training starts
        self.data = load_data(self.root, self.langs, self.trained, limit=limit, seed=self.seed)
        self.defects = check_release(self.root)
        self._probes = None
        self._probes_for: Any = None

    def probes(self, tokenizer):
        if self._probes is None or self._probes_for is not tokenizer:
            self._probes = build_probes(self.data, tokenizer, self.template)
            self._probes_for = tokenizer
        return self._probes

    def evaluate(self, model, tokenizer, rank: int = 0, world: int = 1,
                 gather: Callable[[object], list] | None = None) -> dict:
        """{"dataset": {"langs": {lang: {acc, acc_type0, acc_type1, xrr, n, ...}}, ...},
        "summary": flat floats (mean XRR over trained languages, gate_passed 0/1, chance, ...),
        "scorer": the scorer's name}. Every rank runs the same forward passes; `gather` is the only
        collective (None when world == 1)."""
        res = evaluate(model, tokenizer, self.data, self.trained, scorers=self.scorers, gate=self.scorer,
                       threshold=self.threshold, batch_size=self.batch_size, max_new_tokens=self.max_new_tokens,
                       probes=self.probes(tokenizer), rank=rank, world=world, gather=gather)
        langs = {lang: dict(v) for lang, v in res["langs"][self.scorer].items()}
        summary = dict(res["summary"][self.scorer])
        for other in self.scorers[1:]:  # diagnostics beside the gating scorer: acc_mc, xrr_mc, gate_passed_mc, ...
            for lang, v in res["langs"][other].items():
                langs.setdefault(lang, {}).update({f"{k}_{other}": v.get(k) for k in ("acc", "acc_type0", "acc_type1",
                                                                                          "xrr", "gate_passed")})
            summary.update({f"{k}_{other}": v for k, v in res["summary"][other].items() if k != "chance"})
        dataset = {"langs": langs, "scorer": self.scorer, "scorers": self.scorers, "chance": res["chance"],
                   "n_continents": res["n_continents"], "threshold": self.threshold, "trained": self.trained,
                   "limit": self.limit, "seed": self.seed, "root": str(self.root)}
        return {"dataset": dataset, "summary": summary, "scorer": self.scorer}
