"""On a researcher's own account (#23): their Hugging Face hub cache and token, their W&B login, a first eval.py.

- A model in the user's hub cache (HOME/.cache/huggingface/hub, no HF_HOME set) loads by its hub id offline, at
  model.revision when set, and the project creates no hub cache of its own; huggingface_hub finds their token.
- W&B follows the user's setup: WANDB_MODE, else online with credentials (WANDB_API_KEY, the netrc entry of
  `wandb login` for the configured base URL), else offline; online without a server falls back to offline.
- Without the data release, eval.py says how to get it (the project's own task=get_data first), before it prints
  the config tree.
"""

import json
import os
import socket
import subprocess
import sys
import types
import warnings
from pathlib import Path

import pytest
import wandb

from clika.app.env import wandb_mode
from clika.train.cluster.recovery import ReliabilityWarning

ROOT = Path(__file__).resolve().parents[2]
SHA_MAIN = "a" * 40
SHA_PINNED = "b" * 40
TOKEN = "hf_" + "x" * 34


def _user_home(tmp_path: Path, model_dir: Path) -> Path:
    """HOME with the tiny model in huggingface_hub's cache layout (blobs, snapshots/<sha> links, refs/main) and
    the token file `hf auth login` writes. Snapshot SHA_PINNED differs in one config key."""
    hf = tmp_path / "home" / ".cache" / "huggingface"
    repo = hf / "hub" / "models--org--name"
    for sha, marker in ((SHA_MAIN, None), (SHA_PINNED, "pinned")):
        snap = repo / "snapshots" / sha
        snap.mkdir(parents=True)
        for f in model_dir.iterdir():
            data = f.read_bytes()
            if f.name == "config.json" and marker:
                data = json.dumps({**json.loads(data), "clika_test_snapshot": marker}).encode()
            blob = repo / "blobs" / f"{sha[:8]}-{f.name}"
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(data)
            (snap / f.name).symlink_to(os.path.relpath(blob, snap))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SHA_MAIN)
    (hf / "token").write_text(TOKEN)
    return tmp_path / "home"


# In one process, as `python eval.py ...` runs: the evaluation of the hub id at the pinned revision, then what
# huggingface_hub sees and which snapshot each revision loads.
EVAL_THEN_ASK_THE_HUB = f"""
import sys
from clika.app.eval import main
sys.argv[0] = "eval.py"
main()
import huggingface_hub
from huggingface_hub import constants
from clika.models.load import ModelSpec, load_model
for revision in (None, "{SHA_PINNED}"):
    model, _ = load_model(ModelSpec(name="hub", name_or_path="org/name", revision=revision))
    print("SNAPSHOT", revision, getattr(model.config, "clika_test_snapshot", None))
print("TOKEN", huggingface_hub.get_token())
print("HUB_CACHE", constants.HF_HUB_CACHE)
"""


