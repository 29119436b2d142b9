"""Training one VAE: Adam, Burda et al.'s learning-rate schedule, entropy annealing, exact resume.

Every random draw comes from torch.Generator objects seeded from the config (one for the
minibatch permutations, one for the objective's noise; validation uses a third, fresh each
epoch, so evaluating never shifts the training stream). Their states, the weights and Adam's
moments go into the resume checkpoint, so a run killed at any point and rerun ends with the
same weights, bit for bit, as one that was never interrupted (on the same device).

Epochs are counted from 1 in the history, the log, snapshots and error messages ("epoch e" is
the e-th pass over the data; snapshot epoch_e holds the weights after it, epoch_0 the initial
ones); `lr_at` and `anneal_lambda` take the 0-based index e − 1.

Training that diverges stops with one line naming the epoch and train.lr: a non-finite loss, or
an epoch's ELBO orders of magnitude below a coin-flip decoder's (`diverged_below`).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from pathlib import Path

import pandas as pd
import torch

from .config import config_hash
from .data import image_shape as dataset_image_shape
from .data import load_split
from .errors import VaegapsError
from .io import load_torch, save_torch, write_parquet
from .runtime import resolve_device
from .vae import VAE, build_vae, load_vae, save_vae

log = logging.getLogger(__name__)

BURDA_STAGES = 8
BURDA_EPOCHS = sum(3**i for i in range(BURDA_STAGES))  # 3280
VALID_BATCH = 1000  # fixed, so the validation noise (hence the number) never depends on train.batch_size
HISTORY_COLUMNS = ["epoch", "train_elbo", "valid_elbo", "lam", "lr", "seconds"]
# Divergence: an epoch's ELBO below the coin-flip decoder's (p = ½ for every pixel, −P·log 2 per
# datapoint) by more than max(DIVERGED_NATS, DIVERGED_FACTOR × P·log 2). Healthy training starts
# near the coin-flip value and rises above it; lr 0.5 on the digits reaches −6.8e13 in epoch 1.
DIVERGED_NATS, DIVERGED_FACTOR = 1000.0, 10.0


def lr_at(epoch: int, total_epochs: int, base_lr: float, kind: str) -> float:
    """Learning rate for 0-based `epoch`. 'burda': stage i (0..7) lasts 3^i of 3280 epochs with
    lr = base_lr·10^(−i/7); other run lengths keep the boundaries at the same fractions.
    'burda_cut': the paper's schedule epoch for epoch, stopped after `total_epochs` (a short run
    keeps the high early learning rates instead of decaying to 1e-4 within its first third)."""
    if kind == "constant":
        return float(base_lr)
    if kind == "burda_cut":
        kind, total_epochs = "burda", BURDA_EPOCHS
    if kind != "burda":
        raise VaegapsError(f"unknown train.lr_schedule {kind!r}; choose burda, burda_cut or constant")
    if epoch < 0 or total_epochs < 1:
        raise ValueError(f"need epoch >= 0 and total_epochs >= 1, got {epoch}, {total_epochs}")
    # Stage = number of boundaries passed; integer arithmetic keeps 3280 epochs exact.
    ends = [sum(3**k for k in range(i + 1)) for i in range(BURDA_STAGES - 1)]
    stage = sum(epoch * BURDA_EPOCHS >= end * total_epochs for end in ends)
    return float(base_lr) * 10.0 ** (-stage / (BURDA_STAGES - 1))


def anneal_lambda(epoch: int, anneal_epochs: int) -> float:
    """Entropy-annealing weight on −log q for 0-based `epoch`: min(1, (epoch+1)/W); 1 if W == 0."""
    if anneal_epochs <= 0:
        return 1.0
    return min(1.0, (epoch + 1) / anneal_epochs)


def _derived_seed(seed: int, stream: str) -> int:
    """Independent 63-bit seeds per purpose, so the streams never overlap."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{stream}".encode()).digest()[:8], "big") >> 1


def _build_model(cfg: dict, x_dim: int, shape, device: torch.device) -> VAE:
    """Seeded init (in a forked RNG, leaving the caller's global state alone); optional frozen decoder."""
    tcfg = cfg["train"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_derived_seed(cfg["seed"], "init"))
        model = build_vae(cfg["model"], x_dim, shape)
    if tcfg.get("init_decoder"):
        try:
            model.decoder.load_state_dict(load_vae(tcfg["init_decoder"]).decoder.state_dict())
        except RuntimeError as exc:
            raise VaegapsError(f"train.init_decoder {tcfg['init_decoder']} has a decoder of another shape "
                               f"({str(exc).splitlines()[0]}); use a model with the same model settings") from exc
    if tcfg.get("freeze_decoder"):
        if not tcfg.get("init_decoder"):
            raise VaegapsError("train.freeze_decoder is true but train.init_decoder is null; give the model to load")
        model.decoder.requires_grad_(False)
    return model.to(device)


