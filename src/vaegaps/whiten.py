"""A local flow q in standardised coordinates: the same family, a better-conditioned optimisation.

A coupling flow (the auxiliary flow or RealNVP) followed by a fixed per-dimension affine map
z = m + s ⊙ u is again a flow of the same architecture: every net that reads a coordinate absorbs
the map into its first layer, and every net that writes one absorbs it into its shift head. So q*
of a flow family can be searched for with the flow acting on u, where the start q has mean about 0
and scale about 1 in every dimension, and then be written back in z. This matters for Adam, whose
steps have the same size in every parameter: in z, a step of the base mean of 1e-3 is a large
move where the posterior is narrow and a negligible one where it is wide (docs/method.md §4).

`whiten` maps z-space parameters to u-space ones and `fold` maps them back; both are exact, so
z, log q and the bound do not change (tests/test_whiten.py checks both ways). The bookkeeping: a
coordinate's intermediate values are s ⊙ u until its last write, and m + s ⊙ u after it.
"""

from __future__ import annotations

import torch

from .families import AuxFlow, RealNVP


def _plan(family: torch.nn.Module, z_dim: int):
    """Readers (net prefix, coordinates read, whether already final) and writers (net prefix,
    coordinates written, whether this is their last write) of a flow, and which coordinates the
    base itself makes final (never written)."""
    every = slice(0, z_dim)
    if isinstance(family, AuxFlow):
        steps = len(family.z_nets)
        readers = [("q_v0", every, False)] + [(f"v_nets.{t}", every, False) for t in range(steps)]
        readers.append(("r_v", every, True))
        writers = [(f"z_nets.{t}", every, t == steps - 1) for t in range(steps)]
        return readers, writers, torch.zeros(z_dim, dtype=torch.bool)
    if isinstance(family, RealNVP):
        halves = [slice(0, family.split), slice(family.split, z_dim)]
        last = {}
        for k in range(len(family.nets)):
            last[1 - k % 2] = k
        readers, writers = [], []
        for k in range(len(family.nets)):
            a = k % 2
            readers.append((f"nets.{k}", halves[a], a not in last or last[a] < k))
            writers.append((f"nets.{k}", halves[1 - a], last[1 - a] == k))
        base_final = torch.zeros(z_dim, dtype=torch.bool)
        for j in (0, 1):
            if j not in last:
                base_final[halves[j]] = True
        return readers, writers, base_final
    raise TypeError(f"no standardised coordinates for a {type(family).__name__}")


def _map(params: dict, family: torch.nn.Module, m: torch.Tensor, s: torch.Tensor, to_u: bool) -> dict:
    readers, writers, base_final = _plan(family, m.shape[-1])
    out = dict(params)
    c0 = torch.where(base_final.to(m.device), m, torch.zeros_like(m))
    if to_u:
        out["mean"] = (params["mean"] - c0) / s
        out["logvar"] = params["logvar"] - 2 * torch.log(s)
    else:
        out["mean"] = c0 + s * params["mean"]
        out["logvar"] = params["logvar"] + 2 * torch.log(s)
    for name, sl, final in readers:   # x_z = c + s ⊙ x_u: x_z W_z + b_z = x_u W_u + b_u
        w, b = params[f"family.{name}.hidden.weight"], params[f"family.{name}.hidden.bias"]
        c = m[:, sl] if final else torch.zeros_like(m[:, sl])
        if to_u:
            out[f"family.{name}.hidden.weight"] = w * s[:, sl].unsqueeze(-1)
            out[f"family.{name}.hidden.bias"] = b + c.unsqueeze(1) @ w
        else:
            w_z = w / s[:, sl].unsqueeze(-1)
            out[f"family.{name}.hidden.weight"] = w_z
            out[f"family.{name}.hidden.bias"] = b - c.unsqueeze(1) @ w_z
    for name, sl, final in writers:   # shift_z = s ⊙ shift_u (+ m on a coordinate's last write)
        w, b = params[f"family.{name}.head.weight"].clone(), params[f"family.{name}.head.bias"].clone()
        n = sl.stop - sl.start
        scale, c = s[:, sl].unsqueeze(1), (m[:, sl] if final else torch.zeros_like(m[:, sl])).unsqueeze(1)
        if to_u:
            w[..., :n], b[..., :n] = w[..., :n] / scale, (b[..., :n] - c) / scale
        else:
            w[..., :n], b[..., :n] = w[..., :n] * scale, b[..., :n] * scale + c
        out[f"family.{name}.head.weight"], out[f"family.{name}.head.bias"] = w, b
    return out


def whiten(params: dict, family: torch.nn.Module, m: torch.Tensor, s: torch.Tensor) -> dict:
    """Per-datapoint parameters (LocalPosterior names, z space) of the same q acting on u, where
    z = m + s ⊙ u; m, s (N, D), s > 0. The u-space log q is the z-space one + Σ log s."""
    return _map(params, family, m, s, to_u=True)


def fold(params: dict, family: torch.nn.Module, m: torch.Tensor, s: torch.Tensor) -> dict:
    """The inverse of `whiten`: u-space parameters back to the same q's z-space ones."""
    return _map(params, family, m, s, to_u=False)
