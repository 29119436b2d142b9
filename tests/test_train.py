"""Training: the learning-rate and annealing schedules, a short real run on the digits (history,
snapshots, improvement), exact resume after a real SIGKILL, the config-mismatch and non-finite
loss errors, and a frozen decoder that stays bit-identical."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from vaegaps.config import defaults
from vaegaps.data import prepare_dataset
from vaegaps.errors import VaegapsError
from vaegaps.io import load_torch, read_metadata
from vaegaps.train import BURDA_EPOCHS, HISTORY_COLUMNS, anneal_lambda, lr_at, train_vae
from vaegaps.vae import load_vae

SRC = Path(__file__).resolve().parents[1] / "src"

CFG = {
    "device": "cpu",
    "seed": 0,
    "model": {**defaults("model"), "z_dim": 4, "encoder_hidden": [32], "decoder_hidden": [32],
              "family": "ffg", "flow_hidden": 16},
    "train": {"epochs": 5, "batch_size": 100, "lr": 3e-3, "adam_eps": 1e-4, "lr_schedule": "burda",
              "anneal_epochs": 2, "checkpoint_every": 2, "n_samples": 1, "snapshots": [],
              "init_decoder": None, "freeze_decoder": False},
}


def config(model=None, **train) -> dict:
    cfg = copy.deepcopy(CFG)
    cfg["model"].update(model or {})
    cfg["train"].update(train)
    return cfg


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "digits.parquet"
    prepare_dataset("digits", path)
    return path


def run(cfg, data, folder: Path, snapshots: bool = False) -> Path:
    train_vae(cfg, data, folder / "model.pt", folder / "history.parquet", folder / "checkpoint.pt",
              snapshot_dir=folder / "snapshots" if snapshots else None, dataset_name="digits")
    return folder


def state(path) -> dict[str, torch.Tensor]:
    return load_torch(path)["state_dict"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ----------------------------------------------------------------------------- schedules

def test_lr_burda_full_length_stages():
    lrs = [lr_at(e, BURDA_EPOCHS, 1e-3, "burda") for e in range(BURDA_EPOCHS)]
    assert lrs[0] == 1e-3 and lrs[-1] == pytest.approx(1e-4, rel=1e-12)
    lengths = pd.Series(lrs).groupby(pd.Series(lrs), sort=False).size().tolist()
    assert lengths == [3**i for i in range(8)]
    levels = list(dict.fromkeys(lrs))
    assert levels == pytest.approx([1e-3 * 10 ** (-i / 7) for i in range(8)], rel=1e-12)


@pytest.mark.parametrize("total", [1, 7, 300, 1000, 5000])
def test_lr_burda_scaled_is_monotone(total):
    lrs = [lr_at(e, total, 2e-3, "burda") for e in range(total)]
    assert lrs[0] == 2e-3
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert min(lrs) >= 2e-4 * (1 - 1e-12)
    if total >= 100:
        assert lrs[-1] == pytest.approx(2e-4) and lrs.count(lrs[-1]) == pytest.approx(total * 2187 / 3280, abs=1)


def test_lr_constant_and_unknown():
    assert lr_at(123, 300, 5e-4, "constant") == 5e-4
    with pytest.raises(VaegapsError, match="lr_schedule"):
        lr_at(0, 300, 1e-3, "cosine")


def test_anneal_lambda():
    assert [anneal_lambda(e, 4) for e in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert anneal_lambda(0, 0) == 1.0 and anneal_lambda(10, 0) == 1.0


# ----------------------------------------------------------------------------- a real short run

@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    cfg = config(epochs=6, snapshots=[0, 2, 6, 99])
    return cfg, run(cfg, digits, tmp_path_factory.mktemp("run"), snapshots=True)


def test_history_schema_and_improvement(trained):
    cfg, folder = trained
    hist = pd.read_parquet(folder / "history.parquet")
    assert list(hist.columns) == HISTORY_COLUMNS
    assert hist["epoch"].tolist() == list(range(1, 7)) and hist["epoch"].dtype == "int64"
    assert hist["lam"].tolist() == [0.5, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert hist["lr"].tolist() == [lr_at(e, 6, 3e-3, "burda") for e in range(6)]
    assert hist.drop(columns="epoch").map(lambda v: isinstance(v, float)).all().all()
    assert hist["valid_elbo"].iloc[-1] > hist["valid_elbo"].iloc[0] + 1.0
    assert hist["train_elbo"].iloc[-1] > hist["train_elbo"].iloc[0] + 1.0
    assert -64 * 0.7 < hist["valid_elbo"].iloc[-1] < 0  # better than coin flips, below log 1
    assert read_metadata(folder / "history.parquet")["cfg"] == cfg


def test_model_file_and_checkpoint(trained, digits):
    cfg, folder = trained
    blob = load_torch(folder / "model.pt")
    assert blob["epochs"] == 6 and blob["dataset"] == "digits"
    assert blob["model_cfg"] == cfg["model"] and blob["image_shape"] == [1, 8, 8]
    model = load_vae(folder / "model.pt")
    assert model.decoder[0].in_features == 4
    ck = load_torch(folder / "checkpoint.pt")
    assert ck["epoch"] == 6 and len(ck["history"]) == 6
    assert_same_weights(ck["model"], blob["state_dict"])
    # A rerun finds a finished checkpoint: nothing to train, same outputs.
    before = (folder / "model.pt").stat().st_mtime_ns
    run(cfg, digits, folder)
    assert (folder / "model.pt").stat().st_mtime_ns != before
    assert_same_weights(state(folder / "model.pt"), blob["state_dict"])
    assert len(pd.read_parquet(folder / "history.parquet")) == 6


def test_snapshots(trained):
    _, folder = trained
    snaps = folder / "snapshots"
    assert sorted(p.name for p in snaps.iterdir()) == ["epoch_0.pt", "epoch_2.pt", "epoch_6.pt"]
    assert load_torch(snaps / "epoch_2.pt")["epoch"] == 2
    assert_same_weights(state(snaps / "epoch_6.pt"), state(folder / "model.pt"))
    first, last = state(snaps / "epoch_0.pt"), state(folder / "model.pt")
    assert not torch.equal(first["decoder.0.weight"], last["decoder.0.weight"])


# ----------------------------------------------------------------------------- exact resume

_CHILD = textwrap.dedent("""
    import json, logging, sys, time
    import torch
    torch.set_num_threads(1)
    from vaegaps.train import train_vae
    cfg, data, folder, stop = json.loads(sys.argv[1])

    class StopAfter(logging.Handler):
        # Park the process once epoch `stop` is logged, so the parent kills it at a known point.
        def emit(self, record):
            if record.getMessage().startswith(f"epoch {stop}/"):
                open(folder + "/parked", "w").close()
                time.sleep(600)

    log = logging.getLogger("vaegaps.train")
    log.setLevel(logging.INFO)
    log.addHandler(StopAfter())
    train_vae(cfg, data, folder + "/model.pt", folder + "/history.parquet", folder + "/checkpoint.pt")
