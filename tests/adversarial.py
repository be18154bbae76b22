"""Adversarial inputs for the accuracy tests and the accuracy report.

Each generator returns a list of :class:`Case` for one dtype: inputs built
where a loss is hardest to compute accurately -- near overflow and
underflow, at kinks, at near-ties, with one class overwhelming the others --
together with ordinary inputs.  Everything is deterministic (fixed seeds).

The functions covered are the losses and row utilities registered in
fastloss (fastloss._registry), by name: an elementwise loss gets the inputs
of its target rule unless ``ELEMENTWISE_CASES`` names inputs of its own.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import zlib

import numpy as np

from fastloss import _targets
from fastloss._registry import REGISTRY

IGNORE = -100

# Inputs of this many elements span several of the kernels' parallel chunks
# (at least 32_768 elements each; fastloss/_parallel.pxd): the "multi_chunk"
# cases check the chunk boundaries and the ordered sum of the partials.  They
# draw from generators of their own and come last, so that the other cases'
# inputs stay what they were.
MULTI_CHUNK = 70_000


@dataclass
class Case:
    """One input of one loss: ``fn(*args, **params, sample_weight=...)``."""
    name: str
    args: tuple
    params: dict = field(default_factory=dict)
    sample_weight: np.ndarray | None = None

    def __repr__(self):
        return self.name


def _rng(name):
    """A generator seeded by the case family's name (stable across runs)."""
    return np.random.default_rng(zlib.crc32(name.encode()))


def _ulps(value, k, dtype):
    """value + k ulps in dtype (k may be negative)."""
    v = np.asarray(value, dtype=dtype)
    out = v.copy()
    step = np.inf if np.all(k >= 0) else -np.inf
    for _ in range(abs(int(k))):
        out = np.nextafter(out, np.asarray(step, dtype=dtype))
    return out


def _signs(rng, n):
    return rng.choice(np.array([-1.0, 1.0]), size=n)


# --- regression ------------------------------------------------------------------

