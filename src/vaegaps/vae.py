"""The VAE: an encoder that gives an amortized q(z|x) of some family, a decoder p(x|z) with
Bernoulli logits, and the standard normal prior. `log_likelihood(x)` hands the decoder to the
estimators as a callable z (N, S, D) -> log p(x|z) (N, S)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .bounds import annealed_objective, bernoulli_log_likelihood, log_normal_std
from .decoder_grad import FusedOrAutograd, fused_decoder
from .families import make_family
from .nets import MLP, ConvDecoder, activation, conv_encoder


class DecoderLikelihood(FusedOrAutograd):
    """log p(x_n | z_ns) for a fixed batch x (N, P); `.subset(rows)` restricts to some datapoints.

    A frozen MLP decoder takes the fused path of `vaegaps.decoder_grad` (value and z-gradient in
    one hand-derived pass, `value_and_grad`); any other decoder, or one being trained, autograd.
    """

    def __init__(self, decoder: nn.Module, x: torch.Tensor, fused: bool = True):
        self.decoder, self.x = decoder, x
        self.dtype, self.device = x.dtype, x.device
        self._set_fused(fused_decoder(decoder) if fused else None, x)

    def plain(self, z: torch.Tensor) -> torch.Tensor:
        return bernoulli_log_likelihood(self.decoder(z), self.x)

    def subset(self, rows) -> DecoderLikelihood:
        return DecoderLikelihood(self.decoder, self.x[rows], fused=self.fused is not None)


class VAE(nn.Module):
    """MLP (MNIST-like) or convolutional (CIFAR-10) VAE with an FFG, Flow or RealNVP encoder."""

    def __init__(self, x_dim: int, z_dim: int = 50, encoder_hidden: Sequence[int] = (200, 200),
                 decoder_hidden: Sequence[int] = (200, 200), activation_name: str = "elu",
                 family: str = "ffg", flow_hidden: int = 200, flow_steps: int = 2,
                 arch: str = "mlp", image_shape: Sequence[int] | None = None, realnvp_hidden: int = 50,
                 flow_context: bool = True):
        super().__init__()
        self.x_dim, self.z_dim, self.family_name = x_dim, z_dim, family
        # the widths of every family this model's q* may be searched in (docs/method.md §4)
        self.family_hidden = {"ffg": None, "flow": flow_hidden, "realnvp": realnvp_hidden}
        self.flow_steps = flow_steps
        if arch == "mlp":
            trunk = [MLP([x_dim, *encoder_hidden], activation_name), activation(activation_name)]
            self.encoder_trunk = nn.Sequential(*trunk) if encoder_hidden else nn.Identity()
            feat = encoder_hidden[-1] if encoder_hidden else x_dim
            self.decoder = MLP([z_dim, *decoder_hidden, x_dim], activation_name)
        elif arch == "conv":
            if image_shape is None:
                raise ValueError("arch='conv' needs image_shape (C, H, W)")
            self.encoder_trunk = nn.Sequential(nn.Unflatten(-1, tuple(image_shape)), conv_encoder(image_shape[0]))
            feat = 256 * 2 * 2
            self.decoder = ConvDecoder(z_dim, image_shape[0])
        else:
            raise ValueError(f"unknown arch {arch!r}; choose 'mlp' or 'conv'")
        self.encoder_head = nn.Linear(feat, 2 * z_dim)
        # flow_context False: the flow's nets see z (and v) only, never x (frozen-decoder experiment)
        self.family = make_family(family, z_dim, context=feat if flow_context else 0,
                                  hidden=self.family_hidden[family], steps=flow_steps)

    def encode(self, x: torch.Tensor):
        """x (N, P) -> mean (N, D), logvar (N, D), features (N, F) that condition the flows."""
        h = self.encoder_trunk(x)
        mean, logvar = self.encoder_head(h).chunk(2, dim=-1)
        return mean, logvar, h

    def sample_q(self, x: torch.Tensor, noise: torch.Tensor):
        """Amortized q(z|x): noise (N, S, n_noise, D) -> z (N, S, D), log q (N, S)."""
        mean, logvar, h = self.encode(x)
        return self.family(mean, logvar, noise, h)

    def log_likelihood(self, x: torch.Tensor) -> DecoderLikelihood:
        return DecoderLikelihood(self.decoder, x)

    def objective(self, x: torch.Tensor, lam: float = 1.0, n_samples: int = 1,
                  generator: torch.Generator | None = None):
        """Entropy-annealed training objective (mean over the batch) and the per-datapoint ELBO."""
        noise = torch.randn(x.shape[0], n_samples, self.family.n_noise, self.z_dim,
                            generator=generator, device=x.device, dtype=x.dtype)
        z, log_q = self.sample_q(x, noise)
        log_px_z = self.log_likelihood(x)(z)
        log_pz = log_normal_std(z)
        obj = annealed_objective(log_px_z, log_pz, log_q, lam)
        return obj.mean(), (log_px_z + log_pz - log_q).mean(-1).detach()


def build_vae(model_cfg: dict, x_dim: int, image_shape: Sequence[int] | None = None) -> VAE:
    """A VAE from a resolved `model` section (every key set: see vaegaps.settings)."""
    return VAE(
        x_dim=x_dim,
        z_dim=model_cfg["z_dim"],
        encoder_hidden=tuple(model_cfg["encoder_hidden"]),
        decoder_hidden=tuple(model_cfg["decoder_hidden"]),
        activation_name=model_cfg["activation"],
        family=model_cfg["family"],
        flow_hidden=model_cfg["flow_hidden"],
        flow_steps=model_cfg["flow_steps"],
        arch=model_cfg["arch"],
        image_shape=image_shape,
        realnvp_hidden=model_cfg["realnvp_hidden"],
        flow_context=model_cfg["flow_context"],
    )


def save_vae(model: VAE, path, model_cfg: dict, image_shape: Sequence[int] | None, extra: dict | None = None) -> None:
    """Atomic .pt holding only tensors and plain values, so it loads with weights_only=True."""
    from .io import save_torch

    save_torch({"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "model_cfg": dict(model_cfg), "x_dim": model.x_dim,
                "image_shape": list(image_shape) if image_shape else None, **(extra or {})}, path)


def load_vae(path, device: torch.device | str = "cpu") -> VAE:
    """The VAE saved by `save_vae`, in eval mode (BatchNorm uses its running statistics)."""
    from .io import load_torch

    blob = load_torch(path)
    model = build_vae(blob["model_cfg"], blob["x_dim"], blob["image_shape"])
    model.load_state_dict(blob["state_dict"])
    return model.to(device).eval()
