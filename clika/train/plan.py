"""A memory plan before launch (`python train.py task=plan ...`): per device, the estimated bytes of weights,
gradients, optimizer states, activations and the CLiKA callback's evaluation batch, and the tokens per optimizer step.

Pure functions over a model's transformers config and the run's shape (no Lightning, no Hydra). Formulas:

- parameters: counted on the model built from its config on the `meta` device (no memory, any architecture);
  tied weights once. `largest_layer` (DeepSpeed's term: the most parameters one module owns) likewise.
- model states (Rajbhandari et al., ZeRO, 2020; DeepSpeed's own accounting), Psi = parameters, Phi = trainable,
  w = bytes of a weight as trained (2 under 16-bit precision with DeepSpeed, else model.dtype's), N = ranks:
  no DeepSpeed: weights Psi*w, gradients Phi*w (+ Phi*w DDP buckets), AdamW 2*Phi*w;
  ZeRO-1/2/3: AdamW m, v and the fp32 master copy 12*Phi/N (on the host with offload_optimizer); gradients Phi*w
  (ZeRO-1) or Phi*w/N (ZeRO-2/3), + Phi*4/N fp32 gradients under 16-bit, + the reduce bucket (reduce_bucket_size
  elements, Lightning's 2e8) for ZeRO-2/3; weights Psi*w (ZeRO-1/2) or Psi*w/N plus the gathered working set
  (ZeRO-3: min(Psi, stage3_max_live_parameters, DeepSpeed's 1e9) weights, at least the largest layer; only the
  latter on the device with offload_parameters).
  DeepSpeed's estimators (estimate_zero2/3_model_states_mem_needs, full fine-tuning with 16-bit weights) are reported
  beside it for ZeRO-2/3.
- activations kept for backward, per token and decoder layer (Korthikanti et al., 2022, for a Llama-style layer with
  SDPA attention, no dropout): 10*h + 4*I elements (norm inputs/outputs, q k v, attention output, residual; gate, up,
  act(gate), their product), plus the logits (16-bit, their fp32 upcast and the loss's fp32 softmax: V*(a+8) bytes per
  token). With gradient checkpointing each layer keeps only its input (h) and one layer is recomputed at a time, and
  the loss runs in chunks (clika.train.loss.chunked_loss): the logits of one chunk of positions at a time.
- the optimizer step under ZeRO-3: three fp32 temporaries of one sub-group (`sub_group_size`, at most the rank's
  partition), measured on CPU (bench/zero3_memory.py). ZeRO-3's limits come from clika.train.zero3_buffers (`auto`
  scales them to hidden_size).
- the evaluation batch: a no-grad forward of `eval_batch` x `eval_tokens` (fp32 logits, the KV cache, one layer's
  transient activations).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from transformers import AutoConfig, AutoModelForCausalLM

from clika.train.loss import chunk_positions
from clika.util.errors import ClikaError

GB = 1024 ** 3
DTYPE_BYTES = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2, "auto": 2}


@dataclass(frozen=True)
class Shape:
    """A causal LM's size, read from its transformers config."""

    params: int
    largest_layer: int
    trainable: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    source: str = ""


def config_from_size(size: dict[str, Any]):
    """A transformers config from a preset's `size:` block (model_type + the config's own field names)."""
    fields = dict(size)
    model_type = fields.pop("model_type", None)
    if not model_type:
        raise ClikaError("model.size: no model_type", fix="add model_type: llama (a transformers model type) to it")
    return AutoConfig.for_model(str(model_type), **fields)


def _matches(name: str, targets: Any) -> bool:
    """peft's rule: a target names a module by its full name or its last parts; all-linear: every Linear but the
    output head."""
    if targets == "all-linear":
        return not name.endswith("lm_head")
    targets = [targets] if isinstance(targets, str) else list(targets or [])
    return any(name == t or name.endswith("." + t) for t in targets)


