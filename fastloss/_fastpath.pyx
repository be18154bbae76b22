# cython: language_level=3
"""The compiled call path: the common call's checks at C speed, then the kernel.

Design: a loss call on small arrays is dominated by what happens around the
kernel (issue #14): in Python, the checks of every argument, the views, the
result.  This module takes the common calls of a loss -- ndarray inputs that
are already native, aligned, C-contiguous float32/float64 of one dtype and
shape (class labels: C-contiguous ``np.intp``), no weights or float64
C-contiguous (N,) weights, ``out`` None or a valid separate array (for
softmax_cross_entropy also the logits themselves), loss parameters that pass
their declared rules as they stand, hess=True where the loss has a Hessian
-- and checks them with a few C comparisons, calls the kernel once and
builds the result.  A call within one chunk of the kernel goes to the
kernel's pointer-level entry (``_entries.pxd``: the def kernel's one-chunk
loop on the data pointers, read from the chosen build's ``ENTRIES``
capsules), any other (and an elementwise call with hess=True) to the def
specialisation.  Every other call, and every call whose arguments it doubts,
goes to the Python path (``fastloss._elementwise.run_python``, the
multiclass public functions' own checks), which stays the reference of the
rules: the fast path raises no error of its own, so every message is that
path's.  The errors that only the kernel's pass can see (a bad target or
class label, a non-finite sample weight) are raised by the same functions
the Python path calls: a label is checked by the kernel before it is read
with, in the same pass, never in a scan of its own (except in place, where
the logits must stay untouched, and for a "mean" with class weights, whose
divisor reads w_{y_i}: there in the divisor's pass).

What it needs to know of a loss it reads from the loss's declaration
(:class:`fastloss._registry.Loss`) once, at the first call, into a plan:
the kernel's specialisations, whether the kernel checks the targets, the
number of dimensions, whether it has a Hessian, and each parameter's rule
(a ``Real``'s bounds, a strict ``Flag``; any other rule takes only the
value None; softmax_cross_entropy's class weights (finite float64 (C,)
C-contiguous) and ignore_index (an int) are checked as such).

Calls it leaves to the Python path: an elementwise in-place ``out`` (the
targets are then scanned before the kernel writes over the predictions);
``out`` overlapping another input; a "mean" over nothing; empty arrays; any
conversion (lists, other dtypes, non-contiguous or byte-swapped arrays,
subclasses, numpy scalars as parameters); probability targets; a bad label
found before any write (in place; a "mean" with class weights: the Python
path names it); any value that fails or needs converting by its rule.
"""
from libc.math cimport isfinite
cimport numpy as cnp
from cpython.object cimport PyObject, PyTypeObject
from cpython.pycapsule cimport PyCapsule_GetPointer
from fastloss._parallel cimport (CompensatedSum, compensated_add, compensated_result,
                                 plan_chunks)
from fastloss._calls cimport reduction_code, label_weight_total
from fastloss._entries cimport (ENTRY_MAX_VALUES, ENTRY_OUT_OF_MEMORY, ENTRY_BAD_LABELS,
                                ElementwiseEntryFloat, ElementwiseEntryDouble,
                                SeveralEntryFloat, SeveralEntryDouble, FL_SEVERAL_ENTRY_FLOAT,
                                FL_SEVERAL_ENTRY_DOUBLE,
                                CrossEntropyOptions, CrossEntropyOptionsEntryFloat,
                                CrossEntropyOptionsEntryDouble, FL_ELEMENTWISE_ENTRY_FLOAT,
                                FL_ELEMENTWISE_ENTRY_DOUBLE,
                                FL_CROSS_ENTROPY_OPTIONS_ENTRY_FLOAT,
                                FL_CROSS_ENTROPY_OPTIONS_ENTRY_DOUBLE)

import numpy as np

from fastloss._checks import check_finite as _check_finite
from fastloss._results import LossGrad as _loss_grad, LossGradHess as _loss_grad_hess

cnp.import_array()

cdef int MAX_THREADS = 2**31 - 1
# A call of at least this many elements releases the GIL around the kernel's entry
# (as the def kernels do for every call); a smaller one takes less time than that.
cdef Py_ssize_t NOGIL_ELEMENTS = 4096

