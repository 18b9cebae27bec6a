"""The embedded default model: a small Llama with a byte-level BPE tokenizer trained on text we own.

Built from a config (no download), cached under the cache root keyed by a hash of the config and
the corpus, so every process that asks for the same tiny model gets the same weights.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from importlib import resources
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from clika.util.atomic import atomic_dir
from clika.util.cache import cache_root
from clika.fictional.generated import build_world
from clika.util.languages import LANGS
from clika.models.spec import TinyConfig

SPECIAL_TOKENS = ["<s>", "</s>", "<pad>", "<unk>"]


def world_name_tokens(world: dict) -> list[str]:
    """Every continent and city name of the generated world, in every language, without repeats."""
    w = build_world(world)
    return list(dict.fromkeys(n for place in (*w.continents, *w.cities) for n in place.names.values()))


def owned_corpus() -> list[str]:
    """Multilingual sentences written by the project (all ten scripts), shipped in clika/assets."""
    root = resources.files("clika").joinpath("assets/corpus")
    lines: list[str] = []
    for lang in LANGS:
        lines += [l for l in root.joinpath(f"{lang}.txt").read_text(encoding="utf-8").splitlines() if l]
    return lines


def _key(cfg: TinyConfig, corpus: list[str]) -> str:
    fields = {k: v for k, v in asdict(cfg).items() if not (k == "name_tokens_world" and v is None)}
    h = hashlib.sha256(json.dumps(fields, sort_keys=True).encode())  # default folders keep their old key
    h.update("\n".join(corpus).encode())
    return h.hexdigest()[:12]


def train_tokenizer(corpus: list[str], vocab_size: int):
    """Byte-level BPE: every byte is in the base alphabet, so any script round-trips exactly."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
        clean_up_tokenization_spaces=False, model_max_length=2048)


def save_folder_atomically(out: Path, *parts) -> Path:
    """save_pretrained each part into a temp dir renamed to `out`: concurrent builders either win or find the
    folder built, and a killed build leaves no half-written folder."""
    with atomic_dir(out) as tmp:
        for part in parts:
            part.save_pretrained(tmp)
    return out


def build_tiny(cfg: TinyConfig | None = None, cache_dir: str | Path | None = None) -> Path:
    """Return a cached HF folder (config, weights, tokenizer) for the tiny model, building it once."""
    cfg = cfg or TinyConfig()
    corpus = owned_corpus() + list(cfg.extra_corpus)
    out = Path(cache_dir or cache_root() / "models") / f"tiny-{_key(cfg, corpus)}"
    if (out / "config.json").exists() and (out / "tokenizer.json").exists():
        return out
    tokenizer = train_tokenizer(corpus, cfg.vocab_size)
    if cfg.name_tokens_world is not None:
        tokenizer.add_tokens(world_name_tokens(dict(cfg.name_tokens_world)))  # matched before BPE: one token each
    torch.manual_seed(cfg.seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads, max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=cfg.tie_word_embeddings, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(config)
    save_folder_atomically(out, model, tokenizer)
    return out
