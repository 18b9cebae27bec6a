"""The facts of the CLiKA datasets, one place: name, stream, options, reference accuracy (with its source) and
the release's file layout (folder names per language, quirks included; data, prompt and result files).

Everything that names a dataset reads this table: the loaders (clika.data.datasets), the release fetcher's file
list (clika.data.release), the suite's default datasets, streams and RA references (clika.scoring.suite),
rescoring of published outputs (clika.report.rescore) and the release-layout results an evaluation writes
(clika.report.results). `conf/clika/default.yaml` repeats none of it: `clika.reference` only overrides.

A Python table rather than a YAML file: each entry points at code (its parser, its prompt family), the
facts are typed and checked at import, and it ships with the package without a data-file rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from clika.util.languages import LANGS

LETTERS = "ABCDEFGHIJ"  # option letters, in order
STREAMS = ("basic", "factual", "fictional")  # the paper's three evaluation streams

# Release layout shared by the multiple-choice datasets ({dir}: the dataset's folder name of the language).
PROMPTS_FILE = "prompts/{dataset}/{dir}.jsonl"  # the authors' rendered prompts, {uuid, input}
RESULTS_FILE = "{model}/{dataset}/{dir}.jsonl"  # published outputs {uuid, res, label}, under results/

# Where the RA reference accuracies come from (the paper's choice of reference system).
CHATGPT_EN = ("ChatGPT's English accuracy in the release's published outputs (results/chatgpt/<dataset>/en.jsonl, "
              "first-character rule): the paper's RA reference")


@dataclass(frozen=True)
class Reference:
    """A reference accuracy for RA (clika.metrics.alignment.relative_accuracy) and where it was measured."""

    acc: float
    source: str


@dataclass(frozen=True)
class Dataset:
    """One dataset of the release. `files`: its files per language relative to the release root, with `{dir}`
    (the language's folder / file stem in `dirs`) and `{lang}` (the code); a multiple-choice dataset has one.
    Multiple-choice datasets have `n_options`, a prompt family `template` (clika.data.prompts) and a `reference`."""

    name: str
    stream: str
    files: tuple[str, ...]
    dirs: Mapping[str, str]
    n_options: int | None = None
    template: str | None = None
    reference: Reference | None = None

    def __post_init__(self):
        if self.stream not in STREAMS:
            raise ValueError(f"{self.name}: stream {self.stream!r} is not one of {STREAMS}")
        if set(self.dirs) != set(LANGS):
            raise ValueError(f"{self.name}: dirs must name a folder for each of {LANGS}")
        object.__setattr__(self, "dirs", MappingProxyType(dict(self.dirs)))

    @property
    def multiple_choice(self) -> bool:
        return self.n_options is not None

    @property
    def letters(self) -> str:
        return LETTERS[: self.n_options or 0]

    def _fill(self, pattern: str, lang: str) -> str:
        return pattern.format(dataset=self.name, dir=self.dirs[lang], lang=lang)

    def file(self, root: str | Path, lang: str) -> Path:
        """The data file the loader reads for `lang` (x_csqa/ZH_trans/validation.jsonl, ...)."""
        return Path(root) / self._fill(self.files[0], lang)

    @property
    def release_globs(self) -> tuple[str, ...]:
        """Glob patterns of every file of the dataset in the release (what `task=get_data` fetches)."""
        return tuple(p.format(dataset=self.name, dir="*", lang="*") for p in self.files)

    def prompts_file(self, root: str | Path, lang: str) -> Path:
        return Path(root) / self._fill(PROMPTS_FILE, lang)


_SAME = {lang: lang for lang in LANGS}

DATASETS: Mapping[str, Dataset] = MappingProxyType({d.name: d for d in (
    Dataset("x_copa", "basic", ("x_copa/{dir}/test.jsonl",),
            {"en": "en", "zh": "zh", "de": "DE", "fr": "FR", "it": "it", "ja": "JA", "pl": "PL", "ru": "RU",
             "ar": "ar", "he": "he"},
            n_options=2, template="copa", reference=Reference(0.964, CHATGPT_EN)),
    Dataset("x_csqa", "basic", ("x_csqa/{dir}/validation.jsonl",),
            {"en": "en", "zh": "ZH_trans", "de": "DE_trans", "fr": "FR_trans", "it": "IT_trans", "ja": "JA_trans",
             "pl": "PL_trans", "ru": "RU_trans", "ar": "ar_trans", "he": "he_trans"},
            n_options=5, template="mcq", reference=Reference(0.746, CHATGPT_EN)),
    Dataset("x_geo", "factual", ("x_geo/{dir}/{lang}_geo_data.jsonl",), _SAME,
            n_options=4, template="mcq", reference=Reference(0.970, CHATGPT_EN)),
    Dataset("x_name", "factual", ("x_name/{dir}/{lang}_name_data_generate.jsonl",), _SAME,
            n_options=4, template="mcq", reference=Reference(0.922, CHATGPT_EN)),
    # The fictional stream (clika.fictional): train/<X>.json, test/target/test<L>.jsonl, test/Translate/translate<X>.jsonl
    Dataset("fictional", "fictional", ("fictional/train/{dir}.json", "fictional/test/target/test{dir}.jsonl",
                                       "fictional/test/Translate/translate{dir}.jsonl"),
            {lang: lang.upper() for lang in LANGS}),
)})

# The multiple-choice datasets the suite scores (Basic and Factual streams), in the release's order.
MULTIPLE_CHOICE: tuple[str, ...] = tuple(name for name, d in DATASETS.items() if d.multiple_choice)


def get(name: str) -> Dataset:
    return DATASETS[name]


def streams(names: tuple[str, ...] | list[str] = MULTIPLE_CHOICE) -> dict[str, list[str]]:
    """{stream: [datasets]} of `names` (default: the suite's datasets), streams and datasets in registry order."""
    out: dict[str, list[str]] = {}
    for name in names:
        out.setdefault(DATASETS[name].stream, []).append(name)
    return out


def references(names: tuple[str, ...] | list[str] = MULTIPLE_CHOICE) -> dict[str, float]:
    """{dataset: reference accuracy} of the datasets that have one."""
    return {n: DATASETS[n].reference.acc for n in names if DATASETS[n].reference is not None}


def release_globs() -> tuple[str, ...]:
    """Every release file the streams read, as glob patterns relative to the release root."""
    return tuple(g for d in DATASETS.values() for g in d.release_globs)


def results_file(results_dir: str | Path, model: str, dataset: str, lang: str) -> Path:
    """Where the release keeps a system's outputs of `dataset` in `lang` (RESULTS_FILE); users' own datasets
    use the language code as the folder name."""
    stem = DATASETS[dataset].dirs[lang] if dataset in DATASETS else lang
    return Path(results_dir) / RESULTS_FILE.format(model=model, dataset=dataset, dir=stem)
