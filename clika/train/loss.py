"""The training loss: next-token cross-entropy, projected onto the vocabulary only where a label exists.

An sft batch labels only the answers (prompts are -100), yet a causal LM's forward projects every position onto the
vocabulary; with a 262k-token vocabulary (Gemma 3) that output layer is most of the step. transformers' own
`logits_to_keep` (a boolean [batch, seq] mask: the lm_head runs on the kept positions only, flattened) computes the
same loss from the positions that predict a label (this project's choice; equal to the model's own loss to float
rounding, tests/train/test_loss.py). pt batches label every position and take the model's own path unchanged.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
import transformers.modeling_utils as hf_modeling

IGNORE = -100


def predicting_positions(labels: torch.Tensor) -> torch.Tensor:
    """[batch, seq] bool: position t is kept when it predicts a label (labels[t + 1] is not IGNORE)."""
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE
    return keep


def keeps_logits_by_mask(model) -> bool:
    """Whether the (peft-wrapped) model's forward takes a boolean `logits_to_keep` mask (transformers' Llama,
    Gemma, Mistral, Qwen ... classes; remote-code models such as Baichuan or ChatGLM do not)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return (hasattr(hf_modeling, "slice_logits_to_keep")
            and "logits_to_keep" in inspect.signature(base.forward).parameters)


def causal_lm_loss(model, batch: dict[str, torch.Tensor], sparse: bool = True) -> torch.Tensor:
    """The mean next-token loss over labelled tokens (transformers' ForCausalLMLoss), computing logits only at the
    positions that predict a label when `sparse` and some positions carry none."""
    labels = batch.get("labels")
    if not sparse or labels is None or not bool((labels == IGNORE).any()):
        return model(**batch).loss
    keep = predicting_positions(labels)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs, logits_to_keep=keep).logits  # [kept, vocab]
    return F.cross_entropy(logits.float(), labels[:, 1:][keep[:, :-1]])
