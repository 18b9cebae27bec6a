"""A test-only Lightning callback (tests are on sys.path through conftest): `+callbacks.probe._target_=
partition_probe.PartitionProbe +callbacks.probe.out=DIR` records, per rank, what the module's configure_model built:
how many parameters are partitioned (empty local tensor with a ZeRO-3 `ds_numel`), the local shard's size, and
whether the LoRA B matrices start at zero (DIR/rank<N>.json); and each step's loss averaged over the ranks
(DIR/losses.json, rank 0)."""

import json
from pathlib import Path

import lightning.pytorch as pl


class PartitionProbe(pl.Callback):
    def __init__(self, out: str):
        self.out = Path(out)
        self.losses: list[float] = []

    def setup(self, trainer: "pl.Trainer", pl_module, stage: str) -> None:
        built = pl_module.configure_model

        def configure_model() -> None:  # Lightning calls it right after setup, inside the strategy's contexts
            already = pl_module._modules.get("model") is not None
            built()
            self._record(trainer, pl_module, already)

        pl_module.configure_model = configure_model

    def _record(self, trainer, pl_module, already: bool) -> None:
        import deepspeed

        params = list(pl_module.model.named_parameters())
        partitioned = [(n, p) for n, p in params if hasattr(p, "ds_numel") and p.numel() == 0]
        lora_b = [p for n, p in params if "lora_B" in n]
        with deepspeed.zero.GatheredParameters(lora_b, enabled=any(hasattr(p, "ds_numel") for p in lora_b)):
            lora_b_zero = all(float(p.detach().abs().sum()) == 0.0 for p in lora_b)
        row = {"built_before": already, "params": len(params), "partitioned": len(partitioned),
               "full_numel": sum(getattr(p, "ds_numel", p.numel()) for _, p in params),
               "local_numel": sum(p.ds_tensor.numel() if hasattr(p, "ds_tensor") else p.numel() for _, p in params),
               "lora": sum("lora_" in n for n, _ in params), "lora_b_zero": lora_b_zero}
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(row))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(trainer.strategy.reduce(outputs["loss"].detach(), reduce_op="mean")))

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            (self.out / "losses.json").write_text(json.dumps(self.losses))
