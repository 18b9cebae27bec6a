"""The project's one generation loop: every generated answer (the release protocol of the Basic and
Factual streams, the fictional stream's answers) comes from here.

- `release_generate`: the release's inference protocol (`clika.protocol=paper`; facts and sources in
  `clika.protocol`): one prompt per `generate` call, no padding, beam search with
  `max(spec.num_beams, generation_config.num_beams)` beams, the family's `generate` arguments and its
  output-string rule. Fast path: (1) `reuse_prefix`: the few-shot prefix shared by all prompts is run
  once (`clika.scoring.prefix.PrefixCache`, as for the scorers); the rest of each prompt but its last token
  runs on a copy of that KV cache, the cache is repeated for the beams, and `model.generate` then runs only
  the last prompt token and the new tokens; (2)
  `group_size`: prompts of equal token length share one `generate` call (no padding: every row sees
  exactly its own tokens at its own positions; beam search keeps each row's beams apart; a row is cut
  after its first EOS, where a lone call would have stopped). The decoding steps of a 2-token beam search
  are memory-bound (every weight and the whole vocabulary head read for 2 rows), so sharing them is what
  makes it fast. Same tokens at the same positions, so the same beam search; the logits are computed in
  other chunks and batch shapes, so they may differ from the plain loop in the last float bits: the
  output strings are checked item by item against a plain copy of the release loop in
  tests/scoring/test_generate.py (tiny, every path) and tests/eval/test_paper_protocol.py (gemma3_270m,
  400 items, slow).
- `greedy`: greedy left-padded batched continuations (the fictional stream's `generate` scorer).

Lockstep (several ranks, ZeRO-3 / FSDP): every rank must run the same number of forward passes.
`greedy(lockstep=True)` runs exactly `max_new_tokens` steps per batch; `release_generate(lockstep=True)`
counts each item's forwards and tops them up with one-token forwards to a fixed budget (the beams' early
stop at EOS is kept, so the outputs are those of the single-process run).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Sequence

import torch

from clika.util.errors import ClikaError
from clika.scoring.prefix import PrefixCache, _common_prefix_len, _device, _forward_params, base_model
from clika.scoring.glm import glm_outputs
from clika.scoring.release import GLM_RULES, ProtocolSpec, check_chat_template


# ----------------------------------------------------------------------------------------------
# Greedy, batched (fictional stream)
# ----------------------------------------------------------------------------------------------

def eos_ids(model, tokenizer) -> set[int]:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    return set([eos] if isinstance(eos, int) else (eos or [])) | {tokenizer.eos_token_id} - {None}


def greedy(model, tokenizer, contexts: Sequence[str], *, batch_size: int = 16, max_new_tokens: int = 48,
           lockstep: bool = False) -> list[str]:
    """Greedy continuations (decoded, cut at EOS), left-padded batches in the given order.

    lockstep=True runs exactly max_new_tokens steps per batch (no early stop at EOS; the text is cut
    at EOS afterwards), so every rank runs the same number of forward passes.
    """
    device = _device(model)
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = eos_ids(model, tokenizer)
    extra = {"eos_token_id": []} if lockstep else {}
    out: list[str] = []
    try:
        for start in range(0, len(contexts), batch_size):
            chunk = list(contexts[start: start + batch_size])
            batch = tokenizer(chunk, return_tensors="pt", padding=True).to(device)
            with torch.no_grad():
                gen = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                     pad_token_id=pad, **extra)
            for row in gen[:, batch["input_ids"].shape[1]:].tolist():
                stop = next((i for i, t in enumerate(row) if t in eos), len(row))
                out.append(tokenizer.decode(row[:stop], skip_special_tokens=True))
    finally:
        tokenizer.padding_side = side
    return out


# ----------------------------------------------------------------------------------------------
# The release's protocol
# ----------------------------------------------------------------------------------------------

def chat_text(tokenizer, prompt: str) -> str:
    """Mistral_model: the whole few-shot prompt as one user message of the tokenizer's chat template."""
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False)


