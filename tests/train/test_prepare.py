"""The streamed, sharded, parallel prepare: the same blocks as the in-memory one it replaced, token for token;
resume by shard; memory-mapped shards; bad input (a file that vanishes or is truncated, a full disk, num_proc)."""

import errno
import json
import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clika.models.load import ModelSpec, load_tokenizer
from clika.train.data import prepare as prep
from clika.train.data.datamodule import MixtureDataModule
from clika.train.data.prepare import Tokenized, available_cpus, prepare_source, resolve_num_proc
from clika.train.data.processing import encode_sft, pack_pt
from clika.train.data.sources import SourceSpec, load_records
from clika.util.errors import ClikaError

ROOT = Path(__file__).resolve().parents[2]
LANGS = ["en", "zh", "ja", "ru"]
PT = {"block_size": 32, "template": "alpaca", "max_length": 128, "train_on_prompt": False}


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(ModelSpec())


def reference(spec, tok, proc, cache_dir):
    """The prepare before the shards (commit 7bc9809, `prepare._tokenize`): every record in one list, tokenized
    in one call, packed in memory. (ids, labels, offsets, stats)."""
    records = load_records(spec, cache_dir)
    if spec.schema == "pt":
        packed = pack_pt([r["text"] for r in records], tok, proc["block_size"], proc.get("pack_remainder", "wrap"))
        ids = packed.blocks.reshape(-1)
        offsets = np.arange(len(packed.blocks) + 1, dtype=np.int64) * proc["block_size"]
        stats = {"records": len(records), "tokens": int(packed.total_tokens), "kept_tokens": packed.kept_tokens,
                 "repeated_tokens": packed.repeated_tokens, "packing_efficiency": packed.efficiency,
                 "padding_tokens": 0}
        return ids, ids, offsets, stats
    pairs = [encode_sft(r, tok, proc["template"], proc["max_length"], proc["train_on_prompt"]) for r in records]
    kept = [p for p in pairs if any(t != -100 for t in p[1])]
    lengths = np.array([len(p[0]) for p in kept], dtype=np.int64)
    ids = np.fromiter((t for p in kept for t in p[0]), dtype=np.int32, count=int(lengths.sum()))
    labels = np.fromiter((t for p in kept for t in p[1]), dtype=np.int32, count=int(lengths.sum()))
    stats = {"records": len(records), "tokens": int(lengths.sum()), "response_tokens": int((labels != -100).sum()),
             "truncated": int((lengths >= proc["max_length"]).sum()), "dropped_no_response": len(pairs) - len(kept)}
    return ids, labels, np.concatenate([[0], np.cumsum(lengths)]), stats


def assert_same(new: Tokenized, ref) -> None:
    ids, labels, offsets, stats = ref
    assert len(new) == len(offsets) - 1 and np.array_equal(new.offsets, offsets)
    for i in range(len(new)):  # item by item, the way the DataModule reads them
        a, b = new.item(i)
        assert np.array_equal(a, ids[offsets[i]:offsets[i + 1]]) and np.array_equal(b, labels[offsets[i]:offsets[i + 1]])
    assert np.array_equal(new.ids, ids) and np.array_equal(new.labels, labels)
    assert {k: new.stats[k] for k in stats} == stats


@pytest.mark.parametrize("kind,remainder", [("fictional_pt", "wrap"), ("fictional_pt", "drop"),
                                            ("fictional_names", "wrap"), ("fictional_sft", None)])
def test_multi_shard_prepare_equals_the_in_memory_one(tok, tmp_path, kind, remainder):
    proc = {**PT, "pack_remainder": remainder or "wrap"}
    for lang in LANGS[kind == "fictional_names":][: 2 if kind == "fictional_sft" else None]:  # names: X <-> en
        spec = SourceSpec(name=lang, lang=lang, schema="sft" if kind == "fictional_sft" else "pt",
                          format="embedded", path=kind)
        chunk = 1500 if spec.schema == "pt" else 30000  # many shards (pt blocks span them)
        new = prepare_source(spec, tok, proc, tmp_path, chunk_bytes=chunk, num_proc=1)
        assert new.stats["shards"] > 3 and new.stats["source_bytes"] > 0 and new.stats["bytes"] > 0
        assert_same(new, reference(spec, tok, proc, tmp_path))


