"""The release's inference protocol, per model family: the spec behind `clika.protocol=paper`.

Every fact here is read from the release's `inference.py` (RiverGao/CLiKA), one class per model family:

| family            | release class          | new tokens | weights    | output string `res`                              |
|-------------------|------------------------|-----------:|------------|--------------------------------------------------|
| llama             | `Llama_model`          | 2          | float16    | decode(all, skip_special_tokens)[len(prompt):].strip() |
| leolm             | `leo_base_model`       | 2          | float16    | as llama                                         |
| baichuan2_base    | `Baichuan_base_model`  | 2          | bfloat16   | decode(all).replace(prompt, '').strip()          |
| bloomz            | `Bloomz_model`         | 2          | bfloat16   | as baichuan2_base                                |
| polylm            | `Polylm_model`         | 4          | bfloat16   | as baichuan2_base (then .strip("\\n"))           |
| bayling           | `Bayling_model`        | 4          | "auto"     | decode(new tokens, skip_special_tokens)          |
| bigtranslate      | `Bigtranslate_model`   | 4          | "auto"     | as bayling                                       |
| mistral_instruct  | `Mistral_model`        | 4          | float32    | chat-wrapped; decode(all).strip("<s>").strip("</s>") minus prompt, [/INST], [INST]; strip |
| baichuan2_chat    | `Baichuan_model`       | 2          | bfloat16   | model.chat(tokenizer, [user: prompt]).strip()    |
| chatglm2          | `Chatglm_model`        | 20 (a)     | bfloat16, then .half() | model.chat(tokenizer, prompt, history=[]): ChatGLM2's "[Round 1] 问：... 答：" prompt, decode(new).strip() |
| chatglm3          | `Chatglm_model`        | 20 (a)     | bfloat16, then .half() | model.chat: build_chat_input (user / assistant command tokens), decode(new[:-1]), process_response |

(a) `Chatglm_model` passes `max_length=len(tokenizer(prompt)["input_ids"]) + 20` to `model.chat`: 20 tokens over the
*unwrapped* prompt, so the answer gets 20 minus the chat template's tokens (what is left after ChatGLM2's
"[Round 1] 问： 答：" is about 4 tokens: its published outputs read "A. It'"). `model.chat` is the hub repository's
remote code; what it does to the prompt, its sampling and its output string are reproduced in clika/scoring/glm.py
(facts and the one thing not reproducible, the release's unseeded sampling, there).

All classes set `generation_config.num_beams = max(2, generation_config.num_beams)` (2-beam search)
and one prompt per `generate` call; `do_sample=False` where the class passes it (every class but
`Polylm_model` / `Bigtranslate_model`, which leave it to the model's generation config). The classes
also set `generation_config.force_word_ids`, a misspelt key that `generate` ignores: decoding is not
constrained. `Mistral_model` loads without `torch_dtype` (float32). ChatGLM's `model.chat` passes its own
`num_beams=1, do_sample=True, top_p=0.8, temperature=0.8` to `generate`, which win over the class's
`generation_config.num_beams = 2`: the release's ChatGLM outputs are single samples (1 beam), and this family's
`num_beams` is exact, not a floor.

A model preset carries these as its `protocol` block (conf/model/*.yaml); presets of models the
release did not run (tiny, gemma3_270m, smollm2_135m, any HF folder) use the llama rule with float32
weights (this project's choice: CPU). A block may override a field; the result then records the
fields that differ from the release (`deviations`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from clika.util.errors import ClikaError

OUTPUT_RULES = ("cut_prompt_chars", "replace_prompt", "new_tokens", "chat_strip", "model_chat", "glm2_chat", "glm3_chat")
GLM_RULES = ("glm2_chat", "glm3_chat")  # clika.scoring.glm: the ChatGLM chat, prompt wrapping of this project's own
SELF_WRAPPED = ("model_chat", *GLM_RULES)  # rules that wrap the prompt without the tokenizer's chat template
DTYPES = ("float32", "float16", "bfloat16", "auto")
KEYS = ("family", "num_beams", "max_new_tokens", "dtype", "output", "chat", "cast")
RELEASE_NUM_BEAMS = 2  # inference.py: num_beams = max(2, generation_config.num_beams)


@dataclass(frozen=True)
class Family:
    release_class: str  # the class of inference.py this family reproduces
    max_new_tokens: int
    dtype: str
    output: str
    chat: bool = False  # the whole few-shot prompt is one user message of the tokenizer's chat template
    # generate() keyword arguments the class passes besides max_new_tokens (values: "eos" = tokenizer.eos_token_id)
    generate_kwargs: Mapping[str, Any] = field(default_factory=dict)
    num_beams: int = RELEASE_NUM_BEAMS  # the beams the class's generate call runs with
    cast: str | None = None  # the dtype the class casts the loaded model to (Chatglm_model: .half())


_LLAMA_KW = {"do_sample": False, "eos_token_id": "eos", "pad_token_id": "eos"}
_GLM_KW = {"do_sample": True, "top_p": 0.8, "temperature": 0.8, "top_k": 50}
FAMILIES: dict[str, Family] = {
    "llama": Family("Llama_model", 2, "float16", "cut_prompt_chars", generate_kwargs=_LLAMA_KW),
    "leolm": Family("leo_base_model", 2, "float16", "cut_prompt_chars", generate_kwargs=_LLAMA_KW),
    "baichuan2_base": Family("Baichuan_base_model", 2, "bfloat16", "replace_prompt",
                             generate_kwargs={"do_sample": False}),
    "bloomz": Family("Bloomz_model", 2, "bfloat16", "replace_prompt", generate_kwargs={"do_sample": False}),
    "polylm": Family("Polylm_model", 4, "bfloat16", "replace_prompt", generate_kwargs={"pad_token_id": "eos"}),
    "bayling": Family("Bayling_model", 4, "auto", "new_tokens", generate_kwargs={"do_sample": False}),
    "bigtranslate": Family("Bigtranslate_model", 4, "auto", "new_tokens"),
    "mistral_instruct": Family("Mistral_model", 4, "float32", "chat_strip", chat=True,
                               generate_kwargs={"do_sample": False}),
    "baichuan2_chat": Family("Baichuan_model", 2, "bfloat16", "model_chat", chat=True),
    # Chatglm_model: AutoModel.from_pretrained(torch_dtype=torch.bfloat16).half(); model.chat(tokenizer, prompt,
    # history=[], max_length=<prompt tokens> + 20) with chat's own defaults (num_beams=1, do_sample=True, top_p=0.8,
    # temperature=0.8; top_k: transformers' GenerationConfig default of the time, 50, which chat does not set)
    "chatglm2": Family("Chatglm_model", 20, "bfloat16", "glm2_chat", chat=True, generate_kwargs=_GLM_KW, num_beams=1,
                       cast="float16"),
    "chatglm3": Family("Chatglm_model", 20, "bfloat16", "glm3_chat", chat=True, generate_kwargs=_GLM_KW, num_beams=1,
                       cast="float16"),
}


@dataclass(frozen=True)
class ProtocolSpec:
    """One model's release protocol. `num_beams` is a floor: the model's own
    `generation_config.num_beams` wins when larger, as in inference.py (ChatGLM: exact, as `model.chat` passes it).
    `cast`: the dtype the loaded model is cast to after loading in `dtype` (ChatGLM: float16)."""

    family: str = "llama"
    num_beams: int = RELEASE_NUM_BEAMS
    max_new_tokens: int = 2
    dtype: str = "float16"
    output: str = "cut_prompt_chars"
    chat: bool = False
    cast: str | None = None

    @property
    def release(self) -> Family:
        return FAMILIES[self.family]

    def deviations(self) -> list[str]:
        """Fields that differ from the release's class of this family ("" list = the release's settings)."""
        fam = self.release
        want = {"num_beams": fam.num_beams, "max_new_tokens": fam.max_new_tokens, "dtype": fam.dtype,
                "output": fam.output, "chat": fam.chat, "cast": fam.cast}
        return [f"{k}={getattr(self, k)!r} (release {fam.release_class}: {v!r})"
                for k, v in want.items() if getattr(self, k) != v]

    def to_dict(self) -> dict:
        return {**asdict(self), "release_class": self.release.release_class, "deviations": self.deviations()}

    @classmethod
    def from_dict(cls, block: Mapping | None, where: str = "model.protocol") -> "ProtocolSpec":
        """Validate a preset's `protocol` block; fields it omits take the family's release values."""
        block = dict(block or {})
        unknown = sorted(set(block) - set(KEYS))
        if unknown:
            raise ClikaError(f"{where}: unknown key(s) {unknown}", fix=f"use only {list(KEYS)}")
        family = block.get("family") or "llama"
        if family not in FAMILIES:
            raise ClikaError(f"{where}.family: unknown protocol family '{family}'",
                             fix=f"use one of {sorted(FAMILIES)} (the classes of the release's inference.py)")
        fam = FAMILIES[family]
        vals = {"family": family, "num_beams": fam.num_beams, "max_new_tokens": fam.max_new_tokens,
                "dtype": fam.dtype, "output": fam.output, "chat": fam.chat, "cast": fam.cast}
        vals.update({k: v for k, v in block.items() if v is not None and k != "cast"})
        if "cast" in block:  # null = no cast (the family's cast is then a deviation)
            vals["cast"] = block["cast"]
        for key in ("num_beams", "max_new_tokens"):
            if not isinstance(vals[key], int) or isinstance(vals[key], bool) or vals[key] < 1:
                raise ClikaError(f"{where}.{key} must be a positive integer, got {vals[key]!r}",
                                 fix=f"e.g. {where}.{key}={getattr(fam, key)}")
        if vals["dtype"] not in DTYPES:
            raise ClikaError(f"{where}.dtype: unknown dtype {vals['dtype']!r}", fix=f"use one of {list(DTYPES)}")
        if vals["cast"] not in (None, *DTYPES[:-1]):
            raise ClikaError(f"{where}.cast: unknown dtype {vals['cast']!r}", fix=f"use null or one of {list(DTYPES[:-1])}")
        if vals["output"] not in OUTPUT_RULES:
            raise ClikaError(f"{where}.output: unknown output rule {vals['output']!r}",
                             fix=f"use one of {list(OUTPUT_RULES)}")
        if not isinstance(vals["chat"], bool):
            raise ClikaError(f"{where}.chat must be true or false, got {vals['chat']!r}", fix=f"{where}.chat=false")
        if vals["output"] in ("chat_strip", *SELF_WRAPPED) and not vals["chat"]:
            raise ClikaError(f"{where}.output={vals['output']} needs the chat wrapping",
                             fix=f"set {where}.chat=true or another output rule")
        return cls(**vals)


def check_chat_template(spec: ProtocolSpec, tokenizer, where: str = "model.protocol") -> None:
    """A chat-wrapped family needs a tokenizer chat template (model_chat calls the model's own `chat`; the ChatGLM
    rules build ChatGLM's prompt themselves, clika.scoring.glm)."""
    if spec.chat and spec.output not in SELF_WRAPPED and not getattr(tokenizer, "chat_template", None):
        raise ClikaError(f"{where}.family={spec.family} wraps the prompt in the tokenizer's chat template, "
                         "but this tokenizer has none",
                         fix=f"use a model whose tokenizer ships a chat template, or set {where}.family=llama")
