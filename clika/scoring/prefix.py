"""Token and KV-cache helpers shared by the scorers (clika.scoring.loglik) and the generation loop
(clika.scoring.generate): prompt encoding, the longest shared token prefix, and the model's cache argument."""

from __future__ import annotations

import inspect
from typing import Sequence

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