def test_a_corpus_under_one_block_wraps_like_np_resize(tok, tmp_path):
    (tmp_path / "a.txt").write_text("one\ntwo three\n", encoding="utf-8")
    spec = SourceSpec(name="a", lang="en", format="text", path=str(tmp_path / "a.txt"))
    new = prepare_source(spec, tok, {**PT, "block_size": 64}, tmp_path, chunk_bytes=1, num_proc=1)
    assert new.stats["shards"] == 2 and new.stats["repeated_tokens"] > new.stats["tokens"]
    assert_same(new, reference(spec, tok, {**PT, "block_size": 64}, tmp_path))


def test_two_workers_write_the_same_shards_as_one(tok, tmp_path):
    if available_cpus() < 2:
        pytest.skip("needs 2 CPUs")
    rows = [{"text": f"Line {i}: the river {i % 7} flows into sea {i % 13}."} for i in range(3000)]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    spec = SourceSpec(name="c", lang="en", path=str(tmp_path / "c.jsonl"))
    one = prepare_source(spec, tok, PT, tmp_path / "one", num_proc=1, chunk_bytes=8000)
    two = prepare_source(spec, tok, PT, tmp_path / "two", num_proc=2, chunk_bytes=8000)
    assert one.stats["shards"] == two.stats["shards"] > 10
    assert np.array_equal(one.ids, two.ids)
    assert_same(two, reference(spec, tok, PT, tmp_path))


def test_shards_are_memory_mapped_and_pickle_as_their_folder(tok, tmp_path):
    spec = SourceSpec(name="zh", lang="zh", format="embedded", path="fictional_pt")
    t = prepare_source(spec, tok, PT, tmp_path, chunk_bytes=2000, num_proc=1)
    assert all(isinstance(a, np.memmap) for a in t._ids)
    blob = pickle.dumps(t)
    assert len(blob) < 1000  # the folder, not the tokens
    u = pickle.loads(blob)
    assert np.array_equal(u.ids, t.ids) and u.stats == t.stats


def _killed_prepare(tmp_path: Path, corpus: Path, kill_after: int) -> subprocess.CompletedProcess:
    """A prepare in a subprocess that dies (os._exit, as a SIGKILL would leave it) after `kill_after` shards."""
    code = f"""
import os, sys
sys.path.insert(0, {str(ROOT)!r})
from clika.models.load import ModelSpec, load_tokenizer
from clika.train.data import prepare
from clika.train.data.sources import SourceSpec
write, n = prepare._write_shard, [0]
def dying(*a, **k):
    if n[0] == {kill_after}:
        os._exit(9)
    n[0] += 1
    return write(*a, **k)
prepare._write_shard = dying
spec = SourceSpec(name="c", lang="en", path={str(corpus)!r})
prepare.prepare_source(spec, load_tokenizer(ModelSpec()), {PT!r}, {str(tmp_path)!r}, chunk_bytes=4000, num_proc=1)
"""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_a_killed_prepare_resumes_by_shard(tok, tmp_path, monkeypatch):
    rows = [{"text": f"Record {i} about city {i * 7 % 101} on continent {i % 8}."} for i in range(2000)]
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    r = _killed_prepare(tmp_path, corpus, kill_after=5)
    assert r.returncode == 9, r.stderr[-2000:]
    partial = [p for p in (tmp_path / "tokenized").iterdir() if p.name.endswith(".partial")]
    assert len(partial) == 1 and not [p for p in (tmp_path / "tokenized").iterdir()
                                      if p.is_dir() and not p.name.startswith(".")]  # no entry yet
    assert len(list(partial[0].glob("0*.json"))) == 5
    written = []
    real = prep._write_shard
    monkeypatch.setattr(prep, "_write_shard", lambda i, *a, **k: written.append(i) or real(i, *a, **k))
    spec = SourceSpec(name="c", lang="en", path=str(corpus))
    resumed = prepare_source(spec, tok, PT, tmp_path, chunk_bytes=4000, num_proc=1)
    assert written and min(written) == 5  # the 5 finished shards are reused
    monkeypatch.undo()
    fresh = prepare_source(spec, tok, PT, tmp_path / "fresh", chunk_bytes=4000, num_proc=1)
    assert resumed.stats["shards"] == fresh.stats["shards"] > 10
    for f in sorted(fresh.path.glob("*.npy")):
        assert np.array_equal(np.load(f), np.load(resumed.path / f.name)), f.name
    assert not partial[0].exists()


