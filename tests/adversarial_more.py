"""Adversarial inputs of the losses beyond the seed, for tests/test_more_losses.py.

As tests/adversarial.py: deterministic cases (seeded by name) where each loss is
hardest to compute accurately -- near overflow and underflow, at the kinks
and zone boundaries, at extreme parameters -- beside ordinary inputs, and a
"multi_chunk" case of 70_000 elements that spans several kernel chunks.
"""
from __future__ import annotations

import numpy as np

from adversarial import MULTI_CHUNK, Case, _rng, _signs, _ulps, regression_cases


def _log_uniform(rng, low, high, n):
    return 10.0 ** rng.uniform(np.log10(low), np.log10(high), n)


def _cast(cases, dtype):
    return [Case(c.name, tuple(np.asarray(a).astype(dtype) for a in c.args), c.params,
                 c.sample_weight) for c in cases]


def _with_params(cases, params, suffix):
    return [Case(c.name + suffix, c.args, dict(c.params, **params), c.sample_weight)
            for c in cases]


def _residual_cases(dtype, name):
    """regression_cases (normal, weighted, near overflow and underflow, cancellation,
    multi-chunk) and residuals at many magnitudes around 0."""
    dtype = np.dtype(dtype)
    cases = regression_cases(dtype, name)
    rng = _rng(name + "magnitudes" + dtype.name)
    r = _signs(rng, 400) * _log_uniform(rng, 1e-30, 1e30, 400)
    t = rng.normal(size=400)
    cases.append(Case("magnitudes", ((t + r).astype(dtype), t.astype(dtype))))
    r = _signs(rng, 300) * _log_uniform(rng, 1e-6, 10.0, 300)
    cases.append(Case("small_target", (r.astype(dtype), np.zeros(300, dtype))))
    return cases


def l1_cases(dtype):
    cases = _residual_cases(dtype, "l1")
    rng = _rng("l1 ties" + np.dtype(dtype).name)
    t = rng.normal(size=100).astype(dtype)
    cases.append(Case("zero_residuals", (t.copy(), t)))
    return cases


def smooth_l1_cases(dtype):
    dtype = np.dtype(dtype)
    rng = _rng("smooth_l1" + dtype.name)
    cases = _residual_cases(dtype, "smooth_l1")
    for beta in (1.0, 0.1, 1e-3, 1e3, 0.0):
        b = np.asarray(beta, dtype=dtype)
        r = np.array([_ulps(b, k, dtype) for k in range(-3, 4)] * 4, dtype=dtype)
        r = r * _signs(rng, r.size).astype(dtype)
        cases.append(Case(f"kink_beta={beta:g}", (r, np.zeros(r.size, dtype)), {"beta": beta}))
    for case in list(cases[:6]):
        cases.append(Case(case.name + "_beta=0.1", case.args, {"beta": 0.1}, case.sample_weight))
        cases.append(Case(case.name + "_beta=0", case.args, {"beta": 0.0}, case.sample_weight))
    return cases


def log_cosh_cases(dtype):
    dtype = np.dtype(dtype)
    rng = _rng("log_cosh" + dtype.name)
    cases = _residual_cases(dtype, "log_cosh")
    # the zone boundary |r| = 2 and a few ulps around it, and the range where
    # the textbook formula cancels (|r| < 1)
    two = np.asarray(2.0, dtype=dtype)
    r = np.array([_ulps(two, k, dtype) for k in range(-8, 9)] * 2, dtype=dtype)
    r = r * _signs(rng, r.size).astype(dtype)
    cases.append(Case("zone_boundary", (r, np.zeros(r.size, dtype))))
    r = _signs(rng, 500) * rng.uniform(0, 4, 500)
    cases.append(Case("near_zones", (r.astype(dtype), np.zeros(500, dtype))))
    r = _signs(rng, 200) * _log_uniform(rng, 1e-12, 1.0, 200)
    cases.append(Case("tiny", (r.astype(dtype), np.zeros(200, dtype))))
    return cases


def pinball_cases(dtype):
    dtype = np.dtype(dtype)
    cases = _residual_cases(dtype, "pinball")
    rng = _rng("pinball" + dtype.name)
    t = rng.normal(size=100).astype(dtype)
    cases.append(Case("zero_residuals", (t.copy(), t)))
    for q in (0.1, 0.9, 1e-3, 0.999, 0.3):
        for case in list(cases[:5]):
            cases.append(Case(f"{case.name}_q={q:g}", case.args, {"quantile": q},
                              case.sample_weight))
    return cases


