"""The real DeepSpeed engine on CPU (gloo): ZeRO-2 / ZeRO-3, full and LoRA, resume, export to HF folders; under
ZeRO-3 the model is built partitioned (configure_model inside zero.Init) and trains as one process does.

The first DeepSpeed run on a machine JIT-builds DeepSpeed's shared-memory comm op into
TORCH_EXTENSIONS_DIR (.cache/torch_extensions, kept between runs); later runs load it.
"""

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from clika.models.load import ModelSpec, load_model
from clika.train.run import train
from conftest import MULTIPROCESS

ROOT = Path(__file__).resolve().parents[2]
FAST = ["trainer.max_steps=3", "trainer.limit_val_batches=1", "trainer.val_check_interval=3"]


PROBE = "+callbacks.probe._target_=partition_probe.PartitionProbe"  # tests/partition_probe.py


@pytest.mark.parametrize("strategy,method", [  # the default suite: each ZeRO stage once; the extended lane: the rest
    pytest.param("deepspeed_zero2", "full", marks=pytest.mark.extended), ("deepspeed_zero3", "full"),
    ("deepspeed_zero2", "lora"), pytest.param("deepspeed_zero3", "lora", marks=pytest.mark.extended)])
def test_zero_on_cpu_trains_checkpoints_and_exports(train_cfg, tmp_path, strategy, method):
    # ZeRO-3 with checkpointed layers and the chunked loss (the lm_head recomputed per chunk on gathered weights)
    ckpt_on = ["model.gradient_checkpointing=true"] if strategy == "deepspeed_zero3" else []
    out = train(train_cfg("experiment=mixed_pretrain_zh", f"strategy={strategy}", f"method={method}", *FAST, *ckpt_on,
                          PROBE, f"+callbacks.probe.out={tmp_path / 'probe'}"))
    built = json.loads((tmp_path / "probe" / "rank0.json").read_text())
    # ZeRO-3: built by Lightning's configure_model (nothing read module.model before); otherwise in __init__ as ever
    assert built["built_before"] == (strategy != "deepspeed_zero3")
    if strategy == "deepspeed_zero3":  # every base weight partitioned as it was created (zero.Init)
        assert built["partitioned"] == built["params"] - built["lora"]  # the adapter: by deepspeed.initialize
    else:
        assert built["partitioned"] == 0
    assert built["lora_b_zero"] and (built["lora"] == 16) == (method == "lora")  # 4 layers x (q, v) x (A, B)
    assert out["global_step"] == 3 and torch.isfinite(torch.tensor(out["metrics"]["train/loss"]))
    ckpt = Path(out["checkpoint"])
    assert ckpt.is_dir() and (ckpt / "latest").exists()  # a ZeRO checkpoint directory
    exported, _ = load_model(ModelSpec(name="ds", name_or_path=out["export"]["hf"]))
    base, _ = load_model(ModelSpec())
    ids = torch.tensor([[1, 40, 41, 42, 43]])
    with torch.no_grad():
        assert not torch.allclose(exported(input_ids=ids).logits, base(input_ids=ids).logits, atol=1e-4)
    if method == "lora":
        assert Path(out["export"]["adapter"], "adapter_config.json").exists()
        shards = list(ckpt.rglob("*model_states.pt"))
        saved = torch.load(shards[0], weights_only=False)["module"]
        frozen = [k for k in saved if "lora_" not in k]
        # frozen base weights are not checkpointed (DeepSpeed keeps the alias of a tied embedding)
        assert any("lora_" in k for k in saved) and all(k.endswith("lm_head.weight") for k in frozen)


def test_a_zero3_module_reads_its_config_without_the_model_and_builds_once(train_cfg):
    from clika.train.module import CausalLMModule

    module = CausalLMModule(ModelSpec(), {"name": "full"}, torch.optim.AdamW, sharded_build=True)
    assert module._modules.get("model") is None and module.model_config.max_position_embeddings == 2048
    model = module.model  # read before fit (no trainer): built whole, as without ZeRO-3
    module.configure_model()
    assert module.model is model and model.training and module.tokenizer is not None


