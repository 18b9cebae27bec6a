"""A library's error while reading a user's file (pyarrow, json, safetensors, tokenizers) ends as one line naming
the file and the 1-based line or record, exit 2 (ClikaError) — never a traceback, never a bare record index."""

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clika.util.errors import ClikaError
from clika.models.load import ModelSpec, load_tokenizer, resolve_model_dir
from clika.train.data.sources import SourceSpec, load_records

SMALL = ["data.block_size=32", "export.enabled=false", "trainer.limit_val_batches=0", "trainer.max_steps=1"]


def _one_line_exit_2(cfg, capsys) -> str:
    from clika.train.run import main

    with pytest.raises(SystemExit) as err:
        main(cfg)
    assert err.value.code == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [l for l in stderr.splitlines() if l.startswith("error: ")]
    assert len(errors) == 1 and "fix:" in errors[0], stderr[-3000:]
    return errors[0]


def _source(path: Path, fmt: str = "jsonl", schema: str = "pt") -> list[str]:
    return ["+data/source@data.mix.sources.mine=local_jsonl", f"data.mix.sources.mine.path={path}",
            f"data.mix.sources.mine.format={fmt}", f"data.mix.sources.mine.schema={schema}",
            "data.mix.sampling=temperature"]


def _records(tmp_path, path: Path, fmt: str, schema: str = "pt"):
    return load_records(SourceSpec(name="mine", lang="en", schema=schema, format=fmt, path=str(path)), tmp_path)


def test_jsonl_line_without_text_names_the_file_of_the_glob(train_cfg, tmp_path, capsys):
    """The issue's case: the third line of one file of a glob lacks the text column."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.jsonl").write_text('{"text": "fine"}\n' * 5)
    (corpus / "b.jsonl").write_text('{"text": "fine"}\n{"text": "fine"}\n{"body": "no text here"}\n')
    line = _one_line_exit_2(train_cfg(*SMALL, *_source(corpus / "*.jsonl")), capsys)
    assert f"data.mix.sources.mine: {corpus / 'b.jsonl'}:3: no text column 'text'" in line, line


def test_corrupt_parquet_is_one_line(train_cfg, tmp_path, capsys):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not a parquet file")
    line = _one_line_exit_2(train_cfg(*SMALL, *_source(bad, fmt="parquet")), capsys)
    assert f"data.mix.sources.mine: {bad}: not a readable parquet file" in line, line


def test_parquet_record_without_text_names_file_and_record(tmp_path):
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"text": ["one", "two"]}), good)
    assert _records(tmp_path, good, "parquet") == [{"text": "one"}, {"text": "two"}]
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"text": ["one", None, "three"]}), bad)
    with pytest.raises(ClikaError, match=rf"^data.mix.sources.mine: {bad} record 2: no text column 'text'"):
        _records(tmp_path, bad, "parquet")
    ints = tmp_path / "ints.parquet"
    pq.write_table(pa.table({"text": [1, 2]}), ints)
    with pytest.raises(ClikaError, match=r"ints.parquet record 1: no text column 'text' \(it holds int, not text\)"):
        _records(tmp_path, ints, "parquet")


def test_text_file_with_invalid_utf8_names_the_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"first line\n\nthird \xff line\n")
    with pytest.raises(ClikaError, match=rf"^data.mix.sources.mine: {bad}:3: invalid UTF-8 .*fix: re-save"):
        _records(tmp_path, bad, "text")
    bad.write_bytes(b"first line\n\nthird line\n")
    assert _records(tmp_path, bad, "text") == [{"text": "first line"}, {"text": "third line"}]


def test_sft_records_name_the_line(tmp_path):
    f = tmp_path / "chat.jsonl"
    f.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})
                 + "\n" + json.dumps({"messages": [{"role": "user"}]}) + "\n")
    with pytest.raises(ClikaError, match=rf"^data.mix.sources.mine: {f}:2: 'messages' must be a list of"):
        _records(tmp_path, f, "jsonl", schema="sft")
    f.write_text(json.dumps({"instruction": "a", "output": "b"}) + "\n\n" + json.dumps({"instruction": "q"}) + "\n")
    with pytest.raises(ClikaError, match=rf"^data.mix.sources.mine: {f}:3: neither 'messages' nor"):
        _records(tmp_path, f, "jsonl", schema="sft")


@pytest.fixture
def model_copy(tmp_path) -> Path:
    """A copy of the tiny model's HF folder, to damage."""
    out = tmp_path / "model"
    shutil.copytree(resolve_model_dir(ModelSpec()), out)
    return out


def test_corrupt_safetensors_through_train(train_cfg, model_copy, capsys):
    (model_copy / "model.safetensors").write_bytes(b"\x00" * 64)
    line = _one_line_exit_2(train_cfg(*SMALL, f"init_from={model_copy}"), capsys)
    assert f"{model_copy / 'model.safetensors'}: unreadable safetensors weights" in line, line


@pytest.mark.parametrize("name,content,needle", [
    ("tokenizer.json", b'{"version": "1.0",\n  "model": {"type": "BPE", "vocab": ', "tokenizer.json:2: malformed JSON"),
    ("tokenizer.json", b'{"version": "1.0", "model": {"type": "BPE", "vocab": 3}}', "tokenizer.json: not a tokenizers file"),
    ("tokenizer_config.json", b'{"model_max_length": 8,\n\n "pad_token": }', "tokenizer_config.json:3: malformed JSON"),
    ("config.json", b'{"model_type": "llama",\n oops}', "config.json:2: malformed JSON"),
])
def test_unreadable_model_files_are_named(model_copy, name, content, needle):
    (model_copy / name).write_bytes(content)
    with pytest.raises(ClikaError, match="fix: re-export") as err:
        load_tokenizer(ModelSpec(name="mine", name_or_path=str(model_copy)))
    assert f"{model_copy}/{needle}" in str(err.value)
