"""The compiled call path (fastloss._fastpath) against the Python path it shortcuts.

The fast path must give bit-identical results to the Python path on every
call it takes, leave every other call to that path (so that every error
message is the Python path's), and raise the Python path's errors for what
only the kernel sees (a bad target, a non-finite sample weight).  Speed is
measured by ``python -m bench.overhead``, not here.
"""
import itertools

import numpy as np
import pytest

import fastloss
from fastloss import _elementwise, _fastpath, _multiclass, _multiclass_losses
from fastloss._registry import REGISTRY
from fastloss._results import LossGradHess

# The elementwise losses whose function calls _elementwise.run (one prediction, one target).
ELEMENTWISE = sorted(name for name, spec in REGISTRY.items()
                     if spec.family == "elementwise" and len(spec.inputs) == 2)
SCE = REGISTRY["softmax_cross_entropy"]


def targets_for(spec, shape, dtype, rng):
    """Valid targets of the loss's target rule."""
    rule = spec.target.name
    if rule == "unit_interval":
        return rng.uniform(0, 1, shape).astype(dtype)
    if rule == "signs":
        return rng.choice([-1.0, 1.0], shape).astype(dtype)
    if rule == "counts":
        return rng.integers(0, 5, shape).astype(dtype)
    return rng.normal(size=shape).astype(dtype)


def predictions_for(spec, shape, dtype, rng):
    values = rng.normal(size=shape)
    if spec.name == "poisson_nll":
        values = np.abs(values)         # also valid with log_input=False
    return values.astype(dtype)


@pytest.fixture
def fallbacks():
    """The calls the fast path hands to the Python path, recorded (the path itself unchanged)."""
    calls = []

    def spy(*args):
        calls.append(args)
        return _elementwise.run_python(*args)

    def bind(fallback):
        _fastpath.bind_elementwise(fallback, _elementwise._raise_if_bad, _elementwise._KERNELS,
                                   _elementwise._PARAMETERS, _elementwise._NO_WEIGHT,
                                   _elementwise._NO_ROWS)
    bind(spy)
    try:
        yield calls
    finally:
        bind(_elementwise.run_python)


def python_path(spec, pred, target, options=(), **kwargs):
    """The Python path's result of the same call (options: the parameters, in order)."""
    defaults = dict(sample_weight=None, reduction="mean", grad=True, hess=False, out=None,
                    n_threads=None)
    defaults.update(kwargs)
    params = tuple(options) if options else tuple(param.default for param in spec.params)
    return _elementwise.run_python(spec, pred, target, params, defaults["sample_weight"],
                                   defaults["reduction"], defaults["grad"], defaults["hess"],
                                   defaults["out"], defaults["n_threads"])


def assert_same_loss(fast, slow):
    """The two results are of one type and their losses are bit-identical."""
    assert type(fast) is type(slow)
    if isinstance(slow.loss, float):
        assert type(fast.loss) is float
        assert fast.loss == slow.loss or (np.isnan(fast.loss) and np.isnan(slow.loss))
    else:
        assert fast.loss.dtype == slow.loss.dtype and fast.loss.shape == slow.loss.shape
        np.testing.assert_array_equal(fast.loss, slow.loss)


def assert_identical(fast, slow):
    assert_same_loss(fast, slow)
    if slow.grad is None:
        assert fast.grad is None
    else:
        assert fast.grad.dtype == slow.grad.dtype and fast.grad.shape == slow.grad.shape
        np.testing.assert_array_equal(fast.grad, slow.grad)


# --- elementwise: the calls the fast path takes --------------------------------------

GRID = list(itertools.product(
    (np.float32, np.float64), ((7,), (3, 4), (1,), (600,)), ("mean", "sum", "none"),
    (False, True), (False, True), (True, False)))


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_fast_path_is_bit_identical(name, fallbacks):
    spec = REGISTRY[name]
    function = getattr(fastloss, name)
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    taken = 0
    for dtype, shape, reduction, weighted, with_out, grad in GRID:
        if len(shape) not in spec.ndims or (with_out and not grad):
            continue
        pred = predictions_for(spec, shape, dtype, rng)
        target = targets_for(spec, shape, dtype, rng)
        weight = rng.uniform(0.5, 2, shape[0]) if weighted else None
        out = np.full(shape, np.nan, dtype) if with_out else None
        out_slow = np.full(shape, np.nan, dtype) if with_out else None
        kwargs = dict(sample_weight=weight, reduction=reduction, grad=grad)
        before = len(fallbacks)
        fast = function(pred, target, out=out, **kwargs)
        assert len(fallbacks) == before, (dtype, shape, reduction, weighted, with_out, grad)
        taken += 1
        slow = python_path(spec, pred, target, out=out_slow, **kwargs)
        assert_identical(fast, slow)
        if with_out:
            assert fast.grad is out
    assert taken > 0


@pytest.mark.parametrize("name", ["huber", "smooth_l1", "pinball", "hinge", "poisson_nll",
                                  "sigmoid_focal_loss"])
def test_elementwise_parameters_other_than_the_defaults(name, fallbacks):
    spec = REGISTRY[name]
    rng = np.random.default_rng(5)
    values = {"delta": 0.3, "beta": 0.0, "quantile": 0.9, "margin": 0.5,
              "log_input": False, "full": True, "eps": 1e-3, "alpha": -1.0, "gamma": 0.5}
    options = {param.name: values[param.name] for param in spec.params}
    for dtype in (np.float32, np.float64):
        pred = predictions_for(spec, (9,), dtype, rng)
        target = targets_for(spec, (9,), dtype, rng)
        fast = getattr(fastloss, name)(pred, target, **options)
        assert not fallbacks
        assert_identical(fast, python_path(spec, pred, target, tuple(options.values())))


def test_threads_and_in_between_values(fallbacks):
    rng = np.random.default_rng(1)
    pred, target = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    for n_threads in (1, 2, 2**40):
        assert_identical(fastloss.mse(pred, target, n_threads=n_threads),
                         python_path(REGISTRY["mse"], pred, target, n_threads=n_threads))
    assert not fallbacks


HESSIAN_LOSSES = [name for name in ELEMENTWISE if REGISTRY[name].hess]


