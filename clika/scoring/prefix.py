"""Token and KV-cache helpers shared by the scorers (clika.scoring.loglik) and the generation loop
(clika.scoring.generate): prompt encoding, the longest shared token prefix, the model's cache argument, and
`PrefixCache`, the one shared-prefix KV cache both run on."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence

import torch


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=True)["input_ids"]


def _common_prefix_len(seqs: Sequence[Sequence[int]]) -> int:
    """Longest common token prefix, kept one token short of the shortest sequence."""
    if not seqs:
        return 0
    first, n = seqs[0], min(len(s) for s in seqs) - 1
    for s in seqs[1:]:
        i = 0
        while i < n and s[i] == first[i]:
            i += 1
        n = i
    return max(n, 0)


def shares_prefix(tokenizer, contexts: Sequence[str]) -> bool:
    """Whether all contexts share a token prefix. Decided on a whole file, it tells every rank alike whether
    to run the shared-prefix forward (each shard's prefix is at least as long), keeping ranks in lockstep."""
    return _common_prefix_len([_encode(tokenizer, c) for c in contexts]) > 0


def _device(model) -> torch.device:
    return next(model.parameters()).device


def base_model(model):
    """The transformers model under a peft wrapper (the model itself without one)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _forward_params(model) -> set[str]:
    return set(inspect.signature(base_model(model).forward).parameters)


def _cache_key(model) -> str:
    """transformers >= 5.24 names the KV cache argument `cache` (formerly `past_key_values`)."""
    return "cache" if "cache" in _forward_params(model) else "past_key_values"


def _out_cache(out):
    return getattr(out, "cache", None) if hasattr(out, "cache") else out.past_key_values


class PrefixCache:
    """The KV cache of a token prefix shared by a batch of sequences (the few-shot demonstration), computed
    once at batch 1, and the forwards that run on copies of it (the prefix's own cache is never written into):

    - `log_probs(suffixes, pad_id)`: fp32 log-softmax of right-padded suffixes after the prefix (the scorers);
    - `contexts(suffixes, pad_id)`: the cache of prefix + each of right-padded suffixes and each one's next-token
      log-probs, for continuations to run after each row's own last token (cloze; `ContextBatch`);
    - `run(rows)`: the cache after prefix + each of equal-length rows, one row each (generation);
    - `copy(n)`: the prefix's cache repeated for `n` rows.

    The prefix runs on the decoder alone when the model has one (a 262k-vocabulary LM head costs as much as the
    transformer on CPU), else on the model with one logit row: same keys and values either way. `reuse=False`
    (or an empty prefix) keeps no cache: `log_probs` then runs prefix + suffix from scratch.
    """

    def __init__(self, model, ids: Sequence[int], reuse: bool = True):
        self.model, self.ids, self.device = model, list(ids), _device(model)
        self.cache_key = _cache_key(model)  # the model's KV cache argument (forward and generate)
        self.keeps_logits = "logits_to_keep" in _forward_params(model)
        base = base_model(model)
        decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
        self.runner = decoder if decoder is not None and decoder is not base else model  # runs cache-only forwards
        self._runner_key = _cache_key(self.runner)
        self._runner_keep = {"logits_to_keep": 1} if self.runner is model and self.keeps_logits else {}
        self.cache = self._forward([self.ids], None) if reuse and self.ids else None

    @property
    def reuse(self) -> bool:
        return self.cache is not None

    def copy(self, n: int = 1):
        """A copy of the prefix's cache repeated for `n` rows."""
        cache = copy.deepcopy(self.cache)
        if n > 1:
            cache.batch_repeat_interleave(n)
        return cache

    def _ones(self, rows: int, width: int) -> torch.Tensor:
        return torch.ones((rows, width), dtype=torch.long, device=self.device)

    def _forward(self, rows: list[list[int]], cache):
        """The cache-only forward of `rows` (equal lengths) after `cache` (already one row each; None: from
        scratch); the new cache."""
        past = len(self.ids) if cache is not None else 0
        kwargs = {self._runner_key: cache} if cache is not None else {}
        with torch.no_grad():
            out = self.runner(input_ids=torch.tensor(rows, device=self.device),
                              attention_mask=self._ones(len(rows), past + len(rows[0])), use_cache=True,
                              **kwargs, **self._runner_keep)
        return _out_cache(out)

    def run(self, rows: list[list[int]], after_prefix: bool = True):
        """The KV cache of prefix + each of `rows` (equal lengths), one row each: one forward of the rows only,
        on copies of the prefix's cache (rows of no tokens: the copies themselves). `after_prefix=False` runs
        the rows from scratch (a lockstep rank's stand-in forward)."""
        if not after_prefix:
            return self._forward(rows, None)
        cache = self.copy(len(rows))
        return self._forward(rows, cache) if rows[0] else cache

    def log_probs(self, suffixes: list[list[int]], pad_id: int,
                  last_only: bool = False) -> tuple[torch.Tensor, list[int]]:
        """fp32 log-softmax over [batch, positions, vocab] of right-padded `suffixes` after the prefix, and each
        row's suffix length.

        `last_only` keeps only each row's last position ([batch, vocab]): with 262k-token vocabularies the full
        logits tensor, not the transformer, dominates the cost.
        """
        lens = [len(s) for s in suffixes]
        n, width = len(suffixes), max(lens)
        ids = torch.full((n, width), pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for i, s in enumerate(suffixes):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = sorted({k - 1 for k in lens})
        keep = {}
        if last_only and self.keeps_logits:
            offset = 0 if self.reuse else len(self.ids)
            keep = {"logits_to_keep": torch.tensor([offset + q for q in positions], device=self.device)}
        with torch.no_grad():
            if self.reuse:
                logits = self.model(input_ids=ids, attention_mask=torch.cat([self._ones(n, len(self.ids)), mask], 1),
                                    use_cache=True, **{self.cache_key: self.copy(n)}, **keep).logits
            else:
                pre = torch.tensor([self.ids] * n, dtype=torch.long, device=self.device)
                full_ids = torch.cat([pre, ids], 1) if self.ids else ids
                full_mask = torch.cat([torch.ones_like(pre), mask], 1) if self.ids else mask
                logits = self.model(input_ids=full_ids, attention_mask=full_mask, use_cache=False, **keep).logits
                if not keep:
                    logits = logits[:, len(self.ids):]
        if last_only:
            rows = torch.arange(n, device=logits.device)
            index = {q: k for k, q in enumerate(positions)} if keep else {q: q for q in positions}
            cols = torch.tensor([index[k - 1] for k in lens], device=logits.device)
            return torch.log_softmax(logits[rows, cols].float(), dim=-1), lens
        return torch.log_softmax(logits.float(), dim=-1), lens

    def contexts(self, suffixes: list[list[int]], pad_id: int) -> ContextBatch:
        """One forward of right-padded `suffixes` (>= 1 token each) after the prefix: their KV cache (one row
        each) and the fp32 log-probs of each row's next token, for continuations to run on (`ContextBatch`).
        Needs a reusable cache."""
        assert self.reuse and all(suffixes)
        lens = [len(s) for s in suffixes]
        n, width = len(suffixes), max(lens)
        ids = torch.full((n, width), pad_id, dtype=torch.long)
        mask = torch.zeros((n, width + len(self.ids)), dtype=torch.long)
        mask[:, : len(self.ids)] = 1
        for i, s in enumerate(suffixes):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, len(self.ids): len(self.ids) + len(s)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = sorted({k - 1 for k in lens})
        keep = {"logits_to_keep": torch.tensor(positions, device=self.device)} if self.keeps_logits else {}
        with torch.no_grad():
            out = self.model(input_ids=ids, attention_mask=mask, use_cache=True,
                             **{self.cache_key: self.copy(n)}, **keep)
        index = {q: k for k, q in enumerate(positions)} if keep else {q: q for q in positions}
        rows = torch.arange(n, device=out.logits.device)
        cols = torch.tensor([index[k - 1] for k in lens], device=out.logits.device)
        nxt = torch.log_softmax(out.logits[rows, cols].float(), dim=-1)
        return ContextBatch(self, _out_cache(out), mask, [len(self.ids) + k for k in lens], nxt)


def continues_padded(model, width: int) -> bool:
    """Whether continuations can run after right-padded contexts (`ContextBatch`) up to `width` tokens: the model
    takes `position_ids`, and no sliding window is shorter (its mask counts the padding as tokens)."""
    window = getattr(getattr(base_model(model), "config", None), "sliding_window", None)
    return "position_ids" in _forward_params(model) and (not window or width <= int(window))


class ContextBatch:
    """The KV cache of prefix + each of several right-padded contexts (`PrefixCache.contexts`) and the log-probs
    of each context's next token (`next`, [rows, vocab]). Continuations run after each row's own last token: the
    padding between stays masked and the positions are the row's own (`position_ids`), as batched generation
    runs after left padding, so a row sees exactly its own tokens at their own positions."""

    def __init__(self, prefix: PrefixCache, cache, mask: torch.Tensor, lengths: list[int], nxt: torch.Tensor):
        self.prefix, self.cache, self.mask, self.lengths, self.next = prefix, cache, mask, lengths, nxt

    def log_probs(self, rows: list[int], conts: list[list[int]], pad_id: int) -> torch.Tensor:
        """fp32 log-softmax over [len(rows), positions, vocab] of right-padded `conts` (>= 1 token each), each
        after context `rows[k]` (a row may be named several times: one context, several options)."""
        dev = self.prefix.device
        n, width = len(conts), max(len(c) for c in conts)
        ids = torch.full((n, width), pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for k, c in enumerate(conts):
            ids[k, : len(c)] = torch.tensor(c)
            mask[k, : len(c)] = 1
        index = torch.tensor(rows, device=dev)
        start = torch.tensor([self.lengths[r] for r in rows])
        positions = (start[:, None] + torch.arange(width)[None, :]).to(dev)
        cache = copy.deepcopy(self.cache)
        cache.reorder_cache(index)  # row k: a copy of context rows[k]'s cache
        m = self.prefix.model
        with torch.no_grad():
            logits = m(input_ids=ids.to(dev), attention_mask=torch.cat([self.mask[index], mask.to(dev)], 1),
                       position_ids=positions, use_cache=True, **{self.prefix.cache_key: cache}).logits
        return torch.log_softmax(logits.float(), dim=-1)