def _counts(rng, n):
    """Zeros, small and large counts, and non-integer rates."""
    kind = rng.integers(0, 4, n)
    out = np.where(kind == 0, 0.0, rng.poisson(3.0, n).astype(float))
    out = np.where(kind == 2, _log_uniform(rng, 1.0, 1e6, n).round(), out)
    return np.where(kind == 3, rng.uniform(0, 5, n), out)


def poisson_nll_cases(dtype):
    dtype = np.dtype(dtype)
    rng = _rng("poisson" + dtype.name)
    # exp(x) near float32's overflow; for float64 below max / (2 n), where the
    # float64 sum of the n losses is finite (as tests/adversarial.py's regression cases)
    big = 88.0 if dtype == np.float32 else float(np.log(np.finfo(np.float64).max / 200)) - 2
    cases = []

    def add(name, x, t=None, weight=None, **params):
        t = _counts(rng, np.size(x)).reshape(np.shape(x)) if t is None else t
        cases.append(Case(name, (np.asarray(x).astype(dtype), np.asarray(t).astype(dtype)),
                          params, weight))

    add("moderate", rng.normal(0, 2, 500))
    add("2d_weighted", rng.normal(0, 2, (40, 6)), weight=rng.uniform(0.1, 3.0, 40))
    add("near_overflow", rng.uniform(big - 10, big + 2, 100))
    add("very_negative", -_log_uniform(rng, 10.0, 1e30, 100))
    # exp(x) near t: the loss and gradient at their minimum
    t = rng.uniform(0.5, 50, 200)
    add("at_minimum", np.log(t), t)
    for case in list(cases):
        cases.append(Case(case.name + "_full", case.args, {"full": True}, case.sample_weight))
    # rates (log_input=False), eps and the Stirling term's threshold t = 1
    for eps in (1e-8, 0.0, 0.5):
        add(f"rates_eps={eps:g}", _log_uniform(rng, 1e-6, 1e6, 300), log_input=False, eps=eps)
    add("rates_zero", np.zeros(50), log_input=False)
    t = np.concatenate([[0.5, 1.0, 1.0 + 2**-20, 2.0, 1e6], rng.uniform(0.9, 1.1, 45)])
    add("stirling_threshold", rng.normal(0, 1, 50), t, full=True)
    add("stirling_threshold_rates", rng.uniform(0.1, 3, 50), t, full=True, log_input=False)
    rng = _rng("multi_chunk poisson" + dtype.name)
    add("multi_chunk", rng.normal(0, 2, MULTI_CHUNK), weight=rng.uniform(0.1, 2, MULTI_CHUNK))
    return cases


def _unit_targets(rng, n):
    kind = rng.integers(0, 4, n)
    return np.select([kind == 0, kind == 1, kind == 2], [0.0, 1.0, 0.5], rng.uniform(0, 1, n))


FOCAL_OPTIONS = [{}, {"gamma": 0.0}, {"gamma": 1.0}, {"gamma": 0.5, "alpha": -1.0},
                 {"gamma": 3.5, "alpha": 0.9}, {"gamma": 5.0, "alpha": 0.0},
                 {"gamma": 2.0, "alpha": 1.0}]


def sigmoid_focal_loss_cases(dtype):
    dtype = np.dtype(dtype)
    rng = _rng("focal" + dtype.name)
    base = []

    def add(name, x, t=None, weight=None):
        t = _unit_targets(rng, np.size(x)).reshape(np.shape(x)) if t is None else t
        base.append(Case(name, (np.asarray(x).astype(dtype), np.asarray(t).astype(dtype)), {},
                         weight))

    add("moderate", rng.normal(0, 5, 400))
    add("hard_targets", rng.normal(0, 5, 300), rng.integers(0, 2, 300))
    # soft targets a few float32 ulps from 0 or 1 with |x| of 3-13: (1 - 2t) ce and
    # the two sigma terms nearly cancel in the gradient
    near_hard = np.array([1e-7, 3e-7, 1e-6, 1 - 1e-7, 1 - 3e-7, 1 - 1e-6])
    add("targets_near_hard", _signs(rng, 200) * rng.uniform(3, 13, 200),
        rng.choice(near_hard, 200))
    for edge in (88.0, 709.0):
        add(f"logits_near_{edge:g}", _signs(rng, 100) * rng.uniform(edge - 8, edge + 12, 100))
    add("huge_logits", _signs(rng, 60) * _log_uniform(rng, 1e3, 1e30, 60))
    add("tiny_logits", _signs(rng, 100) * _log_uniform(rng, 1e-30, 1e-2, 100))
    add("2d_weighted", rng.normal(0, 4, (30, 5)), weight=rng.uniform(0.1, 2, 30))
    cases = []
    for options in FOCAL_OPTIONS:
        label = "".join(f"_{k}={v:g}" for k, v in options.items())
        cases += [Case(c.name + label, c.args, dict(options), c.sample_weight) for c in base]
    rng = _rng("multi_chunk focal" + dtype.name)
    cases.append(Case("multi_chunk", (rng.normal(0, 5, MULTI_CHUNK).astype(dtype),
                                      _unit_targets(rng, MULTI_CHUNK).astype(dtype)),
                      {}, rng.uniform(0.1, 2, MULTI_CHUNK)))
    return cases