@pytest.mark.parametrize("name", HESSIAN_LOSSES)
def test_elementwise_hessians_are_bit_identical(name, fallbacks):
    """hess=True (through the def kernels), for every loss with a Hessian."""
    spec = REGISTRY[name]
    function = getattr(fastloss, name)
    rng = np.random.default_rng(abs(hash(name)) % 2**32 + 1)
    taken = 0
    for dtype, shape, reduction, weighted, with_out in itertools.product(
            (np.float32, np.float64), ((7,), (3, 4), (40000,)), ("mean", "sum", "none"),
            (False, True), (False, True)):
        if len(shape) not in spec.ndims:
            continue
        pred = predictions_for(spec, shape, dtype, rng)
        target = targets_for(spec, shape, dtype, rng)
        weight = rng.uniform(0.5, 2, shape[0]) if weighted else None
        out = np.full(shape, np.nan, dtype) if with_out else None
        kwargs = dict(sample_weight=weight, reduction=reduction, hess=True)
        fast = function(pred, target, out=out, **kwargs)
        assert not fallbacks, (dtype, shape, reduction, weighted, with_out)
        taken += 1
        slow = python_path(spec, pred, target, out=None if out is None else out.copy(),
                           **kwargs)
        assert_identical(fast, slow)
        assert type(fast) is LossGradHess
        np.testing.assert_array_equal(fast.hess, slow.hess)
        assert fast.hess.dtype == slow.hess.dtype
    assert taken > 0


# --- elementwise: the calls it leaves to the Python path ------------------------------

def _fallback_cases():
    rng = np.random.default_rng(2)
    p64 = rng.normal(size=(6, 4))
    t64 = rng.normal(size=(6, 4))
    p32, t32 = p64.astype(np.float32), t64.astype(np.float32)
    read_only = np.empty((6, 4))
    read_only.flags.writeable = False
    target_as_out = t64.copy()

    class Sub(np.ndarray):
        pass

    cases = {
        "non-contiguous pred": ("mse", (p64[:, ::2], t64[:, ::2]), {}),
        "fortran pred": ("mse", (np.asfortranarray(p64), t64), {}),
        "list inputs": ("mse", (p64.tolist(), t64.tolist()), {}),
        "int pred": ("mse", (p64.astype(int), t64), {}),
        "bool target": ("mse", (p64, t64 > 0), {}),
        "float16 pred": ("mse", (p64.astype(np.float16), t64), {}),
        "mismatched dtypes": ("mse", (p32, t64), {}),
        "byte-swapped pred": ("mse", (p64.astype(">f8"), t64), {}),
        "subclass pred": ("mse", (p64.view(Sub), t64), {}),
        "mismatched shapes": ("mse", (p64, t64[:3]), {}),
        "3-D pred": ("mse", (p64.reshape(2, 3, 4), t64.reshape(2, 3, 4)), {}),
        "2-D hinge": ("hinge", (p64, np.sign(t64)), {}),
        "empty": ("mse", (p64[:0], t64[:0]), {}),
        "empty rows": ("mse", (p64[:, :0].copy(), t64[:, :0].copy()), {}),
        "read-only out": ("mse", (p64, t64), {"out": read_only}),
        "out of another dtype": ("mse", (p64, t64), {"out": np.empty((6, 4), np.float32)}),
        "out of another shape": ("mse", (p64, t64), {"out": np.empty(24)}),
        "out a list": ("mse", (p64, t64), {"out": [0.0] * 24}),
        "out is pred": ("mse", (p64.copy(), t64), {"out": "pred"}),
        "out is the target": ("mse", (p64, target_as_out), {"out": target_as_out}),
        "out with grad=False": ("mse", (p64, t64), {"out": np.empty((6, 4)), "grad": False}),
        "negative delta": ("huber", (p64, t64), {"delta": -1.0}),
        "int delta": ("huber", (p64, t64), {"delta": 1}),
        "NaN delta": ("huber", (p64, t64), {"delta": float("nan")}),
        "numpy float delta": ("huber", (p64, t64), {"delta": np.float64(0.5)}),
        "string delta": ("huber", (p64, t64), {"delta": "1"}),
        "pos_weight": ("binary_cross_entropy", (p64, rng.uniform(0, 1, (6, 4))),
                       {"pos_weight": 2.0}),
        "numpy bool flag": ("poisson_nll", (p64, np.abs(t64)), {"full": np.True_}),
        "hess=True refused": ("l1", (p64, t64), {"hess": True}),
        "hess with grad=False": ("mse", (p64, t64), {"hess": True, "grad": False}),
        "hess numpy bool": ("mse", (p64, t64), {"hess": np.True_}),
        "hess=1": ("mse", (p64, t64), {"hess": 1}),
        "grad numpy bool": ("mse", (p64, t64), {"grad": np.True_}),
        "grad=1": ("mse", (p64, t64), {"grad": 1}),
        "bad reduction": ("mse", (p64, t64), {"reduction": "avg"}),
        "n_threads=0": ("mse", (p64, t64), {"n_threads": 0}),
        "n_threads=True": ("mse", (p64, t64), {"n_threads": True}),
        "n_threads numpy int": ("mse", (p64, t64), {"n_threads": np.int64(2)}),
        "int weights": ("mse", (p64, t64), {"sample_weight": np.arange(6)}),
        "float32 weights": ("mse", (p64, t64), {"sample_weight": np.ones(6, np.float32)}),
        "weights of another shape": ("mse", (p64, t64), {"sample_weight": np.ones(4)}),
        "list weights": ("mse", (p64, t64), {"sample_weight": [1.0] * 6}),
        "zero weights, mean": ("mse", (p64, t64), {"sample_weight": np.zeros(6)}),
        "out is the weights": ("mse", (p64[:, :1].copy(), t64[:, :1].copy()),
                               {"out": "weights", "sample_weight": np.ones((6, 1))}),
        "in place, bad target": ("binary_cross_entropy", (p64.copy(), t64), {"out": "pred"}),
    }
    return cases


FALLBACK_CASES = _fallback_cases()


@pytest.mark.parametrize("case", sorted(FALLBACK_CASES))
def test_elementwise_fallbacks(case, fallbacks):
    """Each call goes to the Python path, and fails or succeeds exactly as that path does."""
    name, (pred, target), kwargs = FALLBACK_CASES[case]
    spec = REGISTRY[name]
    kwargs = dict(kwargs)

    def call(function, pred, target, kwargs):
        kwargs = dict(kwargs)
        marker = kwargs.get("out") if isinstance(kwargs.get("out"), str) else None
        if marker == "pred":
            pred = np.array(pred, copy=True)
            kwargs["out"] = pred
        if marker == "weights":
            kwargs["sample_weight"] = np.ones(6)
            kwargs["out"] = kwargs["sample_weight"].reshape(6, 1)
        try:
            return function(pred, target, kwargs)
        except (TypeError, ValueError) as error:
            return type(error), str(error)

    def fast(pred, target, kwargs):
        return getattr(fastloss, name)(pred, target, **kwargs)

    def slow(pred, target, kwargs):
        options = tuple(kwargs.pop(param.name, param.default) for param in spec.params)
        return python_path(spec, pred, target, options, **kwargs)

    fast_result = call(fast, pred, target, kwargs)
    assert len(fallbacks) == 1, case
    slow_result = call(slow, pred, target, kwargs)
    if isinstance(slow_result, tuple) and isinstance(slow_result[0], type):
        assert fast_result == slow_result
    else:
        assert_identical(fast_result, slow_result)


# --- elementwise: the errors the kernel's pass finds ------------------------------------

