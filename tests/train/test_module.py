"""The LightningModule's model side: gradient checkpointing (full and LoRA) changes memory, not the numbers;
16-bit weights with full fine-tuning outside DeepSpeed are refused before the run."""

import pytest
import torch

from clika.app.checks.train import check_master_weights
from clika.models.load import ModelSpec, load_model
from clika.train.module import apply_method, enable_gradient_checkpointing
from clika.util.errors import ClikaError

LORA = {"name": "lora", "r": 4, "alpha": 16, "dropout": 0.0, "target_modules": "auto"}


def _loss_and_grads(checkpointing: bool, method: dict):
    torch.manual_seed(0)
    base, tok = load_model(ModelSpec())
    if checkpointing:
        enable_gradient_checkpointing(base, lora=method["name"] == "lora")
    model = apply_method(base, method)
    model.train()
    ids = torch.tensor([tok("Paris is the capital of France. " * 6)["input_ids"][:64]] * 2)
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return out.loss.item(), grads, model


@pytest.mark.parametrize("method", [{"name": "full"}, LORA], ids=["full", "lora"])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(method):
    loss0, g0, _ = _loss_and_grads(False, method)
    loss1, g1, model = _loss_and_grads(True, method)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    assert getattr(base, "is_activation_checkpointing", None) or base.is_gradient_checkpointing
    assert base.config.use_cache is False
    assert abs(loss0 - loss1) < 1e-5
    assert g0.keys() == g1.keys() and g0
    for n in g0:  # every trained weight receives the same gradient (LoRA: the adapters do receive one)
        assert torch.allclose(g0[n], g1[n], atol=1e-5), n
        assert g1[n].abs().sum() > 0 or "lora_B" not in n


def test_hub_presets_checkpoint_the_tiny_default_does_not(train_cfg):
    assert train_cfg("model=llama2_7b").model.gradient_checkpointing is True
    assert train_cfg().model.gradient_checkpointing is False


@pytest.mark.parametrize("overrides, refused", [
    (["model.dtype=bfloat16"], True),
    (["model.dtype=float16", "strategy=ddp"], True),
    (["model.dtype=bfloat16", "method=lora"], False),
    (["model.dtype=bfloat16", "strategy=deepspeed_zero2"], False),
    (["model.dtype=float32", "trainer.precision=bf16-mixed"], False),
])
def test_full_fine_tuning_of_16_bit_weights_needs_fp32_master_weights(train_cfg, overrides, refused):
    cfg = train_cfg(*overrides)
    if not refused:
        check_master_weights(cfg)
        return
    with pytest.raises(ClikaError) as e:
        check_master_weights(cfg)
    msg = str(e.value)
    assert msg.startswith("model.dtype:") and "fp32 master" in msg and "model.dtype=float32" in msg
    assert "\n" not in msg
