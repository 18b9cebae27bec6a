"""GPU plan: MFU of full fine-tuning and LoRA on gemma3_270m in bf16, and evaluation items/s, on one GPU.

Prints every figure with the GPU's name and writes them to --json. Sized to finish in < 10 minutes on
one H100 (model load + 4 training measurements of ~40 steps + one evaluation benchmark).

MFU = achieved model FLOPs / peak dense bf16 FLOPs of the GPU. Model FLOPs per token follow the
PaLM convention: 6 N + 12 L d T (N parameters incl. the tied embedding used as the LM head, L layers,
d hidden size, T sequence length; forward 1/3, backward 2/3). For LoRA the frozen weights need no weight
gradient, so the FLOPs actually executed are ~4 N + 12 L d T: both `mfu` (6N convention, comparable
with full fine-tuning) and `hfu_lora` (executed FLOPs) are printed.

    bash bench/gpu_plan.sh                 # on the GPU machine
    python bench/gpu_plan.py --dry-run     # CPU: tiny model, two steps of everything (checks the plan runs)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

try:
    from bench import common
except ImportError:
    import common  # type: ignore[no-redef]

# dense bf16 peak (no sparsity), FLOP/s
PEAKS = [("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12), ("H200", 989e12), ("GH200", 989e12),
         ("B200", 2250e12), ("A100", 312e12), ("L40S", 362e12), ("A10G", 70e12), ("L4", 121e12)]


def peak_flops(name: str, override_tflops: float | None) -> float | None:
    if override_tflops:
        return override_tflops * 1e12
    for key, val in PEAKS:
        if key.lower() in name.lower():
            return val
    return None


def flops_per_token(model, seq: int) -> tuple[float, float]:
    """(6N + 12 L d T, 4N + 12 L d T) per token."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    n = sum(p.numel() for p in model.parameters())
    attn = 12 * cfg.num_hidden_layers * cfg.hidden_size * seq
    return 6 * n + attn, 4 * n + attn


