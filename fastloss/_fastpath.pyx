# cython: language_level=3
"""The compiled call path: the common call's checks at C speed, then the kernel.

Design: a loss call on small arrays is dominated by what happens around the
kernel (issue #14): in Python, the checks of every argument, the views, the
result.  This module takes the common call of a loss -- ndarray inputs that
are already native, aligned, C-contiguous float32/float64 of one dtype and
shape (class labels: C-contiguous ``np.intp``), no weights or float64
C-contiguous (N,) weights, ``out`` None or a valid separate array, loss
parameters that pass their declared rules as they stand -- and checks it
with a few C comparisons, calls the kernel once and builds the result.  A call
within one chunk of the kernel goes to the kernel's pointer-level entry
(``_entries.pxd``: the def kernel's one-chunk loop on the data pointers, read
from the chosen build's ``ENTRIES`` capsules), any other to the def
specialisation.  Every other call, and every call whose arguments it doubts, goes
to the Python path (``fastloss._elementwise.run_python``, the multiclass
public functions' own checks), which stays the reference of the rules: the
fast path raises no error of its own, so every message is that path's.
The errors that only the kernel's pass can see (a bad target, a non-finite
sample weight) are raised by the same functions the Python path calls.

What it needs to know of a loss it reads from the loss's declaration
(:class:`fastloss._registry.Loss`) once, at the first call, into a plan:
the kernel's specialisations, whether the kernel checks the targets, the
number of dimensions, and each parameter's rule (a ``Real``'s bounds, a
strict ``Flag``; any other rule takes only the value None).

Calls it leaves to the Python path: hess=True; an in-place ``out`` (the
targets are then scanned before the kernel writes over the predictions);
``out`` overlapping another input; a "mean" over nothing; empty arrays; any
conversion (lists, other dtypes, non-contiguous or byte-swapped arrays,
subclasses); a label out of range (the Python path names it); any value
that fails or needs converting by its rule.
"""
from libc.math cimport isfinite
cimport numpy as cnp
from cpython.object cimport PyObject, PyTypeObject
from cpython.pycapsule cimport PyCapsule_GetPointer
from fastloss._parallel cimport (CompensatedSum, compensated_add, compensated_result,
                                 plan_chunks)
from fastloss._entries cimport (ENTRY_MAX_VALUES, ElementwiseEntryFloat,
                                ElementwiseEntryDouble, CrossEntropyEntryFloat,
                                CrossEntropyEntryDouble, FL_ELEMENTWISE_ENTRY_FLOAT,
                                FL_ELEMENTWISE_ENTRY_DOUBLE, FL_CROSS_ENTROPY_ENTRY_FLOAT,
                                FL_CROSS_ENTROPY_ENTRY_DOUBLE)

import numpy as np

from fastloss._checks import check_finite as _check_finite
from fastloss._results import LossGrad as _loss_grad

cnp.import_array()

cdef int MAX_THREADS = 2**31 - 1
# A call of at least this many elements releases the GIL around the kernel's entry
# (as the def kernels do for every call); a smaller one takes less time than that.
cdef Py_ssize_t NOGIL_ELEMENTS = 4096

# What the faces bind at import (see bind_elementwise, bind_multiclass).
cdef object _elementwise_fallback = None
cdef object _raise_if_bad = None
cdef dict _elementwise_kernels = None
cdef dict _elementwise_parameters = None
cdef dict _multiclass_kernels = None
cdef dict _elementwise_entries = {}      # the chosen build's ENTRIES (bind_*_entries)
cdef dict _multiclass_entries = {}
cdef object _no_weight = None
cdef object _no_rows_float = None, _no_rows_double = None
cdef dict _elementwise_plans = {}
cdef dict _multiclass_plans = {}

cdef enum ParamKind:
    REAL = 1            # a float within bounds, passed as it is
    FLAG = 2            # True or False
    ONLY_NONE = 3       # None only (passed as 1.0, as _elementwise._call_kernel does)


cdef class _Param:
    cdef ParamKind kind
    cdef bint has_low, has_high, low_open, high_open
    cdef double low, high