@pytest.mark.parametrize("name, target", [
    ("binary_cross_entropy", [0.0, 1.5, 0.5]),
    ("binary_cross_entropy", [0.0, float("nan"), 0.5]),
    ("hinge", [1.0, 0.0, -1.0]),
    ("hinge", [1.0, 2.0, -1.0]),
    ("poisson_nll", [1.0, -2.0, 0.0]),
    ("sigmoid_focal_loss", [1.0, -0.5, 0.0]),
])
@pytest.mark.parametrize("with_out", [False, True])
def test_bad_targets_raise_the_python_paths_error(name, target, with_out, fallbacks):
    pred = np.array([0.5, -0.5, 1.0])
    target = np.array(target)
    out = np.empty(3) if with_out else None
    with pytest.raises(ValueError) as fast:
        getattr(fastloss, name)(pred, target, out=out)
    assert not fallbacks
    with pytest.raises(ValueError) as slow:
        python_path(REGISTRY[name], pred, target, out=None if out is None else np.empty(3))
    assert str(fast.value) == str(slow.value)


@pytest.mark.parametrize("weight", [[1.0, float("nan"), 1.0], [1.0, 1.0, float("inf")]])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bad_weights_raise_the_python_paths_error(weight, reduction, fallbacks):
    pred, target, weight = np.zeros(3), np.ones(3), np.array(weight)
    with pytest.raises(ValueError) as fast:
        fastloss.mse(pred, target, sample_weight=weight, reduction=reduction)
    assert not fallbacks
    with pytest.raises(ValueError) as slow:
        python_path(REGISTRY["mse"], pred, target, sample_weight=weight, reduction=reduction)
    assert str(fast.value) == str(slow.value)


def test_inputs_are_untouched(fallbacks):
    rng = np.random.default_rng(3)
    pred, target, weight = rng.normal(size=(5, 2)), rng.normal(size=(5, 2)), rng.uniform(size=5)
    copies = [x.copy() for x in (pred, target, weight)]
    fastloss.huber(pred, target, sample_weight=weight, out=np.empty((5, 2)))
    for x, copy in zip((pred, target, weight), copies):
        np.testing.assert_array_equal(x, copy)
    assert not fallbacks


# --- softmax_cross_entropy ------------------------------------------------------------------

def python_cross_entropy(monkeypatch, *args, **kwargs):
    """softmax_cross_entropy through its own checks and _multiclass.run only."""
    with monkeypatch.context() as patch:
        patch.setattr(_multiclass_losses, "fast_call", lambda *args: None)
        return fastloss.softmax_cross_entropy(*args, **kwargs)


def fast_cross_entropy(logits, labels, sample_weight=None, reduction="mean", grad=True,
                       out=None, n_threads=None, options=(None, None, 0.0, 0.0, None),
                       hess=False):
    return _multiclass.fast_call(SCE, logits, labels, options, sample_weight, reduction,
                                 grad, hess, out, n_threads)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 5), (1, 1), (7, 3), (300, 40)])
def test_cross_entropy_fast_path_is_bit_identical(dtype, shape, monkeypatch):
    rng = np.random.default_rng(shape[0] * 100 + shape[1])
    logits = (3 * rng.normal(size=shape)).astype(dtype)
    labels = rng.integers(0, shape[1], shape[0])
    for reduction, weighted, with_out, grad in itertools.product(
            ("mean", "sum", "none"), (False, True), (False, True), (True, False)):
        if with_out and not grad:
            continue
        weight = rng.uniform(0.5, 2, shape[0]) if weighted else None
        out = np.full(shape, np.nan, dtype) if with_out else None
        kwargs = dict(sample_weight=weight, reduction=reduction, grad=grad)
        fast = fast_cross_entropy(logits, labels, out=out, **kwargs)
        assert fast is not None
        public = fastloss.softmax_cross_entropy(logits, labels, **kwargs)
        slow = python_cross_entropy(monkeypatch, logits, labels,
                                    out=None if out is None else np.empty(shape, dtype),
                                    **kwargs)
        assert_identical(fast, slow)
        assert_identical(public, slow)
        if with_out:
            assert fast.grad is out