# What the faces bind at import (see bind_elementwise, bind_multiclass).
cdef object _elementwise_fallback = None
cdef object _several_fallback = None
cdef object _raise_if_bad = None
cdef dict _elementwise_kernels = None
cdef dict _elementwise_parameters = None
cdef dict _multiclass_kernels = None
cdef object _raise_bad_labels = None
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
    cdef bint has_hess          # the loss has a Hessian (hess=True)
    cdef bint per_column        # the kernel takes a (K,) array after its parameters
    cdef bint ndim1, ndim2      # the accepted numbers of dimensions
    cdef list params            # one _Param per declared parameter
    cdef ElementwiseEntryFloat entry_float      # the pointer-level entries, or NULL
    cdef ElementwiseEntryDouble entry_double
    cdef SeveralEntryFloat several_float        # (a loss with a third input: its entries)
    cdef SeveralEntryDouble several_double


cdef class _MulticlassPlan:
    """A multiclass loss whose calls with labels the fast path takes (softmax_cross_entropy)."""
    cdef object spec
    cdef object kernel_float, kernel_double     # None: a loss the fast path leaves
    cdef _Param label_smoothing, z_loss, softcap    # their rules (softcap: or None)
    cdef CrossEntropyOptionsEntryFloat entry_float  # the pointer-level entries, or NULL
    cdef CrossEntropyOptionsEntryDouble entry_double


cdef _Param _real_rule(object param):
    """A Real's bounds (an OptionalReal's too: None is the caller's to take)."""
    cdef _Param rule = _Param()
    rule.kind = REAL
    rule.has_low = param.low is not None
    rule.has_high = param.high is not None
    rule.low = param.low if rule.has_low else 0.0
    rule.high = param.high if rule.has_high else 0.0
    rule.low_open = param.low_open
    rule.high_open = param.high_open
    return rule


cdef _Param _param_rule(object param):
    cdef _Param rule
    if param.kind == "real":
        return _real_rule(param)
    rule = _Param()
    if param.kind == "flag" and param.strict:
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


def bind_several(fallback):
    """Called once by fastloss._elementwise: the Python path of a loss with further
    inputs (run_several_python)."""
    global _several_fallback
    _several_fallback = fallback


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


def bind_multiclass(kernels, raise_bad_labels):
    """Called once by fastloss._multiclass: the multiclass kernels' specialisations, and
    the Python path's error for the labels its kernel rejected."""
    global _multiclass_kernels, _raise_bad_labels
    _multiclass_kernels = kernels
    _raise_bad_labels = raise_bad_labels


cdef _ElementwisePlan _elementwise_plan(object spec):
    cdef _ElementwisePlan plan = _ElementwisePlan()
    kernels = _elementwise_kernels[spec.kernel]
    plan.spec = spec
    plan.kernel_float = kernels.get(np.dtype(np.float32))
    plan.kernel_double = kernels.get(np.dtype(np.float64))
    plan.checked = spec.checked is not None
    plan.has_hess = spec.hess
    names = _elementwise_parameters.get(spec.kernel, ())
    plan.per_column = len(names) > len(spec.params)
    plan.ndim1 = 1 in spec.ndims
    plan.ndim2 = 2 in spec.ndims
    plan.params = [_param_rule(param) for param in spec.params]
    entries = _elementwise_entries.get(spec.kernel)
    # (a per-column parameter: the fast path takes only its scalar, as the entries do)
    if entries is not None and len(plan.params) <= ENTRY_MAX_VALUES and len(spec.inputs) == 3:
        plan.several_float = <SeveralEntryFloat>PyCapsule_GetPointer(
            entries[0], FL_SEVERAL_ENTRY_FLOAT)
        plan.several_double = <SeveralEntryDouble>PyCapsule_GetPointer(
            entries[1], FL_SEVERAL_ENTRY_DOUBLE)
    elif entries is not None and len(plan.params) <= ENTRY_MAX_VALUES:
        plan.entry_float = <ElementwiseEntryFloat>PyCapsule_GetPointer(
            entries[0], FL_ELEMENTWISE_ENTRY_FLOAT)
        plan.entry_double = <ElementwiseEntryDouble>PyCapsule_GetPointer(
            entries[1], FL_ELEMENTWISE_ENTRY_DOUBLE)
    _elementwise_plans[spec] = plan
    return plan


cdef inline _ElementwisePlan _plan_of(object spec):
    """The spec's plan, made at its first call."""
    cdef _ElementwisePlan plan = _elementwise_plans.get(spec)
    return plan if plan is not None else _elementwise_plan(spec)