def prompt_ids(tokenizer, prompt: str, spec: ProtocolSpec) -> list[int]:
    """The token ids the release's class feeds `generate` for one prompt."""
    if spec.chat:  # apply_chat_template(messages, return_tensors="pt"): the rendered text, no added specials
        return tokenizer(chat_text(tokenizer, prompt), add_special_tokens=False)["input_ids"]
    return tokenizer(prompt)["input_ids"]  # tokenizer(input) / tokenizer.encode(input): special tokens added


def generate_kwargs(model, tokenizer, spec: ProtocolSpec) -> dict:
    gc = getattr(model, "generation_config", None)
    beams = max(spec.num_beams, int(getattr(gc, "num_beams", None) or 1))
    kw = {"max_new_tokens": spec.max_new_tokens, "num_beams": beams}
    for k, v in spec.release.generate_kwargs.items():
        kw[k] = tokenizer.eos_token_id if v == "eos" else v
    return kw


def output_string(tokenizer, prompt: str, sequence: list[int], n_prompt: int, spec: ProtocolSpec) -> str:
    """The release's `res` for one prompt and its generated sequence (prompt ids + new ids)."""
    if spec.output == "cut_prompt_chars":  # Llama_model / leo_base_model
        return tokenizer.decode(sequence, skip_special_tokens=True)[len(prompt):].strip()
    if spec.output == "replace_prompt":  # Bloomz_model / Baichuan_base_model / Polylm_model (+ .strip("\n"))
        return tokenizer.decode(sequence).replace(prompt, "").strip().strip("\n")
    if spec.output == "new_tokens":  # Bayling_model / Bigtranslate_model: not stripped
        return tokenizer.decode(sequence[n_prompt:], skip_special_tokens=True, spaces_between_special_tokens=False)
    if spec.output == "chat_strip":  # Mistral_model: str.strip takes character sets, as in the release
        decoded = tokenizer.batch_decode([sequence])[0]
        return (decoded.strip("<s>").strip("</s>").replace(prompt, "").replace("[/INST]", "")
                .replace("[INST]", "").strip())
    raise ClikaError(f"output rule {spec.output!r} has no decoded-sequence form", fix="use release_generate")


class _ForwardCounter:
    """Counts forward passes of a module (the lockstep budget)."""

    def __init__(self, module):
        self.n = 0
        self._h = module.register_forward_pre_hook(self._hook)

    def _hook(self, *_):
        self.n += 1

    def close(self):
        self._h.remove()