def synthetic_batches(vocab: int, batch: int, seq: int, n: int, device: str, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(5, vocab, (batch, seq), generator=g)
        out.append({"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device),
                    "labels": ids.to(device)})
    return out


def train_mfu(model_name: str, method: str, loop: str, batch: int, seq: int, steps: int, warmup: int,
              device: str, dtype: str, peak: float | None, log) -> dict:
    import torch

    from bench.train_bench import METHODS, _optimizer, model_spec
    from clika.models.load import load_model
    from clika.train.module import CausalLMModule, apply_method

    torch.manual_seed(0)
    method_cfg = dict(METHODS[method])
    if loop == "plain":
        base, _ = load_model(model_spec(model_name, dtype), device=device)
        model = apply_method(base, method_cfg)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = _optimizer(method_cfg["lr"])(params)
    else:
        import lightning.pytorch as pl

        module = CausalLMModule(model_spec(model_name, dtype), method_cfg, _optimizer(method_cfg["lr"]))
        model = module.model
    vocab = model.config.get_text_config().vocab_size if hasattr(model.config, "get_text_config") else model.config.vocab_size
    data = synthetic_batches(vocab, batch, seq, 4, device)
    fpt6, fpt4 = flops_per_token(model, seq)
    ends: list[float] = []
    if loop == "plain":
        for i in range(warmup + steps):
            loss = model(**data[i % len(data)]).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            common.sync(device)
            ends.append(time.perf_counter())
        peak_mem = torch.cuda.max_memory_allocated() / 2 ** 30 if device.startswith("cuda") else None
    else:
        from torch.utils.data import DataLoader

        class Clock(pl.Callback):
            def on_train_batch_end(self, trainer, *a):
                common.sync(device)
                ends.append(time.perf_counter())

        precision = {"bfloat16": "bf16-true", "float32": "32-true"}[dtype]
        trainer = pl.Trainer(accelerator="gpu" if device.startswith("cuda") else "cpu", devices=1,
                             precision=precision, max_steps=warmup + steps, gradient_clip_val=1.0, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             limit_val_batches=0, num_sanity_val_steps=0, callbacks=[Clock()],
                             use_distributed_sampler=False)
        cpu_data = [{k: v.cpu() for k, v in b.items()} for b in data]
        loader = DataLoader(cpu_data * ((warmup + steps) // len(data) + 1), batch_size=None)
        trainer.fit(module, train_dataloaders=loader)
        peak_mem = torch.cuda.max_memory_allocated() / 2 ** 30 if device.startswith("cuda") else None
    secs = ends[-1] - ends[warmup - 1]
    tok_s = steps * batch * seq / secs
    out = {"model": model_name, "method": method, "loop": loop, "dtype": dtype, "batch": batch, "seq": seq,
           "steps": steps, "tok_s": tok_s, "step_ms": 1000 * secs / steps, "flops_per_token_6n": fpt6,
           "flops_per_token_executed": fpt6 if method == "full" else fpt4, "peak_mem_gib": peak_mem,
           "params": sum(p.numel() for p in model.parameters()),
           "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    if peak:
        out["mfu"] = tok_s * fpt6 / peak
        out["hfu"] = tok_s * out["flops_per_token_executed"] / peak
    log(f"[gpu] train {model_name} {method:<4} {loop:<9} {dtype} b{batch}x{seq}: {tok_s:,.0f} tok/s, "
        f"{out['step_ms']:.1f} ms/step" + (f", MFU {out['mfu']:.1%} (executed {out['hfu']:.1%})" if peak else "")
        + (f", peak mem {peak_mem:.1f} GiB" if peak_mem else ""))
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny model, minimal sizes: checks the plan runs")
    ap.add_argument("--model", default="gemma3_270m")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--loops", default="plain,lightning")
    ap.add_argument("--eval-items-per-file", type=int, default=100)
    ap.add_argument("--eval-official-items-per-file", type=int, default=25)
    ap.add_argument("--eval-batch-size", type=int, default=32)
    ap.add_argument("--peak-tflops", type=float, default=None, help="override the GPU's dense bf16 peak")
    ap.add_argument("--json", default=str(common.ROOT / "bench" / "gpu_results.json"))
    a = ap.parse_args(argv)
    import torch

    if a.dry_run:
        device, dtype, a.model = "cpu", "float32", "tiny"
        a.batch, a.seq, a.steps, a.warmup, a.eval_items_per_file, a.eval_official_items_per_file = 2, 32, 2, 1, 2, 1
        a.eval_batch_size = 4
        torch.set_num_threads(1)
    else:
        if not torch.cuda.is_available():
            raise SystemExit("gpu_plan: no CUDA device (use --dry-run on CPU)")
        device, dtype = "cuda", "bfloat16"
        torch.backends.cuda.matmul.allow_tf32 = True
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "cpu (dry run)"
    peak = peak_flops(gpu, a.peak_tflops)
    log = lambda s: print(f"{s}  [{gpu}]", flush=True)  # noqa: E731
    log(f"[gpu] device {gpu}, peak dense bf16 {peak / 1e12 if peak else float('nan'):.0f} TFLOP/s, "
        f"torch {torch.__version__}")
    t0 = time.perf_counter()
    res: dict = {"gpu": gpu, "peak_flops": peak, "machine": common.machine_info(), "train": [], "dry_run": a.dry_run}
    common.wait_for_dequantized(a.model)
    for method in ("full", "lora"):
        for loop in a.loops.split(","):
            res["train"].append(train_mfu(a.model, method, loop, a.batch, a.seq, a.steps, a.warmup, device, dtype,
                                          peak, log))
    from bench.eval_throughput import bench_eval

    res["eval"] = bench_eval(a.model, datasets=("x_copa", "x_geo"), langs=("en", "zh"),
                             items_per_file=a.eval_items_per_file,
                             official_items_per_file=a.eval_official_items_per_file,
                             batch_size=a.eval_batch_size, device=device, dtype=dtype, log=log)
    res["seconds"] = time.perf_counter() - t0
    Path(a.json).write_text(json.dumps(res, indent=2, default=str) + "\n")
    log(f"[gpu] summary ({res['seconds']:.0f}s):")
    for r in res["train"]:
        log(f"[gpu]   {r['method']:<4} {r['loop']:<9} {r['tok_s']:>12,.0f} tok/s  MFU "
            + (f"{r['mfu']:.1%}" if "mfu" in r else "n/a"))
    for k, v in res["eval"]["methods"].items():
        log(f"[gpu]   eval {k:<10} {v['items_per_s']:>10.1f} items/s")
    for k, v in res["eval"]["ratios"].items():
        log(f"[gpu]   ratio {k:<18} {v:6.2f}x" + ("  (GPU target >= 20x)" if k == "letter/official" else ""))
    return res


if __name__ == "__main__":
    main()
