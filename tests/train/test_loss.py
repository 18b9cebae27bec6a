"""clika.train.loss: the loss from logits at labelled positions only equals the model's own loss, gradients too."""

from __future__ import annotations

import copy

import pytest
import torch

from clika.train.loss import IGNORE, causal_lm_loss, keeps_logits_by_mask, predicting_positions
from clika.train.module import apply_method


def _sft_batch(vocab: int) -> dict[str, torch.Tensor]:
    """Two right-padded sft examples: prompt (IGNORE), answer (labelled), padding (IGNORE, mask 0)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, vocab, (2, 12), generator=g)
    labels = ids.clone()
    labels[0, :7] = IGNORE           # prompt of 7, answer of 5
    labels[1, :4] = IGNORE           # prompt of 4, answer of 5, then 3 of padding
    labels[1, 9:] = IGNORE
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def test_predicting_positions_are_those_before_a_label():
    labels = torch.tensor([[IGNORE, IGNORE, 5, 6, IGNORE]])
    assert predicting_positions(labels).tolist() == [[False, True, True, False, False]]


@pytest.mark.parametrize("method", ["full", "lora"])
def test_sparse_loss_and_gradients_equal_the_models_own(tiny, method):
    base, _ = tiny
    torch.manual_seed(0)
    model = apply_method(copy.deepcopy(base), {"name": method, "r": 4, "alpha": 8, "dropout": 0.0,
                                              "target_modules": ["q_proj", "v_proj"]})
    model.train()
    assert keeps_logits_by_mask(model)
    batch = _sft_batch(base.config.vocab_size)
    losses, grads = [], []
    for sparse in (False, True):
        model.zero_grad(set_to_none=True)
        loss = causal_lm_loss(model, batch, sparse=sparse)
        loss.backward()
        losses.append(float(loss))
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert losses[0] == pytest.approx(losses[1], abs=1e-5)
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], atol=1e-5, rtol=1e-4)


def test_pt_batch_takes_the_models_own_path(tiny):
    base, _ = tiny
    ids = torch.randint(4, base.config.vocab_size, (2, 8))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    with torch.no_grad():
        assert float(causal_lm_loss(base, batch)) == float(base(**batch).loss)


@pytest.mark.parametrize("method", ["full", "lora"])
@pytest.mark.parametrize("kind", ["sft", "pt"])
def test_chunked_loss_and_gradients_equal_the_models_own(tiny, method, kind):
    """With gradient checkpointing the module computes the loss in chunks of positions (lm_head recomputed per chunk
    in backward): same loss and gradients as the model's own forward, over several chunks and a ragged last one."""
    from clika.train.loss import chunk_positions, chunked_loss, chunks_the_loss
    from clika.train.module import enable_gradient_checkpointing

    base, _ = tiny
    torch.manual_seed(0)
    model = copy.deepcopy(base)
    enable_gradient_checkpointing(model, lora=method == "lora")
    model = apply_method(model, {"name": method, "r": 4, "alpha": 8, "dropout": 0.0,
                                 "target_modules": ["q_proj", "v_proj"]})
    model.train()
    assert chunks_the_loss(model) and chunk_positions(32000) == 131 and chunk_positions(10 ** 9) == 1
    batch = _sft_batch(base.config.vocab_size)
    if kind == "pt":
        batch = {"input_ids": batch["input_ids"], "attention_mask": torch.ones_like(batch["input_ids"]),
                 "labels": batch["input_ids"]}
    runs = [lambda: model(**batch).loss, lambda: chunked_loss(model, batch, positions=3),
            lambda: causal_lm_loss(model, batch, chunked=True)]
    losses, grads = [], []
    for run in runs:
        model.zero_grad(set_to_none=True)
        loss = run()
        loss.backward()
        losses.append(loss.item())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    for i in (1, 2):
        assert losses[i] == pytest.approx(losses[0], abs=1e-5)
        assert grads[i].keys() == grads[0].keys() and grads[0]
        for n in grads[0]:
            torch.testing.assert_close(grads[i][n], grads[0][n], atol=1e-5, rtol=1e-4)


def test_a_model_that_rescales_its_logits_keeps_its_own_loss(tiny):
    from clika.train.loss import chunks_the_loss

    base, _ = tiny
    model = copy.deepcopy(base)
    assert chunks_the_loss(model)
    model.config.logits_scaling = 8.0  # as Granite divides its logits
    assert not chunks_the_loss(model)