cdef inline bint _common_ok(_ElementwisePlan plan, int how, int threads, object grad,
                            object hess, Py_ssize_t n_params):
    """The arguments every elementwise call shares are ones the fast path takes:
    a reduction and a thread count, grad a bool, hess only with grad where the
    loss has one, one value per parameter."""
    return (how >= 0 and threads >= 0 and (grad is True or grad is False)
            and (hess is False or (hess is True and grad is True and plan.has_hess))
            and n_params == len(plan.params))


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
    /* type(a, b) or type(a, b, c) (n items) for a tuple subclass: its own allocation
       filled in place, as tuple.__new__(type, (a, b, c)) fills it.  A new reference,
       or NULL. */
    static PyObject* fl_tuple_of(PyObject* type, Py_ssize_t n, PyObject* a, PyObject* b,
                                 PyObject* c) {
        PyTypeObject* kind = (PyTypeObject*)type;
        PyObject* items[3] = {a, b, c};
        PyObject* tuple = kind->tp_alloc(kind, n);
        Py_ssize_t k;
        if (tuple == NULL) return NULL;
        for (k = 0; k < n; k++) {
            Py_INCREF(items[k]);
            PyTuple_SET_ITEM(tuple, k, items[k]);
        }
        return tuple;
    }
    """
    object fl_tuple_of(object kind, Py_ssize_t n, object a, object b, object c)


cdef inline object _result(object loss, object grad):
    """LossGrad(loss, grad), without the two argument tuples tuple.__new__ would take."""
    return fl_tuple_of(_loss_grad, 2, loss, grad, None)


cdef double _weight_sum(cnp.ndarray weight):
    """sum_i w_i, compensated: the kernels' weight_sum (the same inline maths)."""
    cdef const double* w = <const double*>cnp.PyArray_DATA(weight)
    cdef Py_ssize_t i
    cdef CompensatedSum total = CompensatedSum(0.0, 0.0)
    for i in range(cnp.PyArray_DIM(weight, 0)):
        compensated_add(&total, w[i])
    return compensated_result(total)


# --- the elementwise losses ------------------------------------------------------------

cdef double _mean_denominator(object sample_weight, Py_ssize_t n_rows,
                              Py_ssize_t row_size) except? -1.0:
    """The "mean" divisor of an elementwise call: n_rows row_size, or row_size sum_i s_i
    (_reduction.mean_denominator); the Python path's error for non-finite weights."""
    cdef double denominator
    if sample_weight is None:
        return <double>(n_rows * row_size)
    denominator = _weight_sum(<cnp.ndarray>sample_weight) * row_size
    if not isfinite(denominator):
        _check_finite(sample_weight, "sample_weight")
    return denominator


