"""Standardised coordinates of a local flow (vaegaps.whiten): the same q, exactly."""

import pytest
import torch
from torch.func import functional_call

from vaegaps.families import LocalPosterior
from vaegaps.whiten import fold, whiten


def _perturbed(family, steps, n=3, d=5, hidden=7, seed=0):
    torch.manual_seed(seed)
    q = LocalPosterior(family, n, d, hidden, steps).double()
    params = {k: v.detach().clone() + 0.1 * torch.randn_like(v) for k, v in q.named_parameters()}
    m, s = torch.randn(n, d, dtype=torch.float64), torch.exp(torch.randn(n, d, dtype=torch.float64))
    return q, params, m, s, torch.randn(n, 4, q.n_noise, d, dtype=torch.float64)


@pytest.mark.parametrize("family,steps", [("flow", 1), ("flow", 2), ("flow", 3), ("realnvp", 1), ("realnvp", 2),
                                          ("realnvp", 3)])
def test_fold_is_the_affine_map_of_the_u_space_flow(family, steps):
    """fold(u-params) draws z = m + s ⊙ u from the same noise, with log q reduced by Σ log s."""
    q, p, m, s, eps = _perturbed(family, steps)
    u, log_qu = functional_call(q, p, (eps,))
    z, log_qz = functional_call(q, fold(p, q.family, m, s), (eps,))
    torch.testing.assert_close(z, m.unsqueeze(1) + s.unsqueeze(1) * u)
    torch.testing.assert_close(log_qz, log_qu - torch.log(s).sum(-1, keepdim=True))


@pytest.mark.parametrize("family,steps", [("flow", 2), ("realnvp", 3)])
def test_whiten_inverts_fold(family, steps):
    q, p, m, s, _ = _perturbed(family, steps, seed=1)
    back = whiten(fold(p, q.family, m, s), q.family, m, s)
    for k in p:
        torch.testing.assert_close(back[k], p[k])


def test_whiten_has_no_plan_for_a_gaussian():
    q = LocalPosterior("ffg", 2, 3)
    with pytest.raises(TypeError, match="FFG"):
        whiten(dict(q.named_parameters()), q.family, torch.zeros(2, 3), torch.ones(2, 3))