def test_a_model_in_the_users_hub_cache_loads_by_id_offline_with_their_token(data_root, tmp_path):
    from clika.models.tiny import build_tiny

    home = _user_home(tmp_path, build_tiny())
    cache, run = tmp_path / "clika-cache", tmp_path / "run"
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HOME", "HF_HUB_CACHE", "HF_TOKEN", "HF_TOKEN_PATH", "XDG_CACHE_HOME", "CLIKA_HF_HOME")}
    env.update(HOME=str(home), HF_HUB_OFFLINE="1", CLIKA_CACHE=str(cache), CLIKA_DATA=str(data_root),
               PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", WANDB_MODE="offline")
    args = ["model.name_or_path=org/name", "clika.datasets=[x_copa]", "clika.langs=[en,zh]", "clika.limit=2",
            "clika.bootstrap=10", "print_config=false", f"hydra.run.dir={run}", f"model.revision={SHA_PINNED}"]
    project_hf_before = (ROOT / ".cache" / "hf").exists()  # (a checkout used with earlier versions has one)
    r = subprocess.run([sys.executable, "-c", EVAL_THEN_ASK_THE_HUB, *args], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    evaluated = json.loads((run / "results.json").read_text())["evaluated"]
    assert evaluated["name_or_path"] == "org/name" and evaluated["revision"] == SHA_PINNED
    assert f"TOKEN {TOKEN}" in r.stdout  # what huggingface_hub sends: the user's `hf auth login` token
    assert f"HUB_CACHE {home / '.cache' / 'huggingface' / 'hub'}" in r.stdout
    assert "SNAPSHOT None None" in r.stdout and f"SNAPSHOT {SHA_PINNED} pinned" in r.stdout  # refs/main; pinned
    assert not (cache / "hf").exists() and (ROOT / ".cache" / "hf").exists() == project_hf_before
    assert sorted(p.name for p in (home / ".cache" / "huggingface" / "hub").iterdir()) == ["models--org--name"]


def test_a_revision_read_as_a_number_says_to_quote_it():
    from clika.models.load import ModelSpec
    from clika.util.errors import ClikaError

    with pytest.raises(ClikaError, match=r"model.revision: 2222 was read as a number.*fix: quote it"):
        ModelSpec(name_or_path="org/name", revision=2222)  # what Hydra makes of model.revision=2222


def test_clika_hf_home_asks_for_a_project_local_hub_cache_and_keeps_the_token(tmp_path, monkeypatch):
    from clika.app.env import setup_env

    for k in ("HF_HUB_CACHE", "HF_XET_CACHE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("CLIKA_HF_HOME", str(tmp_path / "hf"))
    home = os.environ.get("HF_HOME")
    setup_env()
    assert os.environ["HF_HUB_CACHE"] == str(tmp_path / "hf" / "hub")
    assert os.environ.get("HF_HOME") == home  # the HF home, and the token in it, stay the user's


# ---------------------------------------------------------------- W&B
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _netrc(tmp_path: Path, machine: str) -> Path:
    f = tmp_path / ".netrc"
    f.write_text(f"machine {machine}\n  login user\n  password {'k' * 40}\n")  # what `wandb login` writes
    f.chmod(0o600)
    return f


@pytest.mark.parametrize("env,mode,why", [
    ({"WANDB_MODE": "disabled", "WANDB_API_KEY": "k"}, "disabled", "WANDB_MODE=disabled"),
    ({"WANDB_API_KEY": "k"}, "online", "in WANDB_API_KEY"),
    ({}, "offline", "no W&B credentials for https://api.wandb.ai"),
    ({"NETRC": "{tmp}/.netrc"}, "online", "credentials for https://api.wandb.ai in {tmp}/.netrc (machine api.wandb.ai)"),
    ({"NETRC": "{tmp}/.netrc", "WANDB_BASE_URL": "https://wandb.my-lab.org"}, "offline",
     "no W&B credentials for https://wandb.my-lab.org"),  # the netrc entry is for another server
])
def test_wandb_mode_follows_the_users_setup(tmp_path, env, mode, why):
    _netrc(tmp_path, "api.wandb.ai")
    env = {"HOME": str(tmp_path / "empty-home"), **{k: v.format(tmp=tmp_path) for k, v in env.items()}}
    got_mode, got_why = wandb_mode(env)
    assert got_mode == mode and why.format(tmp=tmp_path) in got_why, got_why


def test_wandb_login_host_sets_the_base_url_whose_netrc_entry_counts(tmp_path):
    (tmp_path / ".config" / "wandb").mkdir(parents=True)
    (tmp_path / ".config" / "wandb" / "settings").write_text("[default]\nbase_url = http://wandb.lab:8080\n")
    _netrc(tmp_path, "wandb.lab:8080")  # `wandb login --host http://wandb.lab:8080` writes both
    assert wandb_mode({"HOME": str(tmp_path)})[0] == "online"


def test_no_credentials_logs_offline_and_says_why(tmp_path, monkeypatch):
    from clika.train.loggers import ResilientWandbLogger, finish_wandb, wandb_mode_note

    for k in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL", "NETRC"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    logger = ResilientWandbLogger(save_dir=str(tmp_path), project="clika-test", init_timeout=5)
    logger.experiment.log({"loss": 1.0})
    trainer = types.SimpleNamespace(loggers=[logger])
    note = wandb_mode_note(trainer)
    assert note.startswith("offline: no W&B credentials for https://api.wandb.ai") and "wandb login" in note
    assert "offline-run-" in finish_wandb(trainer)


def test_a_wandb_login_without_a_server_tries_online_then_finishes_offline(train_cfg, tmp_path, monkeypatch,
                                                                             capsys):
    """`wandb login` done (a netrc entry for the base URL), WANDB_MODE unset, nothing listening there."""
    from clika.train.run import train

    url = f"http://127.0.0.1:{_closed_port()}"
    for k in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(_netrc(tmp_path, url.split("//")[1])))
    monkeypatch.setenv("WANDB_BASE_URL", url)
    run = tmp_path / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = train(train_cfg("logger=wandb", "++logger.wandb.init_timeout=5", "trainer.max_steps=2",
                              "trainer.limit_val_batches=0", "export.enabled=false", "callbacks.clika.limit=2",
                              "callbacks.clika.langs=[en,zh]", "clika.datasets=[x_copa]", "callbacks.clika.fictional=null",
                              run_dir=run))
    fell_back = [w for w in caught if issubclass(w.category, ReliabilityWarning) and "continuing offline" in
                 str(w.message)]
    assert len(fell_back) == 1 and f"credentials for {url}" in str(fell_back[0].message)
    assert "\n" not in str(fell_back[0].message)
    assert out["global_step"] == 2 and "offline-run-" in out["wandb"]
    assert out["wandb_mode"].startswith("offline: online failed (") and f"credentials for {url} in" in out["wandb_mode"]
    summary_line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("wandb ")]
    assert len(summary_line) == 1 and "fell back to offline" in summary_line[0] and "wandb sync" in summary_line[0]
    offline_run = Path(out["wandb"])
    assert offline_run.name.endswith((run / "wandb_run_id").read_text().strip())
    (log,) = offline_run.glob("run-*.wandb")  # the run's records (history, media) for `wandb sync`
    # the finished run's records reach the file when W&B's service closes its stream, which may come after
    # finish() returns (CI under load read a header only): shut the service down as a process exit would
    wandb.teardown()
    data = log.read_bytes()
    for key in (b"train/loss", b"clika/x_copa/zh/", b"clika/curves/x_copa"):  # loss and the CLiKA curves
        assert key in data, key


# ---------------------------------------------------------------- no data release yet
def test_eval_without_the_release_names_get_data_before_printing_the_config(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("CLIKA_DATA", "CLIKA_DEBUG")}
    env.update(CLIKA_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")  # no fetched release in this cache
    r = subprocess.run([sys.executable, "eval.py", "model=gemma3_270m", "clika.datasets=[x_copa]",
                        f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2, (r.stdout + r.stderr)[-3000:]
    assert r.stderr.strip().splitlines() == [
        "error: paths.clika_data is not set — fix: python eval.py task=get_data (fetches and verifies the official "
        "release into the cache, used from then on), or export CLIKA_DATA=/path/to/clika-data (a copy of the release)"]
    assert "model" not in r.stdout and not (tmp_path / "run").exists()  # no config tree, no run dir
