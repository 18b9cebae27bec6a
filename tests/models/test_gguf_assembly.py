"""A chunked GGUF package is assembled under a temporary name and renamed: a concurrent process never finds a
half-written file at the target, and a failed assembly leaves nothing behind."""

import importlib
import sys

import pytest

from clika.models.load import ModelSpec, _gguf_source

PACKAGE = '''
from pathlib import Path
MODEL_NAME = "fake.gguf"
SEEN = []
def assemble(output_path, overwrite=False):
    SEEN.append(Path(output_path))
    if FAIL:
        Path(output_path).write_bytes(b"half")
        raise ValueError("Assembled file sha256 did not match expected value")
    Path(output_path).write_bytes(b"GGUF" * 4)
    return Path(output_path)
FAIL = False
'''


@pytest.fixture
def package(tmp_path, monkeypatch):
    (tmp_path / "pkg" / "fake_chunked_gguf").mkdir(parents=True)
    (tmp_path / "pkg" / "fake_chunked_gguf" / "__init__.py").write_text(PACKAGE)
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    monkeypatch.setenv("CLIKA_CACHE", str(tmp_path / "cache"))
    yield importlib.import_module("fake_chunked_gguf")  # the package written above (not an installed one)
    sys.modules.pop("fake_chunked_gguf", None)


def test_assembled_under_a_temporary_name_then_renamed(package, tmp_path):
    spec = ModelSpec(name="fake", gguf_package="fake_chunked_gguf", gguf_file="absent.gguf")
    target = tmp_path / "cache" / "gguf" / "fake.gguf"
    assert _gguf_source(spec) == target and target.read_bytes() == b"GGUF" * 4
    assert package.SEEN[0] != target and package.SEEN[0].parent == target.parent
    assert sorted(p.name for p in target.parent.iterdir()) == ["fake.gguf"]
    assert _gguf_source(spec) == target and len(package.SEEN) == 1  # reused, not assembled again


def test_a_failed_assembly_leaves_no_file(package, tmp_path):
    package.FAIL = True
    spec = ModelSpec(name="fake", gguf_package="fake_chunked_gguf", gguf_file="absent.gguf")
    with pytest.raises(ValueError):
        _gguf_source(spec)
    assert list((tmp_path / "cache" / "gguf").iterdir()) == []