def test_two_ranks_read_the_mapped_shards_and_see_the_same_batches(tok, tmp_path):
    """Rank 0 and 1 of a 2-process job (each its own DataModule over the same cache) get the batches of the
    in-memory prepare: the same items, sharded the same way, token for token."""
    from types import SimpleNamespace

    mix = {"sources": {l: {"lang": l, "format": "embedded", "path": "fictional_pt"} for l in ("en", "zh")},
           "sampling": "weights", "weights": {"en": 0.6, "zh": 0.4}, "num_tokens": 6000}
    cfg = {"mix": mix, "cache_dir": str(tmp_path / "data"), "block_size": 32, "batch_size": 4, "num_workers": 0,
           "val_fraction": 0.02, "template": "alpaca", "max_length": 256, "train_on_prompt": False}
    batches = {}
    for rank in (0, 1):
        dm = MixtureDataModule(cfg, tok, seed=3)
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        dm.setup("fit")
        batches[rank] = [b["input_ids"] for b in dm.train_dataloader()]
        refs = {n: reference(s, tok, {**PT, "pack_remainder": "wrap"}, tmp_path / "data")
                for n, s in dm.specs.items()}
        sampler = dm._train_loader.batch_sampler.sampler
        order = sampler.order()
        for k, b in enumerate(batches[rank]):
            for row, pos in zip(b, order[k * 4:(k + 1) * 4]):
                name, j = dm.train_items[pos]
                ids, _, offsets, _ = refs[name]
                assert row.tolist() == ids[offsets[j]:offsets[j + 1]].tolist()
    assert len(batches[0]) == len(batches[1]) > 5
    assert not any(bool((a == b).all()) for a, b in zip(batches[0], batches[1]))  # disjoint shards of the epoch


# ---- bad input ----

def _corpus(tmp_path: Path, n: int = 400) -> Path:
    f = tmp_path / "c.jsonl"
    f.write_text("".join(json.dumps({"text": f"Sentence number {i} of the corpus."}) + "\n" for i in range(n)),
                 encoding="utf-8")
    return f


def _entries(cache: Path) -> list[str]:
    root = cache / "tokenized"
    return sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) if root.exists() else []


@pytest.mark.parametrize("what", ["vanishes", "is truncated"])
def test_a_source_file_that_changes_mid_prepare_is_one_line_and_leaves_no_entry(tok, tmp_path, monkeypatch, what):
    corpus = _corpus(tmp_path)
    real, n = prep._write_shard, [0]

    def meddling(i, *a, **k):
        n[0] += 1
        if n[0] == 3:
            corpus.unlink() if what == "vanishes" else corpus.write_bytes(corpus.read_bytes()[:3000])
        return real(i, *a, **k)

    monkeypatch.setattr(prep, "_write_shard", meddling)
    spec = SourceSpec(name="mine", lang="en", path=str(corpus))
    with pytest.raises(ClikaError) as e:
        prepare_source(spec, tok, PT, tmp_path / "cache", chunk_bytes=2000, num_proc=1)
    msg = str(e.value)
    word = "vanished" if what == "vanishes" else "was truncated"
    assert "\n" not in msg and f"data.mix.sources.mine: {corpus} {word}" in msg and "fix: " in msg
    assert _entries(tmp_path / "cache") == [] and not list((tmp_path / "cache" / "tokenized").glob("*.partial"))


def test_a_truncated_file_through_train_exits_2(train_cfg, tmp_path, capsys, monkeypatch):
    from clika.train.run import main

    corpus = _corpus(tmp_path, 20000)
    real, n = prep._write_shard, [0]

    def truncating(i, chunk, spec, *a, **k):
        n[0] += spec.name == "mine"  # (the mixture's embedded sources come first)
        if n[0] == 2:
            with open(corpus, "r+b") as f:
                f.truncate(5000)
        return real(i, chunk, spec, *a, **k)

    monkeypatch.setattr(prep, "_write_shard", truncating)
    monkeypatch.setattr("clika.train.data.sources.CHUNK_BYTES", 100_000)
    cfg = train_cfg("task=prepare", "+data/source@data.mix.sources.mine=local_jsonl",
                    f"data.mix.sources.mine.path={corpus}", "data.mix.sampling=temperature", "data.num_proc=1",
                    f"data.cache_dir={tmp_path / 'data'}")
    with pytest.raises(SystemExit) as e:
        main(cfg)
    assert e.value.code == 2
    err = [l for l in capsys.readouterr().err.strip().splitlines() if l.strip() and "prepare " not in l]
    assert len(err) == 1 and "data.mix.sources.mine" in err[0] and "was truncated" in err[0], err
    assert not list(Path(cfg.data.cache_dir).glob("tokenized/mine-*"))
    assert not list(Path(cfg.data.cache_dir).glob("tokenized/.mine-*.partial"))


