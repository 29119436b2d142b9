"""The fused decoder gradient against autograd, for every activation the MLP decoder supports."""
import pytest
import torch

from vaegaps.ais import ais
from vaegaps.bounds import bernoulli_log_likelihood
from vaegaps.decoder_grad import fused_decoder
from vaegaps.likelihood import ll_and_grad
from vaegaps.nets import MLP
from vaegaps.vae import DecoderLikelihood


def _decoder(act, sizes=(5, 16, 12, 30), dtype=torch.float32):
    torch.manual_seed(0)
    dec = MLP(list(sizes), act).to(dtype)
    for p in dec.parameters():
        p.requires_grad_(False)
    return dec


def _autograd(dec, x, z):
    z = z.detach().requires_grad_(True)
    ll = bernoulli_log_likelihood(dec(z), x)
    (g,) = torch.autograd.grad(ll.sum(), z)
    return ll.detach(), g


@pytest.mark.parametrize("act", ["elu", "relu", "tanh", "softplus"])
@pytest.mark.parametrize("binary", [True, False])
def test_fused_value_and_grad_equal_autograd(act, binary):
    dec = _decoder(act)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(7, 30, generator=gen)
    x = (x > 0.5).float() if binary else x      # non-binary x: the same formula must hold
    z = 3 * torch.randn(7, 4, 5, generator=gen)  # large z reaches saturated logits
    lik = DecoderLikelihood(dec, x)
    assert lik.fused is not None
    ll, g = lik.value_and_grad(z)
    ll_ref, g_ref = _autograd(dec, x, z)
    torch.testing.assert_close(ll, ll_ref, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-4)


def test_fused_backward_inside_an_autograd_graph():
    """Local optimisation differentiates through z = f(θ): the fused backward gives autograd's."""
    dec = _decoder("elu")
    x = (torch.rand(3, 30, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    theta = torch.randn(3, 2, 5, generator=torch.Generator().manual_seed(3), requires_grad=True)
    lik = DecoderLikelihood(dec, x)
    (g_fused,) = torch.autograd.grad((lik(torch.tanh(theta)) * 2).sum(), theta)
    (g_ref,) = torch.autograd.grad((bernoulli_log_likelihood(dec(torch.tanh(theta)), x) * 2).sum(), theta)
    torch.testing.assert_close(g_fused, g_ref, rtol=1e-4, atol=1e-5)


def test_float64_and_no_hidden_layer():
    dec = _decoder("elu", sizes=(5, 30), dtype=torch.float64)
    x = (torch.rand(2, 30, dtype=torch.float64) > 0.5).double()
    z = torch.randn(2, 3, 5, dtype=torch.float64)
    ll, g = DecoderLikelihood(dec, x).value_and_grad(z)
    ll_ref, g_ref = _autograd(dec, x, z)
    torch.testing.assert_close(ll, ll_ref)
    torch.testing.assert_close(g, g_ref)


def test_fallback_to_autograd():
    """A trainable decoder, a non-default activation or a non-MLP decoder takes autograd."""
    dec = MLP([5, 8, 30], "elu")
    assert fused_decoder(dec) is None                     # weights require grad
    frozen = _decoder("elu")
    frozen[1].alpha = 0.5
    assert fused_decoder(frozen) is None
    assert fused_decoder(torch.nn.Sequential(torch.nn.Linear(5, 30), torch.nn.Sigmoid())) is None
    lik = DecoderLikelihood(dec, torch.zeros(2, 30))
    ll, g = ll_and_grad(lik, torch.randn(2, 3, 5))
    assert ll.shape == (2, 3) and g.shape == (2, 3, 5)


def test_ais_same_with_fused_and_autograd_gradient():
    dec = _decoder("elu")
    x = (torch.rand(4, 30, generator=torch.Generator().manual_seed(4)) > 0.5).float()
    fused = ais(DecoderLikelihood(dec, x), 5, 4, 3, 20, "sigmoid", 3, 0)
    plain = ais(DecoderLikelihood(dec, x, fused=False), 5, 4, 3, 20, "sigmoid", 3, 0)
    torch.testing.assert_close(fused.log_px, plain.log_px, rtol=1e-4, atol=1e-3)
