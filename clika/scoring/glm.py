"""ChatGLM2 / ChatGLM3 under the release's `Chatglm_model` (clika.protocol=paper, families chatglm2 and chatglm3 of
clika.scoring.release): the release's inference.py does, per prompt,

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
    model = AutoModel.from_pretrained(path, torch_dtype=torch.bfloat16, trust_remote_code=True).half().cuda().eval()
    model.generation_config.num_beams = max(2, model.generation_config.num_beams)   # overridden by chat, below
    input_length = len(tokenizer(input, return_tensors="pt")["input_ids"][0])
    response, history = model.chat(tokenizer, input, history=[], max_length=input_length + 20)
    res = response.strip()

`model.chat` is remote code of the hub repositories (THUDM/chatglm2-6b, THUDM/chatglm3-6b: modeling_chatglm.py and
tokenization_chatglm.py). What it does, with its defaults as the release calls it, reproduced here so that this
project's code runs the loop (`glm_outputs`; `release_generate` hands these rules to it):

- the prompt: chatglm2 `tokenizer([tokenizer.build_prompt(query)])` with build_prompt = "[Round 1]\\n\\n问：{query}\\n\\n答："
  (the tokenizer adds its [gMASK] sop prefix); chatglm3 `tokenizer.build_chat_input(query, history=[], role="user")`
  = [gMASK] sop <|user|> encode("\\n") encode(query) <|assistant|> (`chat_ids`). When the tokenizer carries the remote
  `build_prompt` / `build_chat_input`, the first prompt is checked against it: a revision whose template differs is
  refused in one line.
- generation: `generate(max_length=input_length + 20, num_beams=1, do_sample=True, top_p=0.8, temperature=0.8,
  logits_processor=[InvalidScoreLogitsProcessor()])`; chatglm3 adds `eos_token_id=[eos, <|user|>, <|observation|>]`.
  The answer therefore gets `input_length + 20 - len(chat prompt)` new tokens (at least one, as `generate` gives
  when the prompt already reaches max_length). InvalidScoreLogitsProcessor (nan/inf scores -> zeros with 5e4 at
  token 5) ran before the sampling warpers in the transformers of the time; here the warpers are transformers' own
  Temperature -> TopK(50, the GenerationConfig default then) -> TopP classes, listed after it explicitly so the
  order does not depend on the installed version.
- the output: chatglm2 `process_response(decode(new))` = strip, "[[训练时间]]" -> "2023年"; chatglm3 `decode(new[:-1])`
  (the last token is dropped: the EOS, or at the length limit a real token) then `process_response`: of each
  part of `split("<|assistant|>")`, `metadata, content = part.split("\\n", 1)` (no newline: metadata ""), an empty
  metadata gives `content.strip()` with the date replacement, the last part wins; a non-empty metadata is a tool
  call in ChatGLM3 (a dict, on which the release's `.strip()` would have stopped the run): here its content, stripped.
- weights: loaded in `spec.dtype` (bfloat16) and cast to `spec.cast` (float16) before the first item, as `.half()`
  does: float16 copies of the bfloat16-rounded checkpoint, not the checkpoint read in float16.

Not reproducible: the release sampled without a seed. Each item here is seeded from its prompt text (sha256), so
a run is reproducible and independent of order, sharding and resume, but each answer is one draw from the
distribution the release drew from, not the release's draw (its 46-system files hold one such draw per item).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from clika.scoring.prefix import _device
from clika.scoring.release import ProtocolSpec
from clika.util.errors import ClikaError

GLM2_TEMPLATE = "[Round 1]\n\n问：{}\n\n答："  # ChatGLM2 build_prompt(query, history=[])
GLM3_COMMANDS = ("[gMASK]", "sop", "<|user|>", "<|assistant|>", "<|observation|>")
TRAINING_DATE = ("[[训练时间]]", "2023年")  # process_response's replacement


class InvalidScore(LogitsProcessor):
    """modeling_chatglm.py's InvalidScoreLogitsProcessor, which `model.chat` appends."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if torch.isnan(scores).any() or torch.isinf(scores).any():
            scores.zero_()
            scores[..., 5] = 5e4
        return scores


def _command(tokenizer, token: str, spec: ProtocolSpec) -> int:
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or tid == tokenizer.unk_token_id:
        raise ClikaError(f"model.protocol.family={spec.family}: the tokenizer has no '{token}' token",
                         fix="use a ChatGLM3 checkpoint (THUDM/chatglm3-6b, its remote tokenizer) or another family")
    return tid


def chat_ids(tokenizer, prompt: str, spec: ProtocolSpec) -> list[int]:
    """The ids `model.chat` feeds `generate` for one prompt (history=[])."""
    if spec.output == "glm2_chat":
        return tokenizer(GLM2_TEMPLATE.format(prompt))["input_ids"]
    gmask, sop, user, assistant = (_command(tokenizer, t, spec) for t in GLM3_COMMANDS[:4])
    def enc(text: str) -> list[int]:  # the remote tokenizer's SPTokenizer.encode
        return tokenizer.encode(text, add_special_tokens=False)

    return [gmask, sop, user, *enc("\n"), *enc(prompt), assistant]


