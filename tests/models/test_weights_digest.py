"""clika.models.load.weights_digest: a weight file is hashed once, reused while path, size and mtime hold."""

import hashlib
import os

from clika.models import load


def _plain_digest(*files):
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f.name.encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def test_digest_hashed_once_and_again_after_a_rewrite(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIKA_CACHE", str(tmp_path / "cache"))
    reads = []
    real = load._file_sha256
    monkeypatch.setattr(load, "_file_sha256", lambda p, *a: reads.append(p.name) or real(p, *a))
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights" * 1000)
    (model / "extra.bin").write_bytes(b"more")
    (model / "config.json").write_text("{}")  # not a weight file
    first = load.weights_digest(model)
    assert first == _plain_digest(model / "model.safetensors", model / "extra.bin")  # identity unchanged
    assert sorted(reads) == ["extra.bin", "model.safetensors"]
    assert (tmp_path / "cache" / load.DIGESTS).is_file()
    reads.clear()
    assert load.weights_digest(model) == first and reads == []  # second evaluation: nothing read
    st = (model / "extra.bin").stat()
    (model / "extra.bin").write_bytes(b"MORE")  # same size, new content and mtime
    os.utime(model / "extra.bin", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    second = load.weights_digest(model)
    assert reads == ["extra.bin"] and second != first
    assert second == _plain_digest(model / "model.safetensors", model / "extra.bin")


def test_unreadable_cache_is_hashed_again(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIKA_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / load.DIGESTS).write_text("{torn")
    (tmp_path / "w.pt").write_bytes(b"x")
    assert load.weights_digest(tmp_path) == _plain_digest(tmp_path / "w.pt")
