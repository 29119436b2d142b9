"""Your own VAE, measured by the package's estimators (docs/method.md §11).

The protocol. A model is any object with

* ``encode(x)`` -> ``(mean, log_variance)``, two tensors of shape (N, D), or a
  ``torch.distributions.Normal`` with batch shape (N, D) (``Independent(Normal, 1)`` too): a
  diagonal-Gaussian q(z|x). Any other distribution over z with ``sample`` and ``log_prob``
  (samples of shape (S, N, D)) is accepted as well; its q is then not in a family the package can
  optimise per datapoint, unless you declare one (``family``), and the amortization gap is not
  reported (docs/method.md §11).
* ``decode(z)`` with z of shape (N, S, D) -> a ``torch.distributions.Distribution`` whose
  ``log_prob(x)``, x broadcast to (N, 1, ...) against the (N, S, ...) batch, summed over the data
  dimensions, is log p(x|z) of shape (N, S): ``Bernoulli``, ``ContinuousBernoulli``, ``Normal``
  (fixed or learned variance), ``Categorical`` (e.g. 8-bit pixels as 256 classes), an
  ``Independent`` of any of them... If ``decode`` returns a tensor instead, name what it holds
  with ``likelihood`` ('bernoulli', 'continuous_bernoulli' or 'categorical' logits, 'normal' mean
  with ``noise_std``).
* optionally ``prior``, with ``log_prob`` and ``sample`` (default: N(0, I)). A prior other than
  N(0, I) is supported exactly: its log-density ratio to N(0, I) is folded into the likelihood the
  estimators see, log p(x|z) + log p(z) − log N(z; 0, I), so every bound is of the model's own
  joint p(x, z). (AIS with ``init: prior`` then starts from N(0, I), still a normalised start.)

`UserVAE` checks a model against the protocol once, on the first datapoints, and raises one line
(`ProtocolError`, a `VaegapsError` and a `ValueError`) naming what is missing or of the wrong
shape. It then exposes the interface `vaegaps.evaluate`'s estimators use (``encode`` -> mean,
log-variance, features; ``family``; ``log_likelihood(x)``; ``z_dim``; ``family_name``;
``family_hidden``; ``flow_steps``; ``simulate``), so the same code runs on it, batched over
datapoints × samples exactly as for the built-in VAE. The likelihood is differentiated by autograd,
except where decode(z) is Bernoulli(logits=net(z)) for an nn.Sequential MLP `net` of the model's
that vaegaps.decoder_grad differentiates by hand (Linear layers, ELU / ReLU / Tanh / Softplus):
that is recognised once, by evaluating both on random z, and the estimators then take the same
fused gradient as for the built-in decoders.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from pathlib import Path

import numpy as np
import torch
from torch import distributions as D
from torch import nn

from .bounds import bernoulli_log_likelihood, log_normal_std
from .decoder_grad import FusedOrAutograd, Layer, frozen_only, mlp_layers
from .errors import VaegapsError
from .families import FFG

NEEDS = ("a user model needs encode(x) -> (mean, log_variance) or a torch.distributions.Normal, and "
            "decode(z) -> a torch.distributions.Distribution (docs/method.md §11)")
LIKELIHOODS = ("bernoulli", "continuous_bernoulli", "normal", "categorical")
N_PROBE = 3


class ProtocolError(VaegapsError, ValueError):
    """A user model that does not follow the protocol; the message names what is wrong."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def _shape(t) -> str:
    return str(tuple(t.shape)) if isinstance(t, torch.Tensor) else f"a {type(t).__name__}"


@contextlib.contextmanager
def unvalidated_distributions():
    """torch.distributions without argument validation: the protocol checks ran once, and the
    estimators' inner loops should not pay for a support check per call."""
    old = D.Distribution._validate_args
    D.Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        D.Distribution.set_default_validate_args(old)


