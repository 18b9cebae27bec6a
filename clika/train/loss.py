"""The training loss: next-token cross-entropy, projected onto the vocabulary only where a label exists.

An sft batch labels only the answers (prompts are -100), yet a causal LM's forward projects every position onto the
vocabulary; with a 262k-token vocabulary (Gemma 3) that output layer is most of the step. transformers' own
`logits_to_keep` (a boolean [batch, seq] mask: the lm_head runs on the kept positions only, flattened) computes the
same loss from the positions that predict a label (this project's choice; equal to the model's own loss to float
rounding, tests/train/test_loss.py). pt batches label every position and take the model's own path unchanged.

With gradient checkpointing (`model.gradient_checkpointing=true`) the layers keep only their inputs, and what the
backward still holds is the output layer's: [tokens, vocab] logits, their fp32 upcast and the softmax's gradient
(at block 1024 and a 32k vocabulary, 3 x 125 MB per sequence, more than all checkpointed layers together). There the
loss is computed in chunks of positions (`chunked_loss`, this project's choice, as litgpt's chunked cross-entropy
and Liger's fused linear cross-entropy): the decoder's last hidden states go through the lm_head a chunk at a time
under a non-reentrant checkpoint, so only one chunk's logits exist at once, in forward and in backward; same loss and
gradients as the model's own (tests/train/test_loss.py).
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
import transformers.modeling_utils as hf_modeling
from torch.utils.checkpoint import checkpoint

IGNORE = -100
LOGITS_PER_CHUNK = 2 ** 22  # logits one chunk computes (16 MB in fp32): 128 positions at a 32k vocabulary
# config keys of transformers models whose forward rescales the logits after the lm_head (Cohere's logit_scale,
# Granite's logits_scaling, MiniCPM's width scaling): their loss is left to the model's own forward
LOGIT_RESCALING = ("logit_scale", "logits_scaling", "dim_model_base", "scale_width")


def predicting_positions(labels: torch.Tensor) -> torch.Tensor:
    """[batch, seq] bool: position t is kept when it predicts a label (labels[t + 1] is not IGNORE)."""
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE
    return keep


def _base(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def keeps_logits_by_mask(model) -> bool:
    """Whether the (peft-wrapped) model's forward takes a boolean `logits_to_keep` mask (transformers' Llama,
    Gemma, Mistral, Qwen ... classes; remote-code models such as Baichuan or ChatGLM do not)."""
    base = _base(model)
    return (hasattr(hf_modeling, "slice_logits_to_keep")
            and "logits_to_keep" in inspect.signature(base.forward).parameters)


def causal_lm_loss(model, batch: dict[str, torch.Tensor], sparse: bool = True, chunked: bool = False) -> torch.Tensor:
    """The mean next-token loss over labelled tokens (transformers' ForCausalLMLoss): in chunks of positions when
    `chunked` (`chunked_loss`; the module sets it with gradient checkpointing), else computing logits only at the
    positions that predict a label when `sparse` and some positions carry none."""
    labels = batch.get("labels")
    if chunked and labels is not None:
        return chunked_loss(model, batch)
    if not sparse or labels is None or not bool((labels == IGNORE).any()):
        return model(**batch).loss
    keep = predicting_positions(labels)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs, logits_to_keep=keep).logits  # [kept, vocab]
    return F.cross_entropy(logits.float(), labels[:, 1:][keep[:, :-1]])


def chunk_positions(vocab: int) -> int:
    """Positions per chunk of `chunked_loss` (also what clika.train.plan counts for the logits)."""
    return max(1, LOGITS_PER_CHUNK // max(1, vocab))


def chunks_the_loss(model) -> bool:
    """Whether `chunked_loss` computes this (peft-wrapped) model's own loss: a transformers causal LM whose forward
    is decoder -> lm_head (Linear) -> logits, with logit soft-capping the only extra step (Gemma 2)."""
    base = _base(model)
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    decoder = base.get_decoder() if keeps_logits_by_mask(model) and hasattr(base, "get_decoder") else None
    text = base.config.get_text_config()
    rescaled = any(getattr(text, k, None) not in (None, 1, 1.0) for k in LOGIT_RESCALING)
    return isinstance(head, torch.nn.Linear) and decoder is not None and decoder is not base and not rescaled


def _chunk_nll(head: torch.nn.Module, hidden: torch.Tensor, target: torch.Tensor, softcap: float | None):
    logits = head(hidden).float()
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return F.cross_entropy(logits, target, reduction="sum")


def chunked_loss(model, batch: dict[str, torch.Tensor], positions: int | None = None) -> torch.Tensor:
    """The mean next-token loss over labelled tokens, the lm_head and the cross-entropy run `positions` rows at a
    time (default `chunk_positions(vocab)`), each chunk recomputed in backward: one chunk's logits at a time."""
    base = _base(model)
    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    hidden = base.get_decoder()(**inputs, use_cache=False).last_hidden_state  # [batch, seq, hidden]
    keep = predicting_positions(labels)
    hidden, target = hidden[keep], labels[:, 1:][keep[:, :-1]]  # [n, hidden], [n]: only rows that predict a label
    head = base.get_output_embeddings()
    softcap = getattr(base.config.get_text_config(), "final_logit_softcapping", None)
    step = positions or chunk_positions(head.out_features)
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, target.numel(), step):
        total = total + checkpoint(_chunk_nll, head, hidden[start:start + step], target[start:start + step], softcap,
                                   use_reentrant=False)
    return total / max(1, target.numel())
