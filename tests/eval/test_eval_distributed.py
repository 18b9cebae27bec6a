"""Data-parallel eval.py: 2 gloo ranks under torchrun give the numbers of one process item for item (predictions,
output strings, and log-probs to float rounding: not only accuracies); only rank 0 writes; provenance says how."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import MULTIPROCESS

pytestmark = MULTIPROCESS  # 2 gloo ranks: never beside another multi-process test (xdist: one worker)
ROOT = Path(__file__).resolve().parents[2]


def _eval(nproc: int, out: Path, data_root: Path, *args: str) -> None:
    env = {**os.environ, "CLIKA_DATA": str(data_root), "OMP_NUM_THREADS": "1"}
    env.pop("CLIKA_RUN_DIR", None)
    launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
              if nproc > 1 else [sys.executable])
    proc = subprocess.run([*launch, "eval.py", f"output_dir={out}", f"paths.log_dir={out.parent}/logs",
                           "print_config=false", "clika.langs=[en,zh]", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _predictions(run: Path) -> dict:
    return {str(p.relative_to(run)): [json.loads(line) for line in p.read_text().splitlines()]
            for p in sorted((run / "predictions").rglob("*.jsonl"))}


def _numbers(tree, path="") -> dict:
    """Every leaf of a results tree by its path (values compared with a tolerance where they derive from scores)."""
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in _numbers(sub, f"{path}.{key}").items()}
    if isinstance(tree, list):
        return {k: v for i, sub in enumerate(tree) for k, v in _numbers(sub, f"{path}[{i}]").items()}
    return {path: tree}


@pytest.mark.parametrize("protocol_args", [  # the default suite: cloze; the extended lane: the other two
    pytest.param(["clika.protocol=letter", "clika.circular=true", "clika.datasets=[x_copa,x_geo]", "clika.limit=7"],
                 marks=pytest.mark.extended),
    pytest.param(["clika.protocol=paper", "clika.datasets=[x_copa,x_name]", "clika.limit=5"],
                 marks=pytest.mark.extended),
    ["clika.protocol=cloze", "clika.datasets=[x_geo]", "clika.limit=5"],
], ids=["letter-circular", "paper", "cloze"])
def test_two_gloo_ranks_equal_one_process_item_for_item(data_root, tmp_path, protocol_args):
    # 7 / 5 items per file: shards of unequal size (a rank with fewer items still joins every gather)
    _eval(1, tmp_path / "one", data_root, *protocol_args)
    _eval(2, tmp_path / "two", data_root, *protocol_args)
    one, two = _predictions(tmp_path / "one"), _predictions(tmp_path / "two")
    assert one and one.keys() == two.keys()
    for name in one:  # every item: uuid, pred, label, correct and the raw output `res` identical; the log-probs
        a, b = one[name], two[name]  # equal up to the float rounding of a different batch composition
        assert [{k: v for k, v in r.items() if k != "scores"} for r in a] == \
               [{k: v for k, v in r.items() if k != "scores"} for r in b], name
        gaps = [abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra["scores"], rb["scores"])]
        assert max(gaps, default=0.0) < 1e-4, name
    r1, r2 = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("one", "two"))
    assert _numbers(r1["datasets"]) == pytest.approx(_numbers(r2["datasets"]), abs=1e-6)  # PriDe's prior: scores
    run1, run2 = r1["evaluated"]["run"], r2["evaluated"]["run"]
    assert (run1["world_size"], run2["world_size"]) == (1, 2) and run2["device"] == "cpu"
    assert run2["items"] == run1["items"] == sum(len(v) for v in one.values())
    assert run2["versions"]["torch"] and run2["items_per_s"] > 0 and run2["git"]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
