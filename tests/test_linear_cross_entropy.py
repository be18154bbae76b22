"""linear_cross_entropy: the chunked output layer against the unfused path.

The unfused path is ``softmax_cross_entropy(hidden @ weight.T + bias, ...)``
of the same module, its gradient G taken back by G @ weight, G.T @ hidden and
the column sums of G.  Every option, reduction and chunk size must give its
results (float64 to 1e-10 relative); the reference is also checked against
finite differences, and the fast function's peak memory against its budget.
"""
import doctest
import itertools

import numpy as np
import pytest

import fastloss
import fastloss._linear_cross_entropy as fused
import fastloss.reference as reference
from fastloss._linear_cross_entropy import default_chunk_rows
from helpers import assert_unchanged, finite_difference_gradient, peak_bytes, snapshot

MODULES = pytest.mark.parametrize("module", ["fast", "fast-numpy", "reference"], indirect=True)
REDUCTIONS = ["mean", "sum", "none"]
N_ROWS, N_FEATURES, N_CLASSES = 37, 5, 11
CHUNK_ROWS = [None, 1, 7, N_ROWS, N_ROWS + 5]
# (z_loss, softcap): neither, each alone, both (the cap of 2.5 bends most logits)
EXTRAS = [(0.0, None), (0.01, None), (0.0, 2.5), (0.01, 2.5)]


def hide_scipy(monkeypatch):
    """Make the fast function take NumPy's path, as if SciPy were not installed."""
    monkeypatch.setattr(fused, "scipy_gemm", lambda dtype: None)


@pytest.fixture
def module(request, monkeypatch):
    """fastloss (products by SciPy's gemm when installed), fastloss on NumPy's path, or
    the reference."""
    if request.param == "fast-numpy":
        hide_scipy(monkeypatch)
    return reference if request.param == "reference" else fastloss


@pytest.fixture(params=["scipy", "numpy"])
def products(request, monkeypatch):
    """The fast function's products: SciPy's gemm (when installed) or NumPy's matmul."""
    if request.param == "scipy" and fused.scipy_gemm(np.float64) is None:
        pytest.skip("SciPy is not installed")
    if request.param == "numpy":
        hide_scipy(monkeypatch)
    return request.param


def make_inputs(dtype=np.float64, n_rows=N_ROWS, n_features=N_FEATURES, n_classes=N_CLASSES,
                seed=0):
    rng = np.random.default_rng(seed)
    hidden = rng.standard_normal((n_rows, n_features)).astype(dtype)
    weight = rng.standard_normal((n_classes, n_features)).astype(dtype)
    bias = rng.standard_normal(n_classes).astype(dtype)
    labels = rng.integers(0, n_classes, n_rows)
    return hidden, weight, bias, labels


def unfused(module, hidden, weight, target, bias=None, grad=True, **options):
    """The loss and gradients by the whole (N, V) logits (the semantics to match)."""
    logits = hidden @ weight.T
    if bias is not None:
        logits = logits + bias
    loss, g = module.softmax_cross_entropy(logits, target, grad=grad, **options)
    if not grad:
        return loss, None, None, None
    grad_bias = None if bias is None else np.sum(g, axis=0, dtype=np.float64).astype(g.dtype)
    return loss, g @ weight, g.T @ hidden, grad_bias