def _cross_entropy_fallbacks():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(4, 3))
    labels = np.array([0, 2, 1, 2])
    probabilities = np.full((4, 3), 1 / 3)
    big = rng.normal(size=(5, 3))
    return {
        "int32 labels": ((logits, labels.astype(np.int32)), {}),
        "list labels": ((logits, labels.tolist()), {}),
        "float labels": ((logits, labels.astype(float)), {}),
        "non-contiguous labels": ((logits, np.repeat(labels, 2)[::2]), {}),
        "labels of another length": ((logits, labels[:3]), {}),
        "probabilities": ((logits, probabilities), {}),
        "float32 weights": ((logits, labels), {"sample_weight": np.ones(4, np.float32)}),
        "weights of another length": ((logits, labels), {"sample_weight": np.ones(3)}),
        "NaN label_smoothing": ((logits, labels), {"label_smoothing": float("nan")}),
        "1-D logits": ((logits[0], labels[:1]), {}),
        "non-contiguous logits": ((logits[:, ::2], np.array([0, 1, 1, 0])), {}),
        "list logits": ((logits.tolist(), labels), {}),
        "label_smoothing=0": ((logits, labels), {"label_smoothing": 0}),
        "label_smoothing above 1": ((logits, labels), {"label_smoothing": 1.5}),
        "numpy float label_smoothing": ((logits, labels), {"label_smoothing": np.float64(0.1)}),
        "negative z_loss": ((logits, labels), {"z_loss": -1e-3}),
        "infinite z_loss": ((logits, labels), {"z_loss": float("inf")}),
        "int z_loss": ((logits, labels), {"z_loss": 1}),
        "zero softcap": ((logits, labels), {"softcap": 0.0}),
        "int softcap": ((logits, labels), {"softcap": 5}),
        "NaN softcap": ((logits, labels), {"softcap": float("nan")}),
        "hess with z_loss": ((logits, labels), {"hess": True, "z_loss": 1e-3}),
        "hess with softcap": ((logits, labels), {"hess": True, "softcap": 5.0}),
        "hess with grad=False": ((logits, labels), {"hess": True, "grad": False}),
        "hess numpy bool": ((logits, labels), {"hess": np.True_}),
        "hess=1": ((logits, labels), {"hess": 1}),
        "numpy int ignore_index": ((logits, labels), {"ignore_index": np.int64(2)}),
        "bool ignore_index": ((logits, labels), {"ignore_index": True}),
        "float ignore_index": ((logits, labels), {"ignore_index": 2.0}),
        "huge ignore_index": ((logits, labels), {"ignore_index": 2**70}),
        "ignore_index with probabilities": ((logits, probabilities), {"ignore_index": 1}),
        "list class_weight": ((logits, labels), {"class_weight": [1.0, 2.0, 3.0]}),
        "float32 class_weight": ((logits, labels),
                                 {"class_weight": np.ones(3, np.float32)}),
        "int class_weight": ((logits, labels), {"class_weight": np.ones(3, int)}),
        "class_weight of another length": ((logits, labels), {"class_weight": np.ones(4)}),
        "2-D class_weight": ((logits, labels), {"class_weight": np.ones((1, 3))}),
        "non-contiguous class_weight": ((logits, labels),
                                        {"class_weight": np.ones(6)[::2]}),
        "NaN class_weight": ((logits, labels), {"class_weight": np.array([1.0, np.nan, 1.0])}),
        "infinite class_weight": ((logits, labels),
                                  {"class_weight": np.array([1.0, 1.0, -np.inf])}),
        "class_weight, label too large, mean": ((logits, np.array([0, 3, 1, 2])),
                                                {"class_weight": np.ones(3)}),
        "class_weight, negative label, mean": ((logits, np.array([0, 1, -1, 2])),
                                               {"class_weight": np.ones(3),
                                                "sample_weight": np.ones(4)}),
        "class_weight, NaN weight and a bad label, mean": (
            (logits, np.array([0, 1, 5, 2])),
            {"class_weight": np.ones(3), "sample_weight": np.array([1.0, np.nan, 1, 1])}),
        "ignore_index, NaN weight of an ignored row": (
            (logits, labels), {"ignore_index": 2, "sample_weight": np.array([1.0, 1, 1, np.nan]),
                               "reduction": "sum"}),
        "ignore_index, infinite weight": (
            (logits, labels), {"ignore_index": 0, "sample_weight": np.array([1.0, np.inf, 1, 1])}),
        "every row ignored, mean": ((logits, np.array([1, 1, 1, 1])), {"ignore_index": 1}),
        "zero class weights, mean": ((logits, labels), {"class_weight": np.zeros(3)}),
        "bad reduction": ((logits, labels), {"reduction": "avg"}),
        "zero weights": ((logits, labels), {"sample_weight": np.zeros(4)}),
        "read-only out": ((logits, labels), {"out": "read-only"}),
        "in place, bad label": ((logits.copy(), np.array([0, 3, 1, 2])), {"out": "logits"}),
        "in place, bad label, ignore_index": ((logits.copy(), np.array([0, 7, -1, 2])),
                                              {"out": "logits", "ignore_index": -1}),
        "in place, NaN weight": ((logits.copy(), labels),
                                 {"out": "logits", "sample_weight": np.array([1, np.nan, 1, 1]),
                                  "reduction": "sum"}),
        "out overlaps the logits": ((big[:4], labels), {"out": big[1:]}),
        "out is the class weights": ((logits, labels), {"out": "class_weight"}),
        "out with grad=False": ((logits, labels), {"out": np.empty((4, 3)), "grad": False}),
        "n_threads=0": ((logits, labels), {"n_threads": 0}),
        "empty": ((logits[:0], labels[:0]), {}),
    }


CROSS_ENTROPY_FALLBACKS = _cross_entropy_fallbacks()


@pytest.mark.parametrize("case", sorted(CROSS_ENTROPY_FALLBACKS))
def test_cross_entropy_fallbacks(case, monkeypatch):
    (logits, labels), kwargs = CROSS_ENTROPY_FALLBACKS[case]

    def call(function):
        options = dict(kwargs)
        x = logits
        marker = options.get("out") if isinstance(options.get("out"), str) else None
        if marker == "read-only":
            options["out"] = np.empty(logits.shape)
            options["out"].flags.writeable = False
        if marker == "logits":
            x = logits.copy()
            options["out"] = x
        if marker == "class_weight":
            options["out"] = np.ones((4, 3))
            options["class_weight"] = options["out"][1]
        try:
            return function(x, labels, options)
        except (TypeError, ValueError, OverflowError) as error:
            return type(error), str(error)

    def fast(x, labels, options):
        names = ("class_weight", "ignore_index", "label_smoothing", "z_loss", "softcap")
        defaults = (None, None, 0.0, 0.0, None)
        params = tuple(options.pop(name, default) for name, default in zip(names, defaults))
        return fast_cross_entropy(x, labels, options=params, **options)

    assert call(fast) is None
    public = call(lambda x, labels, options: fastloss.softmax_cross_entropy(x, labels,
                                                                            **options))
    slow = call(lambda x, labels, options: python_cross_entropy(monkeypatch, x, labels,
                                                                **options))
    if isinstance(slow, tuple) and isinstance(slow[0], type):
        assert public == slow
    else:
        assert_identical(public, slow)


NAMES = ("class_weight", "ignore_index", "label_smoothing", "z_loss", "softcap")
DEFAULTS = dict(zip(NAMES, (None, None, 0.0, 0.0, None)))


def option_sets(n_classes, rng):
    """softmax_cross_entropy's options, alone and together (class weights of both signs)."""
    class_weight = rng.uniform(-0.5, 2, n_classes)
    return [
        {},
        {"class_weight": class_weight},
        {"ignore_index": 1 % n_classes},
        {"ignore_index": -100},
        {"label_smoothing": 0.1},
        {"label_smoothing": 1.0},
        {"z_loss": 1e-3},
        {"softcap": 5.0},
        {"class_weight": class_weight, "ignore_index": 0, "label_smoothing": 0.2},
        {"class_weight": class_weight, "label_smoothing": 0.05, "z_loss": 1e-2,
         "softcap": 3.0, "ignore_index": n_classes - 1},
        {"hess": True},
        {"hess": True, "class_weight": class_weight, "ignore_index": 0,
         "label_smoothing": 0.1},
    ]


def fast_options_call(logits, labels, options, **kwargs):
    """fast_call with the options given by name (the others at their defaults)."""
    options = dict(options)
    hess = options.pop("hess", False)
    params = tuple(options.get(name, DEFAULTS[name]) for name in NAMES)
    return fast_cross_entropy(logits, labels, options=params, hess=hess, **kwargs)


def assert_same_result(fast, slow):
    assert_identical(fast, slow)
    if isinstance(slow, LossGradHess):
        assert fast.hess.dtype == slow.hess.dtype
        np.testing.assert_array_equal(fast.hess, slow.hess)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 5), (1, 1), (9, 3), (256, 10), (300, 40), (380, 90)])