def shape_of(config, lora: dict[str, Any] | None = None, source: str = "") -> Shape:
    """Count parameters on the config's model built on the meta device; `lora` ({r, targets}): the adapter's
    parameters are the trainable ones (r * (in + out) per targeted Linear)."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    unique = {id(p): p.numel() for p in model.parameters()}
    params = sum(unique.values())
    largest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    trainable = params
    if lora:
        trainable = sum(int(lora["r"]) * (m.in_features + m.out_features) for n, m in model.named_modules()
                        if isinstance(m, nn.Linear) and _matches(n, lora["targets"]))
        params += trainable
    text = getattr(config, "text_config", None) or config
    heads = int(text.num_attention_heads)
    return Shape(params=params, largest_layer=largest, trainable=trainable, hidden=int(text.hidden_size),
                 intermediate=int(getattr(text, "intermediate_size", 4 * text.hidden_size)),
                 layers=int(text.num_hidden_layers), heads=heads,
                 kv_heads=int(getattr(text, "num_key_value_heads", None) or heads), vocab=int(text.vocab_size),
                 source=source)


@dataclass(frozen=True)
class Setup:
    """How the run trains: ranks, batch, precision, strategy."""

    world: int = 1
    batch: int = 1
    block: int = 128
    accumulate: int = 1
    dtype: str = "float32"          # model.dtype
    precision: str = "32-true"      # trainer.precision
    stage: int = 0                  # ZeRO stage; 0 = no DeepSpeed
    ddp: bool = False
    offload_optimizer: bool = False
    offload_params: bool = False
    checkpointing: bool = False
    eval_batch: int = 0             # 0: no CLiKA callback
    eval_tokens: int = 512
    live_params: float = 1e9        # ZeRO-3: stage3_max_live_parameters (DeepSpeed's default)
    reduce_bucket: float = 2e8      # ZeRO-2/3: reduce_bucket_size (Lightning's default)
    sub_group: float = 1e12         # ZeRO-3: sub_group_size (Lightning's default; clika.train.zero3_buffers)


@dataclass
class Plan:
    shape: Shape
    setup: Setup
    device: dict[str, float] = field(default_factory=dict)  # bytes per device
    host: dict[str, float] = field(default_factory=dict)    # bytes per rank on the host (offload)
    activations: dict[str, float] = field(default_factory=dict)  # with / without checkpointing
    deepspeed_estimate: float | None = None
    tokens_per_step: int = 0

    @property
    def peak(self) -> float:
        """Model states plus the largest of the training activations, the evaluation batch and the optimizer
        step's temporaries (they do not coexist: the step follows the backward, the callback runs between steps)."""
        d = self.device
        return d["weights"] + d["gradients"] + d["optimizer"] + max(d["activations"], d["evaluation"],
                                                                    d.get("optimizer_step", 0.0))


def _sixteen_bit(precision: str) -> bool:
    return str(precision).startswith(("bf16", "16"))


def activation_bytes(shape: Shape, batch: int, block: int, act_bytes: int, checkpointing: bool) -> float:
    tokens = batch * block
    layer = (10 * shape.hidden + 4 * shape.intermediate) * act_bytes * tokens
    logits = shape.vocab * (act_bytes + 8)
    if checkpointing:
        return shape.layers * shape.hidden * act_bytes * tokens + layer + logits * min(tokens, chunk_positions(shape.vocab))
    return shape.layers * layer + logits * tokens


def estimate(shape: Shape, s: Setup) -> Plan:
    psi, phi, n = shape.params, shape.trainable, max(1, s.world)
    w = DTYPE_BYTES.get(str(s.dtype), 4)
    if s.stage and _sixteen_bit(s.precision):
        w = 2  # DeepSpeed trains 16-bit weights (its fp32 master copy is an optimizer state)
    elif s.stage:
        w = 4
    act = 2 if _sixteen_bit(s.precision) or w == 2 else 4
    host: dict[str, float] = {}
    if not s.stage:
        weights, grads, optim = psi * w, phi * w * (2 if s.ddp and n > 1 else 1), 2 * phi * w
    else:
        optim = 12 * phi / n
        grads = phi * w / (n if s.stage >= 2 else 1) + (phi * 4 / n if w == 2 else 0)
        grads += min(phi, s.reduce_bucket) * w if s.stage >= 2 else 0
        live = max(shape.largest_layer, min(psi, s.live_params))
        weights = psi * w if s.stage < 3 else psi * w / n + live * w
        if s.offload_optimizer:
            host["optimizer"], optim = optim, 0.0
            host["gradients"], grads = phi * 4 / n, grads - (phi * 4 / n if w == 2 else 0)
        if s.stage == 3 and s.offload_params:
            host["weights"], weights = psi * w / n, shape.largest_layer * w
    acts = {"with checkpointing": activation_bytes(shape, s.batch, s.block, act, True),
            "without checkpointing": activation_bytes(shape, s.batch, s.block, act, False)}
    head_dim = shape.hidden // max(1, shape.heads)
    ev_tokens = s.eval_batch * s.eval_tokens
    evaluation = (ev_tokens * (shape.vocab * 4 + 2 * shape.layers * shape.kv_heads * head_dim * act
                               + 2 * (shape.hidden + shape.intermediate) * act)) if s.eval_batch else 0.0
    # ZeRO-3 steps AdamW one sub-group of the rank's fp32 partition at a time: ~3 fp32 temporaries of it (measured,
    # bench/zero3_memory.py); without ZeRO-3 torch's AdamW steps tensor by tensor and the measured peak shows none
    step = 3 * 4 * min(phi / n, s.sub_group) if s.stage == 3 and not s.offload_optimizer else 0.0
    device = {"weights": weights, "gradients": grads, "optimizer": optim,
              "activations": acts["with checkpointing" if s.checkpointing else "without checkpointing"],
              "evaluation": evaluation, "optimizer_step": step}
    plan = Plan(shape, s, device, host, acts, tokens_per_step=s.batch * s.block * n * s.accumulate)
    if s.stage in (2, 3) and phi == psi:
        plan.deepspeed_estimate = _deepspeed_estimate(shape, s)
    return plan