def check_remote_template(tokenizer, prompt: str, ids: list[int], spec: ProtocolSpec) -> None:
    """The prompt ids equal the remote tokenizer's own build_prompt / build_chat_input, where it has one."""
    if spec.output == "glm2_chat" and hasattr(tokenizer, "build_prompt"):
        theirs = tokenizer(tokenizer.build_prompt(prompt, history=[]))["input_ids"]
    elif spec.output == "glm3_chat" and hasattr(tokenizer, "build_chat_input"):
        theirs = list(tokenizer.build_chat_input(prompt, history=[], role="user")["input_ids"][0])
        theirs = [int(t) for t in theirs]
    else:
        return
    if list(theirs) != list(ids):
        raise ClikaError(f"model.protocol.family={spec.family}: this tokenizer's own chat prompt differs from the "
                         f"ChatGLM template this project reproduces ({len(theirs)} vs {len(ids)} tokens)",
                         fix="pin model.revision to the hub commit the release used, or report the template")


def stop_ids(model, tokenizer, spec: ProtocolSpec) -> list[int]:
    if spec.output == "glm3_chat":
        return [tokenizer.eos_token_id, _command(tokenizer, "<|user|>", spec),
                _command(tokenizer, "<|observation|>", spec)]
    eos = getattr(model.generation_config, "eos_token_id", None)
    return list([eos] if isinstance(eos, int) else (eos or [tokenizer.eos_token_id]))


def response(tokenizer, new: list[int], spec: ProtocolSpec) -> str:
    """`model.chat`'s response for the generated ids, then the release's `.strip()`."""
    if spec.output == "glm2_chat":
        return tokenizer.decode(new).strip().replace(*TRAINING_DATE).strip()
    content = ""
    for part in tokenizer.decode(new[:-1]).split("<|assistant|>"):
        metadata, content = part.split("\n", maxsplit=1) if "\n" in part else ("", part)
        content = content.strip().replace(*TRAINING_DATE) if not metadata.strip() else content.strip()
    return content.strip()


def item_seed(prompt: str) -> int:
    return int.from_bytes(hashlib.sha256(prompt.encode("utf-8")).digest()[:8], "little") & ((1 << 63) - 1)


def processors(spec: ProtocolSpec) -> tuple[dict, LogitsProcessorList]:
    """generate() keyword arguments and the processor list of `model.chat`'s sampling (module docstring)."""
    kw = dict(spec.release.generate_kwargs)
    chain: list = [InvalidScore()]
    if kw.get("do_sample"):
        keep = 2 if spec.num_beams > 1 else 1  # transformers' min_tokens_to_keep for beam sampling
        chain += [TemperatureLogitsWarper(kw["temperature"]), TopKLogitsWarper(kw["top_k"], min_tokens_to_keep=keep),
                  TopPLogitsWarper(kw["top_p"], min_tokens_to_keep=keep)]
    # the warpers are in the chain: generate's own are switched off (neutral values create none)
    return {"do_sample": bool(kw.get("do_sample")), "temperature": 1.0, "top_k": 0, "top_p": 1.0}, \
        LogitsProcessorList(chain)


def cast_weights(model, spec: ProtocolSpec) -> None:
    """Chatglm_model's `.half()` after loading in bfloat16 (once: a model already in `spec.cast` is left as is)."""
    if spec.cast is not None and any(p.dtype != getattr(torch, spec.cast) for p in model.parameters()):
        model.to(getattr(torch, spec.cast))


def glm_outputs(model, tokenizer, prompts: Sequence[str], spec: ProtocolSpec, *, lockstep: bool = False,
                progress: Callable[[int], object] | None = None) -> list[str]:
    """The release's `res` for each prompt under Chatglm_model (one prompt per `generate` call, as the release)."""
    if lockstep:
        raise ClikaError(f"model.protocol.output={spec.output} cannot run in lockstep over several ranks",
                         fix="evaluate this model with one process (python eval.py)")
    cast_weights(model, spec)
    device = _device(model)
    kw, chain = processors(spec)
    stop = stop_ids(model, tokenizer, spec)
    out = []
    for i, prompt in enumerate(prompts):
        ids = chat_ids(tokenizer, prompt, spec)
        if i == 0:
            check_remote_template(tokenizer, prompt, ids, spec)
        budget = max(1, len(tokenizer(prompt)["input_ids"]) + spec.max_new_tokens - len(ids))  # max_length = input + 20
        x = torch.tensor([ids], device=device)
        torch.manual_seed(item_seed(prompt))
        with torch.no_grad():
            seq = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=budget,
                                 num_beams=spec.num_beams, eos_token_id=stop, pad_token_id=stop[0],
                                 logits_processor=chain, **kw)
        out.append(response(tokenizer, seq[0, len(ids):].tolist(), spec))
        if progress is not None:
            progress(1)
    return out