def test_a_full_disk_is_one_line_keeps_the_finished_shards_and_resumes(tok, tmp_path, monkeypatch):
    corpus = _corpus(tmp_path)
    real_save, n = prep._save, [0]

    def filling(path, array):
        n[0] += 1
        if n[0] == 4:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save(path, array)

    monkeypatch.setattr(prep, "_save", filling)
    spec = SourceSpec(name="mine", lang="en", path=str(corpus))
    with pytest.raises(ClikaError) as e:
        prepare_source(spec, tok, PT, tmp_path / "cache", chunk_bytes=2000, num_proc=1)
    msg = str(e.value)
    assert "\n" not in msg and "data.cache_dir: no space left on device" in msg and "fix: free space" in msg
    assert _entries(tmp_path / "cache") == []  # no half-written entry
    kept = list((tmp_path / "cache" / "tokenized").glob("*.partial/0*.json"))
    assert len(kept) == 3 and not list((tmp_path / "cache" / "tokenized").glob("*.partial/*.tmp"))
    monkeypatch.undo()
    t = prepare_source(spec, tok, PT, tmp_path / "cache", chunk_bytes=2000, num_proc=1)  # space freed: it resumes
    assert_same(t, reference(spec, tok, PT, tmp_path))


@pytest.mark.skipif(not Path("/dev/shm").is_dir() or os.geteuid() != 0, reason="needs root to mount a tmpfs")
def test_a_really_full_small_filesystem(tok, tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        corpus = _corpus(tmp_path, 20000)
        spec = SourceSpec(name="mine", lang="en", path=str(corpus))
        with pytest.raises(ClikaError, match="data.cache_dir: no space left on device"):
            prepare_source(spec, tok, PT, mnt, chunk_bytes=20000)
        assert _entries(mnt) == []
    finally:
        subprocess.run(["umount", str(mnt)])


def test_num_proc_above_the_cpus_warns_and_uses_them(caplog):
    cpus = available_cpus()
    with caplog.at_level(logging.WARNING, logger="clika.train.data.prepare"):
        assert resolve_num_proc(cpus + 3) == cpus
    assert f"data.num_proc={cpus + 3} is above the {cpus} CPU(s)" in caplog.text
    assert resolve_num_proc(None) == cpus == len(os.sched_getaffinity(0))
    with pytest.raises(ClikaError, match=r"data.num_proc: must be >= 1"):
        resolve_num_proc(0)


def test_the_allocation_is_the_list_it_was(tok):
    """Items (two arrays) hold the (source, item) pairs the list of tuples held, in the same order: the data
    position saved in a checkpoint points at the same blocks."""
    from clika.train.data.mixture import allocate

    def listed(lengths, probs, total_tokens, seed):  # mixture.allocate at commit 7bc9809
        out = []
        for s, (name, lens) in enumerate(sorted(lengths.items())):
            target = probs[name] * total_tokens
            if target <= 0 or len(lens) == 0:
                continue
            rng = np.random.default_rng([seed, s])
            got, picked = 0, []
            while got < target:
                for i in rng.permutation(len(lens)):
                    if got + lens[i] / 2 >= target:
                        break
                    picked.append(int(i))
                    got += int(lens[i])
                else:
                    continue
                break
            out += [(name, i) for i in picked]
        return out

    r = np.random.default_rng(0)
    for t in range(100):
        lengths = {n: r.integers(1, 300, r.integers(1, 50)) for n in "abc"[: r.integers(1, 4)]}
        w = r.random(len(lengths))
        probs = {n: float(x / w.sum()) for n, x in zip(lengths, w)}
        total = int(r.integers(1, 40000))
        assert list(allocate(lengths, probs, total, t)) == listed(lengths, probs, total, t)
