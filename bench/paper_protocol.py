"""items/s of `clika.protocol=paper` (clika.scoring.generate.release_generate: shared-prefix KV reuse) against the
release's own per-item loop (a plain copy of inference.py `Llama_model.model_inference`), same model, same
items, one after the other in one process; every output string must be identical."""

from __future__ import annotations

import torch

from bench import common


def release_llama_loop(model, tok, inputs):
    """inference.py Llama_model.model_inference, as released (num_beams = max(2, generation_config.num_beams))."""
    res = []
    beams = max(2, model.generation_config.num_beams or 1)
    for input in inputs:
        origin_len = len(input)
        enc = tok(input, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                 eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id, max_new_tokens=2,
                                 do_sample=False, num_beams=beams)
        res.append(tok.decode(out[0], skip_special_tokens=True)[origin_len:].strip())
    return res


def bench_paper(model_name: str = "gemma3_270m", datasets=("x_copa", "x_geo"), langs=("en", "zh"),
                items_per_file: int = 25, device: str = "cpu", log=print) -> dict:
    from clika.scoring.generate import release_generate
    from clika.scoring.release import ProtocolSpec
    from clika.scoring.suite import Suite, suite_requests

    model, tok = common.load(model_name, device=device)
    spec = ProtocolSpec.from_dict({**common.model_preset(model_name).get("protocol", {}), "dtype": "float32"})
    suite = Suite(data_root=common.data_root(), datasets=list(datasets), langs=list(langs), limit=items_per_file)
    reqs = suite_requests(suite)
    prompts = {k: [r.context for r in v] for k, v in reqs.items()}
    n = sum(len(v) for v in prompts.values())
    release_generate(model, tok, next(iter(prompts.values()))[:2], spec)  # warm-up, untimed
    with common.Timer(device) as t_rel:
        want = {k: release_llama_loop(model, tok, v) for k, v in prompts.items()}
    with common.Timer(device) as t_ours:
        got = {k: release_generate(model, tok, v, spec) for k, v in prompts.items()}
    same = sum(a == b for k in prompts for a, b in zip(want[k], got[k]))
    out = {"model": model_name, "items": n, "files": len(prompts), "items_per_file": items_per_file,
           "family": spec.family, "clock": common.clock_name(device), "threads": torch.get_num_threads(),
           "release_loop": {"seconds": t_rel.seconds, "items_per_s": n / t_rel.seconds},
           "paper": {"seconds": t_ours.seconds, "items_per_s": n / t_ours.seconds},
           "ratio": t_rel.seconds / t_ours.seconds, "identical_outputs": same, "all_identical": same == n}
    out["target_met"] = out["ratio"] >= 2.0 and out["all_identical"]
    log(f"[paper {model_name}] {n} items: release loop {n / t_rel.seconds:.2f} items/s, protocol=paper "
        f"{n / t_ours.seconds:.2f} items/s ({out['ratio']:.2f}x), identical outputs {same}/{n}")
    return out
