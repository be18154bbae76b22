"""Robustness of every loss in the registry (cases.py): unusual memory layouts,
property-based agreement with the reference, random bad input, and no leaks."""
import gc
import os
import sys

import numpy as np
import pytest

from cases import CASES, shape_for, variant_ids, variants
from fastloss import _dispatch
from helpers import assert_close, assert_unchanged, snapshot

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

DEFAULTS = [case for case, option in variants() if option == "default"]
# Examples per property test: modest by default to keep the suite fast; set
# FASTLOSS_HYPOTHESIS_EXAMPLES=5000 for a thorough search.
EXAMPLES = int(os.environ.get("FASTLOSS_HYPOTHESIS_EXAMPLES", "60"))


def _arrays_of(pred, target, weight, options):
    """Every ndarray argument of a call, by name."""
    arrays = {"pred": pred, "target": target, "sample_weight": weight}
    arrays.update({k: v for k, v in options.items() if isinstance(v, np.ndarray)})
    return arrays


def _bits(result):
    return (np.asarray(result.loss, dtype=np.float64).tobytes()
            if np.ndim(result.loss) == 0 else result.loss.tobytes(), result.grad.tobytes())


# --- unusual layouts ----------------------------------------------------------

def _fortran(a, tmp_path):
    return np.asfortranarray(a)


def _negative_strides(a, tmp_path):
    reversed_copy = np.ascontiguousarray(a[::-1])
    view = reversed_copy[::-1]
    assert view.strides[0] < 0
    return view


def _big_endian(a, tmp_path):
    return a.astype(a.dtype.newbyteorder(">"))


def _memmap(a, tmp_path):
    path = tmp_path / f"array{len(list(tmp_path.iterdir()))}.dat"
    written = np.memmap(path, dtype=a.dtype, mode="w+", shape=a.shape)
    written[...] = a
    written.flush()
    del written
    return np.memmap(path, dtype=a.dtype, mode="r", shape=a.shape)


def _readonly(a, tmp_path):
    b = a.copy()
    b.flags.writeable = False
    return b


def _python_list(a, tmp_path):
    return a.tolist()


LAYOUTS = {"fortran": _fortran, "negative-strides": _negative_strides,
           "big-endian": _big_endian, "memmap": _memmap, "readonly": _readonly,
           "list": _python_list}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("case,option", variants(), ids=variant_ids())
def test_unusual_layouts_give_identical_results(case, option, reduction, layout, tmp_path):
    # float64 throughout: a Python list of floats computes in float64.
    rng = np.random.default_rng(5)
    shape = shape_for(case, 37, 6)
    pred, target = case.make_inputs(rng, shape, np.float64)
    weight = rng.uniform(0.5, 2.0, size=shape[0])
    options = case.options[option](shape)
    expected = case.fast(pred, target, sample_weight=weight, reduction=reduction, **options)

    convert = LAYOUTS[layout]
    pred_in, target_in, weight_in = (convert(a, tmp_path) for a in (pred, target, weight))
    options_in = {k: convert(v, tmp_path) if isinstance(v, np.ndarray) else v
                  for k, v in options.items()}
    inputs = [pred_in, target_in, weight_in] + list(options_in.values())
    before = snapshot(*[a for a in inputs if isinstance(a, np.ndarray)])
    result = case.fast(pred_in, target_in, sample_weight=weight_in, reduction=reduction,
                       **options_in)
    assert _bits(result) == _bits(expected)
    assert_unchanged(before, [a for a in inputs if isinstance(a, np.ndarray)])
    reference = case.reference(pred_in, target_in, sample_weight=weight_in,
                               reduction=reduction, **options_in)
    assert_close(result.grad, reference.grad, np.float64, scale=case.grad_scale)


@pytest.mark.parametrize("case", DEFAULTS, ids=repr)
def test_out_may_be_a_writeable_memmap(case, tmp_path):
    rng = np.random.default_rng(6)
    shape = shape_for(case, 37, 6)
    pred, target = case.make_inputs(rng, shape, np.float32)
    out = np.memmap(tmp_path / "grad.dat", dtype=np.float32, mode="w+", shape=shape)
    result = case.fast(pred, target, out=out)
    assert result.grad is out
    np.testing.assert_array_equal(out, case.fast(pred, target).grad)


# --- property-based: agreement with the reference -------------------------------