@contextmanager
def _generation_config(model, **values):
    """Temporarily set generation_config fields (model.chat reads them there)."""
    gc = model.generation_config
    old = {k: getattr(gc, k, None) for k in values}
    for k, v in values.items():
        setattr(gc, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(gc, k, v)


def _chat_outputs(model, tokenizer, prompts: Sequence[str], spec: ProtocolSpec, lockstep: bool) -> list[str]:
    """Baichuan_model: `model.chat(tokenizer, [user: prompt])` with 2 new tokens and >= 2 beams."""
    if lockstep:
        raise ClikaError("model.protocol.output=model_chat cannot run in lockstep over several ranks",
                         fix="evaluate this model with one process (python eval.py)")
    if not hasattr(model, "chat"):
        raise ClikaError(f"model.protocol.family={spec.family}: the model has no `chat` method",
                         fix="load the model with its remote code (trust_remote_code and a pinned model.revision)")
    beams = max(spec.num_beams, int(getattr(model.generation_config, "num_beams", None) or 1))
    out = []
    with _generation_config(model, max_new_tokens=spec.max_new_tokens, num_beams=beams):
        for p in prompts:
            out.append(model.chat(tokenizer, [{"role": "user", "content": p}]).strip())
    return out


def _groups(ids_all: list[list[int]], size: int) -> list[list[int]]:
    """Item indices grouped by prompt length (equal lengths need no padding), at most `size` per group."""
    by_len: dict[int, list[int]] = {}
    for i, ids in enumerate(ids_all):
        by_len.setdefault(len(ids), []).append(i)
    return [g[k: k + size] for g in by_len.values() for k in range(0, len(g), max(1, size))]


def release_generate(model, tokenizer, prompts: Sequence[str], spec: ProtocolSpec, *, reuse_prefix: bool = True,
                     group_size: int = 16, lockstep: bool = False,
                     progress: Callable[[int], object] | None = None) -> list[str]:
    """The release's output string `res` for each prompt (see the module docstring); `progress(n)` per group.

    `group_size` > 1 runs prompts of equal token length together in one `generate` call (no padding; each row's
    beams are its own, rows are cut after their first EOS as a lone call returns them); lockstep runs one item
    per call."""
    if not prompts:
        return []
    check_chat_template(spec, tokenizer)
    if spec.output in GLM_RULES:  # Chatglm_model: ChatGLM's model.chat, reproduced in clika.scoring.glm
        return glm_outputs(model, tokenizer, prompts, spec, lockstep=lockstep, progress=progress)
    if spec.output == "model_chat":
        return _chat_outputs(model, tokenizer, prompts, spec, lockstep)
    device = _device(model)
    kw = generate_kwargs(model, tokenizer, spec)
    beams = kw["num_beams"]
    stop = kw.get("eos_token_id", getattr(model.generation_config, "eos_token_id", None))
    stop = set([stop] if isinstance(stop, int) else (stop or []))
    ids_all = [prompt_ids(tokenizer, p, spec) for p in prompts]
    p_len = _common_prefix_len(ids_all) if reuse_prefix else 0
    base = base_model(model)
    counter = _ForwardCounter(base) if lockstep else None
    out: list[str | None] = [None] * len(prompts)
    try:
        prefix = PrefixCache(model, ids_all[0][:p_len]) if p_len else None
        # per item, forwards of the whole model: the generation steps (+ the suffix when it has no decoder)
        budget = spec.max_new_tokens + (1 if prefix is not None and prefix.runner is model else 0)
        for group in _groups(ids_all, 1 if lockstep else group_size):
            if counter is not None:
                counter.n = 0
            rows = [ids_all[i] for i in group]
            n = len(rows[0])
            x = torch.tensor(rows, device=device)
            extra = {}
            if prefix is not None:
                suffix = [r[p_len:-1] for r in rows]
                cache = prefix.run(suffix)
                if lockstep and not suffix[0]:  # every rank runs one suffix forward per item
                    prefix.run([rows[0][-1:]], after_prefix=False)
                cache.batch_repeat_interleave(beams)
                extra = {prefix.cache_key: cache}
            with torch.no_grad():
                seqs = model.generate(input_ids=x, attention_mask=torch.ones_like(x), **kw, **extra).tolist()
            for i, ids, seq in zip(group, rows, seqs):
                new = seq[n:]
                end = next((k + 1 for k, t in enumerate(new) if t in stop), len(new))  # a lone call ends there
                out[i] = output_string(tokenizer, prompts[i], ids + new[:end], n, spec)
            if progress is not None:
                progress(len(group))
            if counter is not None:
                _top_up(base, counter, budget, rows[0][-1], device)
    finally:
        if counter is not None:
            counter.close()
    return out  # type: ignore[return-value]


def _top_up(base, counter: _ForwardCounter, budget: int, token: int, device) -> None:
    """One-token forwards until this item has used `budget` forward passes (lockstep over ranks)."""
    keep = {"logits_to_keep": 1} if "logits_to_keep" in _forward_params(base) else {}
    if counter.n > budget:
        raise RuntimeError(f"lockstep: an item used {counter.n} forward passes, more than its budget {budget}")
    with torch.no_grad():
        while counter.n < budget:
            base(input_ids=torch.tensor([[token]], device=device), use_cache=False, **keep)
