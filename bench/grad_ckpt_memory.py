"""Gradient checkpointing on a ~100M-parameter Llama built from a config, block 1024: activation memory and step time
with and without it (issue #21: target activation memory >= 3x smaller), measured in one run, one thread.

Each mode runs in a child process: build the model (fp32), one warm-up forward+backward, then one measured step.
Activation memory = the step's peak RSS (ru_maxrss after the step, the process's high-water mark, reset by nothing
else after the warm-up) minus the RSS just before it; the weights and gradients exist already after the warm-up, so
the difference is what the forward keeps for the backward. Writes JSON to stdout and, with --write, a section at the
end of bench/results.md.

    python bench/grad_ckpt_memory.py --write
"""

from __future__ import annotations

import argparse
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


def child(checkpointing: bool, block: int) -> dict:
    import psutil
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    sys.path.insert(0, str(ROOT))
    from clika.train.module import enable_gradient_checkpointing

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**CONFIG))
    model.train()
    if checkpointing:
        enable_gradient_checkpointing(model, lora=False)
    ids = torch.randint(0, CONFIG["vocab_size"], (1, block))

    def step() -> float:
        t = time.perf_counter()
        model(input_ids=ids, labels=ids).loss.backward()
        return time.perf_counter() - t

    step()  # warm-up: gradients allocated, allocator pools filled
    before = psutil.Process().memory_info().rss
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    seconds = step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"checkpointing": checkpointing, "params": sum(p.numel() for p in model.parameters()),
            "rss_before_mb": before / 2**20, "peak_mb": peak / 2**20, "warmup_peak_mb": peak_before / 2**20,
            "activation_mb": (max(peak, peak_before) - before) / 2**20, "step_s": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--block", type=int, default=1024)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--child", choices=["on", "off"])
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child == "on", a.block)))
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = {}
    for mode in ("off", "on"):
        out = subprocess.run([sys.executable, __file__, "--child", mode, "--block", str(a.block)], env=env,
                             capture_output=True, text=True, check=True, timeout=1800)
        runs[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    off, on = runs["off"], runs["on"]
    ratio = off["activation_mb"] / max(on["activation_mb"], 1e-9)
    result = {"block": a.block, "runs": runs, "activation_ratio": ratio, "step_time_ratio": on["step_s"] / off["step_s"],
              "load_average": os.getloadavg()[0]}
    print(json.dumps(result, indent=1))
    if a.write:
        text = (f"\n## Gradient checkpointing (bench/grad_ckpt_memory.py, #21 item 2)\n\n"
                f"Llama built from a config ({off['params'] / 1e6:.0f}M parameters: 12 layers x hidden 768, vocab 32k, "
                f"fp32), batch 1 x block {a.block}, one thread, one measured forward+backward after a warm-up, each mode "
                f"in its own process, one run (load average {result['load_average']:.1f}).\n\n"
                "| | activation memory (step peak - RSS before it) | step peak RSS | step time |\n|---|---|---|---|\n"
                f"| without checkpointing | {off['activation_mb']:.0f} MB | {off['peak_mb']:.0f} MB | {off['step_s']:.1f} s |\n"
                f"| with checkpointing | {on['activation_mb']:.0f} MB | {on['peak_mb']:.0f} MB | {on['step_s']:.1f} s |\n\n"
                f"Activation memory **{ratio:.1f}x smaller** with checkpointing (target >= 3x); step time "
                f"{result['step_time_ratio']:.2f}x (the forward runs again in the backward).\n")
        path = ROOT / "bench" / "results.md"
        path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


if __name__ == "__main__":
    main()