def _deepspeed_estimate(shape: Shape, s: Setup) -> float:
    """DeepSpeed's own per-GPU model-state estimate (it assumes 16-bit weights and every weight trained)."""
    # deferred: DeepSpeed (0.4 s of importtime) only for a plan of a DeepSpeed run
    if s.stage == 3:
        from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

        _, gpu, _ = estimate_zero3_model_states_mem_needs(shape.params, shape.largest_layer, s.world, 1,
                                                          s.offload_optimizer, s.offload_params)
    else:
        from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

        _, gpu = estimate_zero2_model_states_mem_needs(shape.params, s.world, 1, s.offload_optimizer)
    return float(gpu)


def _count(n: float) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def render(plan: Plan, device_memory: float | None = None) -> str:
    """The plan as printed by task=plan (GiB, or MiB for a plan under 1 GiB)."""
    s, sh, d = plan.setup, plan.shape, plan.device
    unit, scale = ("GiB", GB) if plan.peak >= GB else ("MiB", 1024 ** 2)
    strategy = f"ZeRO-{s.stage}" if s.stage else ("DDP" if s.ddp and s.world > 1 else "single device")
    offload = [k for k, on in (("optimizer", s.offload_optimizer), ("parameters", s.offload_params)) if on]
    rows = [("weights", d["weights"], ""), ("gradients", d["gradients"], ""), ("optimizer states", d["optimizer"], "")]
    for key, value in plan.activations.items():
        rows.append((f"activations {key}", value, " <- configured" if (key == "with checkpointing") == s.checkpointing
                     else ""))
    if d.get("optimizer_step"):
        rows.append(("optimizer step (ZeRO-3 sub-group)", d["optimizer_step"], f"  (sub_group_size {s.sub_group:.0e})"))
    if s.eval_batch:
        rows.append(("clika evaluation batch", d["evaluation"], f"  ({s.eval_batch} x {s.eval_tokens} tokens)"))
    rows.append(("total (peak)", plan.peak, f"  of {device_memory / scale:,.0f} {unit}" if device_memory else ""))
    if plan.deepspeed_estimate is not None:
        rows.append(("deepspeed's estimator", plan.deepspeed_estimate, "  (model states only)"))
    lines = [f"model      {_count(sh.params)} parameters ({_count(sh.trainable)} trained), {sh.layers} layers, "
             f"hidden {sh.hidden}, vocab {sh.vocab}  [{sh.source}]",
             f"run        {s.world} device(s), {strategy}{' + offload ' + '/'.join(offload) if offload else ''}, "
             f"{s.dtype} weights, precision {s.precision}, batch {s.batch} x block {s.block} x accumulate "
             f"{s.accumulate}",
             f"per device ({unit})"]
    lines += [f"  {name:<36} {value / scale:9.2f}{note}" for name, value, note in rows]
    if plan.host:
        lines.append(f"host, per rank ({unit}): " + ", ".join(f"{k} {v / scale:.2f}" for k, v in plan.host.items()))
    lines.append(f"tokens per optimizer step: {plan.tokens_per_step:,}")
    return "\n".join(lines)


def over_budget(plan: Plan, device_memory: float | None) -> str | None:
    """A one-line reason when the plan's peak exceeds the device memory, else None."""
    if not device_memory or plan.peak <= device_memory:
        return None
    return (f"the memory plan needs {plan.peak / GB:.1f} GiB per device, more than its {device_memory / GB:.0f} GiB "
            f"(python train.py task=plan ... prints the breakdown)")
