"""Checkpoints -> plain Hugging Face folders: full weights, a LoRA adapter, or the adapter merged in.

Works for Lightning `.ckpt` files and DeepSpeed ZeRO checkpoint directories alike (ZeRO shards are
consolidated to fp32 on the CPU), so `eval.py` only ever sees HF folders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from clika.util.atomic import atomic_dir
from clika.util.errors import ClikaError
from clika.util.jsonl import write_json
from clika.models.load import TRAINING_RECORD, ModelSpec, load_model
from clika.train.module import apply_method


def load_trained_state(ckpt_path: str | Path) -> dict[str, torch.Tensor]:
    """The trained weights of a checkpoint, keyed like the HF/peft model (the `model.` prefix removed)."""
    path = Path(ckpt_path)
    if not path.exists():
        raise ClikaError(f"checkpoint '{path}' does not exist", fix="point at a .ckpt file or a ZeRO checkpoint dir")
    if path.is_dir():  # DeepSpeed: per-rank shards under <dir>/<tag>/
        # deferred: DeepSpeed (0.4 s of `python -X importtime`) only for ZeRO checkpoint dirs
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        state = get_fp32_state_dict_from_zero_checkpoint(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    return {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}


def _save_atomic(out: Path, save) -> Path:
    with atomic_dir(out, replace=True) as tmp:
        save(tmp)
    return out


def export_checkpoint(ckpt_path: str | Path, spec: ModelSpec, method: dict[str, Any], out_dir: str | Path,
                      merge: bool = True, training: dict[str, Any] | None = None) -> dict[str, str]:
    """Write `out_dir/hf` (full, or LoRA merged when `merge`) and `out_dir/adapter` (LoRA); `training` (e.g. the
    run's data.template) is recorded beside the weights as TRAINING_RECORD, so an evaluation asks as it was taught."""
    state = load_trained_state(ckpt_path)
    base, tokenizer = load_model(spec)
    model = apply_method(base, method)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected:
        raise ClikaError(f"checkpoint '{ckpt_path}' does not match the model ({len(unexpected)} unexpected keys, "
                         f"e.g. {unexpected[0]})", fix="export with the same model= and method= as training")
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    if not_loaded := trained & set(missing):
        raise ClikaError(f"checkpoint '{ckpt_path}' lacks {len(not_loaded)} trained weights",
                         fix="export with the same model= and method= as training")
    out_dir, written = Path(out_dir), {}

    def save_with_tokenizer(m):
        def save(tmp: Path) -> None:
            m.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            if training:
                write_json(tmp / TRAINING_RECORD, training)
        return save

    if method["name"] == "lora":
        written["adapter"] = str(_save_atomic(out_dir / "adapter", save_with_tokenizer(model)))
        if merge:
            written["hf"] = str(_save_atomic(out_dir / "hf", save_with_tokenizer(model.merge_and_unload())))
    else:
        written["hf"] = str(_save_atomic(out_dir / "hf", save_with_tokenizer(model)))
    return written