def test_cross_entropy_options_are_bit_identical(dtype, shape, monkeypatch):
    """Every option, alone and together, each reduction, sample weights, out (separate
    or in place), grad=False and hess=True: the fast path's result is the Python path's
    (the last shape is beyond one chunk: the def kernel)."""
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    logits = (3 * rng.normal(size=shape)).astype(dtype)
    labels = rng.integers(0, shape[1], shape[0])
    for options in option_sets(shape[1], rng):
        hess = options.get("hess", False)
        for reduction, weighted, out_kind, grad in itertools.product(
                ("mean", "sum", "none"), (False, True), ("none", "separate", "in place"),
                (True, False)):
            if (out_kind != "none" or hess) and not grad:
                continue
            weight = rng.uniform(-0.5, 2, shape[0]) if weighted else None
            kwargs = dict(sample_weight=weight, reduction=reduction, grad=grad)
            x_fast, x_slow = logits.copy(), logits.copy()
            out_fast = out_slow = None
            if out_kind == "separate":
                out_fast, out_slow = np.full(shape, np.nan, dtype), np.full(shape, np.nan, dtype)
            elif out_kind == "in place":
                out_fast, out_slow = x_fast, x_slow
            case = (options, reduction, weighted, out_kind, grad)
            fast = fast_options_call(x_fast, labels, options, out=out_fast, **kwargs)
            slow = python_cross_entropy(monkeypatch, x_slow, labels, out=out_slow, **options,
                                        **kwargs)
            if reduction == "mean" and np.all(labels == options.get("ignore_index")):
                assert fast is None     # a mean over nothing: the Python path's
                continue
            assert fast is not None, case
            assert_same_result(fast, slow)
            if out_kind != "none":
                assert fast.grad is out_fast
            if out_kind != "in place":
                np.testing.assert_array_equal(x_fast, logits)
            public = fastloss.softmax_cross_entropy(logits, labels, **options, **kwargs)
            assert_same_result(public, python_cross_entropy(monkeypatch, logits, labels,
                                                            **options, **kwargs))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_options_at_extreme_values(dtype, monkeypatch):
    """Logits of +-1e4, +-3e38, infinities and NaN, with every option: the same bits."""
    rng = np.random.default_rng(12)
    values = np.array([1e4, -1e4, 3e38, -3e38, np.inf, -np.inf, np.nan, 0.0, 1.0, -2.0])
    logits = rng.choice(values, (40, 6)).astype(dtype)
    logits[:6] = np.diag(np.full(6, 3e38)).astype(dtype)   # rows of one huge logit
    labels = rng.integers(0, 6, 40)
    for options in option_sets(6, rng):
        for reduction in ("mean", "sum", "none"):
            weight = rng.uniform(0.5, 2, 40)
            kwargs = dict(sample_weight=weight, reduction=reduction)
            with np.errstate(all="ignore"):
                fast = fast_options_call(logits, labels, options, **kwargs)
                assert fast is not None
                assert_same_result(fast, python_cross_entropy(monkeypatch, logits, labels,
                                                              **options, **kwargs))


BAD_LABELS = [np.array([0, 3, 1, 2, 0, 1]), np.array([0, 1, -1, 2, 0, 1]),
              np.array([0, 1, 2, 2, 0, -7])]


@pytest.mark.parametrize("labels", BAD_LABELS, ids=["too large", "negative", "last"])
@pytest.mark.parametrize("options", [{}, {"ignore_index": 1}, {"ignore_index": -1},
                                     {"label_smoothing": 0.1, "z_loss": 1e-3},
                                     {"softcap": 2.0}, {"class_weight": np.ones(3)},
                                     {"hess": True}],
                         ids=lambda options: ",".join(options) or "default")
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("out_kind", ["none", "separate", "in place"])
def test_cross_entropy_bad_labels_raise_the_python_paths_error(labels, options, reduction,
                                                               out_kind, monkeypatch):
    """A label outside [0, C) and not ignore_index: the Python path's ValueError, found by
    the kernel's pass (or, in place and for a "mean" with class weights, before any
    write: the call goes to the Python path); every input untouched."""
    if np.all((labels >= 0) & (labels < 3) | (labels == options.get("ignore_index"))):
        pytest.skip("every label is in range or ignored")
    rng = np.random.default_rng(13)
    logits = rng.normal(size=(6, 3))
    weight = rng.uniform(0.5, 2, 6)
    inputs = [logits, labels, weight] + [value for value in options.values()
                                         if isinstance(value, np.ndarray)]
    copies = [x.copy() for x in inputs]
    x = logits.copy() if out_kind == "in place" else logits
    out = {"none": None, "separate": np.empty((6, 3)), "in place": x}[out_kind]
    kwargs = dict(sample_weight=weight, reduction=reduction)
    if out_kind != "in place" and not ("class_weight" in options and reduction == "mean"):
        with pytest.raises(ValueError) as fast:
            fast_options_call(x, labels, options, out=out, **kwargs)
    else:
        assert fast_options_call(x, labels, options, out=out, **kwargs) is None
    with pytest.raises(ValueError) as public:
        fastloss.softmax_cross_entropy(x, labels, out=out, **options, **kwargs)
    with pytest.raises(ValueError) as slow:
        python_cross_entropy(monkeypatch, logits.copy(), labels,
                             out=None if out is None else np.empty((6, 3)), **options, **kwargs)
    assert str(public.value) == str(slow.value)
    assert "class labels" in str(slow.value)
    if out_kind != "in place" and not ("class_weight" in options and reduction == "mean"):
        assert str(fast.value) == str(slow.value)
    np.testing.assert_array_equal(x, logits)
    for value, copy in zip(inputs, copies):
        np.testing.assert_array_equal(value, copy)


@pytest.mark.parametrize("options", [{"class_weight": np.array([1.0, 0.5])},
                                     {"ignore_index": 0}, {"ignore_index": 5},
                                     {"label_smoothing": 0.3, "z_loss": 0.1, "softcap": 1.0}],
                         ids=lambda options: ",".join(options))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_options_bad_weight_raises_the_python_paths_error(options, reduction,
                                                                        monkeypatch):
    logits, labels = np.zeros((3, 2)), np.array([0, 1, 1])
    for weight in ([1.0, float("nan"), 1.0], [float("inf"), 1.0, 1.0]):
        with pytest.raises(ValueError) as public:
            fastloss.softmax_cross_entropy(logits, labels, sample_weight=np.array(weight),
                                           reduction=reduction, **options)
        with pytest.raises(ValueError) as slow:
            python_cross_entropy(monkeypatch, logits, labels, sample_weight=np.array(weight),
                                 reduction=reduction, **options)
        assert str(public.value) == str(slow.value)


def test_cross_entropy_bad_weight_raises_the_python_paths_error(monkeypatch):
    logits, labels = np.zeros((3, 2)), np.array([0, 1, 1])
    for weight in ([1.0, float("nan"), 1.0], [1.0, float("inf"), 1.0]):
        for reduction in ("mean", "sum"):
            with pytest.raises(ValueError) as fast:
                fast_cross_entropy(logits, labels, sample_weight=np.array(weight),
                                   reduction=reduction)
            with pytest.raises(ValueError) as slow:
                python_cross_entropy(monkeypatch, logits, labels,
                                     sample_weight=np.array(weight), reduction=reduction)
            assert str(fast.value) == str(slow.value)


