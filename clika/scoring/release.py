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

All classes set `generation_config.num_beams = max(2, generation_config.num_beams)` (2-beam search)
and one prompt per `generate` call; `do_sample=False` where the class passes it (every class but
`Polylm_model` / `Bigtranslate_model`, which leave it to the model's generation config). The classes
also set `generation_config.force_word_ids`, a misspelt key that `generate` ignores: decoding is not
constrained. `Mistral_model` loads without `torch_dtype` (float32).

A model preset carries these as its `protocol` block (conf/model/*.yaml); presets of models the
release did not run (tiny, gemma3_270m, smollm2_135m, any HF folder) use the llama rule with float32
weights (this project's choice: CPU). A block may override a field; the result then records the
fields that differ from the release (`deviations`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from clika.util.errors import ClikaError

OUTPUT_RULES = ("cut_prompt_chars", "replace_prompt", "new_tokens", "chat_strip", "model_chat")
DTYPES = ("float32", "float16", "bfloat16", "auto")
KEYS = ("family", "num_beams", "max_new_tokens", "dtype", "output", "chat")


@dataclass(frozen=True)
class Family:
    release_class: str  # the class of inference.py this family reproduces
    max_new_tokens: int
    dtype: str
    output: str
    chat: bool = False  # the whole few-shot prompt is one user message of the tokenizer's chat template
    # generate() keyword arguments the class passes besides max_new_tokens (values: "eos" = tokenizer.eos_token_id)
    generate_kwargs: Mapping[str, Any] = field(default_factory=dict)


_LLAMA_KW = {"do_sample": False, "eos_token_id": "eos", "pad_token_id": "eos"}
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
}
RELEASE_NUM_BEAMS = 2  # inference.py: num_beams = max(2, generation_config.num_beams)


@dataclass(frozen=True)
class ProtocolSpec:
    """One model's release protocol. `num_beams` is a floor: the model's own
    `generation_config.num_beams` wins when larger, as in inference.py."""

    family: str = "llama"
    num_beams: int = RELEASE_NUM_BEAMS
    max_new_tokens: int = 2
    dtype: str = "float16"
    output: str = "cut_prompt_chars"
    chat: bool = False

    @property
    def release(self) -> Family:
        return FAMILIES[self.family]

    def deviations(self) -> list[str]:
        """Fields that differ from the release's class of this family ("" list = the release's settings)."""
        fam = self.release
        want = {"num_beams": RELEASE_NUM_BEAMS, "max_new_tokens": fam.max_new_tokens, "dtype": fam.dtype,
                "output": fam.output, "chat": fam.chat}
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
        vals = {"family": family, "num_beams": RELEASE_NUM_BEAMS, "max_new_tokens": fam.max_new_tokens,
                "dtype": fam.dtype, "output": fam.output, "chat": fam.chat}
        vals.update({k: v for k, v in block.items() if v is not None})
        for key in ("num_beams", "max_new_tokens"):
            if not isinstance(vals[key], int) or isinstance(vals[key], bool) or vals[key] < 1:
                raise ClikaError(f"{where}.{key} must be a positive integer, got {vals[key]!r}",
                                 fix=f"e.g. {where}.{key}={getattr(fam, key, RELEASE_NUM_BEAMS)}")
        if vals["dtype"] not in DTYPES:
            raise ClikaError(f"{where}.dtype: unknown dtype {vals['dtype']!r}", fix=f"use one of {list(DTYPES)}")
        if vals["output"] not in OUTPUT_RULES:
            raise ClikaError(f"{where}.output: unknown output rule {vals['output']!r}",
                             fix=f"use one of {list(OUTPUT_RULES)}")
        if not isinstance(vals["chat"], bool):
            raise ClikaError(f"{where}.chat must be true or false, got {vals['chat']!r}", fix=f"{where}.chat=false")
        if vals["output"] in ("chat_strip", "model_chat") and not vals["chat"]:
            raise ClikaError(f"{where}.output={vals['output']} needs the chat wrapping",
                             fix=f"set {where}.chat=true or another output rule")
        return cls(**vals)


def check_chat_template(spec: ProtocolSpec, tokenizer, where: str = "model.protocol") -> None:
    """A chat-wrapped family needs a tokenizer chat template (model_chat calls the model's own `chat`)."""
    if spec.chat and spec.output != "model_chat" and not getattr(tokenizer, "chat_template", None):
        raise ClikaError(f"{where}.family={spec.family} wraps the prompt in the tokenizer's chat template, "
                         "but this tokenizer has none",
                         fix=f"use a model whose tokenizer ships a chat template, or set {where}.family=llama")
