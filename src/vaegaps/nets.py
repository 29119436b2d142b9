"""Network blocks: MLPs, the CIFAR-10 conv encoder/decoder, and linear layers whose weights
may carry a leading per-datapoint dimension (for local, i.e. non-amortized, flows)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS = {"elu": nn.ELU, "relu": nn.ReLU, "tanh": nn.Tanh, "softplus": nn.Softplus}


def activation(name: str) -> nn.Module:
    """A fresh activation module by its config name (model.activation)."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}") from None


class MLP(nn.Sequential):
    """Linear layers sizes[0] → … → sizes[-1] with `act` between them (none after the last)."""

    def __init__(self, sizes: Sequence[int], act: str = "elu"):
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(activation(act))
        super().__init__(*layers)


class BatchedLinear(nn.Module):
    """y = x @ W + b (+ c @ V) with W of shape (*batch, n_in, n_out).

    batch=() is an ordinary shared layer; batch=(N,) gives every datapoint its own weights and
    biases, applied to x of shape (N, S, n_in) by one batched matmul. `context` adds a shared
    projection of conditioning features c (N, C), computed once per datapoint, not per sample.
    """

    def __init__(self, n_in: int, n_out: int, batch: tuple[int, ...] = (), context: int = 0,
                 zero: bool = False):
        super().__init__()
        self.bound = 0.0 if zero else 1.0 / math.sqrt(n_in + context)
        w = torch.empty(*batch, n_in, n_out).uniform_(-self.bound, self.bound)
        self.weight = nn.Parameter(w)
        self.bias = nn.Parameter(torch.zeros(*batch, 1, n_out))
        self.context = nn.Linear(context, n_out, bias=False) if context else None
        if self.context is not None and zero:
            nn.init.zeros_(self.context.weight)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        y = torch.matmul(x, self.weight) + self.bias
        if self.context is not None:
            y = y + self.context(c).unsqueeze(-2)
        return y


class CouplingNet(nn.Module):
    """n_in → hidden (ELU) → two heads of n_out: a shift and a logit.

    The heads start at zero weights, so every flow starts as a fixed affine map and local
    optimisation starts from the same q for every datapoint.
    """

    def __init__(self, n_in: int, n_out: int, hidden: int, batch: tuple[int, ...] = (),
                 context: int = 0, act: str = "elu"):
        super().__init__()
        self.hidden = BatchedLinear(n_in, hidden, batch, context)
        self.act = activation(act)
        self.head = BatchedLinear(hidden, 2 * n_out, batch, zero=True)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        shift, logit = self.head(self.act(self.hidden(x, c))).chunk(2, dim=-1)
        return shift, logit


def conv_encoder(in_channels: int = 3) -> nn.Sequential:
    """docs/method.md §3 CIFAR-10 encoder trunk: 3×32×32 → 256×2×2 features (flattened, 1024)."""
    def block(a, b):
        return [nn.Conv2d(a, b, 4, 2), nn.BatchNorm2d(b), nn.ELU()]
    return nn.Sequential(*block(in_channels, 64), *block(64, 128), *block(128, 256), nn.Flatten())


class ConvDecoder(nn.Module):
    """docs/method.md §3 CIFAR-10 decoder: z → 256×2×2 → 128×6×6 → 64×15×15 → 3×32×32 logits."""

    def __init__(self, z_dim: int, out_channels: int = 3):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(z_dim, 256 * 2 * 2), nn.ELU())
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(256, 128, 4, 2), nn.BatchNorm2d(128), nn.ELU(),
            nn.ConvTranspose2d(128, 64, 4, 2, output_padding=1), nn.BatchNorm2d(64), nn.ELU(),
            nn.ConvTranspose2d(64, out_channels, 4, 2),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-1]
        h = self.fc(z.reshape(-1, z.shape[-1])).view(-1, 256, 2, 2)
        return self.deconv(h).reshape(*lead, -1)