@contextlib.contextmanager
def frozen(model: nn.Module):
    """Restore the model's training modes and requires_grad flags on exit: the estimators put it
    in eval mode and freeze its parameters (vaegaps.evaluate), a user's model is left as it was."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, mode in modes:
            m.train(mode)


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------

def _parquet_rows(path: Path, split: str | None) -> tuple[np.ndarray | None, np.ndarray]:
    import pandas as pd

    df = pd.read_parquet(path)
    if "split" in df.columns and split is not None:
        rows = df[df["split"] == split]
        if not len(rows):
            raise VaegapsError(f"{path} has no rows of split {split!r} (its splits: "
                               f"{sorted(df['split'].unique())}); set split")
        df = rows
    index = df["index"].to_numpy() if "index" in df.columns else None
    for col in ("pixels", "x"):
        if col in df.columns:
            return index, np.stack([np.asarray(v) for v in df[col].to_numpy()])
    cols = [c for c in df.columns if c not in ("index", "split", "label") and np.issubdtype(df[c].dtype, np.number)]
    if not cols:
        raise VaegapsError(f"{path} has no data column: give it a 'pixels' or 'x' column of arrays, "
                           "or numeric columns")
    return index, df[cols].to_numpy()


def load_data(data, split: str | None = "train", n_points: int | None = None,
              shape=None) -> tuple[np.ndarray, torch.Tensor]:
    """Datapoints (one per row) and their keys (the datapoint index the random numbers are keyed
    by): from a tensor or NumPy array (keys 0..N-1), a .npy file, a .npz file (its one array, or
    `x`; keys from `index` if present) or a Parquet file (a `pixels` or `x` column of arrays, or
    its numeric columns; keys from an `index` column, rows of `split` where a `split` column
    exists). Ordered by key; the first `n_points`; each reshaped to `shape` if given."""
    index = None
    if isinstance(data, (str, Path)):
        path = Path(data)
        if not path.exists():
            raise VaegapsError(f"data file {path} does not exist")
        suffix = path.suffix.lower()
        if suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                keys = [k for k in z.files if k != "index"]
                key = "x" if "x" in keys else (keys[0] if len(keys) == 1 else None)
                if key is None:
                    raise VaegapsError(f"{path} holds several arrays ({', '.join(keys)}); name the data 'x'")
                arr = z[key]
                index = z["index"] if "index" in z.files else None
        elif suffix in (".parquet", ".pq"):
            index, arr = _parquet_rows(path, split)
        else:
            raise VaegapsError(f"data file {path}: use .npy, .npz or .parquet")
        x = torch.as_tensor(arr)
    elif isinstance(data, torch.Tensor):
        x = data.detach()
    elif isinstance(data, np.ndarray):
        x = torch.as_tensor(data)
    else:
        raise VaegapsError(f"data must be a tensor, a NumPy array or a .npy/.npz/.parquet path, "
                           f"not {type(data).__name__}")
    if x.dim() < 2 or len(x) == 0:
        raise VaegapsError(f"data must hold one datapoint per row (at least 2 dimensions, N >= 1), got shape {tuple(x.shape)}")
    index = np.arange(len(x)) if index is None else np.asarray(index).astype(np.int64)
    if len(index) != len(x) or len(np.unique(index)) != len(index):
        raise VaegapsError("the data's index must hold one distinct key per datapoint")
    order = np.argsort(index, kind="stable")[:n_points]
    x = x[torch.as_tensor(order)]
    if shape is not None:
        shape = tuple(int(s) for s in shape)
        if int(np.prod(shape)) != x[0].numel():
            raise VaegapsError(f"shape {list(shape)} does not fit a datapoint of {x[0].numel()} values")
        x = x.reshape(len(x), *shape)
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    return index[order].astype(np.int64), x


# ------------------------------------------------------------------------------------------------
# the adapter
# ------------------------------------------------------------------------------------------------

def _is_standard_normal(prior, z_dim: int) -> bool:
    """A prior that is exactly N(0, I) (so nothing needs folding into the likelihood)."""
    base = prior.base_dist if isinstance(prior, D.Independent) else prior
    with torch.no_grad():
        if isinstance(base, D.Normal):
            loc, scale = base.loc, base.scale
            return (loc.numel() in (1, z_dim) and bool((loc == 0).all()) and bool((scale == 1).all()))
        if isinstance(prior, D.MultivariateNormal):
            eye = torch.eye(z_dim, dtype=prior.loc.dtype, device=prior.loc.device)
            return bool((prior.loc == 0).all()) and bool((prior.covariance_matrix == eye).all())
    return False


class UserLikelihood(FusedOrAutograd):
    """log p(x_n | z_ns) of a user model for a fixed batch x (N, ...): z (N, S, D) -> (N, S).
    `.subset(rows)` restricts it to some datapoints (the local optimisation's working batch).
    The fused gradient is used where the model's decoder was recognised as a fusable MLP and its
    weights are frozen (as the estimators freeze them)."""

    def __init__(self, model: UserVAE, x: torch.Tensor):
        self.model, self.x = model, x
        self.xb = x.unsqueeze(1)
        self.dtype, self.device = model.dtype, x.device
        self._set_fused(frozen_only(model.mlp_layers), x.reshape(len(x), -1).to(model.dtype))

    def plain(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.log_px_given_z(z, self.xb)

    def subset(self, rows) -> UserLikelihood:
        return UserLikelihood(self.model, self.x[rows])


class SampledQ(nn.Module):
    """The encoder's own q for an encoder that is not a diagonal Gaussian: draws by its
    `sample`, scored by its `log_prob`. Its random numbers are torch's, seeded from the counter
    noise the estimators pass in (keyed by seed, stream and the chunk's datapoints)."""

    n_noise = 1

    def forward(self, mean, logvar, noise, context):
        q, s = context, noise.shape[1]
        seed = int(noise.reshape(-1)[:16].double().mul(1e6).round().abs().sum().item()) % (2**62)
        devices = [noise.device] if noise.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            z = q.sample((s,))                                   # (S, N, D)
        log_q = q.log_prob(z)
        if log_q.dim() == 3:
            log_q = log_q.sum(-1)
        return z.transpose(0, 1).to(noise.dtype), log_q.transpose(0, 1).to(noise.dtype)


class UserVAE(nn.Module):
    """A user model behind the interface of `vaegaps.vae.VAE` that the estimators use.

    `x_probe`: a few datapoints, shaped as the model takes them, on which the protocol is
    checked once. `likelihood`/`noise_std`: what decode(z) returns if it is a tensor. `family`:
    the family of the encoder's q in which q* is searched for the amortization gap (default: ffg
    for a diagonal-Gaussian encoder, none for any other). The widths of q*_Flow and q*_RealNVP
    are `flow_hidden`, `realnvp_hidden` and `flow_steps`.
    """

    def __init__(self, model, x_probe: torch.Tensor, likelihood: str | None = None,
                 noise_std: float | None = None, family: str | None = None, flow_hidden: int = 200,
                 realnvp_hidden: int = 50, flow_steps: int = 2):
        super().__init__()
        for name in ("encode", "decode"):
            if not callable(getattr(model, name, None)):
                raise ProtocolError(f"the model ({type(model).__name__}) has no {name}() method; {NEEDS}")
        if likelihood is not None and likelihood not in LIKELIHOODS:
            raise ProtocolError(f"likelihood must be one of {', '.join(LIKELIHOODS)} or None, got {likelihood!r}")
        if likelihood == "normal" and noise_std is None:
            raise ProtocolError("likelihood 'normal' needs noise_std (the standard deviation of p(x|z))")
        self.user = model   # a submodule if it is an nn.Module: eval() and parameters() reach it
        self.likelihood_name, self.noise_std = likelihood, noise_std
        self.dtype, self.device = self._dtype_device(model, x_probe)
        x = self.prepare(x_probe[:N_PROBE])
        self.x_shape = tuple(x.shape[1:])
        with frozen(self):   # probed in eval mode (no BatchNorm statistics move), then as it was
            self.eval()
            with torch.no_grad():
                mean, logvar, q = self._encode(x, check=True)
                if mean.shape[-1] == len(x):   # a (D, N) output passes as (N, D): once more with N != D
                    self._encode(x[torch.arange(len(x) + 1, device=x.device) % len(x)], check=True)
            self.z_dim = mean.shape[-1]
            gaussian = q is None
            self.family_name = "ffg" if gaussian else "user"
            self.family = FFG(self.z_dim) if gaussian else SampledQ()
            self.encoder_family = "ffg" if gaussian else f"other ({type(q).__name__})"
            self.qstar_family = family or ("ffg" if gaussian else None)
            self.family_hidden = {"ffg": None, "flow": flow_hidden, "realnvp": realnvp_hidden}
            self.flow_steps = flow_steps
            self.prior = self._check_prior(getattr(model, "prior", None))
            self._check_decoder(x)
            self.mlp_layers = self._find_mlp_decoder(len(x))

    # -- protocol checks (once) ---------------------------------------------------------------
    @staticmethod
    def _dtype_device(model, x):
        if isinstance(model, nn.Module):
            for t in itertools.chain(model.parameters(), model.buffers()):
                if t.is_floating_point():
                    return t.dtype, t.device
        dtype, device = getattr(model, "dtype", None), getattr(model, "device", None)
        if not isinstance(dtype, torch.dtype):
            dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
        return dtype, torch.device(device) if device is not None else x.device

    def _encode(self, x: torch.Tensor, check: bool = False):
        """encode(x) read as (mean, logvar, q): q None for a diagonal Gaussian, else the
        distribution itself (its mean and log-variance then only placeholders)."""
        n = len(x)
        if check:
            try:
                out = self.user.encode(x)
            except Exception as exc:  # reported in one line
                raise ProtocolError(f"encode(x) fails on a batch of shape {tuple(x.shape)} ({_first_line(exc)}); "
                                    "if it expects another shape per datapoint, set shape=") from exc
        else:
            out = self.user.encode(x)
        if isinstance(out, D.Independent) and isinstance(out.base_dist, D.Normal) and out.reinterpreted_batch_ndims == 1:
            out = out.base_dist
        if isinstance(out, D.Normal):
            shape = out.batch_shape
            mean, logvar = out.loc.expand(shape), 2 * torch.log(out.scale.expand(shape))
            q = None
        elif isinstance(out, (tuple, list)) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out):
            (mean, logvar), q = out, None
        elif isinstance(out, D.Distribution):
            q = out
            d = self._check_q(q, n) if check else self.z_dim
            mean = torch.zeros(n, d, dtype=self.dtype, device=self.device)   # placeholders: SampledQ reads q
            logvar = torch.zeros_like(mean)
        else:
            got = f"a tuple of {len(out)}" if isinstance(out, (tuple, list)) else _shape(out)
            raise ProtocolError(f"encode(x) returned {got}; it must return (mean, log_variance), two tensors "
                                "of shape (N, D), or a torch.distributions.Normal with batch shape (N, D)")
        if check and q is None:
            if mean.dim() != 2 or mean.shape[0] != n or logvar.shape != mean.shape:
                flipped = "; it looks transposed, (D, N)" if mean.dim() == 2 and mean.shape[1] == n else ""
                raise ProtocolError(f"encode(x) gave a mean of shape {_shape(mean)} and a log-variance of shape "
                                    f"{_shape(logvar)} for {n} datapoints; both must be (N, D) = ({n}, D){flipped}")
            if not (mean.is_floating_point() and bool(torch.isfinite(mean).all() & torch.isfinite(logvar).all())):
                raise ProtocolError("encode(x) gave a non-finite or non-float mean or log-variance on the first datapoints")
        return mean, logvar, q

    @staticmethod
    def _check_q(q: D.Distribution, n: int) -> int:
        """The latent dimension D of an encoder's q that is not a diagonal Gaussian, after
        checking that it can be sampled (S, N, D) and scored."""
        try:
            z = q.sample((2,))
            lq = q.log_prob(z)
        except Exception as exc:
            raise ProtocolError(f"encode(x) returned a {type(q).__name__} that cannot be sampled and scored "
                                f"({_first_line(exc)}); it needs sample() and log_prob()") from exc
        if z.dim() != 3 or z.shape[1] != n:
            raise ProtocolError(f"encode(x) returned a {type(q).__name__} whose samples have shape "
                                f"{tuple(z.shape[1:])} for {n} datapoints; they must have shape (N, D) = ({n}, D)")
        if tuple(lq.shape) not in ((2, n), (2, n, z.shape[-1])):
            raise ProtocolError(f"encode(x) returned a {type(q).__name__} whose log_prob has shape {tuple(lq.shape[1:])} "
                                f"per draw; it must be (N,) or (N, D) = ({n},)")
        return z.shape[-1]

    def _check_prior(self, prior):
        if prior is None:
            return None
        if not (callable(getattr(prior, "log_prob", None)) and callable(getattr(prior, "sample", None))):
            raise ProtocolError(f"the model's prior ({type(prior).__name__}) needs log_prob(z) and sample(shape)")
        if _is_standard_normal(prior, self.z_dim):
            return None
        try:
            with torch.no_grad():
                z = prior.sample((N_PROBE,))
                lp = prior.log_prob(torch.zeros(2, N_PROBE, self.z_dim, dtype=self.dtype, device=self.device))
        except Exception as exc:
            raise ProtocolError(f"the model's prior fails ({_first_line(exc)}); prior.sample((n,)) must give "
                                f"(n, D) and prior.log_prob(z) take z of shape (..., D) = (..., {self.z_dim})") from exc
        if tuple(z.shape) != (N_PROBE, self.z_dim) or tuple(lp.shape) not in ((2, N_PROBE), (2, N_PROBE, self.z_dim)):
            raise ProtocolError(f"the model's prior gave samples of shape {tuple(z.shape)} and log_prob of shape "
                                f"{tuple(lp.shape)}; they must be (n, D) = ({N_PROBE}, {self.z_dim}) and (..., ) "
                                "(summed over D if (..., D))")
        return prior

    def _check_decoder(self, x: torch.Tensor) -> None:
        n = len(x)
        s = next(k for k in (2, 3, 4) if k not in (n, self.z_dim))   # S != N, D: no transposition passes
        z = torch.zeros(n, s, self.z_dim, dtype=self.dtype, device=self.device, requires_grad=True)
        where = f"for z of shape (N, S, D) = {(n, s, self.z_dim)}"
        try:
            p = self.user.decode(z)
        except Exception as exc:
            raise ProtocolError(f"decode(z) fails {where} ({_first_line(exc)}); it must take z of shape "
                                "(N, S, D), S samples of each datapoint's latent") from exc
        if self.likelihood_name is not None and isinstance(p, D.Distribution):
            raise ProtocolError(f"likelihood {self.likelihood_name!r} is for a decode(z) that returns a tensor; "
                                f"yours returns a {type(p).__name__}: leave likelihood unset")
        if self.likelihood_name is None and not isinstance(p, D.Distribution):
            raise ProtocolError(f"decode(z) returned {'a Tensor' if isinstance(p, torch.Tensor) else _shape(p)}, not a "
                                "torch.distributions.Distribution; return one (e.g. Bernoulli(logits=...)) or name "
                                f"what the tensor holds with likelihood= ({', '.join(LIKELIHOODS)})")
        if self.likelihood_name is not None and not isinstance(p, torch.Tensor):
            raise ProtocolError(f"decode(z) returned {_shape(p)}; with likelihood {self.likelihood_name!r} it must return a tensor")
        try:
            lp = self._as_distribution(p).log_prob(x.unsqueeze(1))
        except Exception as exc:
            raise ProtocolError(f"decode(z).log_prob(x) fails {where} and x of shape (N, 1, ...) = "
                                f"{(n, 1, *x.shape[1:])} ({_first_line(exc)})") from exc
        if not isinstance(lp, torch.Tensor) or lp.dim() < 2 or tuple(lp.shape[:2]) != (n, s):
            raise ProtocolError(f"decode(z).log_prob(x) has shape {_shape(lp)} {where}; it must be log p(x|z) per "
                                f"datapoint and sample: (N, S) = {(n, s)}, or (N, S, *data dims) (summed here)")
        total = lp.flatten(2).sum(-1) if lp.dim() > 2 else lp
        if not lp.is_floating_point() or bool(torch.isnan(lp).any()) or bool((lp == torch.inf).any()):
            raise ProtocolError("decode(z).log_prob(x) is NaN, +inf or not a float at z = 0 on the first datapoints; "
                                "are the data in the likelihood's support?")
        if not bool(torch.isfinite(total).any()):
            raise ProtocolError("decode(z).log_prob(x) is -inf for every datapoint at z = 0 (no finite log p(x|z)); "
                                "are the data in the likelihood's support?")
        try:
            (grad,) = torch.autograd.grad(lp.sum(), z, allow_unused=True)
        except Exception as exc:  # noqa: BLE001
            grad = exc
        if not isinstance(grad, torch.Tensor):
            why = f" ({_first_line(grad)})" if isinstance(grad, BaseException) else ""
            raise ProtocolError(f"decode(z).log_prob(x) is not differentiable in z{why}; the estimators need its "
                                "gradient: build decode from torch operations on z")

    def _find_mlp_decoder(self, n: int) -> list[Layer] | None:
        """The layers of the model's decoder network when decode(z) is Bernoulli(logits=net(z))
        for an MLP `net` (a submodule, or one held by an attribute) that the fused pass can
        differentiate, checked on random z of shape (n, 3, D); None otherwise (also if decode
        fails on that z), and autograd is used."""
        if self.prior is not None or self.likelihood_name not in (None, "bernoulli"):
            return None
        n_out, user = math.prod(self.x_shape), self.user
        roots = [user] if isinstance(user, nn.Module) else [
            v for v in getattr(user, "__dict__", {}).values() if isinstance(v, nn.Module)]
        nets = [(m, layers) for root in roots for m in root.modules() if (layers := mlp_layers(m)) is not None
                and layers[0].weight.shape[1] == self.z_dim and layers[-1].weight.shape[0] == n_out]
        if not nets:
            return None
        z = torch.randn(n, 3, self.z_dim, generator=torch.Generator().manual_seed(0)).to(self.device, self.dtype)
        with torch.no_grad():
            try:
                logits = _bernoulli_logits(self.user.decode(z), self.likelihood_name)
                if logits is None or logits.numel() != n * 3 * n_out:
                    return None
                logits = logits.reshape(n, 3, n_out)
                return next((layers for net, layers in nets
                             if torch.allclose(net(z), logits, rtol=1e-5, atol=1e-5)), None)
            except Exception:  # noqa: BLE001 (a decode checked on other shapes only: autograd)
                return None

    # -- what the estimators call --------------------------------------------------------------
    def _as_distribution(self, p) -> D.Distribution:
        name = self.likelihood_name
        if name is None:
            return p
        if name == "bernoulli":
            return D.Bernoulli(logits=p)
        if name == "continuous_bernoulli":
            return D.ContinuousBernoulli(logits=p)
        if name == "normal":
            return D.Normal(p, self.noise_std)
        return D.Categorical(logits=p)

    def encode(self, x: torch.Tensor):
        """x (N, ...) -> mean (N, D), logvar (N, D), and the encoder's q itself where it is not a
        diagonal Gaussian (the 'features' the family takes)."""
        return self._encode(x)

    def decode(self, z: torch.Tensor) -> D.Distribution:
        return self._as_distribution(self.user.decode(z))

    def log_px_given_z(self, z: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        """log p(x|z) (N, S), plus log p(z) − log N(z; 0, I) for a prior other than N(0, I)."""
        p = self.decode(z)
        lp = _bernoulli_sum(p, xb)
        if lp is None:
            lp = p.log_prob(xb)
            if lp.dim() > 2:
                lp = lp.flatten(2).sum(-1)
        if self.prior is not None:
            lz = self.prior.log_prob(z)
            lp = lp + (lz.sum(-1) if lz.dim() == z.dim() else lz) - log_normal_std(z)
        return lp

    def log_likelihood(self, x: torch.Tensor) -> UserLikelihood:
        return UserLikelihood(self, x)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Datapoints as the model takes them: its float dtype, its device."""
        return x.to(device=self.device, dtype=self.dtype)

    def simulate(self, n: int, seed: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, x) for BDMC: z from the prior (counter-based draws keyed like the estimators for
        N(0, I); the prior's own sample() under a seeded torch generator otherwise), then
        x = decode(z).sample() under a seeded torch generator."""
        from . import rng

        devices = [self.device] if self.device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            if self.prior is None:
                z = rng.normal(seed, "simulate/z", torch.arange(n), 0, (self.z_dim,), dtype=self.dtype).to(self.device)
            else:
                z = self.prior.sample((n,)).to(self.device, self.dtype)
            x = self.decode(z.unsqueeze(1)).sample()
        if tuple(x.shape[:2]) != (n, 1) or tuple(x.shape[2:]) != self.x_shape:
            raise ProtocolError(f"decode(z).sample() has shape {tuple(x.shape)} for z of shape {(n, 1, self.z_dim)}; "
                                f"it must be (N, 1, *datapoint shape) = {(n, 1, *self.x_shape)}")
        return z, x[:, 0].to(self.dtype)


def _bernoulli_logits(p, likelihood: str | None) -> torch.Tensor | None:
    """The logits a decode(z) output holds if it is a Bernoulli given by logits (a tensor named
    'bernoulli', or a Bernoulli built with logits=, possibly Independent), else None."""
    if likelihood == "bernoulli":
        return p
    base = _bernoulli(p)
    if base is None or "logits" not in vars(base):   # built from probs: not the same arithmetic
        return None
    return base.logits


def _bernoulli(p) -> D.Bernoulli | None:
    """The Bernoulli a decode(z) output is (possibly inside an Independent), else None."""
    base = p.base_dist if isinstance(p, D.Independent) else p
    return base if type(base) is D.Bernoulli else None


def _bernoulli_sum(p, xb: torch.Tensor) -> torch.Tensor | None:
    """Σ over the data of log Bernoulli(x | ℓ) as x·ℓ − Σ softplus(ℓ), one matrix product per
    datapoint (vaegaps.bounds.bernoulli_log_likelihood, the built-in models' arithmetic): the same
    value as Bernoulli.log_prob summed, at half its cost (its broadcast cross-entropy took as long
    as the decoder's layers at S = 500 samples). None for any other distribution or shape."""
    base = _bernoulli(p)
    if base is None:
        return None
    logits = base.logits
    if logits.dim() < 3 or logits.shape[0] != xb.shape[0] or logits.shape[2:] != xb.shape[2:]:
        return None
    n, s = logits.shape[:2]
    return bernoulli_log_likelihood(logits.reshape(n, s, -1), xb.reshape(n, -1).to(logits.dtype))


def load_model(spec: str, args: dict | None = None):
    """The model built by `package.module:function` (called with `args`), imported from the
    working directory, PYTHONPATH or an installed package."""
    import importlib
    import os
    import sys

    module_name, _, func_name = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise VaegapsError(f"cannot import {module_name!r} for the model {spec!r} ({_first_line(exc)}); run "
                           "from its folder or put that on PYTHONPATH") from exc
    fn = getattr(module, func_name, None)
    if not callable(fn):
        raise VaegapsError(f"{module_name} has no function {func_name!r} (model {spec!r})")
    try:
        return fn(**(args or {}))
    except Exception as exc:
        raise VaegapsError(f"the model builder {spec} failed ({_first_line(exc)})") from exc
