"""Instruction templates: how an sft record becomes prompt / response text.

Shared by training (loss only on response segments) and by evaluation of the fictional stream, so a
model is asked exactly the way it was taught.
"""

from __future__ import annotations

from typing import Any

from clika.util.errors import ClikaError

TEMPLATES = ("alpaca", "alpaca_stanford", "llama2", "chat", "plain")

ALPACA_HEAD = ("Below is an instruction that describes a task. "
               "Write a response that appropriately completes the request.\n\n")
ALPACA_HEAD_INPUT = ("Below is an instruction that describes a task, paired with an input that provides "
                     "further context. Write a response that appropriately completes the request.\n\n")
# `alpaca` is LLaMA-Factory's template of that name, the one the release's fictional fine-tuning used
# (RiverGao/CLiKA fictional/trainLora.sh and trainFull.sh: `--template alpaca` for Llama-2-13B / LLaMA-7B;
# hiyouga/LLaMA-Factory src/llmtuner/extras/template.py): turn 0 = bos + header + "\n\n" +
# "### Instruction:\n{query}\n\n### Response:\n", response + eos; turn t = "\n\n" + bos + the same prompt.
# The query is the instruction, plus "\n" + input when there is one (LLaMA-Factory's preprocessing); a
# record's system text replaces the header. bos only when tokenizer.bos_token_id is truthy (as there).
# `alpaca_stanford` is the Stanford Alpaca layout (header "...paired with an input...", `### Input:` block).
LF_ALPACA_HEAD = ("Below is an instruction that describes a task. "
                  "Write a response that appropriately completes the request.")


def _turns(record: dict[str, Any]) -> tuple[str | None, list[tuple[str, str, str]]]:
    """(system, [(user, input, assistant), ...]) from an Alpaca record or a chat `messages` list."""
    if "messages" not in record:
        return None, [(record["instruction"], record.get("input", ""), record["output"])]
    msgs = list(record["messages"])
    system = msgs.pop(0)["content"] if msgs and msgs[0]["role"] == "system" else None
    turns = []
    for user, bot in zip(msgs[0::2], msgs[1::2]):
        if user["role"] != "user" or bot["role"] != "assistant":
            raise ClikaError(f"sft messages must alternate user/assistant, got {user['role']}/{bot['role']}",
                             fix="fix the record or drop it from the source")
        turns.append((user["content"], "", bot["content"]))
    return system, turns


def render_segments(record: dict[str, Any], template: str, tokenizer) -> list[tuple[str, bool]]:
    """Alternating (text, is_response) segments of one record under `template`."""
    system, turns = _turns(record)
    bos, eos = tokenizer.bos_token or "", tokenizer.eos_token or ""
    segs: list[tuple[str, bool]] = []
    if template == "alpaca":
        lf_bos = bos if getattr(tokenizer, "bos_token_id", None) else ""
        for i, (user, inp, bot) in enumerate(turns):
            query = user + (f"\n{inp}" if inp else "")
            start = f"{lf_bos}{system or LF_ALPACA_HEAD}\n\n" if i == 0 else f"\n\n{lf_bos}"
            segs += [(f"{start}### Instruction:\n{query}\n\n### Response:\n", False), (bot + eos, True)]
    elif template == "alpaca_stanford":
        for user, inp, bot in turns:
            head = ALPACA_HEAD_INPUT if inp else ALPACA_HEAD
            body = f"### Instruction:\n{user}\n\n" + (f"### Input:\n{inp}\n\n" if inp else "")
            segs += [(("" if segs else (system + "\n\n" if system else "")) + head + body + "### Response:\n",
                      False), (bot + eos, True)]
    elif template == "llama2":
        for i, (user, inp, bot) in enumerate(turns):
            user = user + (f"\n{inp}" if inp else "")
            if i == 0 and system:
                user = f"<<SYS>>\n{system}\n<</SYS>>\n\n{user}"
            segs += [(f"{bos}[INST] {user} [/INST]", False), (f" {bot} {eos}", True)]
    elif template == "plain":
        for user, inp, bot in turns:
            segs += [(user + (f"\n{inp}" if inp else "") + "\n", False), (bot + eos, True)]
    elif template == "chat":
        if not getattr(tokenizer, "chat_template", None):
            raise ClikaError("data.template=chat: the tokenizer has no chat template",
                             fix="use data.template=alpaca or llama2, or a model whose tokenizer ships one")
        msgs = ([{"role": "system", "content": system}] if system else [])
        prev = ""
        for user, inp, bot in turns:
            msgs.append({"role": "user", "content": user + (f"\n{inp}" if inp else "")})
            prompt = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            msgs.append({"role": "assistant", "content": bot})
            full = tokenizer.apply_chat_template(msgs, tokenize=False)
            if not (prompt.startswith(prev) and full.startswith(prompt)):
                raise ClikaError("data.template=chat: the chat template is not prefix-stable",
                                 fix="use data.template=alpaca or llama2")
            segs += [(prompt[len(prev):], False), (full[len(prompt):], True)]
            prev = full
    else:
        raise ClikaError(f"data.template: unknown template '{template}'", fix=f"use one of {TEMPLATES}")
    return segs