def test_read_only_inputs_take_the_fast_path(fallbacks, monkeypatch):
    rng = np.random.default_rng(6)
    pred, target, weight = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), rng.uniform(size=4)
    logits, labels = rng.normal(size=(4, 3)), np.array([0, 2, 1, 1])
    for x in (pred, target, weight, logits, labels):
        x.flags.writeable = False
    assert_identical(fastloss.huber(pred, target, sample_weight=weight),
                     python_path(REGISTRY["huber"], pred, target, sample_weight=weight))
    assert not fallbacks
    fast = fast_cross_entropy(logits, labels, sample_weight=weight)
    assert fast is not None
    assert_identical(fast, python_cross_entropy(monkeypatch, logits, labels,
                                                sample_weight=weight))


# --- the kernels' pointer-level entries ---------------------------------------------

@pytest.fixture
def without_entries():
    """Within the test, the fast path calls the def kernels (its entries unbound)."""
    from fastloss import _dispatch

    def bind(elementwise, multiclass):
        _fastpath.bind_elementwise_entries(elementwise)
        _fastpath.bind_multiclass_entries(multiclass)
    bind({}, {})
    try:
        yield
    finally:
        bind(_dispatch.elementwise_kernels.ENTRIES, _dispatch.multiclass_kernels.ENTRIES)


def test_every_build_exports_its_entries():
    """Both builds export an entry per two-input elementwise kernel, for
    gaussian_nll and for softmax_cross_entropy, and the fast path is bound to the
    chosen build's."""
    import importlib

    from fastloss import _dispatch
    kernels = {REGISTRY[name].kernel for name in ELEMENTWISE}
    for suffix in ("", "_v3"):
        try:
            elementwise = importlib.import_module("fastloss._elementwise_kernels" + suffix)
            multiclass = importlib.import_module("fastloss._multiclass_kernels" + suffix)
        except ImportError:
            assert suffix == "_v3"
            continue
        assert kernels | {"gaussian_nll"} <= set(elementwise.ENTRIES)
        assert {"softmax_cross_entropy", "softmax_cross_entropy_options"} <= set(
            multiclass.ENTRIES)
    assert _elementwise._elementwise_kernels is _dispatch.elementwise_kernels


@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("shape", [(10,), (5000,), (40000,), (3, 4)])
def test_entries_agree_with_the_def_kernels(name, shape, fallbacks):
    """The entry path (a call within one chunk; with the GIL released from 4096
    elements; beyond one chunk the def kernel) and the def kernels' path, bit for bit."""
    spec = REGISTRY[name]
    if len(shape) not in spec.ndims:
        pytest.skip("not a shape of this loss")
    function = getattr(fastloss, name)
    rng = np.random.default_rng(len(shape) * 7 + shape[0])
    for dtype, reduction, weighted in itertools.product(
            (np.float32, np.float64), ("mean", "sum", "none"), (False, True)):
        pred = predictions_for(spec, shape, dtype, rng)
        target = targets_for(spec, shape, dtype, rng)
        weight = rng.uniform(0.5, 2, shape[0]) if weighted else None
        fast = function(pred, target, sample_weight=weight, reduction=reduction)
        assert_identical(fast, python_path(spec, pred, target, sample_weight=weight,
                                           reduction=reduction))
    assert not fallbacks


def test_entries_and_def_kernels_give_the_same_bits(without_entries, fallbacks):
    rng = np.random.default_rng(11)
    for name in ELEMENTWISE:
        spec = REGISTRY[name]
        pred = predictions_for(spec, (33,), np.float32, rng)
        target = targets_for(spec, (33,), np.float32, rng)
        without = getattr(fastloss, name)(pred, target)
        _fastpath.bind_elementwise_entries(_elementwise._elementwise_kernels.ENTRIES)
        try:
            assert_identical(getattr(fastloss, name)(pred, target), without)
        finally:
            _fastpath.bind_elementwise_entries({})
    assert not fallbacks


def test_cross_entropy_entries_and_def_kernels_give_the_same_bits(without_entries,
                                                                 monkeypatch):
    """The options entry and the def kernel (its entries unbound), bit for bit."""
    from fastloss import _dispatch
    rng = np.random.default_rng(14)
    for dtype in (np.float32, np.float64):
        logits = (3 * rng.normal(size=(37, 7))).astype(dtype)
        labels = rng.integers(0, 7, 37)
        for options in option_sets(7, rng):
            kwargs = dict(sample_weight=rng.uniform(0.5, 2, 37), reduction="sum")
            without = fast_options_call(logits, labels, options, **kwargs)
            _fastpath.bind_multiclass_entries(_dispatch.multiclass_kernels.ENTRIES)
            try:
                assert_same_result(fast_options_call(logits, labels, options, **kwargs),
                                   without)
            finally:
                _fastpath.bind_multiclass_entries({})


def test_label_weight_sum_never_reads_outside_the_class_weights():
    """The "mean" divisor sum_i s_i w_{y_i} (_calls.label_weight_total, shared by the
    Python path's label_weight_sum and the fast path): a label outside the class
    weights is a ValueError, not a read; an ignored one is skipped; without class
    weights the labels are only compared with ignore_index."""
    from fastloss import _dispatch
    label_weight_sum = _dispatch.multiclass_kernels.label_weight_sum
    none = _dispatch.NO_WEIGHT
    class_weight, sample_weight = np.array([0.5, 2.0, 4.0]), np.array([1.0, 3.0, 5.0, 7.0])
    labels = np.array([2, 0, 1, 2])
    assert label_weight_sum(labels, class_weight, sample_weight, False, 0) == \
        4.0 * 1 + 0.5 * 3 + 2.0 * 5 + 4.0 * 7
    assert label_weight_sum(labels, class_weight, none, True, 2) == 0.5 + 2.0
    for bad in (np.array([2, 0, 3, 1]), np.array([-1, 0, 1, 2])):
        with pytest.raises(ValueError):
            label_weight_sum(bad, class_weight, sample_weight, False, 0)
        assert label_weight_sum(bad, none, sample_weight, True, 7) == sample_weight.sum()
    assert label_weight_sum(np.array([2, 0, 3, 1]), class_weight, none, True, 3) == 6.5


# --- gaussian_nll: three inputs, two gradients ------------------------------------------

NLL = REGISTRY["gaussian_nll"]


@pytest.fixture
def several_fallbacks():
    """The gaussian_nll calls the fast path hands to the Python path, recorded."""
    calls = []

    def spy(*args):
        calls.append(args)
        return _elementwise.run_several_python(*args)

    _fastpath.bind_several(spy)
    try:
        yield calls
    finally:
        _fastpath.bind_several(_elementwise.run_several_python)


def python_nll(mean, target, var, full=False, eps=1e-6, sample_weight=None, reduction="mean",
               grad=True, hess=False, out=None, out_var=None, n_threads=None):
    """The Python path's result of the same gaussian_nll call."""
    return _elementwise.run_several_python(NLL, (mean, target, var), (full, eps),
                                           sample_weight, reduction, grad, hess,
                                           (out, out_var), n_threads)