def relative_difference(actual, expected):
    """max |actual - expected| / max |expected| (NaN where both are NaN counts as equal)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    same = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
    scale = np.max(np.abs(expected[np.isfinite(expected)]), initial=0.0)
    if same.all():
        return 0.0
    return float(np.max(np.abs(actual - expected)[~same]) / max(scale, np.finfo(float).tiny))


def assert_results_match(actual, expected, rtol):
    assert len(actual) == 4
    for name, a, e in zip(("loss", "grad_hidden", "grad_weight", "grad_bias"), actual,
                          expected):
        if e is None:
            assert a is None, name
            continue
        assert a is not None, name
        if isinstance(e, np.ndarray):
            assert isinstance(a, np.ndarray) and a.dtype == e.dtype, name
            np.testing.assert_allclose(a, e, rtol=rtol,
                                       atol=rtol * np.max(np.abs(e), initial=1.0),
                                       equal_nan=True, err_msg=name)
        else:
            assert isinstance(a, float), name
            assert a == pytest.approx(e, rel=rtol, abs=1e-300), name


OPTIONS_GRID = list(itertools.product(
    [False, True],               # bias
    [False, True],               # class weights
    [None, 3, -100],             # ignore_index
    [0.0, 0.3],                  # label smoothing
    [False, True],               # sample weights
    EXTRAS,                      # z_loss, softcap
    REDUCTIONS))


def options_of(case, labels, n_classes=N_CLASSES, seed=1):
    """The keyword arguments of one grid case; labels get some ignored rows."""
    with_bias, weighted, ignore_index, smoothing, sample_weighted, extras, reduction = case
    rng = np.random.default_rng(seed)
    labels = labels.copy()
    if ignore_index is not None:
        labels[::4] = ignore_index
    z_loss, softcap = extras
    options = dict(ignore_index=ignore_index, label_smoothing=smoothing, z_loss=z_loss,
                   softcap=softcap, reduction=reduction)
    if weighted:
        options["class_weight"] = rng.uniform(0.25, 2.0, n_classes)
    if sample_weighted:
        # negative weights are allowed (as in scikit-learn), zero ones too
        options["sample_weight"] = rng.uniform(-0.5, 2.0, labels.shape[0])
    return with_bias, labels, options


@MODULES
@pytest.mark.parametrize("case", OPTIONS_GRID)
def test_every_option_matches_the_unfused_path_float64(module, case):
    hidden, weight, bias, labels = make_inputs()
    with_bias, labels, options = options_of(case, labels)
    bias = bias if with_bias else None
    expected = unfused(module, hidden, weight, labels, bias, **options)
    for chunk_rows in CHUNK_ROWS:
        result = module.linear_cross_entropy(hidden, weight, labels, bias=bias,
                                             chunk_rows=chunk_rows, **options)
        assert type(result).__name__ == "LinearCrossEntropyGrad"
        assert_results_match(result, expected, rtol=1e-10)
        # grad=False: the same loss, no gradients.
        no_grad = module.linear_cross_entropy(hidden, weight, labels, bias=bias, grad=False,
                                              chunk_rows=chunk_rows, **options)
        assert no_grad[1:] == (None, None, None)
        assert_results_match(no_grad, (expected[0], None, None, None), rtol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("block_rows", [1, 4, 16, fused.GRAD_HIDDEN_ROWS])
def test_grad_hidden_in_blocks_of_rows(products, monkeypatch, dtype, block_rows):
    # chunks of more rows than a block of grad_hidden, with a partial last block
    monkeypatch.setattr(fused, "GRAD_HIDDEN_ROWS", block_rows)
    n_rows = 2 * block_rows + 3 if block_rows > 1 else N_ROWS
    hidden, weight, bias, labels = make_inputs(dtype, n_rows=n_rows)
    expected = unfused(fastloss, hidden, weight, labels, bias)
    rtol = 1e-10 if dtype == np.float64 else FLOAT32_RTOL
    for chunk_rows in (None, block_rows + 1, n_rows):
        result = fastloss.linear_cross_entropy(hidden, weight, labels, bias=bias,
                                               chunk_rows=chunk_rows)
        assert_results_match(result, expected, rtol=rtol)


# float32: the products round in float32; the chunked products may round
# differently (their sums are split and ordered otherwise).  5e-5 of the
# largest value is about 400 ulp: far above what was measured (about 1e-6),
# far below any semantic error (a wrong scale or a lost row is O(1)).
FLOAT32_RTOL = 5e-5


@MODULES
@pytest.mark.parametrize("case", OPTIONS_GRID[::5])
def test_every_option_matches_the_unfused_path_float32(module, case):
    hidden, weight, bias, labels = make_inputs(np.float32)
    with_bias, labels, options = options_of(case, labels)
    bias = bias if with_bias else None
    expected = unfused(module, hidden, weight, labels, bias, **options)
    for chunk_rows in CHUNK_ROWS:
        result = module.linear_cross_entropy(hidden, weight, labels, bias=bias,
                                             chunk_rows=chunk_rows, **options)
        for actual, wanted in zip(result, expected):
            if wanted is None:
                assert actual is None
                continue
            if isinstance(wanted, np.ndarray):
                assert actual.dtype == np.float32
            assert relative_difference(actual, wanted) <= FLOAT32_RTOL


@MODULES
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("z_loss,softcap", [(0.0, None), (0.05, 1.5)])
def test_gradients_match_finite_differences(module, with_bias, reduction, z_loss, softcap):
    hidden, weight, bias, labels = make_inputs(n_rows=6, n_features=3, n_classes=4)
    labels[1] = -1
    bias = bias if with_bias else None
    options = dict(class_weight=[0.5, 1.0, 1.5, 2.0], ignore_index=-1, label_smoothing=0.2,
                   z_loss=z_loss, softcap=softcap,
                   sample_weight=[1.0, 2.0, 0.5, 0.0, 1.5, 1.0], reduction=reduction,
                   chunk_rows=4)

    def total(h, w, b):
        loss = module.linear_cross_entropy(h, w, labels, bias=b, grad=False, **options).loss
        return float(np.sum(loss))      # "none": the gradient of the sum of the row losses

    result = module.linear_cross_entropy(hidden, weight, labels, bias=bias, **options)
    np.testing.assert_allclose(result.grad_hidden,
                               finite_difference_gradient(lambda h: total(h, weight, bias),
                                                          hidden), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(result.grad_weight,
                               finite_difference_gradient(lambda w: total(hidden, w, bias),
                                                          weight), rtol=1e-7, atol=1e-9)
    if with_bias:
        np.testing.assert_allclose(result.grad_bias,
                                   finite_difference_gradient(lambda b: total(hidden, weight, b),
                                                              bias), rtol=1e-7, atol=1e-9)
    else:
        assert result.grad_bias is None


@MODULES
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_no_rows(module, reduction):
    hidden, weight, bias, _ = make_inputs(n_rows=0)
    labels = np.zeros(0, dtype=np.int64)
    result = module.linear_cross_entropy(hidden, weight, labels, bias=bias, reduction=reduction)
    if reduction == "none":
        assert result.loss.shape == (0,)
    else:
        assert result.loss == 0.0 and isinstance(result.loss, float)
    assert result.grad_hidden.shape == (0, N_FEATURES)
    assert np.array_equal(result.grad_weight, np.zeros_like(weight))
    assert np.array_equal(result.grad_bias, np.zeros_like(bias))


@MODULES
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("chunk_rows", [None, 1, 5])
def test_every_row_ignored(module, reduction, chunk_rows):
    hidden, weight, bias, labels = make_inputs()
    labels[:] = -100
    result = module.linear_cross_entropy(hidden, weight, labels, bias=bias, ignore_index=-100,
                                         reduction=reduction, chunk_rows=chunk_rows)
    assert np.all(np.asarray(result.loss) == 0.0)
    assert not np.isnan(result.loss).any()
    for g, like in zip(result[1:], (hidden, weight, bias)):
        assert g.shape == like.shape and not np.any(g)


@MODULES
def test_zero_total_weight_is_a_zero_mean(module):
    hidden, weight, bias, labels = make_inputs()
    result = module.linear_cross_entropy(hidden, weight, labels, bias=bias,
                                         sample_weight=np.zeros(N_ROWS))
    assert result.loss == 0.0
    assert not any(np.any(g) for g in result[1:])


def test_default_chunk_rule():
    # budget = N V s / 10 + max(V D s - 16 MiB, 0) bytes (s the itemsize);
    # max(budget // (V s), 128) rows, at most 256 MiB and N; below N and from
    # 16 rows, rounded down to a multiple of 16; then shared evenly:
    # ceil(N / ceil(N / rows)) rows per chunk, rounded up to a multiple of 16
    # (when rounded before).  Arguments: N, V, D, s.
    # 52_428_800 + 48_758_784 bytes: 790 rows -> 784 -> 6 chunks: 683 -> 688
    assert default_chunk_rows(4_096, 32_000, 512, 4) == 688
    # 104_857_600 + 245_366_784 bytes: 684 rows; 256 MiB: 524 -> 512 -> 4 chunks
    assert default_chunk_rows(2_048, 128_000, 512, 4) == 512
    # a weight below 16 MiB adds nothing: 409 -> 400 -> 11 chunks: 373 -> 384
    assert default_chunk_rows(4_096, 32_000, 64, 4) == 384
    assert default_chunk_rows(2_048, 128_000, 32, 4) == 192     # 204 -> 192 -> 11: 187 -> 192
    assert default_chunk_rows(32_768, 32_000, 64, 4) == 2_048   # 2_097 (256 MiB) -> 2_096 -> 16
    assert default_chunk_rows(65_536, 32_000, 64, 4) == 2_048   # 2_097 -> 2_096 -> 32 chunks
    assert default_chunk_rows(1_000, 32_000, 64, 4) == 128      # 128 -> 8 chunks: 125 -> 128
    # 12_800_000 + 48_758_784 bytes: 480 rows -> 3 chunks: 334 -> 336
    assert default_chunk_rows(1_000, 32_000, 512, 4) == 336
    assert default_chunk_rows(130, 10, 8, 4) == 80              # 128 -> 2 chunks: 65 -> 80
    assert default_chunk_rows(100, 32_000, 512, 4) == 100       # one chunk: not rounded
    assert default_chunk_rows(65_536, 128_000, 16, 8) == 256    # 262 (256 MiB) -> 256 -> 256
    assert default_chunk_rows(9, 2**24, 1, 4) == 3              # 4 (256 MiB) -> 3 chunks: 3
    assert default_chunk_rows(10, 2**40, 1, 4) == 1
    assert default_chunk_rows(0, 10, 1, 8) == 1
    for n_rows in range(1, 3_000, 7):
        for n_features in (16, 5_000):
            rows = default_chunk_rows(n_rows, 1_000, n_features, 4)
            extra = max(1_000 * n_features * 4 - 16 * 2**20, 0)
            assert rows * 1_000 * 4 <= max(n_rows * 1_000 * 4 // 10 + extra, 128 * 1_000 * 4)
            assert rows <= n_rows
            assert rows == n_rows or rows % 16 == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_peak_memory_is_one_chunk_and_a_small_scratch(dtype, reduction, products):
    n_rows, n_features, n_classes, chunk_rows = 1_000, 16, 2_000, 100
    hidden, weight, bias, labels = make_inputs(dtype, n_rows, n_features, n_classes)
    itemsize = np.dtype(dtype).itemsize
    peak, result = peak_bytes(lambda: fastloss.linear_cross_entropy(
        hidden, weight, labels, bias=bias, reduction=reduction, chunk_rows=chunk_rows))
    returned = sum(a.nbytes for a in result if isinstance(a, np.ndarray))
    budget = (chunk_rows * n_classes * itemsize     # the chunk buffer
              + min(n_classes * n_features * itemsize, fused.SCRATCH_BYTES)  # its scratch
              + n_features * chunk_rows * itemsize  # grad_hidden's transposed chunk
              + n_classes * 8 * 2                   # float64 grad_bias sum and chunk sums
              + n_rows * 8                          # the per-row weights of "mean"
              + 64 * 1024)                          # Python objects, small arrays
    if dtype == np.float32:
        # NumPy's buffer for the float32 -> float64 cast of the bias sum
        # (np.getbufsize() elements each way; NumPy before 2.3 allocates it per call)
        budget += np.getbufsize() * (8 + itemsize)
    assert peak - returned <= budget
    # The (N, V) logits would be 6 to 8 times the budget.
    assert n_rows * n_classes * itemsize > 6 * budget


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_scratch_of_a_large_weight_is_small(dtype, products):
    # a weight of 20 or 41 MB: the accumulation of grad_weight goes through
    # blocks of 16 MiB (without SciPy; none with it), not a weight-sized array
    n_rows, n_features, n_classes, chunk_rows = 300, 128, 40_000, 50
    hidden, weight, bias, labels = make_inputs(dtype, n_rows, n_features, n_classes)
    assert weight.nbytes > fused.SCRATCH_BYTES
    itemsize = np.dtype(dtype).itemsize
    peak, result = peak_bytes(lambda: fastloss.linear_cross_entropy(
        hidden, weight, labels, bias=bias, chunk_rows=chunk_rows))
    returned = sum(a.nbytes for a in result if isinstance(a, np.ndarray))
    budget = (chunk_rows * n_classes * itemsize     # the chunk buffer
              + fused.SCRATCH_BYTES                 # grad_weight's scratch
              + n_features * chunk_rows * itemsize  # grad_hidden's transposed chunk
              + n_classes * 8 * 2                   # float64 grad_bias sum and chunk sums
              + n_rows * 8                          # the per-row weights of "mean"
              + 64 * 1024                           # Python objects, small arrays
              + np.getbufsize() * (8 + itemsize))   # NumPy's cast buffer (float32)
    assert peak - returned <= budget
    assert budget < chunk_rows * n_classes * itemsize + weight.nbytes


def test_no_gradient_work_with_grad_false():
    n_rows, n_features, n_classes, chunk_rows = 1_000, 16, 2_000, 100
    hidden, weight, bias, labels = make_inputs(np.float32, n_rows, n_features, n_classes)
    peak, result = peak_bytes(lambda: fastloss.linear_cross_entropy(
        hidden, weight, labels, bias=bias, grad=False, chunk_rows=chunk_rows))
    assert result[1:] == (None, None, None)
    # no gradient arrays, no scratch: the chunk buffer only
    assert peak <= chunk_rows * n_classes * 4 + 64 * 1024


@MODULES
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("z_loss,softcap", EXTRAS)
def test_extreme_logits_match_the_unfused_path(module, dtype, z_loss, softcap):
    # D = 1 and hidden = 1: the logits are exactly the weight's column.
    big = 3e38 if dtype == np.float32 else 1e300
    weight = np.array([[1e4], [-1e4], [big], [-big], [0.0], [np.inf], [-np.inf]], dtype)
    hidden = np.array([[1.0], [0.5], [-1.0], [np.nan], [1e-30]], dtype)
    labels = np.array([0, 2, 3, 4, 6])
    with np.errstate(all="ignore"):
        for reduction in REDUCTIONS:
            expected = unfused(module, hidden, weight, labels, reduction=reduction,
                               z_loss=z_loss, softcap=softcap)
            for chunk_rows in (1, 2, None):
                result = module.linear_cross_entropy(hidden, weight, labels,
                                                     reduction=reduction, z_loss=z_loss,
                                                     softcap=softcap, chunk_rows=chunk_rows)
                for actual, wanted in zip(result[:3], expected[:3]):
                    np.testing.assert_array_equal(np.isnan(actual), np.isnan(wanted))
                    np.testing.assert_allclose(actual, wanted, rtol=1e-6)
    # NaN in one row of hidden stays in that row's loss
    result = module.linear_cross_entropy(hidden[2:4], weight[:5], labels[2:4] % 5,
                                         reduction="none", z_loss=z_loss, softcap=softcap)
    assert np.isnan(result.loss[1]) and not np.isnan(result.loss[0])
    # (with a z-loss that row's lse^2, about (3e38)^2 unless capped, is inf)
    assert np.isfinite(result.loss[0]) or (z_loss > 0 and softcap is None)


@MODULES
def test_inputs_are_not_modified_and_any_layout_works(module):
    hidden, weight, bias, labels = make_inputs()
    sample_weight, class_weight = np.linspace(0.5, 1.5, N_ROWS), np.linspace(1, 2, N_CLASSES)
    # non-contiguous, read-only views
    hidden_view = np.asfortranarray(hidden)[:, :]
    weight_view = np.repeat(weight, 2, axis=1)[:, ::2]
    for arr in (hidden_view, weight_view):
        arr.flags.writeable = False
    originals = snapshot(hidden_view, weight_view, bias, labels, sample_weight, class_weight)
    result = module.linear_cross_entropy(hidden_view, weight_view, labels, bias=bias,
                                         sample_weight=sample_weight,
                                         class_weight=class_weight, chunk_rows=5)
    assert_unchanged(originals, [hidden_view, weight_view, bias, labels, sample_weight,
                                 class_weight])
    expected = unfused(module, hidden, weight, labels, bias, sample_weight=sample_weight,
                       class_weight=class_weight)
    assert_results_match(result, expected, rtol=1e-10)


@MODULES
def test_dtype_rules(module):
    hidden, weight, bias, labels = make_inputs(np.float32)
    assert module.linear_cross_entropy(hidden, weight, labels, bias=bias).grad_hidden.dtype \
        == np.float32
    mixed = module.linear_cross_entropy(hidden, weight.astype(np.float64), labels, bias=bias)
    assert all(g.dtype == np.float64 for g in mixed[1:])
    ints = module.linear_cross_entropy(np.ones((3, 2), int), np.eye(4, 2, dtype=int),
                                       [0, 1, 3], bias=np.zeros(4, np.float32))
    assert all(g.dtype == np.float64 for g in ints[1:])
    # labels of any integer dtype
    small = module.linear_cross_entropy(hidden, weight, labels.astype(np.uint8), bias=bias)
    assert small.loss == module.linear_cross_entropy(hidden, weight, labels, bias=bias).loss


def test_thread_counts_agree(products):
    hidden, weight, bias, labels = make_inputs(n_rows=600, n_features=40, n_classes=300)
    results = [fastloss.linear_cross_entropy(hidden, weight, labels, bias=bias, n_threads=n,
                                             chunk_rows=128)
               for n in (None, 1, 2)]
    for other in results[1:]:
        assert_results_match(other, results[0], rtol=1e-12)


GOOD = make_inputs()
BAD_INPUTS = [
    # (arguments, keyword arguments, error, fragments of the message)
    ((GOOD[0][0], GOOD[1], GOOD[3][:1]), {}, ValueError, ["hidden", "2-D"]),
    ((GOOD[0], GOOD[1][0], GOOD[3]), {}, ValueError, ["weight", "2-D"]),
    ((GOOD[0], GOOD[1][:, :3], GOOD[3]), {}, ValueError, ["hidden.shape=(37, 5)",
                                                         "weight.shape=(11, 3)"]),
    ((GOOD[0], GOOD[1], GOOD[3]), {"bias": GOOD[2][:4]}, ValueError, ["bias", "(11,)"]),
    ((GOOD[0], GOOD[1], GOOD[3][:5]), {}, ValueError, ["target", "(37,)"]),
    ((GOOD[0], GOOD[1], np.zeros((37, 11), int)), {}, ValueError, ["target", "(37,)"]),
    ((GOOD[0], GOOD[1], np.where(np.arange(37) == 9, 11, GOOD[3])), {}, ValueError,
     ["target[9] = 11"]),
    ((GOOD[0], GOOD[1], np.where(np.arange(37) == 4, -1, GOOD[3])), {"ignore_index": -100},
     ValueError, ["target[4] = -1"]),
    ((GOOD[0], GOOD[1], GOOD[3].astype(float)), {}, TypeError, ["integer"]),
    ((GOOD[0].astype(str), GOOD[1], GOOD[3]), {}, TypeError, ["hidden"]),
    ((GOOD[0], GOOD[1].astype(complex), GOOD[3]), {}, TypeError, ["weight"]),
    ((GOOD[0], GOOD[1], GOOD[3]), {"sample_weight": np.ones(36)}, ValueError,
     ["sample_weight"]),
    ((GOOD[0], GOOD[1], GOOD[3]), {"sample_weight": np.where(np.arange(37) == 2, np.nan, 1)},
     ValueError, ["sample_weight[2] = nan"]),
    ((GOOD[0], GOOD[1], GOOD[3]), {"class_weight": np.ones(10)}, ValueError, ["class_weight"]),
    ((GOOD[0], GOOD[1], GOOD[3]), {"class_weight": np.full(11, np.inf)}, ValueError,
     ["class_weight[0] = inf"]),
    ((GOOD[0], GOOD[1], GOOD[3]), {"reduction": "avg"}, ValueError, ["reduction"]),
    ((GOOD[0], GOOD[1], GOOD[3]), {"label_smoothing": 1.5}, ValueError, ["label_smoothing"]),
    ((GOOD[0], GOOD[1], GOOD[3]), {"chunk_rows": 0}, ValueError, ["chunk_rows"]),
    ((GOOD[0], GOOD[1], GOOD[3]), {"chunk_rows": 2.5}, TypeError, ["chunk_rows"]),
    ((GOOD[0], GOOD[1], GOOD[3]), {"n_threads": 0}, ValueError, ["n_threads"]),
    ((GOOD[0], GOOD[1], GOOD[3]), {"grad": "yes"}, TypeError, ["grad"]),
    ((GOOD[0], GOOD[1], GOOD[3]), {"z_loss": -1e-4}, ValueError, ["z_loss"]),
    ((GOOD[0], GOOD[1], GOOD[3]), {"z_loss": np.nan}, ValueError, ["z_loss"]),
    ((GOOD[0], GOOD[1], GOOD[3]), {"softcap": 0.0}, ValueError, ["softcap"]),
    ((GOOD[0], GOOD[1], GOOD[3]), {"softcap": -30.0}, ValueError, ["softcap"]),
    ((GOOD[0], GOOD[1], GOOD[3]), {"softcap": "30"}, TypeError, ["softcap"]),
]


@MODULES
@pytest.mark.parametrize("args,kwargs,error,fragments", BAD_INPUTS)
def test_bad_input_raises_and_touches_nothing(module, args, kwargs, error, fragments):
    originals = snapshot(*args)
    with pytest.raises(error) as info:
        module.linear_cross_entropy(*args, **kwargs)
    for fragment in fragments:
        assert fragment in str(info.value)
    assert_unchanged(originals, args)


def test_fast_and_reference_export_it():
    for module in (fastloss, reference):
        assert "linear_cross_entropy" in module.__all__
        assert "LinearCrossEntropyGrad" in module.__all__
    assert fastloss.linear_cross_entropy.__doc__ == reference.linear_cross_entropy.__doc__


def test_docstring_example_runs():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()
    for test in finder.find(reference.linear_cross_entropy, "linear_cross_entropy"):
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
    assert runner.summarize(verbose=False).attempted >= 4


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_degenerate_shapes_match_the_reference(reduction, products):
    # no classes (every row ignored), and no features (the logits are the bias)
    cases = [(np.ones((3, 2)), np.ones((0, 2)), [-1, -1, -1], np.ones(0)),
             (np.ones((3, 0)), np.ones((4, 0)), [0, 1, 3], np.arange(4.0))]
    for hidden, weight, labels, bias in cases:
        results = [module.linear_cross_entropy(hidden, weight, labels, bias=bias,
                                               ignore_index=-1, reduction=reduction,
                                               chunk_rows=2)
                   for module in (fastloss, reference)]
        assert_results_match(results[0], results[1], rtol=1e-12)


def test_products_path_follows_scipy(products):
    # SciPy's gemm when installed (and no dimension is zero), NumPy's matmul otherwise
    weight = np.ones((3, 2))
    chosen = fused.make_products(weight, None)
    expected = fused.ScipyProducts if products == "scipy" else fused.NumpyProducts
    assert type(chosen) is expected
    assert type(fused.make_products(np.ones((0, 2)), None)) is fused.NumpyProducts
    assert type(fused.make_products(np.ones((3, 0)), None)) is fused.NumpyProducts


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_gemm_that_copies_its_output_still_fills_it(dtype):
    # the products write through gemm's in-place c; should f2py ever return a
    # copy instead, the result is copied back
    gemm = fused.scipy_gemm(dtype)
    if gemm is None:
        pytest.skip("SciPy is not installed")

    def copying_gemm(*args, **kwargs):
        result = gemm(*args, **{**kwargs, "overwrite_c": 0})
        assert not np.shares_memory(result, kwargs["c"])
        return result

    hidden, weight, bias, labels = make_inputs(dtype)
    prep = fused.prepare_linear(hidden, weight, labels, bias, None, None, 0.0, 0.0, None, None,
                                "sum", True, 7, None)
    result = fused.run_chunks(prep, fused.ScipyProducts(prep.weight, None, copying_gemm))
    expected = unfused(fastloss, hidden, weight, labels, bias, reduction="sum")
    assert_results_match(result, expected, rtol=1e-10 if dtype == np.float64 else 1e-4)


def _kernel_builds():
    """The multiclass kernel modules built here (baseline, and x86-64-v3 if built)."""
    import importlib
    modules = [importlib.import_module("fastloss._multiclass_kernels")]
    try:
        modules.append(importlib.import_module("fastloss._multiclass_kernels_v3"))
    except ImportError:
        pass
    return modules


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 5), (2, 3), (7, 1_000), (192, 4_099), (33, 17),
                                   (0, 4), (3, 0), (0, 0)])
def test_column_sums_are_numpys_float64_sums(dtype, shape):
    """grad_bias's chunk sums: np.sum(g, axis=0, dtype=np.float64) bit for bit, in
    every build, over magnitudes from 1e-30 to 1e30, signed zeros, inf and NaN."""
    rng = np.random.default_rng(sum(shape))
    scale = rng.choice([1e-30, 1.0, 1e10, 1e30, 0.0], size=shape)
    g = (rng.normal(size=shape) * scale).astype(dtype)
    if g.size > 6:
        g.flat[[0, 1, 2]] = [np.inf, np.nan, -0.0]
        if shape[0] > 1:
            g[:, -1] = -0.0                     # NumPy's sum of it is +0.0
    expected = np.sum(g, axis=0, dtype=np.float64)
    for module in _kernel_builds():
        out = np.full(shape[1], 7.0)
        module.column_sums(g, out)
        assert out.tobytes() == expected.tobytes(), module.__name__


def test_column_sums_checks_the_output_length():
    for module in _kernel_builds():
        with pytest.raises(ValueError, match="one element per column"):
            module.column_sums(np.ones((2, 3), np.float32), np.empty(2))