cdef class _ElementwisePlan:
    """What a call of one elementwise loss needs from its declaration."""
    cdef object spec
    cdef object kernel_float, kernel_double
    cdef bint checked           # the kernel returns (total, seen)
    cdef bint per_column        # the kernel takes a (K,) array after its parameters
    cdef bint ndim1, ndim2      # the accepted numbers of dimensions
    cdef list params            # one _Param per declared parameter
    cdef ElementwiseEntryFloat entry_float      # the pointer-level entries, or NULL
    cdef ElementwiseEntryDouble entry_double


cdef class _MulticlassPlan:
    """A multiclass loss whose default call the fast path takes (labels, no options)."""
    cdef object spec
    cdef object kernel_float, kernel_double
    cdef tuple defaults         # the declared parameters' defaults, in order
    cdef CrossEntropyEntryFloat entry_float     # the pointer-level entries, or NULL
    cdef CrossEntropyEntryDouble entry_double


cdef _Param _param_rule(object param):
    cdef _Param rule = _Param()
    if param.kind == "real":
        rule.kind = REAL
        rule.has_low = param.low is not None
        rule.has_high = param.high is not None
        rule.low = param.low if rule.has_low else 0.0
        rule.high = param.high if rule.has_high else 0.0
        rule.low_open = param.low_open
        rule.high_open = param.high_open
    elif param.kind == "flag" and param.strict:
        rule.kind = FLAG
    else:
        rule.kind = ONLY_NONE
    return rule


def bind_elementwise(fallback, raise_if_bad, kernels, parameters, no_weight, no_rows):
    """Called once by fastloss._elementwise: the Python path and what the kernel call needs."""
    global _elementwise_fallback, _raise_if_bad, _elementwise_kernels, _elementwise_parameters
    global _no_weight, _no_rows_float, _no_rows_double
    _elementwise_fallback = fallback
    _raise_if_bad = raise_if_bad
    _elementwise_kernels = kernels
    _elementwise_parameters = parameters
    _no_weight = no_weight
    _no_rows_float = no_rows[np.dtype(np.float32)]
    _no_rows_double = no_rows[np.dtype(np.float64)]


def bind_elementwise_entries(entries):
    """Called once by fastloss._elementwise: the chosen build's pointer-level entries
    (its kernel module's ENTRIES, see _entries.pxd), read at each loss's first call."""
    global _elementwise_entries
    _elementwise_entries = dict(entries)
    _elementwise_plans.clear()


def bind_multiclass_entries(entries):
    """Called once by fastloss._multiclass: as bind_elementwise_entries."""
    global _multiclass_entries
    _multiclass_entries = dict(entries)
    _multiclass_plans.clear()


def bind_multiclass(kernels):
    """Called once by fastloss._multiclass: the multiclass kernels' specialisations."""
    global _multiclass_kernels
    _multiclass_kernels = kernels


cdef _ElementwisePlan _elementwise_plan(object spec):
    cdef _ElementwisePlan plan = _ElementwisePlan()
    kernels = _elementwise_kernels[spec.kernel]
    plan.spec = spec
    plan.kernel_float = kernels[np.dtype(np.float32)]
    plan.kernel_double = kernels[np.dtype(np.float64)]
    plan.checked = spec.checked is not None
    names = _elementwise_parameters.get(spec.kernel, ())
    plan.per_column = len(names) > len(spec.params)
    plan.ndim1 = 1 in spec.ndims
    plan.ndim2 = 2 in spec.ndims
    plan.params = [_param_rule(param) for param in spec.params]
    entries = _elementwise_entries.get(spec.kernel)
    # (a per-column parameter: the fast path takes only its scalar, as the entries do)
    if entries is not None and len(plan.params) <= ENTRY_MAX_VALUES:
        plan.entry_float = <ElementwiseEntryFloat>PyCapsule_GetPointer(
            entries[0], FL_ELEMENTWISE_ENTRY_FLOAT)
        plan.entry_double = <ElementwiseEntryDouble>PyCapsule_GetPointer(
            entries[1], FL_ELEMENTWISE_ENTRY_DOUBLE)
    _elementwise_plans[spec] = plan
    return plan


