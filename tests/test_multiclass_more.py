"""softmax_cross_entropy's z_loss and softcap, and softmax_focal_loss.

Against an exact oracle (tests/oracle_more_multiclass.py) on the adversarial
logits of tests/adversarial.py within the accuracy budgets of
tests/test_accuracy.py; against the NumPy reference for every option, layout
and thread count; the reference against finite differences and closed forms;
extreme rows; bad input; torch parity (the same formulas written in torch and
differentiated by autograd), also for linear_cross_entropy.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

import adversarial
import fastloss
import fastloss.reference as reference
import oracle
import oracle_more_multiclass as more
from helpers import assert_close, assert_unchanged, finite_difference_gradient, snapshot

DTYPES = [np.float32, np.float64]
REDUCTIONS = ["mean", "sum", "none"]
IGNORE = adversarial.IGNORE

# --- the accuracy suite ------------------------------------------------------------------

# The budgets of tests/test_accuracy.py: float32 2 / 4 / 8 ulp (reduced, per
# sample, gradient); float64 the same but 4 for a reduced loss, whose float64
# per-sample losses carry up to ~3 ulps (docs/accuracy.md).
BUDGET = {"float32": {"reduced": 2.0, "per_sample": 4.0, "grad": 8.0},
          "float64": {"reduced": 4.0, "per_sample": 4.0, "grad": 8.0}}


def _class_weight(n_classes):
    return np.random.default_rng(n_classes).uniform(0.2, 3.0, n_classes)


def _sample_weight(n_rows):
    return np.random.default_rng(n_rows + 1).uniform(0.1, 2.0, n_rows)


def _ignored(labels):
    labels = labels.copy()
    labels[::3] = IGNORE
    return labels


# option set -> (target, parameters, sample_weight) from an adversarial.Logits case
OPTIONS = {
    "softmax_cross_entropy": {
        # z = 1e-4, PaLM's: on the suite's logits of 1e4 it already doubles the
        # gradient's coefficient (2 z lse); a coefficient far above 1 would magnify
        # the rounding of exps that fall in float64's subnormal range (below
        # 2^-1022), which a float64 row stores as they are.
        "z_loss": lambda c: (c.labels, {"z_loss": 1e-4}, None),
        "z_loss+all_options": lambda c: (
            _ignored(c.labels), {"z_loss": 1e-3, "ignore_index": IGNORE,
                                 "class_weight": _class_weight(c.logits.shape[1]),
                                 "label_smoothing": 0.1},
            _sample_weight(c.logits.shape[0])),
        "softcap": lambda c: (c.labels, {"softcap": 5.0}, None),
        "softcap_30": lambda c: (c.labels, {"softcap": 30.0}, None),
        "z_loss+softcap": lambda c: (c.labels, {"z_loss": 1e-2, "softcap": 30.0}, None),
        "z_loss+softcap+all_options": lambda c: (
            _ignored(c.labels), {"z_loss": 1e-3, "softcap": 20.0, "ignore_index": IGNORE,
                                 "class_weight": _class_weight(c.logits.shape[1]),
                                 "label_smoothing": 0.1},
            _sample_weight(c.logits.shape[0])),
        "probabilities+z_loss+softcap": lambda c: (
            c.probs, {"z_loss": 1e-3, "softcap": 10.0, "label_smoothing": 0.05,
                      "class_weight": _class_weight(c.logits.shape[1])},
            _sample_weight(c.logits.shape[0])),
    },
    "softmax_focal_loss": {
        "gamma=2": lambda c: (c.labels, {"gamma": 2.0}, None),
        "gamma=0.5+class_weight": lambda c: (
            c.labels, {"gamma": 0.5, "class_weight": _class_weight(c.logits.shape[1])}, None),
        "gamma=3.5+all_options": lambda c: (
            _ignored(c.labels), {"gamma": 3.5, "ignore_index": IGNORE,
                                 "class_weight": _class_weight(c.logits.shape[1])},
            _sample_weight(c.logits.shape[0])),
        "gamma=0": lambda c: (c.labels, {"gamma": 0.0}, _sample_weight(c.logits.shape[0])),
    },
}


@functools.lru_cache(maxsize=None)
def logit_cases(dtype):
    return adversarial.logit_cases(np.dtype(dtype), large_classes=(3000,))


# The float32 label rows are taken in groups (8 rows of C <= 16 in SIMD lanes, 4
# rows of 16 < C <= 1024), the remaining rows one by one: z-loss on 1, 7, 8, 9 and
# 17 rows of short and mid-length rows hits every group and tail.  Each row is
# shifted by one of OFFSETS (lse from -1e4 to 1e4: the z-loss's 2 z lse from -2
# to 2 at z = 1e-4, -20 to 20 at 1e-3); the first row of each case has its label
# at its maximum, the second a tie for its maximum.
SMALL_ROW_CLASSES = (2, 3, 5, 8, 9, 15, 16, 17, 31, 40, 128, 1024)
SMALL_ROW_COUNTS = (1, 7, 8, 9, 17)
OFFSETS = (0.0, 1e4, -1e4, 300.0, -300.0, 0.0, 37.5)
Z_LOSS_OPTIONS = ("z_loss", "z_loss+all_options")


@functools.lru_cache(maxsize=None)
def small_row_cases():
    """Adversarial float32 (N, C) logits for the grouped label rows (labels only)."""
    rng = np.random.default_rng(2024)
    cases = []
    for n_classes in SMALL_ROW_CLASSES:
        for n_rows in SMALL_ROW_COUNTS:
            x = rng.normal(0, 3, (n_rows, n_classes))
            x += np.resize(OFFSETS, n_rows)[:, None]
            labels = rng.integers(0, n_classes, n_rows)
            labels[0] = np.argmax(x[0])
            if n_rows > 1 and n_classes > 1:
                x[1, (labels[1] + 1) % n_classes] = x[1, labels[1]] = np.max(x[1])
            cases.append(adversarial.Logits(f"rows={n_rows}, C={n_classes}",
                                            x.astype(np.float32), labels.astype(np.intp),
                                            np.full((n_rows, n_classes), 1.0 / n_classes,
                                                    np.float32)))
    return cases


@functools.lru_cache(maxsize=None)
def calls(function, dtype):
    out = []
    for case in logit_cases(dtype):
        # mpmath on 70_000 logits takes minutes: float64 multi-chunk is slow
        slow = np.dtype(dtype) == np.float64 and case.logits.size >= adversarial.MULTI_CHUNK
        for option, build in OPTIONS[function].items():
            target, params, weight = build(case)
            out.append(adversarial.Call(f"{case.name}, {option}", (case.logits, target), params,
                                        weight, slow=slow))
    if function == "softmax_cross_entropy" and dtype == "float32":
        for case in small_row_cases():
            for option in Z_LOSS_OPTIONS:
                target, params, weight = OPTIONS[function][option](case)
                out.append(adversarial.Call(f"{case.name}, {option}", (case.logits, target),
                                            params, weight))
    return out


PARAMS = [pytest.param(function, dtype, index, id=f"{function}-{dtype}-{call.name}",
                       marks=[pytest.mark.slow] if call.slow else [])
          for function in OPTIONS for dtype in ("float32", "float64")
          for index, call in enumerate(calls(function, dtype))]


def worst_errors(function, dtype, call):
    """{kind: (worst ulp error, label)} of fastloss.<function> on one call."""
    exact = more.exact_for(function, call, oracle.backend_for(dtype))
    found = oracle.errors_of(function, getattr(fastloss, function), call, exact, dtype)
    worst = {}
    for kind, results in found.items():
        for label, errors in results:
            if np.size(errors):
                value = float(np.max(errors))
                if kind not in worst or value > worst[kind][0]:
                    worst[kind] = (value, label)
    return worst


@pytest.mark.parametrize("function, dtype, index", PARAMS)
def test_within_budget(function, dtype, index):
    call = calls(function, dtype)[index]
    failures = [f"{label}: {kind} {value:.3g} ulp > {BUDGET[dtype][kind]}"
                for kind, (value, label) in worst_errors(function, dtype, call).items()
                if not value <= BUDGET[dtype][kind]]
    assert not failures, f"{function} {dtype} {call.name}:\n  " + "\n  ".join(failures)


@pytest.mark.parametrize("function", list(OPTIONS))
def test_float64_oracle_agrees_with_mpmath(function):
    """The float64 oracle used for float32 results is within 1/64 ulp of mpmath's."""
    checked = 0
    for call in calls(function, "float32"):
        if np.size(call.args[0]) > 500:
            continue
        fast = more.exact_for(function, call, oracle.F64)
        exact = more.exact_for(function, call, oracle.MP)
        for reduction in oracle.REDUCTIONS:
            loss, loss_scale, grad, grad_scale = oracle.reduce(fast, reduction,
                                                               call.sample_weight)
            mp_loss, _, mp_grad, _ = oracle.reduce(exact, reduction, call.sample_weight)
            for value, mp_value, scale in ((loss, mp_loss, loss_scale),
                                           (grad, mp_grad, grad_scale)):
                errors = oracle.ulp_error(value, mp_value, np.float32, scale, stored=False)
                assert np.max(errors, initial=0.0) <= 1 / 64, (call.name, reduction)
        checked += 1
    assert checked >= 10


