"""One LightningModule around a Hugging Face causal LM, fine-tuned in full or through a LoRA adapter."""

from __future__ import annotations

import random
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn as nn

from clika.util.errors import ClikaError
from transformers import AutoConfig

from clika.models.load import ModelSpec, load_model, load_tokenizer, resolve_model_dir
from clika.train.loss import causal_lm_loss, chunks_the_loss, keeps_logits_by_mask

# LoRA targets per architecture (config.model_type); anything else gets "all-linear".
LORA_TARGETS = {
    "llama": ["q_proj", "v_proj"], "mistral": ["q_proj", "v_proj"], "qwen2": ["q_proj", "v_proj"],
    "gemma": ["q_proj", "v_proj"], "gemma2": ["q_proj", "v_proj"], "gemma3_text": ["q_proj", "v_proj"],
    "gemma3": ["q_proj", "v_proj"], "bloom": ["query_key_value"], "falcon": ["query_key_value"],
    "baichuan": ["W_pack"], "gpt2": ["c_attn"], "gpt_neox": ["query_key_value"],
}


def lora_targets(model_type: str, target_modules: Any) -> Any:
    """`auto` -> the architecture default; `all-linear` and explicit lists pass through."""
    if target_modules in (None, "auto"):
        return LORA_TARGETS.get(model_type, "all-linear")
    return target_modules if isinstance(target_modules, str) else list(target_modules)


def check_lora_targets(model, target_modules: Any, key: str = "method.target_modules") -> None:
    """Every LoRA target must name modules of the model (peft's rule: the full name or its last parts)."""
    if target_modules in (None, "auto", "all-linear"):
        return
    targets = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    names = [n for n, _ in model.named_modules() if n]
    absent = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if absent:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ClikaError(f"{key}: {absent} not found in model '{getattr(model.config, 'model_type', '?')}'",
                         fix=f"use module names of this model, e.g. {linear[:8]}, or {key}=auto / all-linear")


def check_context(model, block_size: int) -> None:
    """data.block_size must fit the model's context (max_position_embeddings); `model` or its config."""
    max_pos = getattr(getattr(model, "config", model), "max_position_embeddings", None)
    if max_pos and block_size > max_pos:
        raise ClikaError(f"data.block_size: {block_size} exceeds the model's context ({max_pos})",
                         fix=f"set data.block_size<={max_pos}")