# --- checks of single arguments: True when the fast path may take the argument --------

cdef inline bint _is_float_array(object x):
    """A native, aligned, C-contiguous float32 or float64 ndarray (not a subclass)."""
    if type(x) is not cnp.ndarray:
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>x
    cdef int type_num = cnp.PyArray_TYPE(arr)
    return ((type_num == cnp.NPY_FLOAT or type_num == cnp.NPY_DOUBLE)
            and cnp.PyArray_IS_C_CONTIGUOUS(arr) and cnp.PyArray_ISALIGNED(arr)
            and cnp.PyArray_ISNOTSWAPPED(arr))


cdef inline bint _same_layout(cnp.ndarray a, cnp.ndarray b):
    """b has a's dtype and shape (both already checked by _is_float_array)."""
    cdef int k
    if cnp.PyArray_TYPE(a) != cnp.PyArray_TYPE(b) or cnp.PyArray_NDIM(a) != cnp.PyArray_NDIM(b):
        return False
    for k in range(cnp.PyArray_NDIM(a)):
        if cnp.PyArray_DIM(a, k) != cnp.PyArray_DIM(b, k):
            return False
    return True


cdef inline bint _overlap(cnp.ndarray a, cnp.ndarray b):
    """Whether the memory of two C-contiguous arrays overlaps (np.may_share_memory)."""
    cdef char* a0 = <char*>cnp.PyArray_DATA(a)
    cdef char* b0 = <char*>cnp.PyArray_DATA(b)
    return a0 < b0 + cnp.PyArray_NBYTES(b) and b0 < a0 + cnp.PyArray_NBYTES(a)


cdef inline bint _is_weight(object x, Py_ssize_t n_rows):
    """float64 (n_rows,) native, aligned, C-contiguous weights."""
    if type(x) is not cnp.ndarray:
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>x
    return (cnp.PyArray_TYPE(arr) == cnp.NPY_DOUBLE and cnp.PyArray_NDIM(arr) == 1
            and cnp.PyArray_DIM(arr, 0) == n_rows and cnp.PyArray_IS_C_CONTIGUOUS(arr)
            and cnp.PyArray_ISALIGNED(arr) and cnp.PyArray_ISNOTSWAPPED(arr))


cdef inline bint _is_out(object out, cnp.ndarray pred):
    """out: a writeable ndarray of pred's dtype and shape (the overlaps are checked apart)."""
    if type(out) is not cnp.ndarray:
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>out
    return (cnp.PyArray_IS_C_CONTIGUOUS(arr) and cnp.PyArray_ISALIGNED(arr)
            and cnp.PyArray_ISNOTSWAPPED(arr) and cnp.PyArray_ISWRITEABLE(arr)
            and _same_layout(pred, arr))


cdef inline int _threads(object n_threads):
    """The kernels' thread count (0: the OpenMP default), or -1 to leave the call."""
    if n_threads is None:
        return 0
    if type(n_threads) is not int or n_threads < 1:
        return -1
    return MAX_THREADS if n_threads > MAX_THREADS else <int>n_threads


cdef inline int _reduction(object reduction):
    """0 "mean", 1 "sum", 2 "none", -1 anything else (the Python path's error)."""
    if type(reduction) is not str:
        return -1
    if reduction == "mean":
        return 0
    if reduction == "sum":
        return 1
    if reduction == "none":
        return 2
    return -1


cdef inline bint _param_ok(_Param rule, object value):
    cdef double v
    if rule.kind == REAL:
        if type(value) is not float:
            return False
        v = <double>value
        if not isfinite(v):
            return False
        if rule.has_low and (v <= rule.low if rule.low_open else v < rule.low):
            return False
        if rule.has_high and (v >= rule.high if rule.high_open else v > rule.high):
            return False
        return True
    if rule.kind == FLAG:
        return value is True or value is False
    return value is None