def assert_nll_identical(fast, slow):
    assert_same_loss(fast, slow)
    if slow.grad is None:
        assert fast.grad is None
    else:
        assert type(fast.grad) is tuple and len(fast.grad) == 2
        for g, expected in zip(fast.grad, slow.grad):
            assert g.dtype == expected.dtype and g.shape == expected.shape
            np.testing.assert_array_equal(g, expected)
    if type(slow) is LossGradHess:
        assert fast.hess.dtype == slow.hess.dtype and fast.hess.shape == slow.hess.shape
        np.testing.assert_array_equal(fast.hess, slow.hess)


def var_shapes(shape):
    """The var shapes the fast path takes for a mean of this shape."""
    if len(shape) == 1:
        return [shape]
    return [shape, shape[:1], (shape[0], 1)]


NLL_GRID = list(itertools.product(
    (np.float32, np.float64), ((7,), (3, 4), (1,), (5, 1), (600,), (50, 30)),
    ("mean", "sum", "none"), (False, True), ("none", "out", "out_var", "both"),
    (False, True), (1e-6, 0.5, 0.0), (False, True)))


def test_gaussian_nll_fast_path_is_bit_identical(several_fallbacks):
    """Every var shape, reduction, sample weight, out kind, full, eps and hess the fast
    path takes, against the Python path (var values on both sides of eps, and 0)."""
    rng = np.random.default_rng(7)
    taken = 0
    for dtype, shape, reduction, weighted, outs, full, eps, hess in NLL_GRID:
        for var_shape in var_shapes(shape):
            mean = rng.normal(size=shape).astype(dtype)
            target = rng.normal(size=shape).astype(dtype)
            var = rng.choice([0.0, 1e-7, 0.3, 0.5, 2.0, 40.0], var_shape).astype(dtype)
            weight = rng.uniform(0.5, 2, shape[0]) if weighted else None
            if outs != "none" and hess and dtype == np.float32:
                continue        # (the grid is large enough without these)

            def call(function):
                out = np.full(shape, np.nan, dtype) if outs in ("out", "both") else None
                out_var = np.full(var_shape, np.nan, dtype) if outs in ("out_var", "both") \
                    else None
                result = function(mean, target, var, full=full, eps=eps, sample_weight=weight,
                                  reduction=reduction, hess=hess, out=out, out_var=out_var)
                if out is not None:
                    assert result.grad[0] is out
                if out_var is not None:
                    assert result.grad[1] is out_var
                return result

            fast = call(fastloss.gaussian_nll)
            assert not several_fallbacks, (dtype, shape, var_shape, reduction, weighted, outs)
            assert_nll_identical(fast, call(python_nll))
            taken += 1
    assert taken > 1000


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gaussian_nll_fast_path_at_extreme_values(dtype, several_fallbacks):
    big = float(np.finfo(dtype).max) / 10
    values = np.array([0.0, -0.0, 1e-4, 1e4, -1e4, big, -big, np.inf, -np.inf, np.nan],
                      dtype)
    mean, target = np.meshgrid(values, values)
    var = np.resize(np.array([0.0, 1e-30, 1e-6, 1.0, 1e4, big, np.inf, np.nan], dtype),
                    mean.shape).astype(dtype)
    for reduction in ("mean", "sum", "none"):
        for grad, hess in ((True, False), (False, False), (True, True)):
            with np.errstate(all="ignore"):
                fast = fastloss.gaussian_nll(mean, target, var, reduction=reduction,
                                             grad=grad, hess=hess)
                slow = python_nll(mean, target, var, reduction=reduction, grad=grad,
                                  hess=hess)
            assert_nll_identical(fast, slow)
    assert not several_fallbacks


def _nll_fallback_cases():
    rng = np.random.default_rng(8)
    m, t = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    v = rng.uniform(0.5, 2, (6, 4))
    m1, t1, v1 = m[:, 0].copy(), t[:, 0].copy(), v[:, 0].copy()
    read_only = np.empty((6, 4))
    read_only.flags.writeable = False
    return {
        # the broadcasts read expanded, their gradient summed in Python
        "var (1, K)": ((m, t, v[:1].copy()), {}),
        "var () for (N,)": ((m1, t1, np.array(1.5)), {}),
        "var (1,) for (N,)": ((m1, t1, np.array([1.5])), {}),
        "var () for (N, K)": ((m, t, np.array(1.5)), {}),
        # conversions
        "list var": ((m, t, v.tolist()), {}),
        "float32 var": ((m, t, v.astype(np.float32)), {}),
        "int var": ((m, t, np.ones((6, 4), int)), {}),
        "non-contiguous var": ((m, t, np.repeat(v, 2, axis=1)[:, ::2]), {}),
        "float32 mean": ((m.astype(np.float32), t, v), {}),
        "numpy float eps": ((m, t, v), {"eps": np.float64(1e-3)}),
        "int eps": ((m, t, v), {"eps": 0}),
        "numpy bool full": ((m, t, v), {"full": np.True_}),
        "n_threads numpy int": ((m, t, v), {"n_threads": np.int64(1)}),
        "empty": ((m[:0], t[:0], v[:0]), {}),
        "zero weights, mean": ((m, t, v), {"sample_weight": np.zeros(6)}),
        # in place (the checked values are scanned before the kernel writes)
        "out is mean": (("mean", t, v), {"out": "mean"}),
        "out_var is var": ((m, t, "var"), {"out_var": "var"}),
        "out is var": ((m, t, "var"), {"out": "var"}),
        "out_var is out": ((m, t, v), {"out": "shared", "out_var": "shared"}),
        "out_var is the target": ((m, "target", v), {"out_var": "target"}),
        # errors
        "negative eps": ((m, t, v), {"eps": -1.0}),
        "NaN eps": ((m, t, v), {"eps": float("nan")}),
        "string eps": ((m, t, v), {"eps": "0.1"}),
        "full=1": ((m, t, v), {"full": 1}),
        "var of another shape": ((m, t, v[:, :3].copy()), {}),
        "var (N, 2)": ((m, t, v[:, :2].copy()), {}),
        "var (K,)": ((m, t, v[0].copy()), {}),
        "var 3-D": ((m, t, v.reshape(6, 4, 1)), {}),
        "target of another shape": ((m, t[:3], v), {}),
        "mismatched dtypes": ((m, t.astype(np.float32), v), {}),
        "3-D mean": ((m.reshape(2, 3, 4), t.reshape(2, 3, 4), v.reshape(2, 3, 4)), {}),
        "out_var of another shape": ((m, t, v), {"out_var": np.empty((6, 3))}),
        "out_var of another dtype": ((m, t, v), {"out_var": np.empty((6, 4), np.float32)}),
        "read-only out_var": ((m, t, v), {"out_var": read_only}),
        "out_var with grad=False": ((m, t, v), {"out_var": np.empty((6, 4)), "grad": False}),
        "out with grad=False": ((m, t, v), {"out": np.empty((6, 4)), "grad": False}),
        "hess with grad=False": ((m, t, v), {"hess": True, "grad": False}),
        "hess=1": ((m, t, v), {"hess": 1}),
        "bad reduction": ((m, t, v), {"reduction": "avg"}),
        "n_threads=0": ((m, t, v), {"n_threads": 0}),
        "weights of another shape": ((m, t, v), {"sample_weight": np.ones(4)}),
        "negative var, in place": (("mean", t, np.where(v > 1, -v, v)), {"out": "mean"}),
        "NaN weight, out_var is var": ((m, t, "var"), {"out_var": "var",
                                                      "sample_weight": np.r_[1.0, np.nan,
                                                                             1, 1, 1, 1]}),
    }