def test_oracle_closed_forms():
    log2 = float(np.log(2.0))
    ex = more.softmax_cross_entropy(np.zeros((1, 2)), np.array([0]), z_loss=0.5)
    assert float(ex.loss[0]) == pytest.approx(log2 + 0.5 * log2 ** 2, rel=1e-15)
    # grad = (1 + 2 z lse) p - onehot = (1 + log 2) / 2 - [1, 0]
    assert [float(g) for g in ex.grad[0]] == pytest.approx([(log2 - 1) / 2, (1 + log2) / 2])
    ex = more.softmax_cross_entropy(np.array([[1e9, 0.0]]), np.array([1]), softcap=2.0)
    # x' = [2, 0]: loss = log(1 + e^2) - 0; the gradient of the capped logit 1e9 is 0
    assert float(ex.loss[0]) == pytest.approx(np.log1p(np.exp(2.0)), rel=1e-15)
    assert float(ex.grad[0, 0]) == 0.0
    ex = more.softmax_focal_loss(np.zeros((1, 2)), np.array([1]), gamma=2.0)
    assert float(ex.loss[0]) == pytest.approx(0.25 * log2, rel=1e-15)
    # F = q^2 + 2 P q ce = 1/4 + log(2) / 2
    assert float(ex.grad[0, 1]) == pytest.approx(-(0.25 + log2 / 2) / 2, rel=1e-15)