cdef inline object _view(cnp.ndarray arr, Py_ssize_t rows, Py_ssize_t columns):
    """arr as a (rows, columns) view (arr itself when it has that shape)."""
    if (cnp.PyArray_NDIM(arr) == 2 and cnp.PyArray_DIM(arr, 0) == rows
            and cnp.PyArray_DIM(arr, 1) == columns):
        return arr
    cdef cnp.npy_intp dims[2]
    dims[0] = rows
    dims[1] = columns
    cdef cnp.PyArray_Dims shape
    shape.ptr = dims
    shape.len = 2
    return cnp.PyArray_Newshape(arr, &shape, cnp.NPY_CORDER)


cdef extern from *:
    """
    /* type(a, b) for a tuple subclass: its own allocation filled in place, as
       tuple.__new__(type, (a, b)) fills it.  A new reference, or NULL. */
    static PyObject* fl_pair_of(PyObject* type, PyObject* a, PyObject* b) {
        PyTypeObject* kind = (PyTypeObject*)type;
        PyObject* pair = kind->tp_alloc(kind, 2);
        if (pair == NULL) return NULL;
        Py_INCREF(a);
        PyTuple_SET_ITEM(pair, 0, a);
        Py_INCREF(b);
        PyTuple_SET_ITEM(pair, 1, b);
        return pair;
    }
    """
    object fl_pair_of(object kind, object a, object b)


cdef inline object _result(object loss, object grad):
    """LossGrad(loss, grad), without the two argument tuples tuple.__new__ would take."""
    return fl_pair_of(_loss_grad, loss, grad)


cdef double _weight_sum(cnp.ndarray weight):
    """sum_i w_i, compensated: the kernels' weight_sum (the same inline maths)."""
    cdef const double* w = <const double*>cnp.PyArray_DATA(weight)
    cdef Py_ssize_t i
    cdef CompensatedSum total = CompensatedSum(0.0, 0.0)
    for i in range(cnp.PyArray_DIM(weight, 0)):
        compensated_add(&total, w[i])
    return compensated_result(total)


# --- the elementwise losses ------------------------------------------------------------

