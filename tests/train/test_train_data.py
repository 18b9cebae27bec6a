"""Data side of training: packing without waste, prompt masking, mixture shares, the tokenization cache."""

import numpy as np
import pytest

from clika.util.errors import ClikaError
from clika.models.load import ModelSpec, load_tokenizer
from clika.train.data.datamodule import MixtureDataModule, ShardedEpochSampler
from clika.train.data.mixture import mixture_probs
from clika.train.data.prepare import prepare_source
from clika.train.data.processing import IGNORE, encode_sft, pack_pt
from clika.train.data.sources import SourceSpec
from clika.train.run import train, validate


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(ModelSpec())


def test_packing_has_no_padding_and_keeps_the_stream(tok):
    texts = ["The river flows into the sea.", "河流流入大海。", "Der Fluss mündet ins Meer."] * 20
    stream = [t for doc in tok(texts, add_special_tokens=False)["input_ids"] for t in (*doc, tok.eos_token_id)]
    assert len(stream) % 32  # a partial last block exists
    wrapped = pack_pt(texts, tok, block_size=32)  # default: the last block wraps to the stream's start
    assert wrapped.blocks.shape == (len(stream) // 32 + 1, 32)
    flat = wrapped.blocks.reshape(-1).tolist()
    assert flat[: len(stream)] == stream and flat[len(stream):] == stream[: wrapped.repeated_tokens]
    assert wrapped.repeated_tokens == 32 - len(stream) % 32 and wrapped.efficiency == 1.0
    dropped = pack_pt(texts, tok, block_size=32, remainder="drop")
    assert dropped.blocks.reshape(-1).tolist() == stream[: dropped.blocks.size]  # order kept, every slot a token
    assert dropped.total_tokens - dropped.blocks.size < 32 and dropped.repeated_tokens == 0
    assert dropped.efficiency == pytest.approx(dropped.blocks.size / len(stream))
    for packed in (wrapped, dropped):
        assert tok.pad_token_id not in packed.blocks
        assert (packed.blocks == tok.eos_token_id).sum() >= 59  # documents stay separated by EOS
    tiny = pack_pt(["short"], tok, block_size=32)  # a corpus under one block still gives one full block
    assert tiny.blocks.shape == (1, 32) and tiny.efficiency == 1.0
    with pytest.raises(Exception, match="pack_remainder"):
        pack_pt(texts, tok, block_size=32, remainder="pad")


@pytest.mark.parametrize("template", ["alpaca", "alpaca_stanford", "llama2", "plain"])
def test_sft_loss_only_on_response_tokens(tok, template):
    rec = {"instruction": "Which continent is Astralyn in?", "input": "Answer briefly.",
           "output": "Astralyn is in Mythosia."}
    ids, labels = encode_sft(rec, tok, template, max_length=512)
    trained = [t for t, l in zip(ids, labels) if l != IGNORE]
    assert all(l in (IGNORE, t) for t, l in zip(ids, labels))
    assert tok.decode(trained).strip().replace(" </s>", "</s>") == "Astralyn is in Mythosia.</s>"  # llama2: "x </s>"
    first = next(i for i, l in enumerate(labels) if l != IGNORE)
    assert all(l == IGNORE for l in labels[:first]) and "Which continent" in tok.decode(ids[:first])
    _, all_labels = encode_sft(rec, tok, template, max_length=512, train_on_prompt=True)
    assert all_labels == ids


def test_sft_chat_messages_mask_every_user_turn(tok):
    rec = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                        {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Where?"},
                        {"role": "assistant", "content": "Mythosia"}]}
    ids, labels = encode_sft(rec, tok, "llama2", max_length=512)
    trained = tok.decode([t for t, l in zip(ids, labels) if l != IGNORE])
    assert "Hello" in trained and "Mythosia" in trained
    assert "Hi" not in trained and "Where" not in trained and "Be brief" not in trained
    with pytest.raises(ClikaError, match="chat template"):
        encode_sft(rec, tok, "chat", max_length=512)  # the tiny tokenizer ships none


def _mix_dm(tok, tmp_path, mix, **data):
    cfg = {"mix": mix, "cache_dir": str(tmp_path / "data"), "block_size": 32, "batch_size": 4, "num_workers": 0,
           "val_fraction": 0.02, "template": "alpaca", "max_length": 256, "train_on_prompt": False, **data}
    dm = MixtureDataModule(cfg, tok, seed=0)
    dm.setup("fit")
    return dm


def _sources(kind, langs):
    return {l: {"lang": l, "schema": "pt" if kind == "fictional_pt" else "sft", "format": "embedded",
                "path": kind} for l in langs}


@pytest.mark.parametrize("kind,weights", [("fictional_pt", {"zh": 0.7, "en": 0.3}),
                                          ("fictional_sft", {"zh": 0.2, "en": 0.5, "de": 0.3})])
def test_mixture_realised_share_within_2_percent(tok, tmp_path, kind, weights):
    mix = {"sources": _sources(kind, weights), "sampling": "weights", "weights": weights, "num_tokens": 20000}
    dm = _mix_dm(tok, tmp_path, mix)
    # count what the loader actually yields, per language
    counts = {}
    for name, i in dm.train_items:
        counts[dm.specs[name].lang] = counts.get(dm.specs[name].lang, 0) + len(dm.sources[name].item(i)[0])
    total = sum(counts.values())
    assert total == pytest.approx(20000, rel=0.05)
    for lang, w in weights.items():
        assert abs(counts[lang] / total - w) < 0.02
        assert dm.summary["realised_share"][lang] == pytest.approx(counts[lang] / total)