def test_oracle_agrees_with_reference_in_float64():
    """The oracle's formulas against the plain NumPy reference on benign input."""
    rng = np.random.default_rng(3)
    x, labels = rng.normal(0, 3, (20, 6)), rng.integers(0, 6, 20)
    probs = rng.dirichlet(np.ones(6), 20)
    w = rng.uniform(0.5, 2, 20)
    checks = [
        ("softmax_cross_entropy", (x, labels), {"z_loss": 0.1, "softcap": 4.0,
                                                "class_weight": np.arange(1.0, 7.0),
                                                "label_smoothing": 0.1}),
        ("softmax_cross_entropy", (x, probs), {"z_loss": 0.01, "softcap": 2.5}),
        ("softmax_focal_loss", (x, labels), {"gamma": 1.5, "class_weight": np.arange(1.0, 7.0)}),
    ]
    for name, args, params in checks:
        exact = getattr(more, name)(*args, **params, sample_weight=w)
        for reduction in oracle.REDUCTIONS:
            result = getattr(reference, name)(*args, **params, sample_weight=w,
                                              reduction=reduction)
            loss_err, grad_err = oracle.measure(result.loss, result.grad, exact, reduction,
                                                np.float64, w)
            assert loss_err.max() < 64 and grad_err.max() < 64, (name, reduction)


# --- the fast kernels against the reference ------------------------------------------------

N_ROWS, N_CLASSES = 7_000, 5          # two chunks of rows: two threads split the work

CASES = [
    ("softmax_cross_entropy", "labels", {"z_loss": 1e-2}),
    ("softmax_cross_entropy", "labels", {"softcap": 4.0}),
    ("softmax_cross_entropy", "labels", {"z_loss": 1e-2, "softcap": 4.0, "ignore_index": 2,
                                         "class_weight": "linspace", "label_smoothing": 0.1}),
    ("softmax_cross_entropy", "probabilities", {"z_loss": 1e-2, "softcap": 4.0}),
    ("softmax_cross_entropy", "probabilities", {"z_loss": 0.1, "class_weight": "linspace",
                                                "label_smoothing": 0.2}),
    ("softmax_focal_loss", "labels", {}),
    ("softmax_focal_loss", "labels", {"gamma": 0.5, "class_weight": "linspace",
                                      "ignore_index": -100}),
    ("softmax_focal_loss", "labels", {"gamma": 3.0, "ignore_index": 2}),
]
CASE_IDS = ["-".join([name, kind] + sorted(kwargs)) for name, kind, kwargs in CASES]
OUT_LAYOUTS = [("none", "contiguous"), ("fresh", "contiguous"), ("inplace", "contiguous"),
               ("none", "readonly"), ("fresh", "strided")]


def make_case(case, rng, dtype, n_rows=N_ROWS, n_classes=N_CLASSES, scale=3.0):
    name, kind, kwargs = CASES[case]
    kwargs = dict(kwargs)
    if kwargs.get("class_weight") == "linspace":
        kwargs["class_weight"] = np.linspace(0.5, 2.0, n_classes)
    logits = (scale * rng.standard_normal((n_rows, n_classes))).astype(dtype)
    if kind == "probabilities":
        target = rng.dirichlet(np.full(n_classes, 0.5), n_rows).astype(dtype)
        target[::7, 0] = 0.0
    else:
        target = rng.integers(0, n_classes, n_rows)
        if "ignore_index" in kwargs:
            target[::5] = kwargs["ignore_index"]
    return name, logits, target, kwargs