def apply_method(model, method: dict[str, Any]):
    """Wrap the model for the fine-tuning method: `full` trains all weights, `lora` only the adapter."""
    name = method["name"]
    if name == "full":
        return model
    if name != "lora":
        raise ClikaError(f"method.name: unknown '{name}'", fix="use method=lora or method=full")
    # deferred: peft costs 0.4 s of `python -X importtime` (after torch + transformers) in every process of a
    # full fine-tuning run, the default, which never uses it
    from peft import LoraConfig, get_peft_model

    check_lora_targets(model, lora_targets(model.config.model_type, method.get("target_modules")))
    config = LoraConfig(r=method["r"], lora_alpha=method["alpha"], lora_dropout=method["dropout"],
                        target_modules=lora_targets(model.config.model_type, method.get("target_modules")),
                        bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def enable_gradient_checkpointing(model, lora: bool) -> None:
    """Recompute each layer's activations in backward instead of keeping them (transformers' own switch,
    non-reentrant so it composes with LoRA and DeepSpeed); the KV cache is off while training. Under LoRA the
    frozen embeddings' outputs must require grad, or no gradient would reach the adapters (peft's rule)."""
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x names it so
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    if lora:
        model.enable_input_require_grads()


def zero3_config(trainer) -> dict | None:
    """The DeepSpeed config of a trainer running ZeRO stage 3, else None."""
    strategy = getattr(trainer, "strategy", None)
    return strategy.config if getattr(strategy, "zero_stage_3", False) else None


@contextmanager
def hf_zero3(config: dict | None) -> Iterator[None]:
    """Tell transformers that ZeRO-3 is on while a model loads (its HfDeepSpeedConfig weakref, which
    is_deepspeed_zero3_enabled reads): from_pretrained then builds under zero.Init and copies the weights into the
    partitions (rank 0 reads the files) instead of into the empty local tensors. Unset afterwards, so a later plain
    load in this process (the export on rank 0, tests) is not taken for a ZeRO-3 one."""
    if config is None:
        yield
        return
    # deferred: the DeepSpeed integration (and DeepSpeed itself) only for a ZeRO-3 run
    from transformers.integrations.deepspeed import HfDeepSpeedConfig, unset_hf_deepspeed_config

    keep = HfDeepSpeedConfig(config)  # noqa: F841 - transformers holds only a weakref
    try:
        yield
    finally:
        unset_hf_deepspeed_config()


@contextmanager
def outside_zero_init(active: bool) -> Iterator[None]:
    """Pause an enclosing deepspeed.zero.Init: modules built here keep whole tensors (deepspeed.initialize
    partitions them later). peft initialises an adapter's weights after constructing its layers (lora_B = 0), which
    on an already-partitioned (empty) tensor would do nothing."""
    if not active:
        yield
        return
    from deepspeed.runtime.zero.partition_parameters import restore_init_context, shutdown_init_context

    shutdown_init_context()
    try:
        yield
    finally:
        restore_init_context()


def _rng_state() -> dict[str, Any]:
    """RNG state as tensors and plain types, so checkpoints still load with torch's weights_only=True."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {"torch": torch.get_rng_state(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos,
                                                      has_gauss, gauss],
            "python": [version, torch.tensor(py_state, dtype=torch.int64), py_gauss]}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, py_state, py_gauss = state["python"]
    random.setstate((version, tuple(int(x) for x in py_state.tolist()), py_gauss))


class CausalLMModule(pl.LightningModule):
    """Next-token loss on packed pt blocks or masked sft examples; logs tokens seen and loss per language."""

    def __init__(self, model_spec: ModelSpec, method: dict[str, Any], optimizer: Callable,
                 scheduler: Callable | None = None, val_langs: list[str] | None = None, sharded_build: bool = False):
        """`sharded_build` (DeepSpeed ZeRO-3): the model is built in `configure_model`, inside the strategy's
        zero.Init, so no rank holds it whole; here only the tokenizer and the model's config are read. Otherwise it is
        built here, as always."""
        super().__init__()
        self.model_spec, self.method_cfg, self.method = model_spec, dict(method), method["name"]
        self.optimizer_fn, self.scheduler_fn = optimizer, scheduler
        self.val_langs = list(val_langs or [])
        self.tokens_seen = 0
        self._rng_to_restore: dict | None = None
        # LoRA checkpoints hold only the adapter: frozen base weights are absent when restoring
        self.strict_loading = self.method != "lora"
        if sharded_build:
            path = resolve_model_dir(model_spec)  # tiny / GGUF folders are written here, outside any zero.Init
            self.tokenizer = load_tokenizer(model_spec, path)
            self.model_config = AutoConfig.from_pretrained(path, revision=model_spec.revision,
                                                           trust_remote_code=model_spec.trust_remote_code)
        else:
            self.configure_model()

    @property
    def model(self) -> nn.Module:
        """The (LoRA-wrapped) Hugging Face model; a deferred one is built on first use when read before fit."""
        if self._modules.get("model") is None:
            self.configure_model()
        return self._modules["model"]

    def configure_model(self) -> None:
        """Build the model once (Lightning calls this hook at every fit / validate: later calls do nothing). Under
        ZeRO-3 Lightning runs it inside zero.Init: parameters are partitioned as they are created and
        transformers loads the weights into the partitions (hf_zero3); the LoRA adapter is added outside zero.Init
        (outside_zero_init) and partitioned by deepspeed.initialize."""
        if self._modules.get("model") is not None:
            return
        zero3 = zero3_config(self._trainer)
        with hf_zero3(zero3):
            base, tokenizer = load_model(self.model_spec)
        if self.model_spec.gradient_checkpointing:
            enable_gradient_checkpointing(base, lora=self.method == "lora")
        with outside_zero_init(zero3 is not None):
            model = apply_method(base, self.method_cfg)
        model.train()  # transformers 5 loads in eval mode
        self.model = model
        self.sparse_logits = keeps_logits_by_mask(model)  # clika.train.loss: lm_head only where a label is
        # with checkpointed layers, the output layer's logits would be most of what backward holds: chunk them
        self.chunked_loss = bool(self.model_spec.gradient_checkpointing) and chunks_the_loss(model)
        self.model_config = base.config
        if getattr(self, "tokenizer", None) is None:
            self.tokenizer = tokenizer

    def forward(self, **batch):
        return self.model(**batch)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = causal_lm_loss(self.model, batch, sparse=self.sparse_logits, chunked=self.chunked_loss)
        self.tokens_seen += int(batch["attention_mask"].sum()) * self.trainer.world_size
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        self.log("train/tokens", float(self.tokens_seen), on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0):
        loss = causal_lm_loss(self.model, batch, sparse=self.sparse_logits, chunked=self.chunked_loss)
        lang = self.val_langs[dataloader_idx] if dataloader_idx < len(self.val_langs) else str(dataloader_idx)
        self.log(f"val/loss_{lang}", loss, add_dataloader_idx=False, sync_dist=True,
                 batch_size=batch["input_ids"].shape[0])
        return loss

    def configure_optimizers(self):
        decay, no_decay = [], []
        for n, p in self.model.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim < 2 or "norm" in n.lower() else decay).append(p)
        groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
        optimizer = self.optimizer_fn([g for g in groups if g["params"]])  # ZeRO drops empty groups
        if self.scheduler_fn is None:
            return optimizer
        scheduler = self.scheduler_fn(optimizer, total_steps=int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ---- checkpoints: adapter-only for LoRA, RNG state so a resumed run repeats the same curve ----
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.method == "lora" and "state_dict" in checkpoint:
            trainable = {f"model.{n}" for n, p in self.model.named_parameters() if p.requires_grad}
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}
        checkpoint["tokens_seen"] = self.tokens_seen
        checkpoint["rng"] = _rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.tokens_seen = checkpoint.get("tokens_seen", 0)
        self._rng_to_restore = checkpoint.get("rng")

    def on_train_start(self) -> None:
        self._clock = (time.perf_counter(), self.tokens_seen)

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # restored here, after the loader's iterator (which draws a seed) has fetched the first batch
        if self._rng_to_restore:
            _set_rng_state(self._rng_to_restore)
            self._rng_to_restore = None

    def on_train_end(self) -> None:
        start, tokens = getattr(self, "_clock", (time.perf_counter(), self.tokens_seen))
        self._throughput = (self.tokens_seen - tokens) / max(1e-9, time.perf_counter() - start)

    def throughput(self) -> float | None:
        """Tokens per second (all ranks) over this fit, first batch to last."""
        return getattr(self, "_throughput", None)
