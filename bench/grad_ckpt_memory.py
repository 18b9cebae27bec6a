"""Gradient checkpointing on a ~100M-parameter Llama built from a config, block 1024: activation memory and step time
with and without it (issue #21: target activation memory >= 3x smaller), measured in one run, one thread.

Each mode runs in a child process: build the model (fp32), one warm-up forward+backward, then one measured step, the
loss computed as the training module does (`clika.train.loss.causal_lm_loss`; chunked with checkpointing).
Activation memory = what the forward leaves alive for the backward: RSS after the forward minus RSS before it, each
read after `malloc_trim(0)` so that freed temporaries do not count. Also reported: the step's peak RSS
(ru_maxrss, the high-water mark) over the RSS before it, which adds the backward's transients (one recomputed layer,
the gradients being accumulated into the warm-up's, glibc's retained free chunks). Writes JSON to stdout and, with --write, a section at the
end of bench/results.md.

    python bench/grad_ckpt_memory.py --write
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = dict(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12,
              num_key_value_heads=12, max_position_embeddings=2048, tie_word_embeddings=True)


def child(mode: str, block: int) -> dict:
    checkpointing = mode != "off"
    import psutil
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    sys.path.insert(0, str(ROOT))
    from clika.train.loss import causal_lm_loss, chunks_the_loss
    from clika.train.module import enable_gradient_checkpointing

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**CONFIG))
    model.train()
    if checkpointing:
        enable_gradient_checkpointing(model, lora=False)
    ids = torch.randint(0, CONFIG["vocab_size"], (1, block))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    # `on`: as the training module decides (clika.train.module); `layers`: checkpointed layers, the model's own loss
    chunked = mode == "on" and chunks_the_loss(model)

    libc = ctypes.CDLL(ctypes.util.find_library("c"))

    def rss() -> int:
        libc.malloc_trim(0)  # freed temporaries back to the OS: RSS = live allocations
        return psutil.Process().memory_info().rss

    def step() -> tuple[float, int]:
        """One forward+backward: (seconds, bytes the forward leaves alive for the backward)."""
        t = time.perf_counter()
        start = rss()
        loss = causal_lm_loss(model, batch, chunked=chunked)
        kept = rss() - start
        loss.backward()
        return time.perf_counter() - t, kept

    step()  # warm-up: gradients allocated, allocator pools filled
    before = rss()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    seconds, kept = step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"mode": mode, "checkpointing": checkpointing, "chunked_loss": chunked, "params": sum(p.numel() for p in model.parameters()),
            "rss_before_mb": before / 2**20, "peak_mb": peak / 2**20, "warmup_peak_mb": peak_before / 2**20,
            "kept_mb": kept / 2**20, "step_peak_over_mb": (max(peak, peak_before) - before) / 2**20, "step_s": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--block", type=int, default=1024)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--child", choices=["off", "layers", "on"])
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.block)))
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = {}
    for mode in ("off", "layers", "on"):
        out = subprocess.run([sys.executable, __file__, "--child", mode, "--block", str(a.block)], env=env,
                             capture_output=True, text=True, check=True, timeout=1800)
        runs[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    off, on = runs["off"], runs["on"]
    ratio = off["kept_mb"] / max(on["kept_mb"], 1e-9)
    peak_ratio = off["step_peak_over_mb"] / max(on["step_peak_over_mb"], 1e-9)
    result = {"block": a.block, "runs": runs, "activation_ratio": ratio, "step_peak_ratio": peak_ratio, "step_time_ratio": on["step_s"] / off["step_s"],
              "load_average": os.getloadavg()[0]}
    print(json.dumps(result, indent=1))
    if a.write:
        rows = "".join(f"| {label} | {r['kept_mb']:.0f} MB | {r['step_peak_over_mb']:.0f} MB | {r['peak_mb']:.0f} MB | "
                       f"{r['step_s']:.1f} s |\n" for label, r in (
                           ("without checkpointing", off), ("checkpointed layers, the model's own loss", runs["layers"]),
                           ("checkpointed layers + chunked loss (`model.gradient_checkpointing=true`)", on)))
        text = (f"\n## Gradient checkpointing (bench/grad_ckpt_memory.py, #21 item 2)\n\n"
                f"Llama built from a config ({off['params'] / 1e6:.0f}M parameters: 12 layers x hidden 768, vocab 32k, "
                f"fp32), batch 1 x block {a.block}, one thread, one measured forward+backward after a warm-up, each mode "
                f"in its own process, one run (load average {result['load_average']:.1f}). Activation memory = RSS "
                "after the forward - RSS before it (both after malloc_trim: what the forward keeps for the backward); "
                "step peak over = the step's high-water mark - RSS before it (adds the backward's transients).\n\n"
                "| | activation memory | step peak over | step peak RSS | step time |\n|---|---|---|---|---|\n" + rows +
                f"\nActivation memory **{ratio:.1f}x smaller** with checkpointing (target >= 3x; checkpointed layers "
                f"alone: {off['kept_mb'] / max(runs['layers']['kept_mb'], 1e-9):.1f}x); step peak over the "
                f"pre-step RSS {peak_ratio:.1f}x smaller; step time {result['step_time_ratio']:.2f}x.\n")
        path = ROOT / "bench" / "results.md"
        path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


if __name__ == "__main__":
    main()