VARIANTS = variants()


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(variant=st.sampled_from(VARIANTS),
       dtype=st.sampled_from([np.float32, np.float64]),
       n_rows=st.integers(0, 12) | st.sampled_from([0, 1]),
       n_cols=st.integers(1, 6) | st.just(1),
       reduction=st.sampled_from(["mean", "sum", "none"]),
       weight_kind=st.sampled_from([None, "positive", "with-zeros", "all-zero"]),
       scale=st.sampled_from([1e-3, 1.0, 30.0]),
       n_threads=st.sampled_from([None, 1, 2]),
       seed=st.integers(0, 2**32 - 1))
def test_property_kernels_agree_with_reference(variant, dtype, n_rows, n_cols, reduction,
                                               weight_kind, scale, n_threads, seed):
    case, option = variant
    rng = np.random.default_rng(seed)
    shape = shape_for(case, n_rows, n_cols)
    pred, target = case.make_inputs(rng, shape, dtype)
    pred = (pred * scale).astype(dtype)
    options = case.options[option](shape)
    weight = None
    if weight_kind is not None:
        weight = rng.uniform(0.1, 2.0, size=shape[0])
        if weight_kind == "with-zeros":
            weight[rng.uniform(size=shape[0]) < 0.5] = 0.0
        elif weight_kind == "all-zero":
            weight[:] = 0.0
    arrays = _arrays_of(pred, target, weight, options)
    before = snapshot(*arrays.values())

    fast = case.fast(pred, target, sample_weight=weight, reduction=reduction,
                     n_threads=n_threads, **options)
    ref = case.reference(pred, target, sample_weight=weight, reduction=reduction, **options)

    assert_unchanged(before, list(arrays.values()))
    assert type(fast.loss) is type(ref.loss)
    assert fast.grad.shape == pred.shape and fast.grad.dtype == dtype
    # Losses grow like |pred| (linear losses) or pred^2 (squared ones).
    loss_scale = 10 * max(scale, 1.0) ** 2
    assert_close(fast.loss, ref.loss, dtype, scale=loss_scale)
    assert_close(fast.grad, ref.grad, dtype, scale=case.grad_scale * max(scale, 1.0) * 2)


# --- property-based: random bad input ---------------------------------------------------

def _corruptions(case, shape, dtype):
    """(argument name, function (kwargs) -> None that breaks that argument)."""
    n_rows = shape[0]
    labels = case.name in ("softmax_cross_entropy", "softmax_binary_cross_entropy",
                           "multiclass_hinge") and case.target_kind != "probabilities"

    def set_(name, value):
        def corrupt(kwargs):
            kwargs[name] = value() if callable(value) else value
        return corrupt

    pred_name = case.pred_name
    c = [
        (pred_name, set_("pred", lambda: np.full(shape, "a"))),
        (pred_name, set_("pred", lambda: np.zeros(shape, dtype=complex))),
        (pred_name, set_("pred", lambda: np.zeros(shape, dtype=object))),
        (pred_name, set_("pred", lambda: np.zeros((2, 2, 2)))),
        (pred_name, set_("pred", 1.5)),
        (pred_name, set_("pred", [[1.0, 2.0], [3.0]])),
        ("target", set_("target", lambda: np.zeros((n_rows + 1,) + shape[1:]))),
        ("target", set_("target", "abc")),
        ("target", set_("target", lambda: np.zeros(shape, dtype=complex))),
        ("sample_weight", set_("sample_weight", lambda: np.ones(n_rows + 2))),
        ("sample_weight", set_("sample_weight", lambda: np.ones((n_rows, 2)))),
        ("sample_weight", set_("sample_weight", "heavy")),
        ("reduction", set_("reduction", "average")),
        ("reduction", set_("reduction", "MEAN")),
        ("n_threads", set_("n_threads", 0)),
        ("n_threads", set_("n_threads", -3)),
        ("n_threads", set_("n_threads", 2.0)),
        ("n_threads", set_("n_threads", "4")),
        ("out", set_("out", lambda: np.zeros((n_rows + 1,) + shape[1:], dtype))),
        ("out", set_("out", lambda: np.zeros(shape, np.float16))),
    ]
    if np.prod(shape) >= 2:         # an empty or one-element array is always contiguous
        c += [("out", set_("out", lambda: np.zeros(shape[:-1] + (2 * shape[-1],),
                                                   dtype)[..., ::2]))]
    if case.name == "huber":
        c += [("delta", set_("delta", -1.0)), ("delta", set_("delta", 0.0)),
              ("delta", set_("delta", "big"))]
    if case.name in ("hinge", "squared_hinge", "multiclass_hinge"):
        c += [("margin", set_("margin", -0.1)), ("margin", set_("margin", float("nan")))]
    if case.name in ("hinge", "squared_hinge") and n_rows > 0:
        c += [("target", set_("target", lambda: np.full(n_rows, 0.5, dtype)))]
    if case.name in ("hinge", "squared_hinge") and n_rows >= 3:
        c += [("target", set_("target", lambda: np.resize([1.0, -1.0, 0.0], n_rows)))]
    if case.name == "binary_cross_entropy":
        c += [("pos_weight", set_("pos_weight", lambda: np.ones(shape[-1] + 1 if len(shape) == 2
                                                                 else 3))),
              ("pos_weight", set_("pos_weight", "x"))]
    if case.name == "softmax_cross_entropy":
        c += [("label_smoothing", set_("label_smoothing", 1.5)),
              ("label_smoothing", set_("label_smoothing", -0.1)),
              ("class_weight", set_("class_weight", lambda: np.ones(shape[1] + 1)))]
    if case.name == "multiclass_hinge":
        c += [("kind", set_("kind", "one_vs_rest"))]
    if labels and n_rows > 0:
        c += [("target", set_("target", lambda: np.full(n_rows, shape[1]))),
              ("target", set_("target", lambda: np.full(n_rows, -1))),
              ("target", set_("target", lambda: np.zeros(n_rows, dtype=np.float64)))]
    return c


