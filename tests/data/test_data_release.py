"""`eval.py task=get_data`: the release fetched at the pinned commit, verified against the recorded checksums.
No network: a local file:// mirror built from the reference copy (../shared/clika-data) stands for GitHub."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clika.data import release as rel
from clika.util.errors import ClikaError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def mirror(tmp_path, data_root):
    """The manifest's files, linked from the reference copy into a folder served as file://."""
    out = tmp_path / "mirror"
    for e in rel.load_manifest():
        (out / e.path).parent.mkdir(parents=True, exist_ok=True)
        (out / e.path).symlink_to(data_root / e.path)
    return out


def test_manifest_matches_the_reference_copy(data_root):
    entries = rel.load_manifest()
    assert len(entries) == 68 and rel.COMMIT in rel.BASE_URL
    assert {e.path.split("/")[0] for e in entries} == {"x_copa", "x_csqa", "x_geo", "x_name", "fictional"}
    assert rel.manifest_from_dir(data_root)["files"] == {e.path: {"sha256": e.sha256, "bytes": e.bytes,
                                                                  "lines": e.lines} for e in entries}
    counts = {e.path: e.lines for e in entries}
    assert counts["x_copa/en/test.jsonl"] == 500 and counts["x_csqa/ZH_trans/validation.jsonl"] == 1000
    assert counts["x_geo/de/de_geo_data.jsonl"] == 200 and counts["fictional/test/target/testEN.jsonl"] == 400


def test_get_data_downloads_verifies_and_is_found(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("CLIKA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CLIKA_DATA", raising=False)
    assert rel.default_data_root() is None
    out = rel.get_data(mirror.as_uri() + "/")
    root = Path(out["root"])
    assert out["downloaded"] and out["files"] == 68 and root.is_relative_to(tmp_path / "cache")
    assert rel.verify(root) == [] and not any(p.is_symlink() for p in root.rglob("*"))
    assert rel.default_data_root() == str(root)  # what ${clika_data:} (paths.clika_data) resolves to
    assert rel.get_data(mirror.as_uri() + "/")["downloaded"] is False  # present: verified, not fetched again
    monkeypatch.setenv("CLIKA_DATA", "/elsewhere")
    assert rel.default_data_root() == "/elsewhere"  # CLIKA_DATA wins


def test_a_wrong_file_or_no_network_leaves_nothing_behind(mirror, tmp_path):
    bad = mirror / "x_geo/de/de_geo_data.jsonl"
    text = bad.read_text(encoding="utf-8")
    bad.unlink()
    bad.write_text(text.replace("1", "2", 1), encoding="utf-8")
    with pytest.raises(ClikaError, match="x_geo/de/de_geo_data.jsonl: checksum"):
        rel.get_data(mirror.as_uri() + "/", dest=tmp_path / "dest")
    with pytest.raises(ClikaError, match="cannot download the CLiKA release.*CLIKA_DATA"):
        rel.get_data((tmp_path / "nowhere").as_uri() + "/", dest=tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


@pytest.mark.extended
def test_eval_cli_get_data_reports_where_and_the_train_config_uses_it(mirror, tmp_path):
    env = {**os.environ, "CLIKA_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    env.pop("CLIKA_DATA", None)
    cmd = [sys.executable, "eval.py", "task=get_data", f"base_url={mirror.as_uri()}/", "print_config=false",
           f"hydra.run.dir={tmp_path / 'run'}"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    where = tmp_path / "cache" / "clika-data" / rel.COMMIT[:12]
    assert f"-> {where}" in done.stdout and "68 files" in done.stdout
    probe = ("from hydra import compose, initialize_config_dir; from clika.app.launch import register_config;"
             "register_config(); import json\n"
             f"with initialize_config_dir(config_dir='{ROOT / 'conf'}', version_base='1.3'):\n"
             "    c = compose('train', overrides=['paths.root_dir=.', 'paths.output_dir=.'])\n"
             "print(json.dumps(c.callbacks.clika.suite.data_root))")
    used = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert used.returncode == 0, used.stderr[-2000:]
    assert json.loads(used.stdout.strip().splitlines()[-1]) == str(where)
    offline = subprocess.run([*cmd[:3], f"base_url={(tmp_path / 'none').as_uri()}/", *cmd[4:]], cwd=ROOT,
                             env={**env, "CLIKA_CACHE": str(tmp_path / "c2")}, capture_output=True, text=True,
                             timeout=300)
    assert offline.returncode == 2
    lines = [l for l in offline.stderr.splitlines() if "CLIKA_DATA" in l]
    assert len(lines) == 1 and "cannot download" in lines[0]
