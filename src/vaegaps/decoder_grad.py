"""log p(x|z) and its gradient in z for MLP decoders, with a hand-derived backward pass.

AIS and local optimisation need ∇_z log p(x|z) for a frozen decoder, millions of times. Autograd
spends 1.6-1.7x the cost of the GEMMs on a graph it builds and walks each call; here the forward
pass keeps only each layer's output, and the backward pass is the chain rule written out: one
GEMM per layer for the input gradient (no weight gradients) and an activation derivative read
off the layer's output. Bernoulli likelihood: ∂/∂logits [x·l − softplus(l)] = x − sigmoid(l).

`fused_decoder(decoder)` returns the layers when the fast path applies (an nn.Sequential such as
`nets.MLP` of Linear layers and ELU / ReLU / Tanh / Softplus with default settings, frozen), else
None, and callers fall back to autograd; `FusedOrAutograd` is that dispatch, shared by the
built-in decoders (vaegaps.vae) and user models whose decoder is such an MLP
(vaegaps.user_model). tests/test_decoder_grad.py checks both against autograd to float32
tolerance.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


def _elu_(a: torch.Tensor) -> torch.Tensor:
    """ELU in place: max(a, 0) + exp(min(a, 0)) − 1 (one exp; F.elu's expm1 is 2x slower on CPU)."""
    neg = a.clamp(max=0.0).exp_().sub_(1.0)
    return a.clamp_(min=0.0).add_(neg)


# activation(a) in place, and its derivative written in terms of the output h = activation(a)
_ACTIVATIONS: dict[type, tuple[Callable, Callable]] = {
    nn.ELU: (_elu_, lambda h: h.clamp(max=0.0).add_(1.0)),                      # a<=0: e^a = h+1
    nn.ReLU: (lambda a: a.clamp_(min=0.0), lambda h: (h > 0).to(h.dtype)),
    nn.Tanh: (lambda a: a.tanh_(), lambda h: 1.0 - h * h),
    nn.Softplus: (lambda a: F.softplus(a), lambda h: -torch.expm1(-h)),        # sigmoid(a) = 1 − e^{−h}
}


class Layer(NamedTuple):
    """One Linear layer of a fused MLP decoder and the activation after it."""

    weight: torch.Tensor          # (out, in), as nn.Linear stores it
    bias: torch.Tensor | None
    act: type | None              # activation after this layer (None for the output layer)


def _default_activation(module: nn.Module) -> bool:
    if isinstance(module, nn.ELU):
        return module.alpha == 1.0
    if isinstance(module, nn.Softplus):
        return module.beta == 1.0 and module.threshold >= 20.0
    return type(module) in _ACTIVATIONS


def mlp_layers(module: nn.Module) -> list[Layer] | None:
    """The layers of an nn.Sequential of Linear (activation Linear)* with supported activations,
    whatever its requires_grad flags, else None."""
    if not isinstance(module, nn.Sequential):
        return None
    modules = list(module)
    linears, acts = modules[0::2], modules[1::2]
    if not linears or len(linears) != len(acts) + 1:
        return None
    if not all(type(m) is nn.Linear for m in linears) or not all(_default_activation(a) for a in acts):
        return None
    kinds = [type(a) for a in acts] + [None]
    return [Layer(m.weight, m.bias, k) for m, k in zip(linears, kinds)]


def frozen_only(layers: list[Layer] | None) -> list[Layer] | None:
    """`layers` if none of their weights or biases requires grad (the fused gradient is in z
    only), else None."""
    if layers is None or any(t.requires_grad for l in layers for t in (l.weight, l.bias) if t is not None):
        return None
    return layers


def fused_decoder(decoder: nn.Module) -> list[Layer] | None:
    """The decoder's layers if it is such an MLP with frozen weights, else None."""
    return frozen_only(mlp_layers(decoder))


def _linear(h: torch.Tensor, layer: Layer) -> torch.Tensor:
    if layer.bias is None:
        return h @ layer.weight.t()
    return torch.addmm(layer.bias, h, layer.weight.t())


class BernoulliMLP:
    """log Bernoulli(x | sigmoid(decoder(z))) and its z-gradient for a fixed batch x (N, P).

    x·W_out and x·b_out are computed once per batch: then Σ_p x_p·logit_p = h·(x W_out) + x·b_out
    and the backward GEMM takes −sigmoid(logits) alone (x W_out is added on the small side), so
    the only pass over the (N·S, P) logits besides the GEMMs is the sigmoid, plus a softplus when
    the value is wanted.
    """

    def __init__(self, layers: list[Layer], x: torch.Tensor):
        self.layers, self.x = layers, x
        out = layers[-1]
        with torch.no_grad():
            self.x_w = x @ out.weight                                        # (N, H)
            self.x_b = x @ out.bias if out.bias is not None else x.new_zeros(len(x))

    def __call__(self, z: torch.Tensor, value: bool = True):
        """(log p(x|z) (N, S) or None when value is False, gradient in z (N, S, D)); no graph."""
        n, s, d = z.shape
        with torch.no_grad():
            h = z.reshape(n * s, d)
            outputs = []
            for layer in self.layers[:-1]:
                h = _ACTIVATIONS[layer.act][0](_linear(h, layer))
                outputs.append(h)
            logits = _linear(h, self.layers[-1])                            # (M, P)
            ll = None
            if value:
                x_logits = (h.view(n, s, -1) @ self.x_w.unsqueeze(-1)).squeeze(-1) + self.x_b[:, None]
                ll = x_logits - F.softplus(logits).sum(-1).view(n, s)
            # d/dlogits = x − σ(l); its product with W_out is x W_out − σ(l) W_out
            dh = (self.x_w.unsqueeze(1) - (logits.sigmoid_() @ self.layers[-1].weight).view(n, s, -1))
            dh = dh.view(n * s, -1)
            for layer, out in zip(reversed(self.layers[:-1]), reversed(outputs)):
                dh = dh.mul_(_ACTIVATIONS[layer.act][1](out)) @ layer.weight
        return ll, dh.view(n, s, d)


class _FusedLogLikelihood(torch.autograd.Function):
    """log p(x|z) whose backward reuses the gradient computed with it (first order only)."""

    @staticmethod
    def forward(ctx, z, fn):
        ll, grad = fn(z)
        ctx.save_for_backward(grad)
        return ll

    @staticmethod
    def backward(ctx, grad_ll):
        (grad,) = ctx.saved_tensors
        return grad_ll.unsqueeze(-1) * grad, None


def fused_log_likelihood(fn: BernoulliMLP, z: torch.Tensor) -> torch.Tensor:
    """log p(x|z) (N, S) differentiable in z through the fused backward pass of `fn`."""
    return _FusedLogLikelihood.apply(z, fn)


class FusedOrAutograd:
    """A likelihood z (N, S, D) -> log p(x|z) (N, S) that takes the fused pass when it has one.

    Subclasses call `_set_fused(layers, x)` (layers from `fused_decoder`, or None) and define
    `plain(z)`, the autograd-differentiable value. With a fused pass, `value_and_grad` is what
    `vaegaps.likelihood.ll_and_grad` uses and a call with z requiring grad (local optimisation)
    differentiates through it; without one, `value_and_grad` is None and autograd does it all.
    """

    fused: BernoulliMLP | None = None

    def _set_fused(self, layers: list[Layer] | None, x: torch.Tensor) -> None:
        self.fused = BernoulliMLP(layers, x) if layers is not None else None
        if self.fused is None:  # ll_and_grad looks for this attribute to skip autograd
            self.value_and_grad = None

    def plain(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        if self.fused is not None and z.requires_grad and z.dim() == 3:
            return fused_log_likelihood(self.fused, z)
        return self.plain(z)

    def value_and_grad(self, z: torch.Tensor, value: bool = True):
        """log p(x|z) (N, S) (None if not `value`) and its gradient in z (N, S, D); no graph."""
        return self.fused(z, value)