def run_elementwise(spec, pred, target, tuple params, sample_weight, reduction, grad, hess,
                    out, n_threads):
    """fastloss._elementwise.run: the common call here, every other in the Python path."""
    cdef _ElementwisePlan plan = _elementwise_plans.get(spec)
    if plan is None:
        plan = _elementwise_plan(spec)
    cdef int how = _reduction(reduction)
    cdef int threads = _threads(n_threads)
    cdef Py_ssize_t k, n_params = len(params)
    if (how < 0 or threads < 0 or hess is not False or not (grad is True or grad is False)
            or (out is not None and grad is False) or n_params != len(plan.params)
            or not _is_float_array(pred) or not _is_float_array(target)):
        return _elementwise_fallback(spec, pred, target, params, sample_weight, reduction,
                                     grad, hess, out, n_threads)
    cdef cnp.ndarray p = <cnp.ndarray>pred, t = <cnp.ndarray>target
    cdef int ndim = cnp.PyArray_NDIM(p)
    cdef Py_ssize_t n_rows = cnp.PyArray_DIM(p, 0) if ndim >= 1 else 0
    cdef Py_ssize_t row_size = cnp.PyArray_DIM(p, 1) if ndim == 2 else 1
    cdef bint ok = ((ndim == 1 and plan.ndim1) or (ndim == 2 and plan.ndim2)) \
        and _same_layout(p, t) and n_rows > 0 and row_size > 0
    for k in range(n_params):
        ok = ok and _param_ok(<_Param>plan.params[k], params[k])
    if ok and sample_weight is not None:
        ok = _is_weight(sample_weight, n_rows)
    if ok and out is not None:
        ok = _is_out(out, p) and not _overlap(<cnp.ndarray>out, p) \
            and not _overlap(<cnp.ndarray>out, t) \
            and (sample_weight is None or not _overlap(<cnp.ndarray>out, sample_weight))
    if not ok:
        return _elementwise_fallback(spec, pred, target, params, sample_weight, reduction,
                                     grad, hess, out, n_threads)

    cdef double denominator = 1.0, scale = 1.0, total
    if how == 0:
        if sample_weight is None:
            denominator = <double>(n_rows * row_size)
        else:
            denominator = _weight_sum(<cnp.ndarray>sample_weight) * row_size
            if not isfinite(denominator):
                _check_finite(sample_weight, "sample_weight")
        if denominator == 0:        # a mean over nothing: the Python path's empty_mean
            return _elementwise_fallback(spec, pred, target, params, sample_weight,
                                         reduction, grad, hess, out, n_threads)
        scale = 1.0 / denominator
    # one flat loop when nothing depends on the row (as _elementwise._call_kernel)
    cdef Py_ssize_t view_rows = n_rows, view_columns = row_size
    if sample_weight is None:
        view_rows, view_columns = n_rows * row_size, 1
    cdef int type_num = cnp.PyArray_TYPE(p)
    loss_out = cnp.PyArray_EMPTY(ndim, cnp.PyArray_DIMS(p), type_num, 0) if how == 2 else None
    grad_out = None
    if grad is True:
        grad_out = out if out is not None else cnp.PyArray_EMPTY(ndim, cnp.PyArray_DIMS(p),
                                                                 type_num, 0)
    cdef double values[ENTRY_MAX_VALUES]
    cdef int seen_bits = 0
    cdef const double* weight_ptr = NULL
    cdef void* loss_ptr = NULL
    cdef void* grad_ptr = NULL
    cdef const void* p_ptr = cnp.PyArray_DATA(p)
    cdef const void* t_ptr = cnp.PyArray_DATA(t)
    if (view_columns == 1 and plan.entry_float != NULL
            and plan_chunks(view_rows, 1).n_chunks == 1):
        # the kernel's one chunk, called on the data pointers (_entries.pxd)
        for k in range(n_params):
            value = params[k]
            values[k] = 1.0 if value is None else <double>value
        if sample_weight is not None:
            weight_ptr = <const double*>cnp.PyArray_DATA(<cnp.ndarray>sample_weight)
        if loss_out is not None:
            loss_ptr = cnp.PyArray_DATA(<cnp.ndarray>loss_out)
        if grad_out is not None:
            grad_ptr = cnp.PyArray_DATA(<cnp.ndarray>grad_out)
        if view_rows < NOGIL_ELEMENTS:
            if type_num == cnp.NPY_FLOAT:
                total = plan.entry_float(<const float*>p_ptr, <const float*>t_ptr, weight_ptr,
                                         view_rows, <float*>loss_ptr, <float*>grad_ptr, scale,
                                         values, &seen_bits)
            else:
                total = plan.entry_double(<const double*>p_ptr, <const double*>t_ptr,
                                          weight_ptr, view_rows, <double*>loss_ptr,
                                          <double*>grad_ptr, scale, values, &seen_bits)
        else:
            with nogil:
                if type_num == cnp.NPY_FLOAT:
                    total = plan.entry_float(<const float*>p_ptr, <const float*>t_ptr,
                                             weight_ptr, view_rows, <float*>loss_ptr,
                                             <float*>grad_ptr, scale, values, &seen_bits)
                else:
                    total = plan.entry_double(<const double*>p_ptr, <const double*>t_ptr,
                                              weight_ptr, view_rows, <double*>loss_ptr,
                                              <double*>grad_ptr, scale, values, &seen_bits)
        if plan.checked and seen_bits:
            _raise_if_bad(spec, target, seen_bits)
        if sample_weight is not None and not isfinite(total):
            _check_finite(sample_weight, "sample_weight")
        return _result(loss_out if how == 2 else total / denominator, grad_out)
    none = _no_rows_float if type_num == cnp.NPY_FLOAT else _no_rows_double
    # the kernel's arguments (see _elementwise._call_kernel)
    cdef tuple arguments = (
        _view(p, view_rows, view_columns), _view(t, view_rows, view_columns),
        _no_weight if sample_weight is None else sample_weight,
        none if loss_out is None else _view(loss_out, view_rows, view_columns),
        none if grad_out is None else _view(grad_out, view_rows, view_columns),
        none, scale, threads)
    if n_params:
        arguments += tuple([1.0 if value is None else value for value in params])
    if plan.per_column:
        arguments += (_no_weight,)
    kernel = plan.kernel_float if type_num == cnp.NPY_FLOAT else plan.kernel_double
    if plan.checked:
        total, seen = kernel(*arguments)
        if seen:
            _raise_if_bad(spec, target, seen)
    else:
        total = kernel(*arguments)
    if sample_weight is not None and not isfinite(total):
        _check_finite(sample_weight, "sample_weight")
    # (a reduced loss: one rounding, where total * scale would be two)
    return _result(loss_out if how == 2 else total / denominator, grad_out)


