"""clika.train.zero3_buffers: ZeRO-3's limits scaled to the model (auto), DeepSpeed's defaults, explicit keys winning;
the strategy and the memory plan use the same numbers."""

import pytest

from clika.train.run import memory_plan, model_spec
from clika.train.strategies import build_strategy
from clika.train.zero3_buffers import DEFAULTS, explicit_keys, zero3_buffers

ZERO3 = {"name": "deepspeed_zero3", "stage": 3, "offload_optimizer": False, "offload_parameters": False,
         "zero3_buffers": "auto", "kwargs": {}}
CPU = {"accelerator": "cpu", "devices": 2}


def test_auto_caps_every_limit_at_ten_hidden_squared():
    small, big = zero3_buffers("auto", 1024), zero3_buffers("auto", 4096)
    assert small["stage3_max_live_parameters"] == small["sub_group_size"] == small["reduce_bucket_size"] == 10485760
    assert small["stage3_prefetch_bucket_size"] == 10485760 and small["stage3_param_persistence_threshold"] == 10240
    assert big["stage3_max_live_parameters"] == 167772160 and big["stage3_prefetch_bucket_size"] == 5e7  # DS's default
    assert zero3_buffers("deepspeed", 1024) == {k: int(v) for k, v in DEFAULTS.items()}
    assert zero3_buffers("auto", 1024, {"sub_group_size": 123})["sub_group_size"] == 123
    with pytest.raises(ValueError):
        zero3_buffers("huge", 1024)


def test_explicit_keys_come_from_kwargs_and_the_config():
    strategy = {**ZERO3, "kwargs": {"reduce_bucket_size": 5, "logging_level": 10,
                                    "config": {"zero_optimization": {"stage": 3, "sub_group_size": 7}}}}
    assert explicit_keys(strategy) == {"reduce_bucket_size": 5, "sub_group_size": 7}


def test_the_strategy_gets_the_scaled_buffers_and_explicit_ones_win():
    built = build_strategy(ZERO3, CPU, batch_size=1, lora=False, hidden=1024)
    zo = built.config["zero_optimization"]
    assert zo["stage"] == 3 and zo["stage3_max_live_parameters"] == zo["sub_group_size"] == 10485760
    mine = build_strategy({**ZERO3, "kwargs": {"sub_group_size": 99}}, CPU, batch_size=1, lora=False, hidden=1024)
    assert mine.config["zero_optimization"]["sub_group_size"] == 99
    plain = build_strategy({**ZERO3, "zero3_buffers": "deepspeed"}, CPU, batch_size=1, lora=False, hidden=1024)
    assert plain.config["zero_optimization"]["sub_group_size"] == 1e12  # Lightning's own value, untouched
    zero2 = build_strategy({**ZERO3, "name": "deepspeed_zero2", "stage": 2}, CPU, batch_size=1, lora=False,
                           hidden=1024)
    assert "stage3_max_live_parameters" not in zero2.config["zero_optimization"]


def test_the_plan_counts_the_same_limits(train_cfg):
    cfg = train_cfg("strategy=deepspeed_zero3", "trainer.accelerator=cpu", "trainer.devices=2")
    auto, plain = memory_plan(cfg, model_spec(cfg)), None
    cfg = train_cfg("strategy=deepspeed_zero3", "strategy.zero3_buffers=deepspeed", "trainer.accelerator=cpu",
                    "trainer.devices=2")
    plain = memory_plan(cfg, model_spec(cfg))
    cap = 10 * auto.shape.hidden ** 2
    assert auto.setup.live_params == auto.setup.sub_group == auto.setup.reduce_bucket == cap
    assert plain.setup.live_params == 1e9 and plain.setup.sub_group == 1e12
    phi = auto.shape.trainable
    assert auto.device["optimizer_step"] == pytest.approx(12 * min(phi / 2, cap))
    assert plain.device["optimizer_step"] == pytest.approx(12 * phi / 2)
