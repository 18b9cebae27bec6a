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


# ---- a rank's memory per block (#21): no per-item arrays for pt, int32 indices; the same items in the same order ----

def _allocate_before(lengths, probs, total_tokens, seed):
    """mixture.allocate before the Uniform lengths (commit 2189289): per-item int64 arrays; (source, item) pairs."""
    out = []
    for s, (name, lens) in enumerate(sorted(lengths.items())):
        target = probs[name] * total_tokens
        if target <= 0 or len(lens) == 0:
            continue
        rng = np.random.default_rng([seed, s])
        got, picked = 0, []
        while got < target:
            perm = rng.permutation(len(lens))
            took = np.asarray(lens, np.int64)[perm]
            before = got + np.concatenate([[0], np.cumsum(took)[:-1]])
            stop = before + took / 2 >= target
            if stop.any():
                picked.append(perm[: int(np.argmax(stop))])
                break
            picked.append(perm)
            got += int(took.sum())
        out += [(name, int(i)) for i in np.concatenate(picked)]
    return out


def test_uniform_lengths_allocate_exactly_the_items_of_the_array_path():
    from clika.train.data.mixture import Uniform, allocate

    r = np.random.default_rng(5)
    cases = 0
    for t in range(120):
        names = "abcd"[: r.integers(1, 5)]
        counts = {n: int(r.integers(1, 400)) for n in names}
        block = {n: int(r.choice([1, 3, 32, 128, 2048])) for n in names}
        w = r.random(len(names))
        probs = {n: float(x / w.sum()) for n, x in zip(names, w)}
        natural = sum(counts[n] * block[n] for n in names)
        most = min(8 * counts[n] * block[n] / probs[n] for n in names)  # at most ~8 passes over any source
        for total in {min(natural, most), int(natural * r.uniform(0.01, 1)), int(min(most, natural * r.uniform(1, 7))),
                      1, int(r.integers(1, most + 2))}:  # down- and up-sampled, several whole passes
            arrays = {n: np.full(counts[n], block[n], np.int64) for n in names}
            mixed = {n: (Uniform(counts[n], block[n]) if k % 2 == 0 else arrays[n]) for k, n in enumerate(names)}
            uni = {n: Uniform(counts[n], block[n]) for n in names}
            ref = allocate(arrays, probs, total, t)
            assert list(ref) == _allocate_before(arrays, probs, total, t)
            for lengths in (uni, mixed):
                got = allocate(lengths, probs, total, t)
                assert list(got) == list(ref) and got.names == ref.names and got.bounds == ref.bounds
                assert np.array_equal(got.index, ref.index) and got.index.dtype == np.int32
                assert got.tokens(lengths) == ref.tokens(arrays)
            cases += 1
    # targets on the half-block boundary, where `before + took / 2 >= target` decides
    for L, n, k in [(128, 1000, 0), (128, 1000, 1), (128, 1000, 999), (3, 7, 3), (2048, 5, 2), (1, 10, 9)]:
        for total in (k * L + L // 2, k * L + L // 2 + 1, k * L + L // 2 - 1, (n + k) * L + L // 2):
            if total <= 0:
                continue
            a = allocate({"x": np.full(n, L)}, {"x": 1.0}, total, 3)
            assert list(allocate({"x": Uniform(n, L)}, {"x": 1.0}, total, 3)) == list(a) == \
                _allocate_before({"x": np.full(n, L)}, {"x": 1.0}, total, 3)
            cases += 1
    assert cases > 400


def test_uniform_lengths_index_like_the_array():
    from clika.train.data.mixture import Uniform

    u, a = Uniform(10, 128), np.full(10, 128, np.int64)
    assert len(u) == 10 and u.sum() == int(a.sum()) and u[3] == u[-1] == 128 and np.array_equal(np.asarray(u), a)
    for idx in (np.array([0, 3, 3, 9], np.int32), slice(2, 7), slice(None, None, 3), a > 0, np.zeros(0, np.int64)):
        assert u[idx].sum() == int(a[idx].sum()) and len(u[idx]) == len(a[idx])
    for bad in (10, -11, np.array([10])):
        with pytest.raises(IndexError):
            u[bad]


def test_items_hold_runs_and_slice_like_the_list_of_pairs():
    from clika.train.data.mixture import Items

    parts = {"a": np.array([5, 1, 4], np.int64), "b": np.zeros(0, np.int64), "c": np.array([7, 2], np.int32),
             "d": np.array([9], np.int64)}
    items = Items.concat(parts)
    pairs = [(n, int(i)) for n, v in parts.items() for i in v]
    assert list(items) == pairs and len(items) == 6 and items.index.dtype == np.int32
    assert items.bounds == [0, 3, 3, 5, 6] and items.source.tolist() == [0, 0, 0, 2, 2, 3]
    assert [items[i] for i in range(-6, 6)] == pairs + pairs
    for bad in (6, -7):
        with pytest.raises(IndexError):
            items[bad]
    for start in (None, -9, -2, 0, 1, 3, 4, 6, 8):
        for stop in (None, -9, -1, 0, 2, 3, 5, 6, 9):
            for step in (None, 1, 2, 3, -1, -2):
                sl = slice(start, stop, step)
                got = items[sl]
                assert list(got) == pairs[sl] and len(got) == len(pairs[sl]), sl
                assert [got[i] for i in range(len(got))] == pairs[sl]
                assert Items.from_source(got.names, got.source, got.index).bounds == got.bounds
    assert list(items[1:5][1:3]) == pairs[1:5][1:3]
    assert Items.from_source(items.names, items.source, items.index).bounds == items.bounds
    assert items.tokens({"a": np.arange(10), "c": np.arange(10) * 2, "d": np.ones(10, int)}) == \
        {"a": 10, "c": 18, "d": 1}
    single = np.array([3, 1, 2], np.int32)
    assert Items.concat({"x": single}).index is single  # one run: held, not copied
    big = Items.concat({"x": np.array([2**31 + 1, 0], np.int64)})
    assert big.index.dtype == np.int64 and list(big) == [("x", 2**31 + 1), ("x", 0)]
    assert list(Items([], [])) == [] and len(Items(["x"], [4, 2])) == 2


def test_int32_permutations_are_the_int64_ones():
    import torch

    from clika.train.data.mixture import permutation

    for n in (0, 1, 2, 17, 1000, 65537, 300_001):
        for seed in (0, 11):
            p = permutation(np.random.default_rng([seed, 7919, 2]), n)
            assert p.dtype == np.int32 and np.array_equal(p, np.random.default_rng([seed, 7919, 2]).permutation(n))
            s = ShardedEpochSampler(n, rank=1, world=3, seed=seed)
            s.set_epoch(2)
            old = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 2))[: n // 3 * 3][1::3].numpy()
            assert s.order().dtype == np.int32 and np.array_equal(s.order(), old) and list(s) == old.tolist()


def _setup_before(dm):
    """The train and validation items of MixtureDataModule.setup before this change (commit 2189289)."""
    import math

    train_idx, val_idx = {}, {}
    for s, (name, tok) in enumerate(sorted(dm.sources.items())):
        perm = np.random.default_rng([dm.seed, 7919, s]).permutation(len(tok))
        n_val = min(len(tok) - 1, math.ceil(dm.cfg["val_fraction"] * len(tok))) if len(tok) > 1 else 0
        val_idx[name], train_idx[name] = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    mix = dm.cfg["mix"]
    lens = {n: np.diff(dm.sources[n].offsets)[idx] for n, idx in train_idx.items()}
    sizes = {n: int(v.sum()) for n, v in lens.items()}
    probs = mixture_probs(sizes, mix["sampling"], mix.get("weights"), mix.get("alpha", 1.0))
    total = int(mix.get("num_tokens") or sum(sizes.values()))
    chosen = _allocate_before(lens, probs, total, dm.seed)
    train = [(n, int(train_idx[n][j])) for n, j in chosen]
    langs = {n: s.share_label for n, s in dm.specs.items()}
    val = {}
    for n, idx in sorted(val_idx.items()):
        val.setdefault(langs[n], []).extend((n, int(i)) for i in idx)
    tokens = {}
    for n, j in chosen:
        tokens[langs[n]] = tokens.get(langs[n], 0) + int(lens[n][j])
    shares = {l: v / sum(tokens.values()) for l, v in sorted(tokens.items())}
    return train, {l: v for l, v in val.items() if v}, shares, sum(tokens.values())


@pytest.mark.parametrize("num_tokens", [None, 3000, 40000])
def test_the_datamodule_keeps_its_items_order_and_batches(tok, tmp_path, num_tokens):
    """pt (Uniform lengths) and sft (array lengths) in one mixture: the epoch's items, the held-out items, the
    shares and the sampler order are those of the per-item int64 arrays."""
    import torch
    from types import SimpleNamespace

    srcs = {**_sources("fictional_pt", ["en", "zh"]), **{f"{l}_sft": v for l, v in
                                                           _sources("fictional_sft", ["de"]).items()}}
    weights = {"en": 0.5, "zh": 0.2, "de_sft": 0.3}
    mix = {"sources": srcs, "sampling": "weights", "weights": weights, "num_tokens": num_tokens}
    dm = _mix_dm(tok, tmp_path, mix)
    train, val, shares, tokens = _setup_before(dm)
    assert list(dm.train_items) == train and len(train) > 50 and dm.train_items.index.dtype == np.int32
    assert {l: list(v) for l, v in dm.val_items.items()} == val
    assert dm.summary["realised_share"] == pytest.approx(shares, abs=0) and dm.summary["train_tokens"] == tokens
    dm.trainer = SimpleNamespace(global_rank=1, world_size=2)
    loader = dm.train_dataloader()
    old = torch.randperm(len(train), generator=torch.Generator().manual_seed(dm.seed))[: len(train) // 2 * 2][1::2]
    for k, b in enumerate(loader):
        rows = [train[int(i)] for i in old[k * 4:(k + 1) * 4]]
        for row, (name, j) in zip(b["input_ids"], rows):
            ids = dm.sources[name].item(j)[0]
            assert row[: len(ids)].tolist() == ids.tolist()
    assert k + 1 == len(train) // 2 // 4
