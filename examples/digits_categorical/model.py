"""A VAE written without vaegaps: a small convolutional encoder and a categorical decoder for
scikit-learn's 8×8 digits kept at their 17 grey levels (0..16), one 17-way categorical per pixel.

It follows vaegaps' user-model protocol (docs/method.md §11): `encode(x)` returns a
torch.distributions.Normal with batch shape (N, D), and `decode(z)`, for z of shape (N, S, D),
returns a Categorical whose log_prob(x) with x of shape (N, 1, 1, 8, 8) has shape (N, S, 1, 8, 8).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Categorical, Normal

LEVELS = 17   # grey levels 0..16 of the digits


class DigitsVAE(nn.Module):
    def __init__(self, z_dim: int = 8, hidden: int = 128):
        super().__init__()
        self.z_dim = z_dim
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ELU(),             # 16 × 8 × 8
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ELU(),  # 32 × 4 × 4
            nn.Flatten(), nn.Linear(32 * 4 * 4, 2 * z_dim))
        self.decoder = nn.Sequential(nn.Linear(z_dim, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(),
                                     nn.Linear(hidden, 64 * LEVELS))

    def encode(self, x: torch.Tensor) -> Normal:
        """x (N, 1, 8, 8), grey levels 0..16 -> q(z|x), a diagonal Gaussian of batch shape (N, D)."""
        mean, logvar = self.encoder(x / (LEVELS - 1)).chunk(2, dim=-1)
        return Normal(mean, torch.exp(0.5 * logvar))

    def decode(self, z: torch.Tensor) -> Categorical:
        """z (..., D) -> p(x|z): a 17-way categorical per pixel, batch shape (..., 1, 8, 8)."""
        return Categorical(logits=self.decoder(z).unflatten(-1, (1, 8, 8, LEVELS)))

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        """One-sample ELBO per datapoint (the training objective)."""
        q = self.encode(x)
        z = q.rsample()
        log_px_z = self.decode(z).log_prob(x).sum((-1, -2, -3))
        log_pz = Normal(0.0, 1.0).log_prob(z).sum(-1)
        return log_px_z + log_pz - q.log_prob(z).sum(-1)


def load(weights: str, z_dim: int = 8) -> DigitsVAE:
    """The trained model (what the `user_models` config names: model: ...model:load)."""
    model = DigitsVAE(z_dim)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval()


def digits() -> torch.Tensor:
    """All 1797 digits as float grey levels 0..16, shape (N, 1, 8, 8)."""
    from sklearn.datasets import load_digits

    return torch.as_tensor(load_digits().data, dtype=torch.float32).reshape(-1, 1, 8, 8)