def _optimizer(model: VAE, tcfg: dict) -> torch.optim.Adam:
    params = [p for p in model.parameters() if p.requires_grad]  # frozen decoder: not in Adam at all
    return torch.optim.Adam(params, lr=tcfg["lr"], eps=tcfg.get("adam_eps", 1e-4))


def _generators(seed: int, device: torch.device) -> dict[str, torch.Generator]:
    # Permutations on the CPU (same minibatches on any device); noise where the model runs.
    return {"perm": torch.Generator().manual_seed(_derived_seed(seed, "perm")),
            "noise": torch.Generator(device=device).manual_seed(_derived_seed(seed, "noise"))}


def _save_checkpoint(path, model, opt, gens, epoch: int, history: list, chash: str, device) -> None:
    save_torch({"config_hash": chash, "device_type": device.type, "epoch": epoch,
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimizer": opt.state_dict(),
                "generators": {k: g.get_state() for k, g in gens.items()},
                "history": history}, path)


def _resume(path, model, opt, gens, chash: str, device) -> tuple[int, list]:
    """(epochs already done, history so far): from the checkpoint if there is one, else (0, [])."""
    if not Path(path).exists():
        return 0, []
    ck = load_torch(path)
    # Both refusals keep the file: it may be the only copy of weights trained for days.
    if ck.get("config_hash") != chash:
        raise VaegapsError(f"checkpoint {path} was written with other model/train/seed settings, and may "
                           "be their only trained weights; keep it, and give this training another "
                           "checkpoint path (the workflow keeps one per settings)")
    if ck["device_type"] != device.type:
        raise VaegapsError(f"checkpoint {path} was written on {ck['device_type']} but this run uses "
                           f"{device.type}; set device: {ck['device_type']} to resume it (an exact resume "
                           f"needs the same device), or move it aside to train again on {device.type}")
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optimizer"])
    for k, g in gens.items():
        g.set_state(ck["generators"][k])
    log.info("resuming from %s after epoch %d", path, ck["epoch"])
    return int(ck["epoch"]), list(ck["history"])


def _train_epoch(model, opt, x, tcfg: dict, gens, epoch: int, lam: float) -> float:
    """One pass over x in seeded random minibatches; mean training ELBO. Raises on a non-finite loss."""
    model.train()
    if tcfg.get("freeze_decoder"):
        model.decoder.eval()  # frozen means BatchNorm running statistics too
    perm = torch.randperm(len(x), generator=gens["perm"]).to(x.device)
    losses, elbo_sum = [], torch.zeros((), device=x.device, dtype=torch.float64)
    for start in range(0, len(x), tcfg["batch_size"]):
        obj, elbo = model.objective(x[perm[start:start + tcfg["batch_size"]]], lam,
                                    tcfg.get("n_samples", 1), generator=gens["noise"])
        opt.zero_grad(set_to_none=True)
        (-obj).backward()
        opt.step()
        losses.append(obj.detach())
        elbo_sum += elbo.sum()
    # One device sync per epoch, not per batch: find the first bad batch afterwards.
    bad = (~torch.isfinite(torch.stack(losses))).nonzero()
    if len(bad):
        raise VaegapsError(f"non-finite loss at epoch {epoch}, batch {int(bad[0]) + 1}; "
                           "lower train.lr or check the data")
    return float(elbo_sum) / len(x)


@torch.no_grad()
def valid_elbo(model: VAE, x: torch.Tensor, seed: int) -> float:
    """Single-sample ELBO averaged over x, in eval mode, with its own freshly seeded generator."""
    if len(x) == 0:
        return math.nan
    model.eval()
    gen = torch.Generator(device=x.device).manual_seed(_derived_seed(seed, "valid"))
    total = sum(model.objective(x[i:i + VALID_BATCH], 1.0, 1, generator=gen)[1].double().sum()
                for i in range(0, len(x), VALID_BATCH))
    return float(total) / len(x)