# --- the multiclass losses --------------------------------------------------------------

cdef _MulticlassPlan _multiclass_plan(object spec):
    cdef _MulticlassPlan plan = _MulticlassPlan()
    plan.spec = spec
    plan.defaults = tuple(param.default for param in spec.params)
    # the kernels whose default call with labels is written out below
    if spec.kernel == "softmax_cross_entropy":
        kernels = _multiclass_kernels[spec.kernel]
        plan.kernel_float = kernels[np.dtype(np.float32)]
        plan.kernel_double = kernels[np.dtype(np.float64)]
        entries = _multiclass_entries.get(spec.kernel)
        if entries is not None:
            plan.entry_float = <CrossEntropyEntryFloat>PyCapsule_GetPointer(
                entries[0], FL_CROSS_ENTROPY_ENTRY_FLOAT)
            plan.entry_double = <CrossEntropyEntryDouble>PyCapsule_GetPointer(
                entries[1], FL_CROSS_ENTROPY_ENTRY_DOUBLE)
    _multiclass_plans[spec] = plan
    return plan


cdef inline bint _is_default(object value, object default):
    """value is the parameter's declared default (a float default: any float equal to it)."""
    return value is default or (type(default) is float and type(value) is float
                                and <double>value == <double>default)


cdef inline bint _labels_ok(object target, Py_ssize_t n_rows, Py_ssize_t n_classes):
    """target: native C-contiguous np.intp (n_rows,) labels, each in [0, n_classes)."""
    if type(target) is not cnp.ndarray:
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>target
    if not (cnp.PyArray_TYPE(arr) == cnp.NPY_INTP and cnp.PyArray_NDIM(arr) == 1
            and cnp.PyArray_DIM(arr, 0) == n_rows and cnp.PyArray_IS_C_CONTIGUOUS(arr) and cnp.PyArray_ISALIGNED(arr)
            and cnp.PyArray_ISNOTSWAPPED(arr)):
        return False
    cdef const Py_ssize_t* labels = <const Py_ssize_t*>cnp.PyArray_DATA(arr)
    cdef Py_ssize_t i
    cdef bint bad = False
    for i in range(n_rows):     # (an OR-reduction: no branch per label)
        bad |= (labels[i] < 0) | (labels[i] >= n_classes)
    return not bad