def gaussian_nll_cases(dtype):
    """(mean, target, var) triples: every var shape, the eps clamp, extreme ratios."""
    dtype = np.dtype(dtype)
    rng = _rng("gaussian" + dtype.name)
    cases = []

    def add(name, mean, target, var, weight=None, **params):
        cases.append(Case(name, (np.asarray(mean).astype(dtype), np.asarray(target).astype(dtype),
                                 np.asarray(var).astype(dtype)), params, weight))

    n = 300
    add("moderate", rng.normal(0, 2, n), rng.normal(size=n), _log_uniform(rng, 1e-3, 1e3, n))
    add("wide_variances", rng.normal(0, 2, n), rng.normal(size=n), _log_uniform(rng, 1e-8, 1e8, n))
    add("below_eps", rng.normal(size=n), rng.normal(size=n),
        np.concatenate([np.zeros(10), _log_uniform(rng, 1e-12, 1e-5, n - 10)]))
    add("near_loss_zero", np.zeros(n), np.zeros(n), rng.uniform(0.5, 2, n))   # log v ~ 0
    add("cancelling", np.ones(n), np.zeros(n), _log_uniform(rng, 0.05, 0.5, n))
    r = _signs(rng, n) * _log_uniform(rng, 1e-20, 1e15, n)
    add("extreme_residuals", r, np.zeros(n), _log_uniform(rng, 1e-6, 1e6, n))
    m, t = rng.normal(0, 2, (40, 6)), rng.normal(size=(40, 6))
    v = _log_uniform(rng, 1e-3, 1e3, (40, 6))
    w = rng.uniform(0.1, 3, 40)
    add("2d", m, t, v)
    add("2d_weighted", m, t, v, weight=w)
    add("2d_var_per_row", m, t, v[:, :1], weight=w)
    add("2d_var_one_fewer", m, t, v[:, 0])
    add("2d_var_per_column", m, t, v[:1, :])
    add("1d_scalar_var", m[:, 0], t[:, 0], np.float64(0.7))
    add("1d_var_of_size_1", m[:, 0], t[:, 0], np.array([0.3]))
    for case in list(cases[:6]):
        cases.append(Case(case.name + "_full", case.args, {"full": True}, case.sample_weight))
    for eps, n_cases in ((0.0, 2), (1e-2, 3)):     # (eps = 0 with var = 0 has no value)
        for case in list(cases[:n_cases]):
            cases.append(Case(f"{case.name}_eps={eps:g}", case.args, {"eps": eps},
                              case.sample_weight))
    rng = _rng("multi_chunk gaussian" + dtype.name)
    shape = (MULTI_CHUNK // 10, 10)
    add("multi_chunk_per_row", rng.normal(size=shape), rng.normal(size=shape),
        _log_uniform(rng, 1e-2, 1e2, (shape[0], 1)), weight=rng.uniform(0.1, 2, shape[0]))
    add("multi_chunk", rng.normal(size=MULTI_CHUNK), rng.normal(size=MULTI_CHUNK),
        _log_uniform(rng, 1e-2, 1e2, MULTI_CHUNK))
    return cases


CASES = {
    "l1": l1_cases,
    "smooth_l1": smooth_l1_cases,
    "log_cosh": log_cosh_cases,
    "pinball": pinball_cases,
    "poisson_nll": poisson_nll_cases,
    "sigmoid_focal_loss": sigmoid_focal_loss_cases,
    "gaussian_nll": gaussian_nll_cases,
}