NLL_FALLBACK_CASES = _nll_fallback_cases()


@pytest.mark.parametrize("case", sorted(NLL_FALLBACK_CASES))
def test_gaussian_nll_fallbacks(case, several_fallbacks):
    """Each call goes to the Python path, and fails or succeeds exactly as that path does,
    leaving the inputs as that path leaves them."""
    inputs, kwargs = NLL_FALLBACK_CASES[case]
    rng = np.random.default_rng(9)

    def call(function):
        m, t, v = (x if not isinstance(x, str) else rng.uniform(0.5, 2, (6, 4)) if x == "var"
                   else rng.normal(size=(6, 4)) for x in inputs)
        named = {"mean": m, "target": t, "var": v, "shared": np.empty((6, 4))}
        options = {key: named[value] if isinstance(value, str) and value in named else value
                   for key, value in kwargs.items()}
        try:
            result = function(m, t, v, **options)
        except (TypeError, ValueError) as error:
            result = (type(error), str(error))
        return result, [np.array(x, copy=True) for x in (m, t, v)]

    state = rng.bit_generator.state
    fast_result, fast_inputs = call(fastloss.gaussian_nll)
    assert len(several_fallbacks) == 1, case
    rng.bit_generator.state = state
    slow_result, slow_inputs = call(python_nll)
    if isinstance(slow_result, tuple) and isinstance(slow_result[0], type):
        assert fast_result == slow_result
    else:
        assert_nll_identical(fast_result, slow_result)
    for x, y in zip(fast_inputs, slow_inputs):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("var_shape", [(6, 4), (6,), (6, 1)])
@pytest.mark.parametrize("bad", [-1.0, -1e-30, float("-inf")])
@pytest.mark.parametrize("out_kind", ["none", "out", "out_var"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gaussian_nll_bad_var_raises_the_python_paths_error(var_shape, bad, out_kind, dtype,
                                                            several_fallbacks):
    """A negative var, found by the kernel's pass: the Python path's message (naming
    its position), the inputs untouched."""
    rng = np.random.default_rng(10)
    mean = rng.normal(size=(6, 4)).astype(dtype)
    target = rng.normal(size=(6, 4)).astype(dtype)
    var = rng.uniform(0.5, 2, var_shape).astype(dtype)
    var.flat[var.size // 2 + 1] = bad
    copies = [x.copy() for x in (mean, target, var)]
    outs = {"out": np.empty((6, 4), dtype)} if out_kind == "out" else \
        {"out_var": np.empty(var_shape, dtype)} if out_kind == "out_var" else {}
    with pytest.raises(ValueError) as fast:
        fastloss.gaussian_nll(mean, target, var, **outs)
    assert not several_fallbacks
    with pytest.raises(ValueError) as slow:
        python_nll(mean, target, var, **{key: value.copy() for key, value in outs.items()})
    assert str(fast.value) == str(slow.value) and "var" in str(fast.value)
    for x, copy in zip((mean, target, var), copies):
        np.testing.assert_array_equal(x, copy)


@pytest.mark.parametrize("weight", [[1.0, float("nan"), 1.0], [1.0, 1.0, float("inf")]])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gaussian_nll_bad_weights_raise_the_python_paths_error(weight, reduction,
                                                               several_fallbacks):
    mean, target, var, weight = np.zeros((3, 2)), np.ones((3, 2)), np.ones(3), np.array(weight)
    with pytest.raises(ValueError) as fast:
        fastloss.gaussian_nll(mean, target, var, sample_weight=weight, reduction=reduction)
    assert not several_fallbacks
    with pytest.raises(ValueError) as slow:
        python_nll(mean, target, var, sample_weight=weight, reduction=reduction)
    assert str(fast.value) == str(slow.value)


@pytest.mark.parametrize("shape", [(10,), (5000,), (40000,), (3, 4), (300, 20)])
@pytest.mark.parametrize("var_kind", ["same", "per row"])
def test_gaussian_nll_entry_agrees_with_the_def_kernel(shape, var_kind, several_fallbacks):
    """The entry path (a flat call within one chunk; with the GIL released from 4096
    elements; beyond one chunk, per-row var and hess the def kernel) and the Python
    path, bit for bit, with out and out_var."""
    if var_kind == "per row" and len(shape) == 1:
        pytest.skip("one value per row needs a 2-D mean")
    rng = np.random.default_rng(shape[0] + len(shape))
    var_shape = shape if var_kind == "same" else shape[:1]
    for dtype, reduction, weighted, full, hess in itertools.product(
            (np.float32, np.float64), ("mean", "sum", "none"), (False, True), (False, True),
            (False, True)):
        mean = rng.normal(size=shape).astype(dtype)
        target = rng.normal(size=shape).astype(dtype)
        var = rng.uniform(0, 2, var_shape).astype(dtype)
        weight = rng.uniform(0.5, 2, shape[0]) if weighted else None
        kwargs = dict(full=full, sample_weight=weight, reduction=reduction, hess=hess)
        fast = fastloss.gaussian_nll(mean, target, var, out=np.empty(shape, dtype),
                                     out_var=np.empty(var_shape, dtype), **kwargs)
        assert_nll_identical(fast, python_nll(mean, target, var, **kwargs))
    assert not several_fallbacks


def test_gaussian_nll_entry_and_def_kernel_give_the_same_bits(without_entries,
                                                              several_fallbacks):
    rng = np.random.default_rng(12)
    for dtype in (np.float32, np.float64):
        mean, target = rng.normal(size=(2, 33)).astype(dtype)
        var = rng.uniform(0, 2, 33).astype(dtype)
        for kwargs in ({}, {"reduction": "none", "full": True}, {"eps": 0.5},
                       {"sample_weight": rng.uniform(0.5, 2, 33), "reduction": "sum"}):
            without = fastloss.gaussian_nll(mean, target, var, **kwargs)
            _fastpath.bind_elementwise_entries(_elementwise._elementwise_kernels.ENTRIES)
            try:
                assert_nll_identical(fastloss.gaussian_nll(mean, target, var, **kwargs),
                                     without)
            finally:
                _fastpath.bind_elementwise_entries({})
    assert not several_fallbacks