def run_elementwise(spec, pred, target, tuple params, sample_weight, reduction, grad, hess,
                    out, n_threads):
    """fastloss._elementwise.run: the common call here, every other in the Python path."""
    cdef _ElementwisePlan plan = _plan_of(spec)
    cdef int how = reduction_code(reduction)
    cdef int threads = _threads(n_threads)
    cdef Py_ssize_t k, n_params = len(params)
    if (not _common_ok(plan, how, threads, grad, hess, n_params)
            or (out is not None and grad is False)
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
        denominator = _mean_denominator(sample_weight, n_rows, row_size)
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
    hess_out = cnp.PyArray_EMPTY(ndim, cnp.PyArray_DIMS(p), type_num, 0) if hess else None
    cdef double values[ENTRY_MAX_VALUES]
    cdef int seen_bits = 0
    cdef const double* weight_ptr = NULL
    cdef void* loss_ptr = NULL
    cdef void* grad_ptr = NULL
    cdef const void* p_ptr = cnp.PyArray_DATA(p)
    cdef const void* t_ptr = cnp.PyArray_DATA(t)
    if (view_columns == 1 and plan.entry_float != NULL and hess_out is None
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
        none if hess_out is None else _view(hess_out, view_rows, view_columns), scale, threads)
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
    if hess_out is not None:
        return fl_tuple_of(_loss_grad_hess, 3, loss_out if how == 2 else total / denominator,
                           grad_out, hess_out)
    return _result(loss_out if how == 2 else total / denominator, grad_out)


def run_several(spec, tuple inputs, tuple params, sample_weight, reduction, grad, hess,
                tuple outs, n_threads):
    """fastloss._elementwise.run_several (a loss with a third input and a gradient for it:
    gaussian_nll's var): the common call here, every other in the Python path.

    It takes the third input of the predictions' shape, or of 2-D (N, K)
    predictions with one value per row ((N,) or (N, 1), read by the kernel as
    (N, 1)), and ``out``/``out_var`` None or arrays overlapping no input and
    no other out; it leaves the other broadcasts (read expanded, their
    gradient summed in Python) and every in-place call (whose checked values
    are scanned before the kernel writes) to the Python path.  The kernel
    call is that path's (_elementwise._call_kernel) on the same views: a flat
    call within one chunk without hess through the kernel's pointer-level
    entry (_entries.pxd), any other through its def specialisation.
    """
    cdef _ElementwisePlan plan = _plan_of(spec)
    cdef int how = reduction_code(reduction)
    cdef int threads = _threads(n_threads)
    cdef Py_ssize_t k, n_params = len(params)
    if (not _common_ok(plan, how, threads, grad, hess, n_params)
            or len(inputs) != 3 or len(outs) != 2 or len(spec.gradients) != 2
            or spec.gradients[1] != spec.inputs[2] or plan.per_column
            or (grad is False and (outs[0] is not None or outs[1] is not None))
            or not _is_float_array(inputs[0])
            or not _is_float_array(inputs[1]) or not _is_float_array(inputs[2])):
        return _several_fallback(spec, inputs, params, sample_weight, reduction, grad, hess,
                                 outs, n_threads)
    cdef cnp.ndarray p = <cnp.ndarray>inputs[0], t = <cnp.ndarray>inputs[1]
    cdef cnp.ndarray v = <cnp.ndarray>inputs[2]
    cdef int ndim = cnp.PyArray_NDIM(p)
    cdef Py_ssize_t n_rows = cnp.PyArray_DIM(p, 0) if ndim >= 1 else 0
    cdef Py_ssize_t row_size = cnp.PyArray_DIM(p, 1) if ndim == 2 else 1
    cdef bint ok = ((ndim == 1 and plan.ndim1) or (ndim == 2 and plan.ndim2)) \
        and _same_layout(p, t) and n_rows > 0 and row_size > 0
    # the third input: the predictions' shape, or (ndim 2) (N,) or (N, 1): one per row
    cdef bint one_per_row = False
    if ok and not _same_layout(p, v):
        # (the number of dimensions first: a 0-d array has no DIM(v, 0))
        one_per_row = (ndim == 2 and cnp.PyArray_TYPE(v) == cnp.PyArray_TYPE(p)
                       and (cnp.PyArray_NDIM(v) == 1 or (cnp.PyArray_NDIM(v) == 2
                                                         and cnp.PyArray_DIM(v, 1) == 1))
                       and cnp.PyArray_DIM(v, 0) == n_rows)
        ok = one_per_row and spec.inputs[2] in spec.broadcast_inputs
    for k in range(n_params):
        ok = ok and _param_ok(<_Param>plan.params[k], params[k])
    if ok and sample_weight is not None:
        ok = _is_weight(sample_weight, n_rows)
    out, out_third = outs
    if ok and out is not None:
        ok = _is_out(out, p) and _apart(<cnp.ndarray>out, p, t, v, sample_weight)
    if ok and out_third is not None:
        ok = _is_out(out_third, v) and _apart(<cnp.ndarray>out_third, p, t, v, sample_weight) \
            and (out is None or not _overlap(<cnp.ndarray>out_third, <cnp.ndarray>out))
    kernel = plan.kernel_float if cnp.PyArray_TYPE(p) == cnp.NPY_FLOAT else plan.kernel_double
    if not ok or kernel is None:
        return _several_fallback(spec, inputs, params, sample_weight, reduction, grad, hess,
                                 outs, n_threads)

    cdef double denominator = 1.0, scale = 1.0
    if how == 0:
        denominator = _mean_denominator(sample_weight, n_rows, row_size)
        if denominator == 0:        # a mean over nothing: the Python path's zeros
            return _several_fallback(spec, inputs, params, sample_weight, reduction, grad,
                                     hess, outs, n_threads)
        scale = 1.0 / denominator
    # the views of _elementwise._call_kernel: one flat loop when nothing depends on the
    # row; a third input with one value per row (and its gradient) as (N, 1)
    one_per_row = one_per_row and row_size != 1
    cdef Py_ssize_t view_rows = n_rows, view_columns = row_size
    if sample_weight is None and not one_per_row:
        view_rows, view_columns = n_rows * row_size, 1
    cdef Py_ssize_t third_rows = n_rows if one_per_row else view_rows
    cdef Py_ssize_t third_columns = 1 if one_per_row else view_columns
    cdef int type_num = cnp.PyArray_TYPE(p)
    none = _no_rows_float if type_num == cnp.NPY_FLOAT else _no_rows_double
    loss_out = cnp.PyArray_EMPTY(ndim, cnp.PyArray_DIMS(p), type_num, 0) if how == 2 else None
    grad_out = grad_third = hess_out = None
    if grad is True:
        grad_out = out if out is not None else cnp.PyArray_EMPTY(ndim, cnp.PyArray_DIMS(p),
                                                                 type_num, 0)
        grad_third = out_third if out_third is not None else cnp.PyArray_EMPTY(
            cnp.PyArray_NDIM(v), cnp.PyArray_DIMS(v), type_num, 0)
    if hess is True:
        hess_out = cnp.PyArray_EMPTY(ndim, cnp.PyArray_DIMS(p), type_num, 0)
    cdef tuple arguments
    cdef double total
    cdef double values[ENTRY_MAX_VALUES]
    cdef int seen_bits = 0
    if (third_columns == 1 and not one_per_row and plan.several_float != NULL
            and hess_out is None and plan_chunks(view_rows, 1).n_chunks == 1):
        # the kernel's one chunk of the flat call, on the data pointers (_entries.pxd)
        for k in range(n_params):
            value = params[k]
            values[k] = 1.0 if value is None else <double>value
        total = _several_entry(plan, type_num == cnp.NPY_FLOAT, p, t, v, sample_weight,
                               view_rows, loss_out, grad_out, grad_third, scale, values,
                               &seen_bits)
        seen = seen_bits
    else:
        arguments = (
            _view(p, view_rows, view_columns), _view(t, view_rows, view_columns),
            _view(v, third_rows, third_columns),
            _no_weight if sample_weight is None else sample_weight,
            none if loss_out is None else _view(loss_out, view_rows, view_columns),
            none if grad_out is None else _view(grad_out, view_rows, view_columns),
            none if grad_third is None else _view(grad_third, third_rows, third_columns),
            none if hess_out is None else _view(hess_out, view_rows, view_columns), scale,
            threads)
        if n_params:
            arguments += tuple([1.0 if value is None else value for value in params])
        if plan.checked:
            total, seen = kernel(*arguments)
        else:
            total, seen = kernel(*arguments), 0
    if plan.checked and seen:
        # the Python path's array: the input as it broadcasts ((N, 1) for (N,))
        _raise_if_bad(spec, v if cnp.PyArray_NDIM(v) == ndim else _view(v, n_rows, 1), seen)
    if sample_weight is not None and not isfinite(total):
        _check_finite(sample_weight, "sample_weight")
    loss = loss_out if how == 2 else total / denominator
    grads = None if grad is False else (grad_out, grad_third)
    if hess_out is not None:
        return fl_tuple_of(_loss_grad_hess, 3, loss, grads, hess_out)
    return _result(loss, grads)


cdef inline double _several_call(SeveralEntryFloat entry_float, SeveralEntryDouble entry_double,
                                bint is_float, const void* p, const void* t, const void* v,
                                const double* weight, Py_ssize_t n, void* loss_out,
                                void* grad_out, void* grad_third, double scale,
                                const double* values, int* seen) noexcept nogil:
    """The chosen build's entry of a loss with a third input, for the data's dtype."""
    if is_float:
        return entry_float(<const float*>p, <const float*>t, <const float*>v, weight, n,
                           <float*>loss_out, <float*>grad_out, <float*>grad_third, scale,
                           values, seen)
    return entry_double(<const double*>p, <const double*>t, <const double*>v, weight, n,
                        <double*>loss_out, <double*>grad_out, <double*>grad_third, scale,
                        values, seen)


cdef double _several_entry(_ElementwisePlan plan, bint is_float, cnp.ndarray p, cnp.ndarray t,
                           cnp.ndarray v, object sample_weight, Py_ssize_t n, object loss_out,
                           object grad_out, object grad_third, double scale,
                           const double* values, int* seen):
    """_several_call on the arrays' data (the GIL released from NOGIL_ELEMENTS on)."""
    cdef const void* p_ptr = cnp.PyArray_DATA(p)
    cdef const void* t_ptr = cnp.PyArray_DATA(t)
    cdef const void* v_ptr = cnp.PyArray_DATA(v)
    cdef const double* weight_ptr = <const double*>_data_or_null(sample_weight)
    cdef void* loss_ptr = _data_or_null(loss_out)
    cdef void* grad_ptr = _data_or_null(grad_out)
    cdef void* third_ptr = _data_or_null(grad_third)
    if n < NOGIL_ELEMENTS:
        return _several_call(plan.several_float, plan.several_double, is_float, p_ptr, t_ptr,
                             v_ptr, weight_ptr, n, loss_ptr, grad_ptr, third_ptr, scale,
                             values, seen)
    with nogil:
        return _several_call(plan.several_float, plan.several_double, is_float, p_ptr, t_ptr,
                             v_ptr, weight_ptr, n, loss_ptr, grad_ptr, third_ptr, scale,
                             values, seen)


cdef inline bint _apart(cnp.ndarray out, cnp.ndarray p, cnp.ndarray t, cnp.ndarray v,
                        object sample_weight):
    """out overlaps none of the inputs."""
    return not (_overlap(out, p) or _overlap(out, t) or _overlap(out, v)
                or (sample_weight is not None and _overlap(out, <cnp.ndarray>sample_weight)))


# --- the multiclass losses --------------------------------------------------------------

# softmax_cross_entropy's declared parameters, in the order the fast path reads them
CROSS_ENTROPY_PARAMS = ("class_weight", "ignore_index", "label_smoothing", "z_loss", "softcap")


cdef _MulticlassPlan _multiclass_plan(object spec):
    cdef _MulticlassPlan plan = _MulticlassPlan()
    plan.spec = spec
    # the kernels whose call with labels is written out below
    if (spec.kernel == "softmax_cross_entropy"
            and tuple(param.name for param in spec.params) == CROSS_ENTROPY_PARAMS):
        kernels = _multiclass_kernels[spec.kernel]
        plan.kernel_float = kernels[np.dtype(np.float32)]
        plan.kernel_double = kernels[np.dtype(np.float64)]
        plan.label_smoothing = _real_rule(spec.params[2])
        plan.z_loss = _real_rule(spec.params[3])
        plan.softcap = _real_rule(spec.params[4])
        entries = _multiclass_entries.get("softmax_cross_entropy_options")
        if entries is not None:
            plan.entry_float = <CrossEntropyOptionsEntryFloat>PyCapsule_GetPointer(
                entries[0], FL_CROSS_ENTROPY_OPTIONS_ENTRY_FLOAT)
            plan.entry_double = <CrossEntropyOptionsEntryDouble>PyCapsule_GetPointer(
                entries[1], FL_CROSS_ENTROPY_OPTIONS_ENTRY_DOUBLE)
    _multiclass_plans[spec] = plan
    return plan


cdef inline bint _is_labels(object target, Py_ssize_t n_rows):
    """target: native, aligned, C-contiguous np.intp (n_rows,) labels (their range is
    the kernel's to check)."""
    if type(target) is not cnp.ndarray:
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>target
    return (cnp.PyArray_TYPE(arr) == cnp.NPY_INTP and cnp.PyArray_NDIM(arr) == 1
            and cnp.PyArray_DIM(arr, 0) == n_rows and cnp.PyArray_IS_C_CONTIGUOUS(arr)
            and cnp.PyArray_ISALIGNED(arr) and cnp.PyArray_ISNOTSWAPPED(arr))


cdef inline bint _labels_in_range(const Py_ssize_t* labels, Py_ssize_t n_rows,
                                  Py_ssize_t n_classes, const CrossEntropyOptions* options):
    """Each label lies in [0, n_classes) or is the ignored one (an AND-reduction)."""
    cdef Py_ssize_t i
    cdef bint ok = True
    for i in range(n_rows):
        ok &= ((<size_t>labels[i] < <size_t>n_classes)
               | (options.has_ignore & (labels[i] == options.ignore_index)))
    return ok


cdef inline bint _all_finite(const double* values, Py_ssize_t n):
    cdef Py_ssize_t i
    cdef bint ok = True
    for i in range(n):
        ok &= isfinite(values[i]) != 0
    return ok


cdef bint _cross_entropy_options(_MulticlassPlan plan, tuple params, Py_ssize_t n_classes,
                                 bint hess, CrossEntropyOptions* options):
    """The options of a call as the kernel takes them, when each is one the Python path
    takes as it stands (else False): class_weight None or finite float64 (C,) weights,
    ignore_index None or an int, the reals floats within their bounds; no z_loss or
    softcap with hess=True (that path's ValueError)."""
    class_weight, ignore_index, label_smoothing, z_loss, softcap = params
    options.class_weight = NULL
    if class_weight is not None:
        if not _is_weight(class_weight, n_classes):
            return False
        options.class_weight = <const double*>cnp.PyArray_DATA(<cnp.ndarray>class_weight)
        if not _all_finite(options.class_weight, n_classes):
            return False
    options.has_ignore = ignore_index is not None
    options.ignore_index = 0
    if options.has_ignore:
        if type(ignore_index) is not int:
            return False
        try:
            options.ignore_index = ignore_index
        except OverflowError:   # beyond Py_ssize_t: the Python path's OverflowError
            return False
    if not (_param_ok(plan.label_smoothing, label_smoothing) and _param_ok(plan.z_loss, z_loss)
            and (softcap is None or _param_ok(plan.softcap, softcap))):
        return False
    options.label_smoothing = <double>label_smoothing
    options.z_loss = <double>z_loss
    options.softcap = 0.0 if softcap is None else <double>softcap
    if softcap is None and options.z_loss == 0.0:
        options.z_loss = 0.0        # the Python path passes its default, not -0.0
    return not (hess and (options.z_loss != 0.0 or softcap is not None))


cdef inline double _cross_entropy_entry(
        CrossEntropyOptionsEntryFloat entry_float, CrossEntropyOptionsEntryDouble entry_double,
        bint is_float, const void* x, Py_ssize_t n_rows, Py_ssize_t n_classes,
        const Py_ssize_t* labels, const double* weight, const CrossEntropyOptions* options,
        void* loss_out, void* grad_out, void* hess_out, double scale,
        int* status) noexcept nogil:
    """The chosen build's entry of x's dtype."""
    if is_float:
        return entry_float(<const float*>x, n_rows, n_classes, labels, weight, options,
                           <float*>loss_out, <float*>grad_out, <float*>hess_out, scale, status)
    return entry_double(<const double*>x, n_rows, n_classes, labels, weight, options,
                        <double*>loss_out, <double*>grad_out, <double*>hess_out, scale, status)


cdef inline void* _data_or_null(object arr):
    return NULL if arr is None else cnp.PyArray_DATA(<cnp.ndarray>arr)


def run_multiclass(spec, logits, target, tuple params, sample_weight, reduction, grad, hess,
                   out, n_threads):
    """A call of softmax_cross_entropy with class labels (any options): its result, or
    None for a call the public function's own path takes (see the module docstring).

    A label outside [0, C) and not ignore_index is found by the kernel's pass and
    named by the Python path's function (an ``out`` then holds a partial gradient);
    in place, and for a "mean" with class weights, the labels are checked before
    any write, as that path does.
    """
    cdef _MulticlassPlan plan = _multiclass_plans.get(spec)
    if plan is None:
        plan = _multiclass_plan(spec)
    cdef int how = reduction_code(reduction)
    cdef int threads = _threads(n_threads)
    if (plan.kernel_float is None or how < 0 or threads < 0
            or not (grad is True or grad is False) or not (hess is True or hess is False)
            or (grad is False and (out is not None or hess is True))
            or len(params) != 5 or not _is_float_array(logits)):
        return None
    cdef cnp.ndarray x = <cnp.ndarray>logits
    if cnp.PyArray_NDIM(x) != 2:
        return None
    cdef Py_ssize_t n_rows = cnp.PyArray_DIM(x, 0), n_classes = cnp.PyArray_DIM(x, 1)
    cdef CrossEntropyOptions options
    if (n_rows == 0 or n_classes == 0 or not _is_labels(target, n_rows)
            or not _cross_entropy_options(plan, params, n_classes, hess is True, &options)):
        return None
    class_weight = params[0]
    if sample_weight is not None and not _is_weight(sample_weight, n_rows):
        return None
    cdef const Py_ssize_t* labels = <const Py_ssize_t*>cnp.PyArray_DATA(<cnp.ndarray>target)
    cdef const double* weight_ptr = <const double*>_data_or_null(sample_weight)
    cdef bint in_place = False
    if out is not None:
        if not _is_out(out, x):
            return None
        in_place = cnp.PyArray_DATA(<cnp.ndarray>out) == cnp.PyArray_DATA(x)
        if ((not in_place and _overlap(<cnp.ndarray>out, x))
                or _overlap(<cnp.ndarray>out, <cnp.ndarray>target)
                or (sample_weight is not None and _overlap(<cnp.ndarray>out, sample_weight))
                or (class_weight is not None and _overlap(<cnp.ndarray>out, class_weight))):
            return None
    # what the Python path checks before any write: in place, the labels and weights;
    # with ignore_index, the weights (an ignored row's weight never reaches the total)
    if in_place and not _labels_in_range(labels, n_rows, n_classes, &options):
        return None
    if (weight_ptr != NULL and (in_place or options.has_ignore)
            and not _all_finite(weight_ptr, n_rows)):
        return None

    cdef double denominator = 1.0, scale = 1.0
    cdef bint bad = False
    if how == 0:
        if options.class_weight != NULL or options.has_ignore:
            # sum_i s_i w_{y_i} over the rows not ignored (_reduction.mean_denominator)
            denominator = label_weight_total(labels, n_rows, n_classes, options.class_weight,
                                             weight_ptr, options.has_ignore,
                                             options.ignore_index, &bad)
            if bad:                 # with class weights the Python path names it first
                return None
        elif weight_ptr != NULL:
            denominator = _weight_sum(<cnp.ndarray>sample_weight)
        else:
            denominator = <double>n_rows
        if weight_ptr != NULL and not isfinite(denominator):
            _check_finite(sample_weight, "sample_weight")
        if denominator == 0:        # a mean over nothing: the public path's empty_mean
            return None
        scale = 1.0 / denominator
    cdef int type_num = cnp.PyArray_TYPE(x)
    loss_out = cnp.PyArray_ZEROS(1, cnp.PyArray_DIMS(x), type_num, 0) if how == 2 else None
    grad_out = hess_out = None
    if grad is True:
        grad_out = out if out is not None else cnp.PyArray_EMPTY(2, cnp.PyArray_DIMS(x),
                                                                 type_num, 0)
    if hess is True:
        hess_out = cnp.PyArray_EMPTY(2, cnp.PyArray_DIMS(x), type_num, 0)
    cdef double total
    cdef int status = 0
    cdef bint is_float = type_num == cnp.NPY_FLOAT
    cdef const void* x_ptr = cnp.PyArray_DATA(x)
    cdef void* loss_ptr = _data_or_null(loss_out)
    cdef void* grad_ptr = _data_or_null(grad_out)
    cdef void* hess_ptr = _data_or_null(hess_out)
    if plan.entry_float != NULL and plan_chunks(n_rows, n_classes).n_chunks == 1:
        # the kernel's one chunk, called on the data pointers (_entries.pxd)
        if n_rows * n_classes < NOGIL_ELEMENTS:
            total = _cross_entropy_entry(plan.entry_float, plan.entry_double, is_float, x_ptr,
                                         n_rows, n_classes, labels, weight_ptr, &options,
                                         loss_ptr, grad_ptr, hess_ptr, scale, &status)
        else:
            with nogil:
                total = _cross_entropy_entry(plan.entry_float, plan.entry_double, is_float,
                                             x_ptr, n_rows, n_classes, labels, weight_ptr,
                                             &options, loss_ptr, grad_ptr, hess_ptr, scale,
                                             &status)
        if status & ENTRY_OUT_OF_MEMORY:    # the def kernel's MemoryError, and its message
            raise MemoryError("softmax_cross_entropy: no memory for a row's scratch")
        bad = (status & ENTRY_BAD_LABELS) != 0
    else:
        kernel = plan.kernel_float if is_float else plan.kernel_double
        # fastloss._multiclass._call_kernel's call with labels
        total, bad = kernel(x, None, target, sample_weight, class_weight,
                            options.label_smoothing, params[1], options.z_loss,
                            options.softcap, loss_out, grad_out, hess_out, scale, threads)
    if bad:
        _raise_bad_labels(target, n_classes, params[1])
    if weight_ptr != NULL and not isfinite(total):
        _check_finite(sample_weight, "sample_weight")
    loss = loss_out if how == 2 else (total / denominator if how == 0 else total)
    if hess is True:
        return fl_tuple_of(_loss_grad_hess, 3, loss, grad_out, hess_out)
    return _result(loss, grad_out)
