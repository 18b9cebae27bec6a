"""The W&B run id reaches every rank through the run dir's id file, not through the environment."""

import os

from clika.train.loggers import WANDB_ID_FILE, wandb_run_id


def test_rank_zero_writes_the_id_the_other_ranks_read(tmp_path, monkeypatch):
    for k in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "CLIKA_WANDB_ID"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("LOCAL_RANK", "1")  # a rank Lightning starts after rank 0 built its loggers
    assert wandb_run_id(tmp_path, None) is None and not (tmp_path / WANDB_ID_FILE).exists()
    monkeypatch.setenv("LOCAL_RANK", "0")
    run_id = wandb_run_id(tmp_path, None)
    assert run_id and (tmp_path / WANDB_ID_FILE).read_text() == run_id
    assert not any(run_id in v for v in os.environ.values())  # no environment channel
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert wandb_run_id(tmp_path, None) == run_id
    # resuming from another run dir's checkpoint continues that run
    other = tmp_path / "other"
    assert wandb_run_id(other, str(tmp_path / "checkpoints" / "last.ckpt")) == run_id
