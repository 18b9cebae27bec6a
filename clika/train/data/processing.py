"""Tokenization: pt text is packed into full fixed-length blocks; sft records go through a named template.

pt: tokenize, append EOS, concatenate, cut into `block_size` blocks. There is no padding at all: the final
partial block is either completed with the stream's first tokens (`remainder="wrap"`, every corpus token is
trained on; fewer than one block of tokens is seen twice per epoch) or dropped (`"drop"`, the usual
group_texts rule, which loses up to a block per source: ~5% of each small embedded corpus).
sft: a record is rendered as alternating prompt / response segments; labels are -100 on prompt segments
(unless `train_on_prompt`), so the loss covers only what the model should answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from clika.util.errors import ClikaError
from clika.data.templates import render_segments

IGNORE = -100

@dataclass
class Packed:
    blocks: np.ndarray  # [n_blocks, block_size] int32, every position a real token
    total_tokens: int  # tokens before packing (incl. EOS)
    repeated_tokens: int = 0  # tokens used a second time to complete the last block ("wrap")

    @property
    def kept_tokens(self) -> int:
        """Distinct corpus tokens that are in some block."""
        return self.blocks.size - self.repeated_tokens

    @property
    def efficiency(self) -> float:
        return self.kept_tokens / max(1, self.total_tokens)


REMAINDERS = ("wrap", "drop")


def pack_pt(texts: list[str], tokenizer, block_size: int, remainder: str = "wrap") -> Packed:
    """Tokenize, append EOS to each document, concatenate and cut into full blocks."""
    if remainder not in REMAINDERS:
        raise ClikaError(f"data.pack_remainder: unknown value '{remainder}'", fix=f"use one of {REMAINDERS}")
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    stream = np.fromiter((t for doc in ids for t in (*doc, eos)), dtype=np.int32)
    n, rest = divmod(len(stream), block_size)
    if remainder == "drop" or rest == 0:
        return Packed(stream[: n * block_size].reshape(n, block_size), len(stream))
    fill = block_size - rest  # np.resize repeats the stream cyclically (also for a corpus under one block)
    return Packed(np.resize(stream, (n + 1) * block_size).reshape(n + 1, block_size), len(stream), fill)




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
