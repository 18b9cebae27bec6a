"""Training end to end on CPU: every experiment, full and LoRA (checkpoints, export), exact resume."""

import csv
import json
from pathlib import Path

import pytest
import torch

from clika.models.load import ModelSpec, load_model
from clika.train.run import train

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
PROBE = ["fictional.limit=4", "callbacks.clika.limit=2"]  # the alignment probe and suite stay on, on small subsets
QUICK = ["trainer.max_steps=2", "trainer.val_check_interval=2", "export.enabled=false", *PROBE,
         "init_from=null"]  # presets starting from a cached base (clika/train/base.py, tested there) start from tiny


def test_all_paper_presets_exist():
    assert {"continued_pretrain_zh", "mixed_pretrain_zh", "continued_pretrain_de", "mixed_pretrain_de",
            "instruct_multilingual", "instruct_en"} <= set(EXPERIMENTS)


# fictional_conductivity_release trains on the release's own fictional file (3x the others): the extended lane
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.extended) if n == "fictional_conductivity_release"
                                  else n for n in EXPERIMENTS])
def test_experiment_composes_and_runs(train_cfg, name):
    lines = (ROOT / "conf" / "experiment" / f"{name}.yaml").read_text().splitlines()
    assert lines[0] == "# @package _global_"  # Hydra reads the package header from line 1 only
    assert lines[1].startswith("# python train.py ") and f" experiment={name}" in lines[1]  # the command
    out = train(train_cfg(f"experiment={name}", *QUICK))
    assert out["global_step"] == 2
    assert torch.isfinite(torch.tensor(out["metrics"]["train/loss"]))
    assert any(k.startswith("val/loss_") for k in out["metrics"])
    assert Path(out["checkpoint"]).exists()


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_lora_checkpoint_holds_only_the_adapter_and_exports(train_cfg):
    out = train(train_cfg("experiment=instruct_en", "method=lora", "init_from=null", "trainer.max_steps=3",
                          "trainer.limit_val_batches=0", *PROBE))
    ckpt = torch.load(out["checkpoint"], weights_only=False)
    assert ckpt["state_dict"] and all("lora_" in k for k in ckpt["state_dict"])
    assert ckpt["optimizer_states"]  # optimizer state travels with the adapter
    adapter, merged = out["export"]["adapter"], out["export"]["hf"]
    ids = torch.tensor([[1, 50, 60, 70, 80]])
    with_adapter, _ = load_model(ModelSpec(adapter=adapter))
    merged_model, _ = load_model(ModelSpec(name="merged", name_or_path=merged))
    base, _ = load_model(ModelSpec())
    assert torch.allclose(_logits(with_adapter, ids), _logits(merged_model, ids), atol=1e-4)
    assert not torch.allclose(_logits(base, ids), _logits(merged_model, ids), atol=1e-4)  # it trained


def test_full_finetune_exports_an_hf_folder(train_cfg):
    out = train(train_cfg("experiment=mixed_pretrain_zh", "trainer.max_steps=3", "trainer.limit_val_batches=0", *PROBE))
    ckpt = torch.load(out["checkpoint"], weights_only=False)
    exported, _ = load_model(ModelSpec(name="ft", name_or_path=out["export"]["hf"]))
    sd = exported.state_dict()
    for k, v in ckpt["state_dict"].items():
        assert torch.equal(sd[k.removeprefix("model.")], v)
    assert (Path(out["run_dir"]) / "config.yaml").exists() and (Path(out["run_dir"]) / "run.json").exists()


def _losses(run_dir: Path) -> dict[int, float]:
    out = {}
    for f in sorted((run_dir / "csv").glob("version_*/metrics.csv")):  # a resume logs to the next version
        out.update({int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(f.open()) if r.get("train/loss")})
    return out


def test_resume_continues_the_same_loss_curve(train_cfg, tmp_path):
    """Stop mid-epoch, resume=auto, and match an uninterrupted run step for step (LoRA dropout included)."""
    common = ["experiment=mixed_pretrain_zh", "method=lora", "data.block_size=32", "trainer.max_steps=16",
              "trainer.limit_val_batches=0", "export.enabled=false",
              "data.mix.num_tokens=3000", *PROBE]  # short epochs: the run crosses one
    full = train(train_cfg(*common, run_dir=tmp_path / "a"))
    first = train(train_cfg(*common, "+callbacks.stop._target_=stop_after_steps.StopAfterSteps",
                            "+callbacks.stop.steps=5", run_dir=tmp_path / "b"))
    assert first["global_step"] == 5
    steps_per_epoch = first["data"]["train_items"] // 8
    assert 5 % steps_per_epoch != 0 and steps_per_epoch < 16  # stops mid-epoch, later crosses an epoch
    second = train(train_cfg(*common, "resume=auto", run_dir=tmp_path / "b"))
    assert second["resumed_from"] and second["global_step"] == 16
    a, b = _losses(tmp_path / "a"), _losses(tmp_path / "b")
    assert sorted(a) == sorted(b)
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-4, abs=1e-5), step


def test_wandb_offline_in_run_dir_and_init_from_export(train_cfg, tmp_path):
    """W&B writes offline inside the run dir; a new stage can start from the exported HF folder."""
    first = train(train_cfg("experiment=continued_pretrain_zh", "logger=wandb", "trainer.max_steps=2",
                            "init_from=null", "trainer.limit_val_batches=0", *PROBE, run_dir=tmp_path / "stage1"))
    assert first["wandb"] and Path(first["wandb"]).is_dir()
    assert Path(first["wandb"]).resolve().is_relative_to((tmp_path / "stage1").resolve())
    run_id = (tmp_path / "stage1" / "wandb_run_id").read_text().strip()
    assert run_id in Path(first["wandb"]).name
    second = train(train_cfg("experiment=instruct_en", f"init_from={first['export']['hf']}", "trainer.max_steps=1",
                             "trainer.limit_val_batches=0", "export.enabled=false", *PROBE, run_dir=tmp_path / "stage2"))
    assert second["global_step"] == 1
    again = train(train_cfg("experiment=continued_pretrain_zh", "task=export", "init_from=null",
                            f"resume={tmp_path / 'stage1'}", run_dir=tmp_path / "stage1"))
    assert Path(again["export"]["hf"], "config.json").exists()
    record = json.loads(Path(again["export"]["hf"], "clika_training.json").read_text())
    assert record == {"data.template": "alpaca"}  # a standalone export records the template like the fit's


def test_lora_targets_per_architecture_and_schedule_shape():
    from clika.train.module import lora_targets
    from clika.train.optim import cosine_with_warmup

    assert lora_targets("llama", "auto") == ["q_proj", "v_proj"]
    assert lora_targets("bloom", "auto") == ["query_key_value"]
    assert lora_targets("baichuan", "auto") == ["W_pack"]
    assert lora_targets("some_new_arch", "auto") == "all-linear"
    assert lora_targets("llama", ["q_proj", "k_proj"]) == ["q_proj", "k_proj"]
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = cosine_with_warmup(opt, total_steps=100, warmup_steps=10)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0) and lrs[-1] < 0.01
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
