"""Tokenization: pt text is packed into full fixed-length blocks; sft records go through a named template.

pt: tokenize, append EOS, concatenate, cut into `block_size` blocks; only the final partial block is
dropped, so there is no padding at all (packing efficiency = kept / total tokens).
sft: a record is rendered as alternating prompt / response segments; labels are -100 on prompt segments
(unless `train_on_prompt`), so the loss covers only what the model should answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from clika.errors import ClikaError
from clika.templates import ALPACA_HEAD, ALPACA_HEAD_INPUT, TEMPLATES, render_segments  # noqa: F401

IGNORE = -100

@dataclass
class Packed:
    blocks: np.ndarray  # [n_blocks, block_size] int32, every position a real token
    total_tokens: int  # tokens before packing (incl. EOS)

    @property
    def efficiency(self) -> float:
        return self.blocks.size / max(1, self.total_tokens)


def pack_pt(texts: list[str], tokenizer, block_size: int) -> Packed:
    """Tokenize, append EOS to each document, concatenate and cut into full blocks."""
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    stream = np.fromiter((t for doc in ids for t in (*doc, eos)), dtype=np.int32)
    n = len(stream) // block_size
    return Packed(stream[: n * block_size].reshape(n, block_size), len(stream))




def encode_sft(record: dict[str, Any], tokenizer, template: str, max_length: int,
               train_on_prompt: bool = False) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of one record; each segment is tokenized alone so masking is exact."""
    ids: list[int] = []
    labels: list[int] = []
    for text, is_response in render_segments(record, template, tokenizer):
        seg = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += seg
        labels += seg if (is_response or train_on_prompt) else [IGNORE] * len(seg)
    return ids[:max_length], labels[:max_length]