def _load_x(data_path, split: str, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(load_split(data_path, split)[1]).to(device)  # moved to the device once


def _snapshot(model, snapshot_dir, epoch: int, cfg: dict, shape, dataset_name) -> None:
    save_vae(model, Path(snapshot_dir) / f"epoch_{epoch}.pt", cfg["model"], shape,
             extra={"epoch": epoch, "dataset": dataset_name})


def train_vae(cfg: dict, data_path, model_path, history_path, checkpoint_path,
              snapshot_dir: str | os.PathLike | None = None, dataset_name: str | None = None,
              provenance: dict | None = None) -> None:
    """Train on the `train` split of `data_path`, validate on `valid`; write model, history and
    checkpoint (see the module docstring); resume from `checkpoint_path` when it exists.
    `provenance`: more metadata for the history Parquet (a workflow stage's study settings)."""
    tcfg, device, chash = cfg["train"], resolve_device(cfg.get("device", "auto")), config_hash(cfg)
    epochs, every = int(tcfg["epochs"]), max(1, int(tcfg.get("checkpoint_every", 25)))
    snapshots = {int(e) for e in tcfg.get("snapshots") or []} if snapshot_dir is not None else set()
    shape = dataset_image_shape(data_path)
    x_train, x_valid = _load_x(data_path, "train", device), _load_x(data_path, "valid", device)
    model = _build_model(cfg, x_train.shape[1], shape, device)
    opt, gens = _optimizer(model, tcfg), _generators(cfg["seed"], device)
    done, history = _resume(checkpoint_path, model, opt, gens, chash, device)
    log.info("training %s on %s (%d train, %d valid) for epochs %d..%d of %d",
             cfg["model"].get("family", "ffg"), device, len(x_train), len(x_valid), done + 1, epochs, epochs)
    if done == 0 and 0 in snapshots:
        _snapshot(model, snapshot_dir, 0, cfg, shape, dataset_name)
    for epoch in range(done + 1, epochs + 1):
        history.append(_run_epoch(model, opt, x_train, x_valid, cfg, gens, epoch))
        if epoch in snapshots:
            _snapshot(model, snapshot_dir, epoch, cfg, shape, dataset_name)
        if epoch % every == 0 or epoch == epochs:
            _save_checkpoint(checkpoint_path, model, opt, gens, epoch, history, chash, device)
    if not Path(checkpoint_path).exists():  # epochs == 0: still leave the declared output
        _save_checkpoint(checkpoint_path, model, opt, gens, epochs, history, chash, device)
    _write_outputs(model, history, cfg, shape, dataset_name, model_path, history_path, chash, provenance)


def diverged_below(x_dim: int) -> float:
    """The ELBO per datapoint below which training has diverged: the coin-flip decoder's
    −P·log 2 less max(DIVERGED_NATS, DIVERGED_FACTOR·P·log 2) (−1044 nats for the 64-pixel digits,
    −5978 for MNIST's 784 pixels)."""
    coin = x_dim * math.log(2.0)
    return -coin - max(DIVERGED_NATS, DIVERGED_FACTOR * coin)


def _check_divergence(row: dict, x_dim: int, tcfg: dict) -> None:
    """Stop with one line when an epoch's training or validation ELBO is orders of magnitude
    below what even an untrained model reaches (see `diverged_below`)."""
    floor = diverged_below(x_dim)
    for what, name in (("train_elbo", "training"), ("valid_elbo", "validation")):
        value = row[what]
        if value < floor or (what == "train_elbo" and not math.isfinite(value)):
            raise VaegapsError(f"training diverged at epoch {row['epoch']}: {name} ELBO {value:.4g} "
                               f"nats per datapoint, below {floor:.0f} (a coin-flip decoder reaches "
                               f"{-x_dim * math.log(2.0):.1f}); lower train.lr (now {tcfg['lr']:g})")


def _run_epoch(model, opt, x_train, x_valid, cfg: dict, gens, epoch: int) -> dict:
    """Train one epoch at its lr and λ, validate, log; the history row."""
    tcfg, t0 = cfg["train"], time.perf_counter()
    lr = lr_at(epoch - 1, int(tcfg["epochs"]), tcfg["lr"], tcfg.get("lr_schedule", "burda"))
    lam = anneal_lambda(epoch - 1, int(tcfg.get("anneal_epochs", 0)))
    for group in opt.param_groups:
        group["lr"] = lr
    train = _train_epoch(model, opt, x_train, tcfg, gens, epoch, lam)
    valid = valid_elbo(model, x_valid, cfg["seed"])
    row = {"epoch": epoch, "train_elbo": train, "valid_elbo": valid, "lam": lam, "lr": lr,
           "seconds": time.perf_counter() - t0}
    log.info("epoch %d/%d elbo %.3f valid %.3f lambda %.3f lr %.2e %.2f s/epoch",
             epoch, tcfg["epochs"], train, valid, lam, lr, row["seconds"])
    _check_divergence(row, x_train.shape[1], tcfg)
    return row


def _write_outputs(model, history, cfg, shape, dataset_name, model_path, history_path, chash,
                   provenance: dict | None = None) -> None:
    last = history[-1] if history else {}
    save_vae(model, model_path, cfg["model"], shape, extra={
        "epochs": int(cfg["train"]["epochs"]), "dataset": dataset_name, "config_hash": chash,
        "train_elbo": last.get("train_elbo"), "valid_elbo": last.get("valid_elbo")})
    df = pd.DataFrame(history, columns=HISTORY_COLUMNS).astype({"epoch": "int64"})
    write_parquet(df, history_path, metadata={**(provenance or {}), "cfg": cfg, "dataset": dataset_name,
                                              "config_hash": chash})
