"""Scorers behind one small interface: `scorer.score(model, tokenizer, requests) -> list[Result]`.

- `letter`: next-token log-probs restricted to the option letters, one forward pass per item.
- `cloze`: summed log-prob of each option's text, normalised by its UTF-8 byte length.
- `paper`: the release's own inference protocol (2-beam generation of 2 or 4 tokens, one item per call, the
  model family's output-string rule; `clika.scoring.generate`) judged by its first-character rule (`clika.scoring.judges`).

`letter` (the default) and `cloze` are this project's protocols: fast log-likelihood scorers whose
numbers are not the release's; `paper` gives numbers comparable item for item with the published outputs.

For letter / cloze, all items of one call share the few-shot demonstration; the longest common *token* prefix is run once
and its KV cache reused (`clika.scoring.prefix.PrefixCache`), so cost grows with the item text, not the demonstration.
Tokens are those of the full prompt, so reuse is exact. Right padding, length-sorted batches, fp32 log-softmax.

`batch_size` (`clika.batch_size`) is the number of sequences per forward in every protocol: letter prompts;
cloze contexts, then option continuations (each after its own context); paper prompts of equal token length
per `generate` call (only equal lengths share a call: no padding, so the output strings stay those of the
release's one-item loop).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

import torch
from tqdm.auto import tqdm

from clika.util.errors import ClikaError
from clika.scoring.generate import _groups, greedy, prompt_ids, release_generate
from clika.scoring.judges import Judge, by_first_char, by_name
from clika.scoring.prefix import PrefixCache, _common_prefix_len, _encode, continues_padded
from clika.scoring.release import ProtocolSpec


@dataclass
class Request:
    uid: str
    context: str  # full prompt, ending with the answer cue
    letters: str  # "AB", "ABCDE", ...
    options: list[str]
    label: int


@dataclass
class Result:
    uid: str
    pred: int  # index into options; -1 = no answer (paper)
    label: int
    scores: list[float] = field(default_factory=list)  # per-option log-prob (letter) or normalised (cloze)
    output: str | None = None  # raw output string `res` (paper)

    @property
    def correct(self) -> bool:
        return self.pred == self.label


class Scorer(Protocol):
    name: str

    def score(self, model, tokenizer, requests: Sequence[Request]) -> list[Result]: ...


def _progress(total: int, desc: str, enabled: bool = True):
    """A progress bar for long calls only (`enabled=False`: none, e.g. inside a training loop's own bar)."""
    return tqdm(total=total, desc=desc, disable=not enabled or total < 200, leave=False)


def _batches(order: list[int], batch_size: int):
    for i in range(0, len(order), batch_size):
        yield order[i: i + batch_size]


@dataclass
class LetterScorer:
    """Log-probs of the option letters as the next token after the answer cue.

    `delimiter=""` scores the form the paper's demonstration uses ("Answer:D"); " " scores the
    lm-evaluation-harness form ("Answer: D"). Each delimiter+letter must be exactly one token in context.
    """

    batch_size: int = 16
    delimiter: str = ""
    reuse_prefix: bool = True
    name: str = "letter"
    progress: bool = True  # a progress bar on long calls (the task runner sets it)

    def letter_ids(self, tokenizer, req: Request, ctx_ids: list[int]) -> list[int]:
        ids = []
        for letter in req.letters:
            full = _encode(tokenizer, req.context + self.delimiter + letter)
            if len(full) != len(ctx_ids) + 1 or full[: len(ctx_ids)] != ctx_ids:
                raise ClikaError(
                    f"option letter {self.delimiter + letter!r} is not one token after the prompt of item "
                    f"{req.uid!r} with this tokenizer",
                    fix="set clika.letter_delimiter=' ' (or '') so letters tokenize alone, or use clika.protocol=cloze")
            ids.append(full[-1])
        return ids

    def score(self, model, tokenizer, requests: Sequence[Request]) -> list[Result]:
        if not requests:
            return []
        enc = [_encode(tokenizer, r.context) for r in requests]
        # Letter token ids depend only on the letter set when the prompt ends with the same cue: check each.
        cache: dict[tuple[str, int], list[int]] = {}
        letter_ids = []
        for r, ids in zip(requests, enc):
            key = (r.letters, ids[-1])
            if key not in cache:
                cache[key] = self.letter_ids(tokenizer, r, ids)
            letter_ids.append(cache[key])
        p = _common_prefix_len(enc)
        prefix = PrefixCache(model, enc[0][:p], self.reuse_prefix)
        order = sorted(range(len(requests)), key=lambda i: -len(enc[i]))
        results: list[Result | None] = [None] * len(requests)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        bar = _progress(len(requests), "letter", self.progress)
        for batch in _batches(order, self.batch_size):
            logp, _ = prefix.log_probs([enc[i][p:] for i in batch], pad, last_only=True)
            for row, i in enumerate(batch):
                last = logp[row]
                scores = [float(last[t]) for t in letter_ids[i]]
                pred = max(range(len(scores)), key=scores.__getitem__)
                results[i] = Result(requests[i].uid, pred, requests[i].label, scores)
            bar.update(len(batch))
        bar.close()
        return results  # type: ignore[return-value]


@dataclass
class ClozeScorer:
    """Sum of log-probs of each option's text after the answer cue, divided by its UTF-8 bytes.

    Context and continuation are tokenized separately and concatenated (lm-evaluation-harness style).
    """

    batch_size: int = 16
    delimiter: str = ""
    reuse_prefix: bool = True
    name: str = "cloze"
    reuse_context: bool = True  # run each item's context once for all its options (needs reuse_prefix)
    progress: bool = True  # a progress bar on long calls (the task runner sets it)

    def score(self, model, tokenizer, requests: Sequence[Request]) -> list[Result]:
        if not requests:
            return []
        enc = [_encode(tokenizer, r.context) for r in requests]
        rows: list[tuple[int, int, list[int], int]] = []  # (request, option, cont ids, bytes)
        for i, r in enumerate(requests):
            for j, opt in enumerate(r.options):
                cont = self.delimiter + opt
                ids = tokenizer(cont, add_special_tokens=False)["input_ids"]
                if not ids:
                    raise ClikaError(f"item {r.uid!r}: option {j} is empty", fix="remove empty options")
                rows.append((i, j, ids, max(1, len(cont.encode("utf-8")))))
        p = _common_prefix_len(enc)
        prefix = PrefixCache(model, enc[0][:p], self.reuse_prefix)
        scores = [[0.0] * len(r.options) for r in requests]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        width = max(map(len, enc)) + max(len(ids) for _, _, ids, _ in rows)  # the longest padded row
        if self.reuse_context and prefix.reuse and continues_padded(model, width):
            self._per_context(prefix, enc, p, rows, scores, pad)
        else:
            self._per_row(prefix, enc, p, rows, scores, pad)
        return [Result(r.uid, max(range(len(s)), key=s.__getitem__), r.label, s) for r, s in zip(requests, scores)]

    def _per_row(self, prefix: PrefixCache, enc, p: int, rows, scores, pad: int) -> None:
        """Every (context, option) sequence on its own row, longest first."""
        seqs = [enc[i][p:] + ids for i, _, ids, _ in rows]
        order = sorted(range(len(rows)), key=lambda k: -len(seqs[k]))
        bar = _progress(len(rows), "cloze", self.progress)
        for batch in _batches(order, self.batch_size):
            logp, _ = prefix.log_probs([seqs[k] for k in batch], pad)
            for row, k in enumerate(batch):
                i, j, cont, nbytes = rows[k]
                start = len(enc[i]) - p  # position of first continuation token in the suffix
                tgt = torch.tensor(cont, device=logp.device)
                lp = logp[row, start - 1: start - 1 + len(cont)].gather(1, tgt[:, None]).sum()
                scores[i][j] = float(lp) / nbytes
            bar.update(len(batch))
        bar.close()

    def _per_context(self, prefix: PrefixCache, enc, p: int, rows, scores, pad: int) -> None:
        """Each item's context once (on top of the shared prefix), then only its options' tokens: with
        8 short options after a 35-token context this runs 4x fewer tokens than one row per option.
        `batch_size` contexts run together (right-padded, longest first), then their options `batch_size` rows
        at a time, each row after its own context's last token (`ContextBatch`). Same tokens and positions as
        `_per_row`, so the same log-probs (to float rounding)."""
        by_item: dict[int, list] = {}
        for row in rows:
            by_item.setdefault(row[0], []).append(row)
        order = sorted(by_item, key=lambda i: -len(enc[i]))
        bar = _progress(len(rows), "cloze", self.progress)
        for items in _batches(order, self.batch_size):
            ctx = prefix.contexts([enc[i][p:] for i in items], pad)  # >= 1 token: the shared prefix stops one short
            opts = [(c, row) for c, i in enumerate(items) for row in by_item[i]]
            for batch in _batches(list(range(len(opts))), self.batch_size):
                logp = ctx.log_probs([opts[k][0] for k in batch], [opts[k][1][2] for k in batch], pad)
                for r, k in enumerate(batch):
                    c, (i, j, cont, nbytes) = opts[k]
                    lp = ctx.next[c, cont[0]]
                    if len(cont) > 1:
                        tgt = torch.tensor(cont[1:], device=logp.device)
                        lp = lp + logp[r, : len(cont) - 1].gather(1, tgt[:, None]).sum()
                    scores[i][j] = float(lp) / nbytes
                bar.update(len(batch))
        bar.close()


@dataclass
class PaperScorer:
    """`clika.protocol=paper`: the release's inference protocol (`clika.scoring.generate.release_generate` with the
    model preset's `protocol` block) judged by the release's first-character rule (`clika.scoring.judges.first_char`).
    Each Result keeps the raw output string `res`."""

    spec: ProtocolSpec = field(default_factory=ProtocolSpec)
    batch_size: int = 16  # prompts of equal token length generated together, at most this many per call
    reuse_prefix: bool = True
    lockstep: bool = False
    name: str = "paper"
    progress: bool = True  # a progress bar on long calls (the task runner sets it)
    judge: Judge = by_first_char

    def shard_groups(self, tokenizer, requests: Sequence[Request]) -> list[list[int]]:
        """The items one `generate` call runs together (equal prompt length, at most batch_size): ranks that need no
        lockstep get whole groups (clika.scoring.api.balanced_shards)."""
        return _groups([prompt_ids(tokenizer, r.context, self.spec) for r in requests], self.batch_size)

    def score(self, model, tokenizer, requests: Sequence[Request]) -> list[Result]:
        bar = _progress(len(requests), "paper", self.progress)
        texts = release_generate(model, tokenizer, [r.context for r in requests], self.spec,
                                 reuse_prefix=self.reuse_prefix, group_size=self.batch_size, lockstep=self.lockstep,
                                 progress=bar.update)
        bar.close()
        return [Result(r.uid, self.judge(t, r.letters, r.options, r.label), r.label, [], t)
                for r, t in zip(requests, texts)]


@dataclass
class GenerateScorer:
    """Greedy batched generation (`clika.scoring.generate.greedy`) judged by `judge`: the fictional stream's
    `generate` scorer (`clika.scoring.judges.by_name`: the answer contains the gold name)."""

    batch_size: int = 16
    max_new_tokens: int = 48
    judge: Judge = by_name
    lockstep: bool = False
    name: str = "generate"

    def score(self, model, tokenizer, requests: Sequence[Request]) -> list[Result]:
        texts = greedy(model, tokenizer, [r.context for r in requests], batch_size=self.batch_size,
                       max_new_tokens=self.max_new_tokens, lockstep=self.lockstep)
        return [Result(r.uid, self.judge(t, r.letters, r.options, r.label), r.label, [], t)
                for r, t in zip(requests, texts)]


PROTOCOLS = ("letter", "cloze", "paper")


def make_scorer(protocol: str, batch_size: int = 16, letter_delimiter: str = "", reuse_prefix: bool = True,
                spec: ProtocolSpec | None = None) -> Scorer:
    """The scorer of `clika.protocol`; `spec` (the model preset's protocol block) is used by `paper`."""
    if protocol == "letter":
        return LetterScorer(batch_size, letter_delimiter, reuse_prefix)
    if protocol == "cloze":
        return ClozeScorer(batch_size, " " if letter_delimiter == " " else "", reuse_prefix)
    if protocol == "paper":
        return PaperScorer(spec or ProtocolSpec(), batch_size, reuse_prefix)
    if protocol == "generate":
        raise ClikaError("clika.protocol=generate was replaced by the release's own protocol",
                         fix="set clika.protocol=paper")
    raise ClikaError(f"clika.protocol: unknown protocol '{protocol}'", fix=f"set clika.protocol to one of {list(PROTOCOLS)}")
