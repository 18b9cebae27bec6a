"""clika.train.cluster.requeue_ledger: the slurm_requeue.json both preemption paths keep (the requeue itself is
exercised by the SLURM tests in tests/launch/)."""

import json
import subprocess

from clika.train.cluster import requeue_ledger as ledger


def test_attempts_without_progress_are_counted_in_a_row_and_progress_resets(tmp_path):
    path = tmp_path / ledger.STATE_FILE
    state = ledger.load(path, "7")
    assert state == {"job": "7", "stalled": 0, "attempts": []}
    for progress in (False, False, True, False):
        ledger.record(state, {"signal": "SIGUSR1"}, progress)
        ledger.save(path, state)
        state = ledger.load(path, "7")
    assert state["stalled"] == 1 and [a["progress"] for a in state["attempts"]] == [False, False, True, False]
    assert ledger.load(path, "8")["attempts"] == []  # another job starts a ledger of its own
    path.write_text("{not json")
    assert ledger.load(path, "7")["attempts"] == []
    assert json.loads(json.dumps(state)) == state


def test_scontrol_requeue_reports_why_it_failed(monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1, "", "Invalid job id"))
    assert ledger.scontrol_requeue("7") == "Invalid job id"
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, "", ""))
    assert ledger.scontrol_requeue("7") is None

    def missing(*a, **k):
        raise FileNotFoundError("scontrol")

    monkeypatch.setattr(subprocess, "run", missing)
    assert "scontrol" in ledger.scontrol_requeue("7")
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    assert "signal_delay_s" in ledger.longer_lead("SIGUSR1") or "--signal=USR1" in ledger.longer_lead("SIGUSR1")


def test_settle_saves_the_outcome_then_requeues_unless_refused(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **k: calls.append(cmd) or subprocess.CompletedProcess(cmd, 0))
    path = tmp_path / ledger.STATE_FILE
    state = ledger.load(path, "7")
    ledger.record(state, {}, False)
    assert ledger.settle(path, state, "7", "stalled twice") == "stalled twice" and calls == []
    ledger.record(state, {}, True)
    assert ledger.settle(path, state, "7", None) is None and calls == [["scontrol", "requeue", "7"]]
    assert [a["requeued"] for a in json.loads(path.read_text())["attempts"]] == [False, True]
