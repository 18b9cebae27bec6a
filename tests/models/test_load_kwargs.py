"""Model loading keywords from the config: accelerate's big-model loading (device_map, max_memory) for one
process, attention implementation, low_cpu_mem_usage; device_map with several processes is refused."""

import pytest
import torch

from clika.eval.distributed import EvalWorld
from clika.eval.evaluate import evaluate_model
from clika.models.load import ModelSpec, load_model
from clika.util.errors import ClikaError


def test_device_map_auto_loads_the_tiny_model_on_cpu_with_the_same_outputs():
    plain, tok = load_model(ModelSpec())
    mapped, _ = load_model(ModelSpec(device_map="auto", max_memory={"cpu": "2GiB"}, low_cpu_mem_usage=True,
                                     attn_implementation="eager"))
    assert {p.device.type for p in mapped.parameters()} == {"cpu"}
    assert mapped.config._attn_implementation == "eager"
    ids = torch.tensor([tok("Berlin is the capital of")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(plain(input_ids=ids).logits, mapped(input_ids=ids).logits, atol=1e-6)


def test_load_kwargs_pass_only_what_the_config_sets():
    assert ModelSpec().load_kwargs() == {}
    assert ModelSpec(device_map="balanced", max_memory={"0": "70GiB", "cpu": "100GiB"}).load_kwargs() == {
        "device_map": "balanced", "max_memory": {0: "70GiB", "cpu": "100GiB"}}


def test_device_map_with_several_processes_is_refused_before_loading(tmp_path):
    with pytest.raises(ClikaError) as e:
        evaluate_model(ModelSpec(device_map="auto"), {}, tmp_path, EvalWorld(rank=0, world=2))
    assert str(e.value).startswith("model.device_map=auto") and "2 processes" in str(e.value)
    assert "one process" in e.value.fix and not any(tmp_path.iterdir())
