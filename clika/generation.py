"""The one generation loop of the project: batched, left-padded continuations of prompts.

`lockstep=True` runs exactly `max_new_tokens` steps per batch (no early stop at EOS; the text is cut at EOS
afterwards), so every rank of a collective run performs the same number of forward passes.
"""

from __future__ import annotations

from typing import Sequence

import torch


def generate(model, tokenizer, contexts: Sequence[str], *, batch_size: int = 16, max_new_tokens: int = 48,
             lockstep: bool = False) -> list[str]:
    """Greedy continuations (decoded, cut at EOS, not cleaned), batched in the given order."""
    device = next(model.parameters()).device
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    eos = set([eos] if isinstance(eos, int) else (eos or [])) | {tokenizer.eos_token_id} - {None}
    extra = {"eos_token_id": []} if lockstep else {}
    out: list[str] = []
    try:
        for start in range(0, len(contexts), batch_size):
            chunk = list(contexts[start: start + batch_size])
            batch = tokenizer(chunk, return_tensors="pt", padding=True).to(device)
            with torch.no_grad():
                gen = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                     pad_token_id=pad, **extra)
            for row in gen[:, batch["input_ids"].shape[1]:].tolist():
                stop = next((i for i, t in enumerate(row) if t in eos), len(row))
                out.append(tokenizer.decode(row[:stop], skip_special_tokens=True))
    finally:
        tokenizer.padding_side = side
    return out
