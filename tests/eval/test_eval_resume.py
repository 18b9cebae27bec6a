"""An evaluation killed (SIGKILL) part-way and resumed with resume=auto equals an uninterrupted one item for item,
scores no finished request set again, and leaves no journal behind."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["print_config=false", "clika.datasets=[x_copa,x_csqa,x_geo,x_name]", "clika.langs=[en,zh,de]",
        "clika.limit=12", "threads=1"]


def _cmd(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "eval.py", f"output_dir={out}", f"paths.log_dir={out.parent}/logs", *ARGS, *extra]


def _env(data_root) -> dict:
    return {**os.environ, "CLIKA_DATA": str(data_root), "OMP_NUM_THREADS": "1"}


def _predictions(run: Path) -> dict:
    return {str(p.relative_to(run)): p.read_text() for p in sorted((run / "predictions").rglob("*.jsonl"))}


@pytest.mark.extended
def test_sigkill_then_resume_equals_an_uninterrupted_run(data_root, tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    subprocess.run(_cmd(whole), cwd=ROOT, env=_env(data_root), check=True, capture_output=True, timeout=600)

    proc = subprocess.Popen(_cmd(cut), cwd=ROOT, env=_env(data_root), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    journal = cut / ".journal" / "rank0-of-1.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:  # header + 3 finished sets of 12, then the kill
        if journal.exists() and journal.read_text().count("\n") >= 4:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the evaluation ended before it could be killed"
    assert not (cut / "results.json").exists()

    r = subprocess.run(_cmd(cut, "resume=auto"), cwd=ROOT, env=_env(data_root), capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert _predictions(cut) == _predictions(whole)  # every item, every score, byte for byte
    a, b = (json.loads((d / "results.json").read_text()) for d in (whole, cut))
    assert a["datasets"] == b["datasets"]
    run = b["evaluated"]["run"]
    assert 3 * 12 <= run["resumed_items"] < run["items"] == 12 * 12  # finished sets taken, not scored again
    assert not (cut / ".journal").exists()


def test_resume_of_another_evaluation_is_one_line_exit_2(data_root, tmp_path):
    out = tmp_path / "out"
    journal = out / ".journal"
    journal.mkdir(parents=True)
    (journal / "rank0-of-1.jsonl").write_text(json.dumps({"identity": {"model": {"name_or_path": "other"}}}) + "\n"
                                              + json.dumps({"key": "[\"x_copa\", \"en\"]", "results": []}) + "\n")
    r = subprocess.run(_cmd(out, "resume=auto"), cwd=ROOT, env=_env(data_root), capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 2
    err = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and "resume:" in err[0] and "model.name_or_path: 'other' -> 'tiny'" in err[0], r.stderr
    assert not (out / "results.json").exists()