def with_layout(x, layout):
    if layout == "readonly":
        x = x.copy()
        x.flags.writeable = False
    elif layout == "strided":
        wide = np.zeros((x.shape[0], 2 * x.shape[1]), x.dtype)
        wide[:, ::2] = x
        x = wide[:, ::2]
    return x


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("out_kind,layout", OUT_LAYOUTS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sample_weight"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(len(CASES)), ids=CASE_IDS)
def test_kernel_matches_reference(case, dtype, reduction, weighted, out_kind, layout,
                                  n_threads):
    rng = np.random.default_rng(case)
    name, logits, target, kwargs = make_case(case, rng, dtype)
    weight = rng.uniform(0.1, 2.0, N_ROWS) if weighted else None
    expected = getattr(reference, name)(logits, target, sample_weight=weight,
                                        reduction=reduction, **kwargs)
    x = with_layout(logits, layout)
    out = None
    if out_kind == "fresh":
        out = np.empty(logits.shape, dtype)
    elif out_kind == "inplace":
        x = out = logits.copy()
    before = snapshot(target, weight)
    result = getattr(fastloss, name)(x, target, sample_weight=weight, reduction=reduction,
                                     out=out, n_threads=n_threads, **kwargs)
    assert_unchanged(before, (target, weight))
    if out is not None:
        assert result.grad is out
    if out_kind != "inplace":
        np.testing.assert_array_equal(x, with_layout(logits, layout))
    assert_close(result.loss, expected.loss, dtype, scale=10.0)
    assert_close(result.grad, expected.grad, dtype)


@pytest.mark.parametrize("case", range(len(CASES)), ids=CASE_IDS)
def test_identical_for_every_thread_count_and_without_gradient(case):
    rng = np.random.default_rng(10 + case)
    name, logits, target, kwargs = make_case(case, rng, np.float32, n_rows=20_000)
    fn = getattr(fastloss, name)
    first = fn(logits, target, reduction="none", n_threads=1, **kwargs)
    for n_threads in (2, 3, None):
        other = fn(logits, target, reduction="none", n_threads=n_threads, **kwargs)
        np.testing.assert_array_equal(first.loss, other.loss)
        np.testing.assert_array_equal(first.grad, other.grad)
        assert fn(logits, target, n_threads=n_threads, **kwargs).loss == \
            fn(logits, target, n_threads=1, **kwargs).loss
    no_grad = fn(logits, target, reduction="none", grad=False, **kwargs)
    assert no_grad.grad is None
    if target.ndim == 1:
        np.testing.assert_array_equal(no_grad.loss, first.loss)
    else:       # without a gradient the exps of a probability row are summed in float64
        assert_close(no_grad.loss, first.loss, np.float32)


@pytest.mark.parametrize("n_classes", [1, 2, 10, 16, 17, 40, 1_000])
@pytest.mark.parametrize("options", [{"z_loss": 1e-3}, {"softcap": 30.0}, {"softcap": 3.0},
                                     {"softcap": 100.0}, {"softcap": 30.0, "z_loss": 1e-3,
                                                          "label_smoothing": 0.1},
                                     {"gamma": 2.0}, {"gamma": 0.7}],
                         ids=["z_loss", "softcap=30", "softcap=3", "softcap=100",
                              "softcap+z_loss+smoothing", "focal", "focal-0.7"])
@pytest.mark.parametrize("scale", [2.0, 20.0])
def test_fast_rows_match_reference(n_classes, options, scale):
    """float32 rows of every length (the blocks of short rows, the fast passes of
    long ones, in float and float64 lanes) and in place."""
    rng = np.random.default_rng(n_classes)
    logits = (scale * rng.standard_normal((300, n_classes))).astype(np.float32)
    labels = rng.integers(0, n_classes, 300)
    name = "softmax_focal_loss" if "gamma" in options else "softmax_cross_entropy"
    expected = getattr(reference, name)(logits, labels, reduction="none", **options)
    for in_place in (False, True):
        x = logits.copy()
        result = getattr(fastloss, name)(x, labels, reduction="none",
                                         out=x if in_place else None, **options)
        assert_close(result.loss, expected.loss, np.float32, scale=10.0)
        assert_close(result.grad, expected.grad, np.float32)


# --- semantics: the reference against finite differences and closed forms -------------------

@pytest.mark.parametrize("module", [fastloss, reference], ids=["fast", "reference"])
@pytest.mark.parametrize("case", range(len(CASES)), ids=CASE_IDS)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_gradient_matches_finite_differences(module, case, reduction):
    rng = np.random.default_rng(20 + case)
    name, logits, target, kwargs = make_case(case, rng, np.float64, n_rows=6, n_classes=4,
                                             scale=2.0)
    weight = rng.uniform(0.5, 2.0, 6)
    fn = getattr(module, name)
    numeric = finite_difference_gradient(
        lambda x: fn(x, target, sample_weight=weight, reduction=reduction, grad=False,
                     **kwargs).loss, logits)
    analytic = fn(logits, target, sample_weight=weight, reduction=reduction, **kwargs).grad
    np.testing.assert_allclose(analytic, numeric, rtol=1e-7, atol=1e-9)


def _logsumexp(x):
    m = np.max(x, axis=1)
    return m + np.log(np.sum(np.exp(x - m[:, None]), axis=1))


@pytest.mark.parametrize("module", [fastloss, reference], ids=["fast", "reference"])
def test_z_loss_weights_and_denominators(module):
    """z lse^2 per row: times the sample weight (not the class weight), left out for
    ignored rows, in the "none" row loss, and "mean" divides it by the same divisor."""
    rng = np.random.default_rng(5)
    x = rng.normal(0, 2, (9, 4))
    labels = np.array([0, 1, 2, 3, -100, 1, 2, -100, 0])
    class_weight = np.array([0.5, 1.0, 2.0, 3.0])
    sample_weight = rng.uniform(0.5, 2, 9)
    kept = labels != -100
    z = 0.3
    options = dict(class_weight=class_weight, ignore_index=-100, sample_weight=sample_weight)
    plain = module.softmax_cross_entropy(x, labels, reduction="none", **options).loss
    with_z = module.softmax_cross_entropy(x, labels, z_loss=z, reduction="none", **options).loss
    z_rows = np.where(kept, sample_weight * z * _logsumexp(x) ** 2, 0.0)
    np.testing.assert_allclose(with_z, plain + z_rows, rtol=1e-13)
    total = module.softmax_cross_entropy(x, labels, z_loss=z, reduction="sum", **options).loss
    assert total == pytest.approx(np.sum(plain + z_rows), rel=1e-13)
    mean = module.softmax_cross_entropy(x, labels, z_loss=z, **options).loss
    divisor = np.sum(sample_weight[kept] * class_weight[labels[kept]])
    assert mean == pytest.approx(np.sum(plain + z_rows) / divisor, rel=1e-13)
    probabilities = rng.dirichlet(np.ones(4), 9)
    mean = module.softmax_cross_entropy(x, probabilities, z_loss=z,
                                        sample_weight=sample_weight).loss
    plain = module.softmax_cross_entropy(x, probabilities, sample_weight=sample_weight,
                                         reduction="sum").loss
    expected = (plain + np.sum(sample_weight * z * _logsumexp(x) ** 2)) / np.sum(sample_weight)
    assert mean == pytest.approx(expected, rel=1e-13)


@pytest.mark.parametrize("module", [fastloss, reference], ids=["fast", "reference"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_softcap_is_the_cross_entropy_of_the_capped_logits(module, dtype):
    rng = np.random.default_rng(6)
    x = (rng.normal(0, 8, (50, 7))).astype(dtype)
    labels = rng.integers(0, 7, 50)
    cap = 5.0
    capped = cap * np.tanh(x.astype(np.float64) / cap)
    result = module.softmax_cross_entropy(x, labels, softcap=cap, z_loss=0.01, reduction="none")
    plain = reference.softmax_cross_entropy(capped, labels, z_loss=0.01, reduction="none")
    assert_close(result.loss, plain.loss, dtype, scale=10.0)
    # chain rule: times 1 - tanh^2
    assert_close(result.grad, plain.grad * (1 - np.tanh(x.astype(np.float64) / cap) ** 2),
                 dtype)


@pytest.mark.parametrize("module", [fastloss, reference], ids=["fast", "reference"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_defaults_are_plain_cross_entropy_and_gamma_zero_is_cross_entropy(module, dtype):
    rng = np.random.default_rng(7)
    x = rng.normal(0, 3, (300, 12)).astype(dtype)
    labels = rng.integers(0, 12, 300)
    labels[::7] = -100
    options = dict(class_weight=np.linspace(0.5, 2, 12), ignore_index=-100,
                   sample_weight=rng.uniform(0.1, 2, 300), reduction="none")
    plain = module.softmax_cross_entropy(x, labels, **options)
    same = module.softmax_cross_entropy(x, labels, z_loss=0.0, softcap=None, **options)
    np.testing.assert_array_equal(plain.loss, same.loss)
    np.testing.assert_array_equal(plain.grad, same.grad)
    focal = module.softmax_focal_loss(x, labels, gamma=0.0, **options)
    assert_close(focal.loss, plain.loss, dtype)
    assert_close(focal.grad, plain.grad, dtype)
    for reduction in ("mean", "sum"):
        options["reduction"] = reduction
        assert module.softmax_focal_loss(x, labels, gamma=0.0, **options).loss == pytest.approx(
            module.softmax_cross_entropy(x, labels, **options).loss, rel=1e-6)


@pytest.mark.parametrize("module", [fastloss, reference], ids=["fast", "reference"])
def test_focal_loss_by_hand(module):
    rng = np.random.default_rng(8)
    x = rng.normal(0, 2, (40, 5))
    labels = rng.integers(0, 5, 40)
    class_weight = np.linspace(0.5, 2, 5)
    p = np.exp(x - _logsumexp(x)[:, None])
    p_y = p[np.arange(40), labels]
    expected = -class_weight[labels] * (1 - p_y) ** 2.5 * np.log(p_y)
    result = module.softmax_focal_loss(x, labels, gamma=2.5, class_weight=class_weight,
                                       reduction="none")
    np.testing.assert_allclose(result.loss, expected, rtol=1e-12)
    mean = module.softmax_focal_loss(x, labels, gamma=2.5, class_weight=class_weight).loss
    assert mean == pytest.approx(np.sum(expected) / np.sum(class_weight[labels]), rel=1e-13)


@pytest.mark.parametrize("module", [fastloss, reference], ids=["fast", "reference"])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 3.7])
@pytest.mark.parametrize("weighted", [False, True])
def test_focal_hessian_matches_finite_differences_of_the_gradient(module, gamma, weighted):
    rng = np.random.default_rng(int(gamma * 10))
    x = rng.normal(0, 2, (6, 5))
    x[0, 1] = 9.0                          # p_y -> 1 for a row, and -> 0 for another
    labels = np.array([1, 0, 2, 3, 4, 1])
    options = dict(gamma=gamma, reduction="sum")
    if weighted:
        options.update(class_weight=np.linspace(0.5, 2, 5), sample_weight=rng.uniform(0.5, 2, 6))
    hess = module.softmax_focal_loss(x, labels, hess=True, **options).hess
    step = 1e-5
    numeric = np.empty_like(x)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            up, down = x.copy(), x.copy()
            up[i, j] += step
            down[i, j] -= step
            g_up = module.softmax_focal_loss(up, labels, **options).grad
            g_down = module.softmax_focal_loss(down, labels, **options).grad
            numeric[i, j] = (g_up[i, j] - g_down[i, j]) / (2 * step)
    np.testing.assert_allclose(hess, numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_classes", [5, 40])
def test_focal_hessian_kernel_matches_reference(dtype, n_classes):
    rng = np.random.default_rng(n_classes)
    x = rng.normal(0, 3, (500, n_classes)).astype(dtype)
    labels = rng.integers(0, n_classes, 500)
    labels[::9] = -1
    options = dict(gamma=1.5, ignore_index=-1, class_weight=np.linspace(0.5, 2, n_classes),
                   sample_weight=rng.uniform(0.5, 2, 500), hess=True)
    fast = fastloss.softmax_focal_loss(x, labels, **options)
    slow = reference.softmax_focal_loss(x, labels, **options)
    assert_close(fast.hess, slow.hess, dtype)
    assert_close(fast.grad, slow.grad, dtype)


# --- extreme rows ---------------------------------------------------------------------------------

EXTREME_ROWS = [
    [1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [3e38, -3e38, 0.0], [-3e38, -3e38, -3e38],
    [np.inf, 0.0, 1.0], [-np.inf, 0.0, 1.0], [-np.inf, -np.inf, -np.inf], [np.nan, 0.0, 1.0],
    [0.0, np.inf, np.inf], [1e4, 1e4 - 1e-3, -1e4],
]
EXTREME_OPTIONS = [("softmax_cross_entropy", {"z_loss": 1e-3}),
                   ("softmax_cross_entropy", {"softcap": 30.0}),
                   ("softmax_cross_entropy", {"softcap": 2.0, "z_loss": 0.1,
                                              "label_smoothing": 0.1}),
                   ("softmax_focal_loss", {"gamma": 2.0}),
                   ("softmax_focal_loss", {"gamma": 0.5})]


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("label", [0, 1, 2])
@pytest.mark.parametrize("name,options", EXTREME_OPTIONS,
                         ids=[f"{n}-{'-'.join(o)}" for n, o in EXTREME_OPTIONS])
def test_extreme_rows_match_reference(name, options, label, dtype):
    """Each extreme row beside ordinary ones: the same answer as the reference, NaN
    only in its own row, finite wherever the reference is (softcap caps +-inf)."""
    rng = np.random.default_rng(label)
    for row in EXTREME_ROWS:
        x = rng.normal(0, 1, (40, 3))
        x[17] = row
        x = x.astype(dtype)
        labels = np.full(40, label)
        expected = getattr(reference, name)(x, labels, reduction="none", **options)
        for in_place in (False, True):
            logits = x.copy()
            result = getattr(fastloss, name)(logits, labels, reduction="none",
                                             out=logits if in_place else None, **options)
            others = np.arange(40) != 17
            assert np.all(np.isfinite(result.loss[others]))
            assert np.all(np.isfinite(result.grad[others]))
            assert_close(result.loss, expected.loss, dtype, scale=1e4)
            assert_close(result.grad, expected.grad, dtype)
            if "softcap" in options and not np.isnan(row).any():
                assert np.isfinite(result.loss[17]) and np.all(np.isfinite(result.grad[17]))


@pytest.mark.parametrize("module", [fastloss, reference], ids=["fast", "reference"])
def test_mean_over_nothing_is_zero(module):
    x = np.ones((3, 4))
    labels = np.full(3, -100)
    for name, options in EXTREME_OPTIONS:
        result = getattr(module, name)(x, labels, ignore_index=-100, **options)
        assert result.loss == 0.0 and not result.grad.any()


# --- bad input --------------------------------------------------------------------------------------

X = np.random.default_rng(0).normal(size=(6, 4))
Y = np.array([0, 1, 2, 3, 0, 1])
P = np.full((6, 4), 0.25)
BAD = [
    ("softmax_cross_entropy", (X, Y), {"z_loss": -1.0}, ValueError, "z_loss"),
    ("softmax_cross_entropy", (X, Y), {"z_loss": np.nan}, ValueError, "z_loss"),
    ("softmax_cross_entropy", (X, Y), {"z_loss": np.inf}, ValueError, "z_loss"),
    ("softmax_cross_entropy", (X, Y), {"z_loss": "0.1"}, TypeError, "z_loss"),
    ("softmax_cross_entropy", (X, Y), {"softcap": 0.0}, ValueError, "softcap"),
    ("softmax_cross_entropy", (X, Y), {"softcap": -30.0}, ValueError, "softcap"),
    ("softmax_cross_entropy", (X, Y), {"softcap": np.inf}, ValueError, "softcap"),
    ("softmax_cross_entropy", (X, Y), {"softcap": np.nan}, ValueError, "softcap"),
    ("softmax_cross_entropy", (X, Y), {"softcap": True}, TypeError, "softcap"),
    ("softmax_cross_entropy", (X, Y), {"softcap": 30.0, "hess": True}, ValueError, "hess"),
    ("softmax_cross_entropy", (X, P), {"z_loss": 0.1, "hess": True}, ValueError, "hess"),
    ("softmax_cross_entropy", (X, np.where(P == P, -0.5, P)), {"z_loss": 0.1}, ValueError,
     "target[0, 0] = -0.5"),
    ("softmax_cross_entropy", (X, np.where(np.arange(6) == 3, 4, Y)), {"softcap": 3.0},
     ValueError, "target[3] = 4"),
    ("softmax_focal_loss", (X, Y), {"gamma": -1.0}, ValueError, "gamma"),
    ("softmax_focal_loss", (X, Y), {"gamma": np.nan}, ValueError, "gamma"),
    ("softmax_focal_loss", (X, Y), {"gamma": None}, TypeError, "gamma"),
    ("softmax_focal_loss", (X, P), {}, ValueError, "target"),
    ("softmax_focal_loss", (X, Y.astype(float)), {}, TypeError, "integer"),
    ("softmax_focal_loss", (X, Y), {"class_weight": np.ones(3)}, ValueError, "class_weight"),
    ("softmax_focal_loss", (X, Y), {"class_weight": np.array([1, np.nan, 1, 1])}, ValueError,
     "class_weight[1] = nan"),
    ("softmax_focal_loss", (X, Y), {"sample_weight": np.array([1, 1, np.inf, 1, 1, 1])},
     ValueError, "sample_weight[2] = inf"),
    ("softmax_focal_loss", (X, Y), {"hess": True, "grad": False}, ValueError, "hess"),
    ("softmax_focal_loss", (X, Y), {"reduction": "avg"}, ValueError, "reduction"),
]


@pytest.mark.parametrize("module", [fastloss, reference], ids=["fast", "reference"])
@pytest.mark.parametrize("in_place", [False, True], ids=["fresh", "out=logits"])
@pytest.mark.parametrize("name,args,kwargs,error,fragment", BAD,
                         ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_raises_and_touches_nothing(module, name, args, kwargs, error, fragment,
                                              in_place):
    args = tuple(np.array(a, copy=True) for a in args)
    originals = snapshot(*args)
    if in_place and kwargs.get("grad", True):
        kwargs = dict(kwargs, out=args[0])
    with pytest.raises(error) as info:
        getattr(module, name)(*args, **kwargs)
    assert fragment in str(info.value)
    assert_unchanged(originals, args)


def test_exported_by_both_faces_with_one_docstring():
    assert "softmax_focal_loss" in fastloss.__all__ and "softmax_focal_loss" in reference.__all__
    assert fastloss.softmax_focal_loss.__doc__ == reference.softmax_focal_loss.__doc__
    assert "z_loss" in fastloss.softmax_cross_entropy.__doc__


# --- linear_cross_entropy -------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", [{"z_loss": 1e-2}, {"softcap": 3.0},
                                     {"z_loss": 1e-3, "softcap": 10.0, "label_smoothing": 0.1,
                                      "ignore_index": -100, "class_weight": "linspace"}],
                         ids=["z_loss", "softcap", "both+options"])
def test_linear_cross_entropy_with_z_loss_and_softcap(options, reduction, dtype):
    rng = np.random.default_rng(9)
    hidden = rng.normal(size=(37, 6)).astype(dtype)
    weight = rng.normal(size=(11, 6)).astype(dtype)
    bias = rng.normal(size=11).astype(dtype)
    target = rng.integers(0, 11, 37)
    options = dict(options)
    if options.get("class_weight") == "linspace":
        options["class_weight"] = np.linspace(0.5, 2, 11)
    if "ignore_index" in options:
        target[::4] = -100
    sample_weight = rng.uniform(0.5, 2, 37)
    fast = fastloss.linear_cross_entropy(hidden, weight, target, bias=bias, chunk_rows=8,
                                         sample_weight=sample_weight, reduction=reduction,
                                         **options)
    slow = reference.linear_cross_entropy(hidden, weight, target, bias=bias,
                                          sample_weight=sample_weight, reduction=reduction,
                                          **options)
    logits = hidden.astype(np.float64) @ weight.T.astype(np.float64) + bias
    direct = reference.softmax_cross_entropy(logits, target, sample_weight=sample_weight,
                                             reduction=reduction, **options)
    tolerance = 1e-4 if dtype == np.float32 else 1e-10
    for got in (fast, slow):
        np.testing.assert_allclose(got.loss, direct.loss, rtol=tolerance)
        g = direct.grad
        np.testing.assert_allclose(got.grad_hidden, g @ weight, rtol=tolerance,
                                   atol=tolerance * np.abs(g @ weight).max())
        np.testing.assert_allclose(got.grad_weight, g.T @ hidden, rtol=tolerance,
                                   atol=tolerance * np.abs(g.T @ hidden).max())
        np.testing.assert_allclose(got.grad_bias, g.sum(axis=0), rtol=tolerance,
                                   atol=tolerance * np.abs(g.sum(axis=0)).max())


# --- torch parity ----------------------------------------------------------------------------

def _torch():
    return pytest.importorskip("torch")


def torch_cross_entropy(torch, x, target, weight=None, ignore_index=-100, reduction="mean",
                        label_smoothing=0.0, z_loss=0.0, softcap=None):
    """The published formulas in torch: softcap c tanh(x / c) (Gemma 2), then
    cross_entropy plus z_loss logsumexp^2 per counted row (PaLM), "mean" over
    the counted weight."""
    import torch.nn.functional as F
    if softcap is not None:
        x = softcap * torch.tanh(x / softcap)
    rows = F.cross_entropy(x, target, weight, ignore_index=ignore_index, reduction="none",
                           label_smoothing=label_smoothing)
    lse = torch.logsumexp(x, dim=-1)
    if target.dtype == torch.int64:
        counted = (target != ignore_index).to(x.dtype)
        divisor = counted if weight is None else \
            counted * weight[torch.where(target == ignore_index, 0, target)]
    else:
        counted = divisor = torch.ones(x.shape[0], dtype=x.dtype)
    rows = rows + z_loss * lse ** 2 * counted
    if reduction == "none":
        return rows
    if reduction == "sum":
        return rows.sum()
    return rows.sum() / divisor.sum()


TORCH_OPTIONS = [{"z_loss": 1e-2}, {"softcap": 5.0}, {"z_loss": 1e-3, "softcap": 30.0},
                 {"z_loss": 1e-2, "softcap": 4.0, "label_smoothing": 0.1, "weight": True,
                  "ignore_index": 1}]


@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("target_kind", ["labels", "probabilities"])
@pytest.mark.parametrize("options", TORCH_OPTIONS, ids=["z", "cap", "z+cap", "all"])
def test_torch_cross_entropy_extras_match_autograd(options, target_kind, reduction, dtype_name):
    torch = _torch()
    import fastloss.torch as flt
    dtype = getattr(torch, dtype_name)
    generator = torch.Generator().manual_seed(0)
    x = (torch.randn(64, 7, generator=generator) * 6).to(dtype)
    options = dict(options)
    if options.pop("weight", False):
        options["weight"] = torch.linspace(0.5, 2.0, 7, dtype=dtype)
    if target_kind == "labels":
        target = torch.randint(0, 7, (64,), generator=generator)
    else:
        if "ignore_index" in options:
            options.pop("ignore_index")
        target = torch.softmax(torch.randn(64, 7, generator=generator), dim=1).to(dtype)
    ours_x = x.clone().requires_grad_(True)
    theirs_x = x.clone().requires_grad_(True)
    ours = flt.cross_entropy(ours_x, target, reduction=reduction, **options)
    theirs = torch_cross_entropy(torch, theirs_x, target, reduction=reduction, **options)
    upstream = torch.rand(ours.shape, generator=generator, dtype=dtype)
    (ours * upstream).sum().backward()
    (theirs * upstream).sum().backward()
    tolerance = dict(rtol=2e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-10,
                                                                                 atol=1e-12)
    torch.testing.assert_close(ours, theirs, **tolerance)
    torch.testing.assert_close(ours_x.grad, theirs_x.grad, **tolerance)


def test_torch_cross_entropy_fallback_computes_the_extras():
    """Inputs the kernel does not take ((N, C, d) here) go to torch's formula, extras
    included, with the same result as the formula written out."""
    torch = _torch()
    import fastloss.torch as flt
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(8, 5, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 5, (8, 3), generator=generator)
    ours = flt.cross_entropy(x, target, z_loss=0.1, softcap=2.0)
    x_t = x.detach().movedim(1, -1).reshape(-1, 5)
    theirs = torch_cross_entropy(torch, x_t, target.reshape(-1), z_loss=0.1, softcap=2.0)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-14)
    ours.backward()
    assert torch.isfinite(x.grad).all()


def test_torch_cross_entropy_extras_bad_values():
    torch = _torch()
    import fastloss.torch as flt
    x, target = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    with pytest.raises(ValueError, match="z_loss"):
        flt.cross_entropy(x, target, z_loss=-1.0)
    with pytest.raises(ValueError, match="softcap"):
        flt.cross_entropy(x, target, softcap=0.0)
    with pytest.raises(TypeError):
        flt.cross_entropy(x, target, None, None, -100, None, "mean", 0.0, 0.1)  # keyword-only


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", [{"z_loss": 1e-2}, {"softcap": 3.0},
                                     {"z_loss": 1e-3, "softcap": 10.0, "label_smoothing": 0.1}],
                         ids=["z", "cap", "z+cap"])
def test_torch_linear_cross_entropy_extras_match_autograd(options, reduction):
    torch = _torch()
    import torch.nn.functional as F
    import fastloss.torch as flt
    generator = torch.Generator().manual_seed(2)
    hidden = torch.randn(29, 6, generator=generator, dtype=torch.float64)
    weight = torch.randn(13, 6, generator=generator, dtype=torch.float64)
    bias = torch.randn(13, generator=generator, dtype=torch.float64)
    target = torch.randint(0, 13, (29,), generator=generator)
    target[::5] = -100
    ours_in = [t.clone().requires_grad_(True) for t in (hidden, weight, bias)]
    theirs_in = [t.clone().requires_grad_(True) for t in (hidden, weight, bias)]
    ours = flt.linear_cross_entropy(ours_in[0], ours_in[1], target, ours_in[2],
                                    reduction=reduction, chunk_rows=7, **options)
    theirs = torch_cross_entropy(torch, F.linear(*theirs_in), target, reduction=reduction,
                                 **options)
    upstream = torch.rand(ours.shape, generator=generator, dtype=torch.float64)
    (ours * upstream).sum().backward()
    (theirs * upstream).sum().backward()
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    for a, b in zip(ours_in, theirs_in):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)
    module = flt.LinearCrossEntropyLoss(reduction=reduction, chunk_rows=7, **options)
    torch.testing.assert_close(module(hidden, weight, target, bias), theirs.detach(),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("module", [fastloss, reference], ids=["fast", "reference"])
@pytest.mark.parametrize("value, error", [(False, TypeError), ("0", TypeError),
                                          (float("nan"), ValueError), (-1.0, ValueError)])
def test_z_loss_is_checked_by_both_faces_even_when_it_compares_equal_to_zero(module, value,
                                                                             error):
    with pytest.raises(error, match="z_loss"):
        module.softmax_cross_entropy([[0.0, 1.0]], [1], z_loss=value)
