"""The estimators' Python API refuses what it cannot use, before any work and in one line: a
likelihood that autograd cannot differentiate in z, one that is finite nowhere, and a start
(`init`) of the wrong shape (vaegaps.likelihood.InputError, a VaegapsError and a ValueError)."""

import math

import groundtruth as gt
import pytest
import torch

from vaegaps.ais import ais, bdmc
from vaegaps.errors import VaegapsError
from vaegaps.likelihood import InputError
from vaegaps.local_opt import optimize_local

CASE = gt.linear_case()   # D = 4, N = 40
M, X, Z = CASE["model"], CASE["x"], CASE["z"]
N, D = len(X), M.D
LOCAL = dict(n_samples=10, check_every=10, patience=2, max_steps=50, final_samples=50, select_samples=10)


def _under_no_grad(f):
    def g(z):
        with torch.no_grad():
            return f(z)
    return g


WEIGHT = torch.ones((), dtype=torch.float64, requires_grad=True)

BAD_LIKELIHOODS = {  # name: (likelihood of z, words of the error)
    "computed under torch.no_grad()": (_under_no_grad, "does not depend on z through autograd"),
    "of z.detach(), through weights that need grad": (lambda f: lambda z: f(z.detach()) * WEIGHT,
                                                      "does not depend on z through autograd"),
    "through NumPy": (lambda f: lambda z: torch.as_tensor(f(torch.as_tensor(z.numpy())).numpy()),
                      "fails when z requires grad"),
    "NaN everywhere": (lambda f: lambda z: f(z) * math.nan, "no finite value"),
    "-inf everywhere": (lambda f: lambda z: f(z) - math.inf, "no finite value"),
}

ESTIMATORS = {
    "optimize_local": lambda lik: optimize_local(lik, D, N, **LOCAL),
    "ais": lambda lik: ais(lik, D, N, 2, 5),
    "bdmc": lambda lik: bdmc(lik, Z, 2, 5),
}


def _one_line(exc_info, *words):
    msg = str(exc_info.value)
    assert "\n" not in msg and all(w in msg for w in words), msg
    assert isinstance(exc_info.value, VaegapsError) and isinstance(exc_info.value, ValueError)


@pytest.mark.parametrize("estimator", list(ESTIMATORS))
@pytest.mark.parametrize("case", list(BAD_LIKELIHOODS))
def test_unusable_likelihood_is_refused_before_any_work(case, estimator):
    make, words = BAD_LIKELIHOODS[case]
    bad, calls = make(M.likelihood(X)), [0]

    def counted(z):
        calls[0] += 1
        return bad(z)
    with pytest.raises(InputError) as err:
        ESTIMATORS[estimator](counted)
    _one_line(err, words, "the likelihood")
    assert calls[0] <= 2, f"{calls[0]} calls: the check ran after work had started"


def test_a_likelihood_with_its_own_gradient_needs_no_autograd_in_ais():
    """`value_and_grad` (vaegaps.likelihood) is what AIS differentiates by: such a likelihood's
    plain call may be autograd-free, and AIS accepts it."""
    f = M.likelihood(X)

    class Fused:
        def __call__(self, z):
            with torch.no_grad():
                return f(z)

        def value_and_grad(self, z, value=True):
            z = z.detach().requires_grad_(True)
            with torch.enable_grad():
                ll = f(z)
                (g,) = torch.autograd.grad(ll.sum(), z)
            return ll.detach(), g
    assert torch.isfinite(ais(Fused(), D, N, 2, 5, generator=0).log_px).all()
    with pytest.raises(InputError, match="through autograd"):   # local optimisation needs autograd
        optimize_local(Fused(), D, N, **LOCAL)


def _t(*shape):
    return torch.ones(*shape, dtype=torch.float64)


AIS_INITS = {  # name: (mean, scale)
    "mean one dimension too wide": (_t(N, D + 1), _t(N, D + 1)),
    "mean of one more datapoint": (_t(N + 1, D), _t(N + 1, D)),
    "mean transposed": (_t(D, N), _t(D, N)),
    "scale of another width": (_t(N, D), _t(N, D + 1)),
}


@pytest.mark.parametrize("case", list(AIS_INITS))
@pytest.mark.parametrize("estimator", ["ais", "bdmc"])
def test_ais_init_of_the_wrong_shape_names_init_and_both_shapes(estimator, case):
    mean, scale = AIS_INITS[case]
    with pytest.raises(InputError) as err:
        if estimator == "ais":
            ais(M.likelihood(X), D, N, 2, 5, init=(mean, scale))
        else:
            bdmc(M.likelihood(X), Z, 2, 5, init=(mean, scale))
    _one_line(err, "init", f"(N, D) = {(N, D)}", str(tuple(mean.shape)), str(tuple(scale.shape)))


LOCAL_INITS = {  # name: (init, words)
    "mean one dimension too wide": ((_t(N, D + 1), _t(N, D + 1)), f"init 'mean' must have shape (n_points, ...) = {(N, D)}, got {(N, D + 1)}"),
    "a (N, 1) mean would broadcast": ((_t(N, 1), _t(N, D)), f"got {(N, 1)}"),
    "a (D,) mean would broadcast": ((_t(D), _t(N, D)), f"got {(D,)}"),
    "logvar of fewer datapoints": ((_t(N, D), _t(N - 1, D)), f"init 'logvar' must have shape (n_points, ...) = {(N, D)}"),
    "a list with one bad start": ([{"mean": _t(N, D)}, {"mean": _t(N, D + 1)}], "init[1] 'mean'"),
    "a parameter the family lacks": ({"means": _t(N, D)}, "init names 'means', not a parameter"),
}


@pytest.mark.parametrize("case", list(LOCAL_INITS))
def test_local_init_of_the_wrong_shape_names_init_and_both_shapes(case):
    init, words = LOCAL_INITS[case]
    with pytest.raises(InputError) as err:
        optimize_local(M.likelihood(X), D, N, init=init, **LOCAL)
    _one_line(err, words)