def regression_cases(dtype, loss="mse"):
    """pred, target pairs for mse and huber."""
    dtype = np.dtype(dtype)
    big = np.finfo(dtype).max
    tiny = np.finfo(dtype).tiny
    rng = _rng("regression" + dtype.name + loss)
    cases = []
    cases.append(Case("normal", (rng.normal(size=400).astype(dtype),
                                 rng.normal(size=400).astype(dtype))))
    cases.append(Case("2d_weighted", (rng.normal(size=(30, 7)).astype(dtype) * 10,
                                      rng.normal(size=(30, 7)).astype(dtype)),
                      sample_weight=rng.uniform(0.1, 3.0, size=30)))
    # residuals near the top of the range: r^2 overflows the dtype (inf stored
    # per element).  float32 computes in float64, so its whole range is used;
    # float64 inputs stay below max / (2 n), where 2 r and the float64 sum of
    # the n losses are finite (beyond it they overflow to inf: docs/accuracy.md)
    n = 100
    top = big if dtype == np.float32 else big / (2 * n)
    p = _signs(rng, n) * rng.uniform(0.05, 0.45, n) * top
    t = -np.sign(p) * rng.uniform(0.0, 0.45, n) * top
    cases.append(Case("near_overflow", (p.astype(dtype), t.astype(dtype))))
    # and near the bottom: subnormal inputs and residuals
    p = _signs(rng, n) * rng.uniform(0, 4, n) * tiny
    t = _signs(rng, n) * rng.uniform(0, 4, n) * tiny
    cases.append(Case("near_underflow", (p.astype(dtype), t.astype(dtype))))
    # cancellation: pred and target a few ulps apart, at many magnitudes
    p = (_signs(rng, n) * 10.0 ** rng.uniform(-20, 30, n)).astype(dtype)
    t = np.array([_ulps(v, k, dtype) for v, k in zip(p, rng.integers(-5, 6, n))], dtype=dtype)
    cases.append(Case("cancellation", (p, t)))
    if loss == "huber":
        for delta in (1.0, 0.1, 1e-3, 1e3):
            d = np.asarray(delta, dtype=dtype)
            # residuals exactly at +-delta (when representable) and a few ulps around it
            r = np.array([_ulps(d, k, dtype) for k in range(-3, 4)] * 4, dtype=dtype)
            r = r * _signs(rng, r.size).astype(dtype)
            t = np.zeros(r.size, dtype)
            cases.append(Case(f"kink_delta={delta:g}", (r.astype(dtype), t), {"delta": delta}))
        for case in list(cases[:5]):
            cases.append(Case(case.name + "_delta=0.1", case.args, {"delta": 0.1},
                              case.sample_weight))
    rng = _rng("multi_chunk regression" + dtype.name + loss)
    cases.append(Case("multi_chunk", (rng.normal(size=MULTI_CHUNK).astype(dtype),
                                      rng.normal(size=MULTI_CHUNK).astype(dtype)),
                      sample_weight=rng.uniform(0.1, 3.0, size=MULTI_CHUNK)))
    shape = (MULTI_CHUNK // 10, 10)
    cases.append(Case("multi_chunk_2d", (rng.normal(size=shape).astype(dtype),
                                         rng.normal(size=shape).astype(dtype))))
    return cases


# --- binary cross-entropy ----------------------------------------------------------

def _bce_targets(rng, n, kinds=("zero", "one", "between", "half")):
    t = rng.uniform(0, 1, n)
    choice = rng.integers(0, len(kinds), n)
    out = np.empty(n)
    for k, kind in enumerate(kinds):
        pick = choice == k
        out[pick] = {"zero": 0.0, "one": 1.0, "half": 0.5}.get(kind, 0.0) \
            if kind != "between" else t[pick]
    return out


def bce_cases(dtype):
    """logits, target pairs for binary_cross_entropy."""
    dtype = np.dtype(dtype)
    rng = _rng("bce" + dtype.name)
    cases = []

    def add(name, x, t=None, **extra):
        x = np.asarray(x, dtype=np.float64)
        if t is None:
            t = _bce_targets(rng, x.size).reshape(x.shape)
        weight = extra.pop("sample_weight", None)
        cases.append(Case(name, (x.astype(dtype), np.asarray(t).astype(dtype)), extra, weight))

    add("moderate", rng.normal(0, 5, 600))
    add("hard_targets", rng.normal(0, 5, 300), rng.integers(0, 2, 300))
    # float32's exp overflows past log(max) = 88.72; float64's past 709.78
    for edge in (88.0, 709.0):
        x = _signs(rng, 200) * rng.uniform(edge - 8, edge + 12, 200)
        x[:4] = [np.log(np.finfo(np.float32).max), -np.log(np.finfo(np.float32).max),
                 np.log(np.finfo(np.float64).max), -np.log(np.finfo(np.float64).max)]
        add(f"logits_near_{edge:g}", x)
    add("huge_logits", _signs(rng, 60) * 10.0 ** rng.uniform(3, 30, 60))
    add("tiny_logits", _signs(rng, 100) * 10.0 ** rng.uniform(-30, -2, 100))
    # Maechler's log1pexp cut-offs (-37, 18, 33.3) and their neighbourhoods
    cut = np.array([-37.0, 18.0, 33.3, 37.0, -18.0, -33.3])
    add("cutoffs", np.concatenate([cut + d for d in (-1e-3, -1e-6, 0.0, 1e-6, 1e-3)]))
    add("pos_weight_scalar", rng.normal(0, 4, 200), pos_weight=3.0)
    add("pos_weight_2d", rng.normal(0, 6, (40, 6)),
        pos_weight=np.array([0.5, 1.0, 2.0, 10.0, 0.1, 1.0]),
        sample_weight=rng.uniform(0.1, 2.0, 40))
    rng = _rng("multi_chunk bce" + dtype.name)
    add("multi_chunk", rng.normal(0, 5, MULTI_CHUNK), _bce_targets(rng, MULTI_CHUNK),
        sample_weight=rng.uniform(0.1, 2.0, MULTI_CHUNK))
    return cases


# --- binary hinge --------------------------------------------------------------------

def hinge_cases(dtype):
    """scores, target pairs for hinge and squared_hinge."""
    dtype = np.dtype(dtype)
    rng = _rng("hinge" + dtype.name)
    cases = []
    t = _signs(rng, 300)
    cases.append(Case("random", ((rng.normal(0, 2, 300)).astype(dtype), t.astype(dtype))))
    for margin in (1.0, 0.5, 0.1):
        m = np.asarray(margin, dtype=dtype)
        # t s exactly at the margin (when the margin is representable), and
        # a few ulps either side of it
        s = np.array([_ulps(m, k, dtype) for k in range(-3, 4)] * 6, dtype=dtype)
        t = _signs(rng, s.size)
        cases.append(Case(f"kink_margin={margin:g}", ((t * s).astype(dtype), t.astype(dtype)),
                          {"margin": margin}))
    t01 = rng.integers(0, 2, 100).astype(float)
    cases.append(Case("kink_targets_01", (((2 * t01 - 1) * 1.0).astype(dtype), t01.astype(dtype))))
    big = float(np.finfo(dtype).max) ** 0.6      # z^2 overflows, z does not
    cases.append(Case("large_scores", ((_signs(rng, 100) * big * rng.uniform(0.5, 2, 100))
                                       .astype(dtype), _signs(rng, 100).astype(dtype)),
                      sample_weight=rng.uniform(0.5, 2, 100)))
    rng = _rng("multi_chunk hinge" + dtype.name)
    cases.append(Case("multi_chunk", (rng.normal(0, 2, MULTI_CHUNK).astype(dtype),
                                      _signs(rng, MULTI_CHUNK).astype(dtype))))
    return cases


# The inputs of an elementwise loss by its target rule, and by name where a loss
# needs inputs of its own (huber's kinks at +-delta).
RULE_CASES = {
    _targets.REAL: regression_cases,
    _targets.UNIT_INTERVAL: lambda dtype, loss: bce_cases(dtype),
    _targets.SIGNS: lambda dtype, loss: hinge_cases(dtype),
}
def _more_cases(name):
    """The adversarial inputs of a loss beyond the seed (tests/adversarial_more.py)."""
    def cases(dtype):
        import adversarial_more     # (it imports this module)
        return adversarial_more.CASES[name](dtype)
    return cases


ELEMENTWISE_CASES = {
    "huber": lambda dtype: regression_cases(dtype, "huber"),
    **{name: _more_cases(name) for name in ("l1", "smooth_l1", "log_cosh", "pinball",
                                            "poisson_nll", "sigmoid_focal_loss",
                                            "gaussian_nll")},
}


def elementwise_cases(function, dtype):
    """The adversarial inputs of the elementwise loss ``function``."""
    if function in ELEMENTWISE_CASES:
        return ELEMENTWISE_CASES[function](dtype)
    return RULE_CASES[REGISTRY[function].target](dtype, function)


# --- the softmax family ---------------------------------------------------------------

@dataclass
class Logits:
    """(N, C) logits with matching labels (N,) and probabilities (N, C)."""
    name: str
    logits: np.ndarray
    labels: np.ndarray
    probs: np.ndarray

    def __repr__(self):
        return self.name


def _dirichlet(rng, n, c, zeros=True):
    p = rng.dirichlet(np.full(c, 0.5), size=n)
    if zeros:
        p[rng.uniform(size=p.shape) < 0.2] = 0.0     # 0 log 0 terms
        p[p.sum(axis=1) == 0, 0] = 1.0
        p /= p.sum(axis=1, keepdims=True)
    return p


def logit_cases(dtype, large_classes=(3000, 100_000)):
    """Adversarial (N, C) logits for the softmax family."""
    dtype = np.dtype(dtype)
    rng = _rng("logits" + dtype.name)
    cases = []

    def add(name, x, labels=None, probs=None):
        x = np.asarray(x, dtype=np.float64).astype(dtype)
        n, c = x.shape
        if labels is None:
            labels = rng.integers(0, c, n)
        if probs is None:
            probs = _dirichlet(rng, n, c)
        cases.append(Logits(name, x, np.asarray(labels, dtype=np.intp), probs.astype(dtype)))

    add("normal", rng.normal(0, 3, (48, 10)))
    add("spread_1e4", rng.uniform(-1e4, 1e4, (12, 200)))
    add("offset_1e4", 1e4 + rng.normal(0, 1, (12, 50)))
    # near-ties: every logit within a few ulps of one value, and exact ties
    c = np.asarray(3.0, dtype)
    ties = np.stack([_ulps(c, k, dtype) for k in rng.integers(-4, 5, 12 * 64)]).reshape(12, 64)
    ties[:3] = c
    add("near_ties", ties)
    # maximum 0 (+0 and -0), tied, with 27 classes: a partial last vector of
    # 8 whose unused lanes would read as 0 = m
    x = -np.abs(rng.normal(0, 2, (16, 27)))
    x[np.arange(16), rng.integers(0, 27, 16)] = 0.0
    x[np.arange(16), rng.integers(24, 27, 16)] = -0.0
    x[::2, 25] = 0.0
    add("zero_max_ties", x)
    # one class far above the rest: 1 - p_y = (C - 1) exp(-d) = delta
    rows, labels = [], []
    n_classes = 40
    for delta in (1e-7, 1e-9, 1e-13, 1e-30, 1e-200):
        d = np.log((n_classes - 1) / delta)
        for label_is_top in (True, False):
            x = rng.normal(0, 1e-3, n_classes)
            top = rng.integers(0, n_classes)
            x[top] = d
            rows.append(x)
            labels.append(top if label_is_top else (top + 1) % n_classes)
    probs = np.zeros((len(rows), n_classes))
    for i, x in enumerate(rows):                   # a target close to softmax(x)
        probs[i, np.argmax(x)] = 1.0
    add("dominant_class", np.array(rows), labels, probs)
    # tiny probabilities: logits far below the max, so p is subnormal or 0
    x = rng.normal(0, 1, (16, 30))
    x[:, 1:12] -= np.array([20, 50, 87, 90, 100, 103, 110, 300, 700, 745, 760])
    add("tiny_probabilities", x, rng.integers(0, 30, 16))
    # many classes
    for n_classes in large_classes:
        big = rng.normal(0, 2, (1, n_classes))
        add(f"C={n_classes}", big, probs=_dirichlet(rng, 1, n_classes, zeros=False))
    rng = _rng("multi_chunk logits" + dtype.name)
    n, c = MULTI_CHUNK // 20, 20
    add("multi_chunk", rng.normal(0, 3, (n, c)), rng.integers(0, c, n), _dirichlet(rng, n, c))
    return cases


def multiclass_hinge_cases(dtype):
    """(N, C) scores and labels for multiclass_hinge, with kinks made exact."""
    dtype = np.dtype(dtype)
    rng = _rng("mhinge" + dtype.name)
    cases = []
    n, c = 40, 8
    cases.append(Case("normal", (rng.normal(0, 2, (n, c)).astype(dtype), rng.integers(0, c, n))))
    # scores on a dyadic grid so that s_y - s_j - margin is exactly 0 for many
    # pairs (the kink), or one grid step away
    s = rng.integers(-8, 9, (n, c)) / 4.0
    cases.append(Case("kink", (s.astype(dtype), rng.integers(0, c, n))))
    s = rng.uniform(-1e4, 1e4, (10, 50))
    cases.append(Case("spread_1e4", (s.astype(dtype), rng.integers(0, 50, 10))))
    return cases


# --- every call of the suite ------------------------------------------------------

@dataclass
class Call:
    """One call of one function on the suite: ``fn(*args, **params, sample_weight=...)``.

    logits_case: index into logit_cases(dtype) for the softmax family (whose
    exact row quantities are shared by every call on those logits), else None.
    slow: too slow for the default test run (the float64 oracle is mpmath).
    """
    name: str
    args: tuple
    params: dict = field(default_factory=dict)
    sample_weight: np.ndarray | None = None
    logits_case: int | None = None
    slow: bool = False

    def __repr__(self):
        return self.name


def _class_weight(n_classes):
    return np.random.default_rng(n_classes).uniform(0.2, 3.0, n_classes)


def _sample_weight(n_rows):
    return np.random.default_rng(n_rows + 1).uniform(0.1, 2.0, n_rows)


def _ignored(labels):
    labels = labels.copy()
    labels[::3] = IGNORE
    return labels


# option set -> (target, parameters, sample_weight) built from a Logits case
SOFTMAX_CE_OPTIONS = {
    "labels": lambda c: (c.labels, {}, None),
    "probabilities": lambda c: (c.probs, {}, None),
    "class_weight": lambda c: (c.labels, {"class_weight": _class_weight(c.logits.shape[1])}, None),
    "ignore_index": lambda c: (_ignored(c.labels), {"ignore_index": IGNORE}, None),
    "label_smoothing": lambda c: (c.labels, {"label_smoothing": 0.1}, None),
    "labels_all_options": lambda c: (
        _ignored(c.labels), {"class_weight": _class_weight(c.logits.shape[1]),
                             "ignore_index": IGNORE, "label_smoothing": 0.2},
        _sample_weight(c.logits.shape[0])),
    "probabilities_all_options": lambda c: (
        c.probs, {"class_weight": _class_weight(c.logits.shape[1]), "label_smoothing": 0.05},
        _sample_weight(c.logits.shape[0])),
}
SOFTMAX_OPTIONS = {
    "softmax_cross_entropy": SOFTMAX_CE_OPTIONS,
    "softmax_focal_loss": {
        "labels": SOFTMAX_CE_OPTIONS["labels"],
        "gamma=0.5, class_weight": lambda c: (
            c.labels, {"gamma": 0.5, "class_weight": _class_weight(c.logits.shape[1])}, None),
        "labels_all_options": lambda c: (
            _ignored(c.labels), {"gamma": 3.5, "class_weight": _class_weight(c.logits.shape[1]),
                                 "ignore_index": IGNORE},
            _sample_weight(c.logits.shape[0])),
    },
    "softmax_binary_cross_entropy": {
        "labels": SOFTMAX_CE_OPTIONS["labels"],
        "probabilities": SOFTMAX_CE_OPTIONS["probabilities"],
        "sample_weight": lambda c: (c.probs, {}, _sample_weight(c.logits.shape[0])),
    },
    "kl_divergence": {
        "probabilities": SOFTMAX_CE_OPTIONS["probabilities"],
        "sample_weight": lambda c: (c.probs, {}, _sample_weight(c.logits.shape[0])),
    },
}
UTILITIES = tuple(name for name, spec in REGISTRY.items() if spec.family == "rows")
LOSSES = [name for name, spec in REGISTRY.items() if spec.family in ("elementwise", "multiclass")]
FUNCTIONS = LOSSES + list(UTILITIES)

# float64 results need the mpmath oracle, which takes about a minute on
# 100_000 classes or on a multi-chunk input: those cases are slow (C = 3000
# and the float32 multi-chunk inputs run by default).
SLOW_CLASSES = 10_000


def calls(function, dtype):
    """Every call of ``function`` on the suite for one dtype."""
    dtype = np.dtype(dtype)
    if REGISTRY[function].family == "elementwise":
        return [Call(c.name, c.args, c.params, c.sample_weight,
                     slow=dtype == np.float64 and c.args[0].size >= MULTI_CHUNK)
                for c in elementwise_cases(function, dtype)]
    if function == "multiclass_hinge":
        out = []
        for case in multiclass_hinge_cases(dtype):
            scores, labels = case.args
            for kind in ("weston_watkins", "crammer_singer"):
                for squared in (False, True):
                    name = f"{case.name}, {kind}{', squared' if squared else ''}"
                    out.append(Call(name, (scores, labels), {"kind": kind, "squared": squared},
                                    _sample_weight(scores.shape[0])))
        return out
    out = []
    for index, case in enumerate(logit_cases(dtype)):
        slow = dtype == np.float64 and (case.logits.shape[1] > SLOW_CLASSES
                                        or case.logits.size >= MULTI_CHUNK)
        if function in UTILITIES:
            out.append(Call(case.name, (case.logits,), logits_case=index, slow=slow))
            continue
        for option, build in SOFTMAX_OPTIONS[function].items():
            target, params, weight = build(case)
            out.append(Call(f"{case.name}, {option}", (case.logits, target), params, weight,
                            logits_case=index, slow=slow))
    return out
