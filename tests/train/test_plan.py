"""task=plan (clika.train.plan): the estimate's numbers for known configs, the start-up check, an unsizable model."""

import pytest

from clika.models.load import ModelSpec, load_model
from clika.train.plan import Setup, config_from_size, estimate, shape_of
from clika.train.run import check_memory_plan, model_spec, train
from clika.util.errors import ClikaError


def test_plan_of_the_tiny_model_counts_its_parameters_and_states(train_cfg):
    out = train(train_cfg("task=plan"))
    model, _ = load_model(ModelSpec())
    params = sum({id(p): p.numel() for p in model.parameters()}.values())  # the tied embedding once
    assert out["task"] == "plan" and out["params"] == params
    d = out["device"]
    assert d["weights"] == params * 4 and d["gradients"] == params * 4 and d["optimizer"] == 2 * params * 4
    acts = out["activations"]  # 8 x 128 tokens, 4 layers, h 128, I 352, V 1024, fp32
    tokens = 8 * 128
    layer = (10 * 128 + 4 * 352) * 4 * tokens
    assert acts["without checkpointing"] == 4 * layer + 1024 * 12 * tokens
    assert acts["with checkpointing"] == 4 * 128 * 4 * tokens + layer + 1024 * 12 * tokens
    assert d["activations"] == acts["without checkpointing"]  # the tiny preset does not checkpoint
    assert out["tokens_per_step"] == tokens and out["deepspeed_estimate"] is None
    assert out["peak"] == d["weights"] + d["gradients"] + d["optimizer"] + max(d["activations"], d["evaluation"])


def test_llama2_7b_from_its_size_block_and_zero_stages(train_cfg):
    spec = model_spec(train_cfg("model=llama2_7b"))
    shape = shape_of(config_from_size(spec.size))
    assert shape.params == 6_738_415_616  # Llama-2-7B's published parameter count
    base = dict(world=8, batch=1, block=2048, dtype="bfloat16", precision="bf16-mixed", checkpointing=True)
    z2, z3 = estimate(shape, Setup(stage=2, **base)), estimate(shape, Setup(stage=3, **base))
    p = shape.params
    assert z2.device["optimizer"] == z3.device["optimizer"] == 12 * p / 8
    assert z2.device["weights"] == 2 * p and z3.device["weights"] == 2 * p / 8 + 2 * 1e9  # + the live parameters
    assert z2.device["gradients"] == z3.device["gradients"] == 6 * p / 8 + 2 * 2e8  # + the reduce bucket
    # DeepSpeed's own estimators, reported beside: ZeRO-2's equals these model states less the reduce bucket;
    # ZeRO-3's (18 bytes per parameter over the ranks + the largest layer in fp32) leaves out the fp32 gradient
    # partition, the live parameters and the bucket
    states2 = sum(z2.device[k] for k in ("weights", "gradients", "optimizer"))
    assert z2.deepspeed_estimate == pytest.approx(states2 - 2 * 2e8)
    states3 = z3.device["weights"] + z3.device["gradients"] + z3.device["optimizer"]
    assert z3.deepspeed_estimate == 4 * shape.largest_layer + int(18 * p / 8)
    assert z3.deepspeed_estimate == pytest.approx(states3 - 2 * p / 8 - 2 * 1e9 - 2 * 2e8 + 4 * shape.largest_layer)
    off = estimate(shape, Setup(stage=3, offload_optimizer=True, offload_params=True, **base))
    assert off.device["optimizer"] == 0 and off.host["optimizer"] == 12 * p / 8
    assert off.device["weights"] == 2 * shape.largest_layer
    lora = shape_of(config_from_size(spec.size), {"r": 8, "targets": ["q_proj", "v_proj"]})
    assert lora.trainable == 32 * 2 * 8 * (4096 + 4096)  # 32 layers x (q, v) x r (in + out)


def test_start_up_check_warns_or_refuses_when_the_plan_exceeds_the_device(train_cfg, caplog):
    cfg = train_cfg("plan.device_memory_gb=0.01")
    check_memory_plan(cfg, model_spec(cfg))  # a warning only
    assert "memory plan" in caplog.text and "plan.strict=true" in caplog.text
    cfg = train_cfg("plan.device_memory_gb=0.01", "plan.strict=true")
    with pytest.raises(ClikaError) as e:
        check_memory_plan(cfg, model_spec(cfg))
    assert str(e.value).startswith("plan.strict: the memory plan needs") and "\n" not in str(e.value)
    check_memory_plan(train_cfg("plan.device_memory_gb=80", "plan.strict=true"), model_spec(cfg))  # fits


def test_plan_of_a_model_it_cannot_size_names_the_key(train_cfg):
    with pytest.raises(ClikaError) as e:  # no size block, no config.json offline
        train(train_cfg("task=plan", "model=llama2_7b_chat", "trainer=gpu", "strategy=deepspeed_zero3"))
    msg = str(e.value)
    assert msg.startswith("model.size: cannot size model 'llama2_7b_chat'") and "conf/model/llama2_7b_chat.yaml" in msg
    assert "\n" not in msg


def test_plan_keys_are_checked(train_cfg):
    from clika.app.checks.train import check_plan_keys

    with pytest.raises(ClikaError, match="plan.device_memory_gb"):
        check_plan_keys(train_cfg("plan.device_memory_gb=-1"))