""")


def test_kill_and_resume_gives_identical_weights(digits, tmp_path, caplog):
    # Flow family with 2 samples: more parameters and more noise drawn per step.
    cfg = config(model={"family": "flow"}, epochs=5, checkpoint_every=2, n_samples=2)
    killed = tmp_path / "killed"
    killed.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    args = json.dumps([cfg, str(digits), str(killed), 3])
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, args], env=env)
    try:
        deadline = time.monotonic() + 120
        while not (killed / "parked").exists():
            assert proc.poll() is None, "training process exited before it was killed"
            assert time.monotonic() < deadline, "training process never reached epoch 3"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # Killed after epoch 3, so the checkpoint (epoch 2) is behind: epoch 3 is redone on resume.
    assert load_torch(killed / "checkpoint.pt")["epoch"] == 2
    assert not (killed / "model.pt").exists()

    with caplog.at_level("INFO", logger="vaegaps.train"):
        run(cfg, digits, killed)
    assert "resuming" in caplog.text and "after epoch 2" in caplog.text
    straight = tmp_path / "straight"
    straight.mkdir()
    run(cfg, digits, straight)

    assert_same_weights(state(killed / "model.pt"), state(straight / "model.pt"))
    h1, h2 = (pd.read_parquet(f / "history.parquet").drop(columns="seconds") for f in (killed, straight))
    pd.testing.assert_frame_equal(h1, h2, check_exact=True)
    assert h1["epoch"].tolist() == [1, 2, 3, 4, 5]


def test_checkpoint_from_other_config_is_refused(digits, tmp_path):
    run(config(epochs=2), digits, tmp_path)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(VaegapsError, match="other model/train/seed settings, and may be their only trained "
                                           "weights; keep it") as e:
        run(config(epochs=2, lr=1e-3), digits, tmp_path)
    assert "delete" not in str(e.value)  # never advise deleting the only copy of weights
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    # checkpoint_every cannot change the weights, so it does not invalidate the checkpoint
    run(config(epochs=2, checkpoint_every=1), digits, tmp_path)


def test_non_finite_loss_names_epoch_and_batch(digits, tmp_path):
    with pytest.raises(VaegapsError, match=r"non-finite loss at epoch 1, batch \d+; lower train.lr"):
        run(config(lr=1e6, lr_schedule="constant", anneal_epochs=0), digits, tmp_path)
    assert not (tmp_path / "model.pt").exists()


# ----------------------------------------------------------------------------- frozen decoder

def test_frozen_decoder_stays_bit_identical(trained, digits, tmp_path):
    _, source = trained
    cfg = config(epochs=3, init_decoder=str(source / "model.pt"), freeze_decoder=True, snapshots=[0])
    run(cfg, digits, tmp_path, snapshots=True)
    given, end = state(source / "model.pt"), state(tmp_path / "model.pt")
    start = state(tmp_path / "snapshots" / "epoch_0.pt")
    decoder = [k for k in end if k.startswith("decoder.")]
    encoder = [k for k in end if not k.startswith("decoder.")]
    assert decoder and encoder
    for k in decoder:
        assert torch.equal(end[k], given[k]) and torch.equal(start[k], given[k]), k
    assert all(not torch.equal(end[k], start[k]) for k in encoder if k.endswith("weight"))
    hist = pd.read_parquet(tmp_path / "history.parquet")
    assert hist["valid_elbo"].iloc[-1] > hist["valid_elbo"].iloc[0]


def test_freeze_without_init_decoder_is_an_error(digits, tmp_path):
    with pytest.raises(VaegapsError, match="init_decoder"):
        run(config(freeze_decoder=True), digits, tmp_path)


def test_lr_burda_cut_follows_the_paper_schedule_epoch_for_epoch():
    """burda_cut: a 60-epoch run gets the paper's first 60 epochs, not the 8 stages squeezed in."""
    full = [lr_at(e, BURDA_EPOCHS, 1e-3, "burda") for e in range(60)]
    assert [lr_at(e, 60, 1e-3, "burda_cut") for e in range(60)] == full
    assert lr_at(59, 60, 1e-3, "burda_cut") > lr_at(59, 60, 1e-3, "burda")