@pytest.mark.extended
def test_zero2_resume_continues_at_the_same_step(train_cfg, tmp_path):
    common = ["experiment=mixed_pretrain_zh", "strategy=deepspeed_zero2", "data.block_size=32",
              "trainer.max_steps=6", "trainer.limit_val_batches=0", "export.enabled=false"]
    whole = train(train_cfg(*common, run_dir=tmp_path / "a"))
    train(train_cfg(*common, "+callbacks.stop._target_=stop_after_steps.StopAfterSteps", "+callbacks.stop.steps=3",
                    run_dir=tmp_path / "b"))
    resumed = train(train_cfg(*common, "resume=auto", run_dir=tmp_path / "b"))
    assert resumed["resumed_from"] and resumed["global_step"] == 6
    assert resumed["metrics"]["train/loss"] == pytest.approx(whole["metrics"]["train/loss"], rel=1e-4)


def _cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    return subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.extended
@MULTIPROCESS
@pytest.mark.parametrize("strategy", ["deepspeed_zero2", "deepspeed_zero3", "ddp"])
def test_two_processes_on_cpu(tmp_path, strategy):
    r = _cli("experiment=mixed_pretrain_zh", f"strategy={strategy}", "trainer.accelerator=cpu", "trainer.devices=2",
             "logger=csv", "trainer.max_steps=3", "trainer.limit_val_batches=1", "trainer.val_check_interval=3",
             "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "training summary" in r.stdout and r.stdout.count("training summary") == 1  # rank 0 only
    assert (tmp_path / "export" / "hf" / "config.json").exists()


@pytest.mark.slow
def test_offload_builds_cpu_adam_once(tmp_path):
    """ZeRO-Offload needs DeepSpeedCPUAdam (a C++ op): time the cold build in a fresh extensions dir."""
    ext = tmp_path / "torch_extensions"
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "train.py", "strategy=deepspeed_zero2_offload", "trainer.accelerator=cpu",
                        "logger=csv", "trainer.max_steps=2", "trainer.limit_val_batches=0",
                        "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path / 'run'}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=900,
                       env={**os.environ, "WANDB_MODE": "offline", "TORCH_EXTENSIONS_DIR": str(ext)})
    cold = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    print(f"cold run incl. op builds: {cold:.0f}s; built: {sorted(p.name for p in ext.glob('*/*'))}")


@pytest.mark.extended
@MULTIPROCESS
def test_zero3_two_ranks_build_partitioned_and_train_as_one_process(tmp_path):
    """ZeRO-3 x 2 CPU ranks (batch 4 each, configure_model under zero.Init) against one process (batch 8): each rank
    holds half of every weight from construction on, and the same global batches give the same loss at every step."""
    common = ["experiment=mixed_pretrain_zh", "trainer.accelerator=cpu", "logger=csv", "threads=1",
              "data.block_size=32", "trainer.max_steps=3", "trainer.limit_val_batches=0",
              "trainer.enable_progress_bar=false", "callbacks.clika=null", PROBE]
    runs = {"one": ["data.batch_size=8"], "two": ["strategy=deepspeed_zero3", "trainer.devices=2", "data.batch_size=4"]}
    for name, args in runs.items():
        r = _cli(*common, *args, f"+callbacks.probe.out={tmp_path / name / 'probe'}", f"hydra.run.dir={tmp_path / name}")
        assert r.returncode == 0, r.stderr[-3000:]
    ranks = [json.loads((tmp_path / "two" / "probe" / f"rank{r}.json").read_text()) for r in (0, 1)]
    for built in ranks:
        assert built["partitioned"] == built["params"] and not built["built_before"]
        assert built["local_numel"] <= built["full_numel"] / 2 + 1024 * built["params"]  # half (+ alignment padding)
    assert sum(b["local_numel"] for b in ranks) >= ranks[0]["full_numel"]
    one, two = (json.loads((tmp_path / n / "probe" / "losses.json").read_text()) for n in ("one", "two"))
    assert len(one) == 3 and two == pytest.approx(one, rel=1e-5)  # mean over both ranks vs the one process
    base = load_model(ModelSpec())[0].state_dict()
    a, b = (load_model(ModelSpec(name=n, name_or_path=str(tmp_path / n / "export" / "hf")))[0].state_dict()
            for n in runs)
    for n in base:  # the trained weights agree far closer than they moved (Adam: ~lr per step)
        assert (a[n] - b[n]).abs().max() < 0.1 * (a[n] - base[n]).abs().max(), n