def run_multiclass(spec, logits, target, tuple params, sample_weight, reduction, grad, hess,
                   out, n_threads):
    """The default call of a multiclass loss with class labels (every declared parameter
    at its default): its result, or None for a call the public function's own path takes
    (every other call, a label out of range included: that path names it)."""
    cdef _MulticlassPlan plan = _multiclass_plans.get(spec)
    if plan is None:
        plan = _multiclass_plan(spec)
    cdef int how = _reduction(reduction)
    cdef int threads = _threads(n_threads)
    cdef Py_ssize_t k
    if (plan.kernel_float is None or how < 0 or threads < 0 or hess is not False
            or not (grad is True or grad is False) or (out is not None and grad is False)
            or len(params) != len(plan.defaults) or not _is_float_array(logits)):
        return None
    for k in range(len(params)):
        if not _is_default(params[k], plan.defaults[k]):
            return None
    cdef cnp.ndarray x = <cnp.ndarray>logits
    if cnp.PyArray_NDIM(x) != 2:
        return None
    cdef Py_ssize_t n_rows = cnp.PyArray_DIM(x, 0), n_classes = cnp.PyArray_DIM(x, 1)
    if n_rows == 0 or n_classes == 0 or not _labels_ok(target, n_rows, n_classes):
        return None
    if sample_weight is not None and not _is_weight(sample_weight, n_rows):
        return None
    if out is not None and not (
            _is_out(out, x) and not _overlap(<cnp.ndarray>out, x)
            and not _overlap(<cnp.ndarray>out, <cnp.ndarray>target)
            and (sample_weight is None or not _overlap(<cnp.ndarray>out, sample_weight))):
        return None

    cdef double denominator = 1.0, scale = 1.0
    if how == 0:
        if sample_weight is None:
            denominator = <double>n_rows
        else:
            denominator = _weight_sum(<cnp.ndarray>sample_weight)
            if not isfinite(denominator):
                _check_finite(sample_weight, "sample_weight")
        if denominator == 0:        # a mean over nothing: the public path's empty_mean
            return None
        scale = 1.0 / denominator
    cdef int type_num = cnp.PyArray_TYPE(x)
    loss_out = cnp.PyArray_ZEROS(1, cnp.PyArray_DIMS(x), type_num, 0) if how == 2 else None
    grad_out = None
    if grad is True:
        grad_out = out if out is not None else cnp.PyArray_EMPTY(2, cnp.PyArray_DIMS(x),
                                                                 type_num, 0)
    cdef double total
    cdef int status = 0
    cdef const void* x_ptr = cnp.PyArray_DATA(x)
    cdef const Py_ssize_t* labels_ptr = <const Py_ssize_t*>cnp.PyArray_DATA(<cnp.ndarray>target)
    cdef const double* weight_ptr = NULL
    cdef void* loss_ptr = NULL
    cdef void* grad_ptr = NULL
    if plan.entry_float != NULL and plan_chunks(n_rows, n_classes).n_chunks == 1:
        # the kernel's one chunk, called on the data pointers (_entries.pxd)
        if sample_weight is not None:
            weight_ptr = <const double*>cnp.PyArray_DATA(<cnp.ndarray>sample_weight)
        if loss_out is not None:
            loss_ptr = cnp.PyArray_DATA(<cnp.ndarray>loss_out)
        if grad_out is not None:
            grad_ptr = cnp.PyArray_DATA(<cnp.ndarray>grad_out)
        if n_rows * n_classes < NOGIL_ELEMENTS:
            if type_num == cnp.NPY_FLOAT:
                total = plan.entry_float(<const float*>x_ptr, n_rows, n_classes, labels_ptr,
                                         weight_ptr, <float*>loss_ptr, <float*>grad_ptr, scale,
                                         &status)
            else:
                total = plan.entry_double(<const double*>x_ptr, n_rows, n_classes, labels_ptr,
                                          weight_ptr, <double*>loss_ptr, <double*>grad_ptr,
                                          scale, &status)
        else:
            with nogil:
                if type_num == cnp.NPY_FLOAT:
                    total = plan.entry_float(<const float*>x_ptr, n_rows, n_classes,
                                             labels_ptr, weight_ptr, <float*>loss_ptr,
                                             <float*>grad_ptr, scale, &status)
                else:
                    total = plan.entry_double(<const double*>x_ptr, n_rows, n_classes,
                                              labels_ptr, weight_ptr, <double*>loss_ptr,
                                              <double*>grad_ptr, scale, &status)
        if status & 2:      # the kernel's OUT_OF_MEMORY, and its message
            raise MemoryError("softmax_cross_entropy: no memory for a row's scratch")
    else:
        kernel = plan.kernel_float if type_num == cnp.NPY_FLOAT else plan.kernel_double
        # fastloss._multiclass._call_kernel's call with labels and the default options
        total, _ = kernel(x, None, target, sample_weight, None, 0.0, None, 0.0, 0.0, loss_out,
                          grad_out, None, scale, threads)
    if sample_weight is not None and not isfinite(total):
        _check_finite(sample_weight, "sample_weight")
    if how == 2:
        return _result(loss_out, grad_out)
    return _result(total / denominator if how == 0 else total, grad_out)
