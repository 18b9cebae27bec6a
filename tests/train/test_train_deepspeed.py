"""The real DeepSpeed engine on CPU (gloo): ZeRO-2 / ZeRO-3, full and LoRA, resume, export to HF folders.

The first DeepSpeed run on a machine JIT-builds DeepSpeed's shared-memory comm op into
TORCH_EXTENSIONS_DIR (.cache/torch_extensions, kept between runs); later runs load it.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from clika.models.load import ModelSpec, load_model
from clika.train.run import train

ROOT = Path(__file__).resolve().parents[2]
FAST = ["trainer.max_steps=3", "trainer.limit_val_batches=1", "trainer.val_check_interval=3"]


@pytest.mark.parametrize("strategy,method", [("deepspeed_zero2", "full"), ("deepspeed_zero3", "full"),
                                             ("deepspeed_zero2", "lora")])
def test_zero_on_cpu_trains_checkpoints_and_exports(train_cfg, strategy, method):
    out = train(train_cfg("experiment=mixed_pretrain_zh", f"strategy={strategy}", f"method={method}", *FAST))
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
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
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