@settings(max_examples=2 * EXAMPLES, deadline=None)
@given(variant=st.sampled_from(VARIANTS),
       dtype=st.sampled_from([np.float32, np.float64]),
       n_rows=st.integers(0, 6),
       n_cols=st.integers(2, 4),
       data=st.data())
def test_property_bad_input_raises_naming_the_argument(variant, dtype, n_rows, n_cols, data):
    case, option = variant
    rng = np.random.default_rng(n_rows * 31 + n_cols)
    shape = shape_for(case, n_rows, n_cols)
    pred, target = case.make_inputs(rng, shape, dtype)
    kwargs = dict(pred=pred, target=target, sample_weight=np.ones(shape[0]), reduction="mean",
                  **case.options[option](shape))
    corruptions = _corruptions(case, shape, dtype)
    n_bad = data.draw(st.integers(1, 2), label="number of corruptions")
    chosen = data.draw(st.lists(st.sampled_from(range(len(corruptions))), min_size=n_bad,
                                max_size=n_bad, unique=True), label="corruptions")
    for index in chosen:
        corruptions[index][1](kwargs)
    names = {corruptions[index][0] for index in chosen}
    arrays = [v for v in kwargs.values() if isinstance(v, np.ndarray)]
    before = snapshot(*arrays)
    pred_arg, target_arg = kwargs.pop("pred"), kwargs.pop("target")
    for function in (case.fast, case.reference):
        with pytest.raises((ValueError, TypeError)) as info:
            function(pred_arg, target_arg, **kwargs)
        message = str(info.value)
        assert any(name in message for name in names), (names, message)
        assert_unchanged(before, arrays)


# --- no leaks -------------------------------------------------------------------

def _resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
@pytest.mark.parametrize("case", DEFAULTS, ids=repr)
@pytest.mark.skipif(_dispatch.elementwise_kernels.BUILD["asan"],
                    reason="AddressSanitizer holds freed memory in quarantine")
def test_ten_thousand_calls_leak_nothing(case):
    """10_000 calls leave resident memory and the inputs' reference counts unchanged.

    Each call allocates a gradient (or writes out) of 512 float64 = 4 KiB, so
    a leak of one buffer per call would grow the resident set by ~40 MiB;
    the tolerance is 4 MiB (allocator and interpreter noise).
    """
    rng = np.random.default_rng(7)
    shape = shape_for(case, 64, 8)
    pred, target = case.make_inputs(rng, shape, np.float64)
    weight = rng.uniform(0.5, 2.0, size=shape[0])
    out = np.empty(shape)
    options = case.options["default"](shape)
    reductions = ("mean", "sum", "none")

    def call(i):
        case.fast(pred, target, sample_weight=weight if i % 2 else None,
                  reduction=reductions[i % 3], out=out if i % 4 < 2 else None, **options)

    for i in range(300):            # warm up caches, free lists and the allocator
        call(i)
    gc.collect()
    counts = [sys.getrefcount(a) for a in (pred, target, weight, out)]
    resident = _resident_bytes()
    for i in range(10_000):
        call(i)
    gc.collect()
    growth = _resident_bytes() - resident
    assert [sys.getrefcount(a) for a in (pred, target, weight, out)] == counts
    assert growth < 4 * 2**20, f"resident memory grew by {growth / 2**20:.1f} MiB"