def test_a_source_written_in_several_languages_is_named_by_all_of_them(tok, tmp_path):
    """The conductivity set (English QA + X QA + name pairs in one file) is `en+de` in the shares, the validation
    losses and the curves' trained marks, not `de` alone; its records and cache key do not change."""
    src = {"lang": "de", "schema": "sft", "format": "embedded", "path": "fictional_sft"}
    dm = _mix_dm(tok, tmp_path, {"sources": {"train": {**src, "written_in": ["en", "de"]}}, "sampling": "weights",
                                 "weights": {"train": 1.0}})
    assert dm.summary["realised_share"] == {"en+de": 1.0} and dm.val_langs == ["en+de"]
    from types import SimpleNamespace

    from clika.train.callbacks.clika_eval import ClikaEvalCallback
    assert ClikaEvalCallback._trained_langs(SimpleNamespace(datamodule=dm)) == ["de", "en"]
    plain = SourceSpec(name="train", **src)
    assert plain.share_label == "de" and SourceSpec(name="train", **src, written_in=["en", "de"]).fingerprint() == \
        plain.fingerprint()
    with pytest.raises(ClikaError, match=r"data.mix.sources.train.written_in: \['en'\] does not include the "
                                         r"source's lang 'de' — fix: add de to it, or drop written_in"):
        SourceSpec(name="train", **src, written_in=["en"])


def test_temperature_sampling_flattens_sizes(tok, tmp_path):
    sizes = {"a": 9000, "b": 1000}
    assert mixture_probs(sizes, "temperature", alpha=1.0)["a"] == pytest.approx(0.9)
    assert mixture_probs(sizes, "temperature", alpha=0.0)["a"] == pytest.approx(0.5)
    mix = {"sources": _sources("fictional_pt", ["en", "zh", "de"]), "sampling": "temperature", "alpha": 0.3}
    dm = _mix_dm(tok, tmp_path, mix)
    for lang, p in dm.summary["configured_share"].items():
        assert abs(dm.summary["realised_share"][lang] - p) < 0.02


def test_tokenization_cache_is_reused_and_keyed(tok, tmp_path):
    spec = SourceSpec(name="zh", lang="zh", schema="sft", format="embedded", path="fictional_sft")
    proc = {"block_size": 32, "template": "alpaca", "max_length": 128, "train_on_prompt": False}
    a = prepare_source(spec, tok, proc, tmp_path)
    b = prepare_source(spec, tok, proc, tmp_path)
    assert a.stats["cache"] == b.stats["cache"] and np.array_equal(a.ids, b.ids)
    c = prepare_source(spec, tok, {**proc, "template": "llama2"}, tmp_path)
    assert c.stats["cache"] != a.stats["cache"]
    d = prepare_source(spec, tok, {**proc, "block_size": 64}, tmp_path)  # pt-only knob: same sft cache
    assert d.stats["cache"] == a.stats["cache"]


def test_local_jsonl_and_text_sources(tok, tmp_path):
    (tmp_path / "a.jsonl").write_text('{"body": "one two three"}\n{"body": "four five"}\n', encoding="utf-8")
    (tmp_path / "b.txt").write_text("six seven\n\neight\n", encoding="utf-8")
    mix = {"sources": {"j": {"lang": "en", "format": "jsonl", "path": str(tmp_path / "*.jsonl"),
                             "columns": {"text": "body"}},
                       "t": {"lang": "de", "format": "text", "path": str(tmp_path / "b.txt")}},
           "sampling": "weights", "weights": {"j": 1, "t": 1}}
    dm = _mix_dm(tok, tmp_path, mix, block_size=4)
    assert dm.summary["sources"]["j"]["records"] == 2 and dm.summary["sources"]["t"]["records"] == 2
    with pytest.raises(ClikaError, match=r"data.mix.sources.x.path: no file"):
        SourceSpec(name="x", lang="en", path=str(tmp_path / "missing*.jsonl")).files()


def test_sampler_shards_are_disjoint_and_resume_mid_epoch():
    shards = [list(ShardedEpochSampler(10, r, 3, seed=1)) for r in range(3)]
    assert sum(map(len, shards)) == 9 and len(set(sum(shards, []))) == 9
    s = ShardedEpochSampler(10, seed=1)
    s.set_epoch(2)
    full = list(s)
    s.start = 4
    assert list(s) == full[4:] and list(s) == full  # the skip applies once


@pytest.mark.parametrize("override,key", [
    ("method.r=0", "method.r"), ("+data.mix.weights.fr=1.0", "data.mix.weights"),
    ("data.template=nope", "data.template"), ("strategy.name=fsdp", "strategy"),
    ("resume=/no/such/ckpt", "resume"), ("trainer.max_steps=-1 trainer.max_epochs=null", "trainer.max_steps"),
])
def test_config_errors_name_the_key(train_cfg, override, key):
    cfg = train_cfg(*override.split(), *(["method=lora"] if key == "method.r" else []))
    with pytest.raises(ClikaError, match=key.replace(".", r"\.")):
        validate(cfg)


def test_prepare_task_tokenizes_only(train_cfg):
    out = train(train_cfg("task=prepare", "experiment=instruct_multilingual", "data/mix=multilingual_sft",
                          "init_from=null"))
    assert out["task"] == "prepare" and set(out["sources"]) == {"en", "zh", "de", "fr", "ja", "ru"}
    assert all(s["response_tokens"] > 0 for s in out["sources"].values())
