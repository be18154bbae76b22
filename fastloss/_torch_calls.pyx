# cython: language_level=3
"""fastloss.torch's compiled call path: the common small call, checked and computed in C.

Design: at a small batch a loss call of fastloss.torch is dominated by what
happens around the kernel (issue #14): the checks of the tensors' metadata,
NumPy views of the tensors, NumPy outputs, the Python glue.  This module takes
the common eager call -- plain contiguous CPU tensors of one float dtype, no
weights, the default options, a training step's autograd state -- reads each
tensor's metadata once, allocates the gradient (NumPy's memory, handed to
torch by ``torch.from_numpy``, as the Python path does), and calls the
kernel's pointer-level entry (``_entries.pxd``: the def kernel's one-chunk
loop, bit for bit) on the tensors' data pointers.  Its result goes through
the same autograd Function as the Python path's (``fastloss.torch._FusedLoss``).

Each function returns the loss tensor, or None for a call it does not take:
then fastloss.torch's Python path decides the call as it always did (torch's
own function included), so that every rule, error and warning stays that
path's.  It takes only calls within one chunk of the kernel (larger calls
spend their time in the kernel, which the Python path calls threaded), except
nll_loss and cross_entropy over (N, C, d1, ...), whose calls start at 65,536
elements: it calls the Python path's kernel with the same arguments, threaded
(nll_loss's time is the gradient's zeros, torch's own too, so the Python glue
shows; so does the spatial cross_entropy's, whose calls take a few hundred
microseconds).  It is never reached while
torch.compile traces (the Python caller tests that first: dynamo cannot trace
into compiled code).

Calls it leaves to the Python path: tensor subclasses, other devices, dtypes
and layouts, non-contiguous tensors or tensors with torch's negation bit,
targets that require a gradient, forward-mode AD, functorch transforms,
shapes that differ (broadcasting) or are empty, class weights, label
smoothing, a label out of [0, C) or (of (N, C) logits) equal to ignore_index,
a "mean" over ignored labels only, and the values
the kernels refuse or compute differently from torch (the checks of the
Python path's *_fast functions).
"""
from cpython.pycapsule cimport PyCapsule_GetPointer
from libc.limits cimport INT_MAX
from libc.stdint cimport int64_t
from fastloss._parallel cimport plan_chunks
from fastloss._entries cimport (ENTRY_MAX_VALUES, ElementwiseEntryFloat,
                                ElementwiseEntryDouble, CrossEntropyEntryFloat,
                                CrossEntropyEntryDouble, FL_ELEMENTWISE_ENTRY_FLOAT,
                                FL_ELEMENTWISE_ENTRY_DOUBLE, FL_CROSS_ENTROPY_ENTRY_FLOAT,
                                FL_CROSS_ENTROPY_ENTRY_DOUBLE)
cimport numpy as cnp

cnp.import_array()

# The elementwise losses of this path (elementwise()'s first argument): their kernels.
ELEMENTWISE = ("mse", "huber", "binary_cross_entropy", "l1", "poisson_nll",
               "sigmoid_focal_loss")
cdef enum:
    MSE = 0
    L1 = 3
    POISSON_NLL = 4
    SIGMOID_FOCAL_LOSS = 5
    N_ELEMENTWISE = 6
# The bits of a checked kernel's `seen` that leave the call to torch (bind()): a
# target the kernel refuses, an input where torch's formula differs.
cdef int _torchs_values = 0

cdef ElementwiseEntryFloat _elementwise_float[<int>N_ELEMENTWISE]
cdef ElementwiseEntryDouble _elementwise_double[<int>N_ELEMENTWISE]
cdef CrossEntropyEntryFloat _cross_entropy_float = NULL
cdef CrossEntropyEntryDouble _cross_entropy_double = NULL

# What bind() gives: torch's objects, read once.
cdef object _Tensor = None, _float32 = None, _float64 = None, _int64 = None
cdef object _strided = None, _from_numpy = None
cdef object _grad_enabled = None, _functorch_active = None, _functorch_wrapped = None
cdef object _forward_ad = None, _apply = None
# fastloss._torch_kernels.nll_loss's float and double specialisations, torch's
# thread count, and the kernel's empty placeholders (bind()).
cdef object _nll_loss_float = None, _nll_loss_double = None, _threads = None
cdef object _no_weight = None, _no_values_float = None, _no_values_double = None
cdef object _no_blocks_float = None, _no_blocks_double = None
# fastloss._torch_kernels.spatial_cross_entropy's specialisations, and the fewest
# elements of an (N, C, d1, ...) call that fastloss.torch computes (fewer: torch's).
cdef object _spatial_float = None, _spatial_double = None, _torch_empty = None
cdef Py_ssize_t _spatial_from = 0
cdef bint _bound = False

# reduction: 0 "mean", 1 "sum", 2 "none"
from fastloss._calls cimport reduction_code as _reduction


def bind(elementwise_entries, multiclass_entries, torch, functorch_active,
         functorch_wrapped, forward_ad, apply, int torchs_values, nll_loss_kernels,
         spatial_kernels, Py_ssize_t spatial_from, placeholders):
    """Called once by fastloss.torch: the chosen build's entries and torch's objects."""
    global _Tensor, _float32, _float64, _int64, _strided, _from_numpy
    global _grad_enabled, _functorch_active, _functorch_wrapped, _forward_ad, _apply
    global _cross_entropy_float, _cross_entropy_double, _bound, _torchs_values
    global _nll_loss_float, _nll_loss_double, _threads, _no_weight
    global _spatial_float, _spatial_double, _spatial_from, _torch_empty
    global _no_values_float, _no_values_double, _no_blocks_float, _no_blocks_double
    cdef int k
    for k, name in enumerate(ELEMENTWISE):
        pair = elementwise_entries[name]
        _elementwise_float[k] = <ElementwiseEntryFloat>PyCapsule_GetPointer(
            pair[0], FL_ELEMENTWISE_ENTRY_FLOAT)
        _elementwise_double[k] = <ElementwiseEntryDouble>PyCapsule_GetPointer(
            pair[1], FL_ELEMENTWISE_ENTRY_DOUBLE)
    pair = multiclass_entries["softmax_cross_entropy"]
    _cross_entropy_float = <CrossEntropyEntryFloat>PyCapsule_GetPointer(
        pair[0], FL_CROSS_ENTROPY_ENTRY_FLOAT)
    _cross_entropy_double = <CrossEntropyEntryDouble>PyCapsule_GetPointer(
        pair[1], FL_CROSS_ENTROPY_ENTRY_DOUBLE)
    _Tensor = torch.Tensor
    _float32, _float64, _int64 = torch.float32, torch.float64, torch.int64
    _strided = torch.strided
    _from_numpy = torch.from_numpy
    _grad_enabled = torch.is_grad_enabled
    _functorch_active = functorch_active
    _functorch_wrapped = functorch_wrapped
    _forward_ad = forward_ad
    _apply = apply
    _torchs_values = torchs_values
    _nll_loss_float, _nll_loss_double = (nll_loss_kernels[torch.float32],
                                         nll_loss_kernels[torch.float64])
    _spatial_float, _spatial_double = (spatial_kernels[torch.float32],
                                       spatial_kernels[torch.float64])
    _spatial_from = spatial_from
    _torch_empty = torch.empty
    _threads = torch.get_num_threads
    (_no_weight, _no_values_float, _no_values_double, _no_blocks_float,
     _no_blocks_double) = placeholders
    _bound = True


# --- the checks: True when the path may take the tensor ---------------------------------

cdef inline bint _plain(object t):
    """A plain contiguous strided CPU tensor without torch's negation bit."""
    return (type(t) is _Tensor and t.is_cpu and t.layout is _strided and t.is_contiguous()
            and not t.is_neg())


cdef inline bint _eager_state(object input, object target, bint grad_enabled):
    """No reason in autograd's state for the Python path: the target needs no gradient,
    no forward-mode AD level, no functorch transform."""
    if grad_enabled and target.requires_grad:
        return False
    if _forward_ad._current_level >= 0:
        return False
    return not (_functorch_active() or (_functorch_wrapped is not None
                                        and _functorch_wrapped(input)))


cdef inline Py_ssize_t _data(object t):
    return <Py_ssize_t>t.data_ptr()


cdef enum:
    # The most dimensions of a tensor this path allocates (NumPy 1's NPY_MAXDIMS).
    MAX_DIMS = 32


cdef inline cnp.ndarray _empty(object shape, bint is_float):
    """An uninitialised C-contiguous array of a tensor's shape in its dtype (shape: a
    torch.Size of at most MAX_DIMS dimensions).  Its memory becomes the tensor by
    torch.from_numpy: measured cheaper than torch.empty_like, whose dispatch costs
    twice as many instructions."""
    cdef cnp.npy_intp dims[MAX_DIMS]
    cdef int k, ndim = len(shape)
    for k in range(ndim):
        dims[k] = shape[k]
    return cnp.PyArray_EMPTY(ndim, dims, cnp.NPY_FLOAT if is_float else cnp.NPY_DOUBLE, 0)


cdef object _scalar(double value, bint is_float):
    """A 0-d tensor of a float64 loss in the input's dtype (rounded once, as NumPy's
    float32 conversion: beyond float32's range inf)."""
    cdef cnp.ndarray arr
    if is_float:
        arr = cnp.PyArray_SimpleNew(0, NULL, cnp.NPY_FLOAT)
        (<float*>cnp.PyArray_DATA(arr))[0] = <float>value
    else:
        arr = cnp.PyArray_SimpleNew(0, NULL, cnp.NPY_DOUBLE)
        (<double*>cnp.PyArray_DATA(arr))[0] = value
    return _from_numpy(arr)


cdef inline object _finish(object input, object loss, cnp.ndarray grad, object torch_loss):
    """The loss, through the autograd Function when a gradient was computed."""
    if grad is None:
        return loss
    return _apply(input, (loss, _from_numpy(grad)), torch_loss)


# --- the elementwise losses -------------------------------------------------------------

def elementwise(int loss, input, target, reduction, double value0, double value1,
                double value2, torch_loss):
    """A flat elementwise loss without weights, or None for a call the path leaves.

    ``value0``... are the kernel's own parameters in declared order (a flag as
    0.0 or 1.0; unused ones anything); ``torch_loss(x)`` is torch's loss, for
    the autograd Function's double backward.
    """
    if not _bound or not (_plain(input) and _plain(target)):
        return None
    dtype = input.dtype
    if not ((dtype is _float32 or dtype is _float64) and target.dtype is dtype):
        return None
    cdef int how = _reduction(reduction)
    cdef bint grad_enabled = _grad_enabled()
    if how < 0 or not _eager_state(input, target, grad_enabled):
        return None
    cdef Py_ssize_t n = input.numel()
    shape = input.shape
    if n == 0 or plan_chunks(n, 1).n_chunks != 1 or target.shape != shape \
            or len(shape) > MAX_DIMS:
        return None
    cdef bint is_float = dtype is _float32
    cdef bint need_grad = grad_enabled and input.requires_grad
    cdef cnp.ndarray grad = _empty(shape, is_float) if need_grad else None
    cdef cnp.ndarray loss_out = _empty(shape, is_float) if how == 2 else None
    cdef double values[ENTRY_MAX_VALUES]
    values[0], values[1], values[2] = value0, value1, value2
    cdef double scale = 1.0 / n if how == 0 else 1.0
    cdef Py_ssize_t p = _data(input), t = _data(target)
    cdef void* loss_ptr = NULL if loss_out is None else cnp.PyArray_DATA(loss_out)
    cdef void* grad_ptr = NULL if grad is None else cnp.PyArray_DATA(grad)
    cdef int seen = 0
    cdef double total
    if is_float:
        total = _elementwise_float[loss](<const float*>p, <const float*>t, NULL, n,
                                         <float*>loss_ptr, <float*>grad_ptr, scale, values,
                                         &seen)
    else:
        total = _elementwise_double[loss](<const double*>p, <const double*>t, NULL, n,
                                          <double*>loss_ptr, <double*>grad_ptr, scale, values,
                                          &seen)
    if (loss == POISSON_NLL or loss == SIGMOID_FOCAL_LOSS) and seen & _torchs_values:
        return None                 # a target the kernel refuses, an input where
                                    # torch's formula differs: torch's formula
    if loss == L1 and need_grad and total != total:
        return None                 # torch's gradient at a NaN residual is 0
    value = _from_numpy(loss_out) if how == 2 else _scalar(total / n if how == 0 else total,
                                                            is_float)
    return _finish(input, value, grad, torch_loss)


# --- cross-entropy with class labels -------------------------------------------------------

cdef bint _labels_plain(const int64_t* labels, Py_ssize_t n_rows, Py_ssize_t n_classes,
                        int64_t ignore_index):
    """Every label in [0, n_classes) and none equal to ignore_index (no branch per label)."""
    cdef Py_ssize_t i
    cdef bint bad = False
    for i in range(n_rows):
        bad |= (labels[i] < 0) | (labels[i] >= n_classes) | (labels[i] == ignore_index)
    return not bad


cdef int _labels_call(object input, object target, object ignore_index, object reduction,
                      bint* grad_enabled) except -2:
    """The checks cross_entropy and nll_loss share: plain tensors, float32/float64
    scores and int64 labels (read as Py_ssize_t by the kernels), a known reduction,
    an int ignore_index within int64, eager state.  The reduction's code, or -1 for
    a call the path leaves (grad_enabled: torch's grad mode, read once)."""
    if not _bound or not (_plain(input) and _plain(target)):
        return -1
    dtype = input.dtype
    if not ((dtype is _float32 or dtype is _float64) and target.dtype is _int64):
        return -1
    cdef int how = _reduction(reduction)
    grad_enabled[0] = _grad_enabled()
    if how < 0 or type(ignore_index) is not int or not _eager_state(input, target,
                                                                     grad_enabled[0]):
        return -1
    if sizeof(Py_ssize_t) != sizeof(int64_t) or not -2**63 <= ignore_index < 2**63:
        return -1
    return how


def cross_entropy(input, target, ignore_index, reduction, torch_loss, spatial_from=None):
    """cross_entropy of (N, C) logits and int64 labels (N,), or of (N, C, d1, ...)
    scores and labels (N, d1, ...) from ``spatial_from`` elements (None: the bound
    value; _spatial_cross_entropy), no class weights, no smoothing, no z_loss or
    softcap; or None for a call the path leaves."""
    cdef bint grad_enabled
    cdef int how = _labels_call(input, target, ignore_index, reduction, &grad_enabled)
    if how < 0:
        return None
    dtype = input.dtype
    shape = input.shape
    if len(shape) > 2:
        return _spatial_cross_entropy(
            input, target, ignore_index, how, grad_enabled, torch_loss,
            _spatial_from if spatial_from is None else spatial_from)
    if len(shape) != 2 or len(target.shape) != 1:
        return None
    cdef Py_ssize_t n_rows = shape[0], n_classes = shape[1]
    if n_rows == 0 or n_classes == 0 or target.shape[0] != n_rows \
            or plan_chunks(n_rows, n_classes).n_chunks != 1:
        return None
    cdef int64_t ignored = ignore_index
    cdef const int64_t* labels = <const int64_t*>_data(target)
    if not _labels_plain(labels, n_rows, n_classes, ignored):
        return None                 # torch's error, or rows to ignore: the Python path
    cdef bint is_float = dtype is _float32
    cdef bint need_grad = grad_enabled and input.requires_grad
    cdef cnp.ndarray grad = _empty(shape, is_float) if need_grad else None
    cdef cnp.ndarray loss_out = _empty(target.shape, is_float) if how == 2 else None
    cdef double scale = 1.0 / n_rows if how == 0 else 1.0
    cdef Py_ssize_t x = _data(input)
    cdef void* loss_ptr = NULL if loss_out is None else cnp.PyArray_DATA(loss_out)
    cdef void* grad_ptr = NULL if grad is None else cnp.PyArray_DATA(grad)
    cdef int status = 0
    cdef double total
    if is_float:
        total = _cross_entropy_float(<const float*>x, n_rows, n_classes,
                                     <const Py_ssize_t*>labels, NULL, <float*>loss_ptr,
                                     <float*>grad_ptr, scale, &status)
    else:
        total = _cross_entropy_double(<const double*>x, n_rows, n_classes,
                                      <const Py_ssize_t*>labels, NULL, <double*>loss_ptr,
                                      <double*>grad_ptr, scale, &status)
    if status & 2:      # the kernel's OUT_OF_MEMORY, and its message
        raise MemoryError("softmax_cross_entropy: no memory for a row's scratch")
    loss = _from_numpy(loss_out) if how == 2 else _scalar(
        total / n_rows if how == 0 else total, is_float)
    return _finish(input, loss, grad, torch_loss)


# --- cross-entropy over (N, C, d1, ...) -------------------------------------------------------

cdef cnp.ndarray _tensor_array(object t, int ndim, cnp.npy_intp* dims, int type_num):
    """A NumPy array over a plain contiguous tensor's memory (the tensor outlives the
    call that reads it: the caller holds it)."""
    return cnp.PyArray_SimpleNewFromData(ndim, dims, type_num, <void*>_data(t))


cdef cnp.ndarray _view(cnp.ndarray array, int ndim, cnp.npy_intp* dims):
    """A C-contiguous view of ``array``'s memory with other dimensions (as many elements)."""
    cdef cnp.ndarray view = cnp.PyArray_SimpleNewFromData(ndim, dims, cnp.PyArray_TYPE(array),
                                                          cnp.PyArray_DATA(array))
    cnp.set_array_base(view, array)
    return view


cdef object _spatial_cross_entropy(object input, object target, object ignore_index, int how,
                                   bint grad_enabled, object torch_loss,
                                   Py_ssize_t spatial_from):
    """fastloss.torch's spatial cross_entropy (contiguous scores, int64 labels, no
    class weights): fastloss._torch_kernels.spatial_cross_entropy on torch's threads,
    with the Python path's arguments (the same bits); or None for a call the path
    leaves, the kernel's label check and "mean" denominator included (torch's
    error for a label, its 0 / 0 = NaN: the kernel wrote nothing then)."""
    shape = input.shape
    cdef Py_ssize_t n_elements = input.numel()
    if n_elements == 0 or n_elements < spatial_from \
            or target.shape != shape[:1] + shape[2:] or shape[1] > INT_MAX:
        return None                 # torch's own (small), its error, the kernel's limit
    cdef cnp.npy_intp dims[3]
    dims[0], dims[1] = shape[0], shape[1]
    dims[2] = n_elements // (dims[0] * dims[1])
    cdef cnp.npy_intp n_positions = dims[0] * dims[2]
    cdef bint is_float = input.dtype is _float32
    cdef int type_num = cnp.NPY_FLOAT if is_float else cnp.NPY_DOUBLE
    cdef bint need_grad = grad_enabled and input.requires_grad
    # (by torch's allocator, 64-byte aligned, as the Python path: malloc's 16 bytes
    # split a cache line at every other 32-byte vector, 3% of the kernel's time)
    grad = _torch_empty(shape, dtype=input.dtype) if need_grad else None
    cdef cnp.ndarray loss_out = _empty(target.shape, is_float) if how == 2 else None
    kernel = _spatial_float if is_float else _spatial_double
    no_blocks = _no_blocks_float if is_float else _no_blocks_double
    first_bad, total, denominator = kernel(
        _tensor_array(input, 3, dims, type_num), no_blocks,
        _tensor_array(target, 1, &n_positions, cnp.NPY_INT64), _no_weight, ignore_index,
        0.0, how == 0,
        _view(loss_out, 1, &n_positions) if how == 2 else (
            _no_values_float if is_float else _no_values_double),
        _tensor_array(grad, 3, dims, type_num) if need_grad else no_blocks, _threads())
    if first_bad >= 0 or how == 0 and denominator == 0:
        return None
    loss = _from_numpy(loss_out) if how == 2 else _scalar(
        total / denominator if how == 0 else total, is_float)
    return loss if grad is None else _apply(input, (loss, grad), torch_loss)


# --- nll_loss of (N, C) log-probabilities ---------------------------------------------------

cdef cnp.ndarray _blocks(cnp.ndarray rows):
    """An (N, C, 1) view of an (N, C) array's memory (the kernel's (N, C, S) layout)."""
    cdef cnp.npy_intp dims[3]
    dims[0], dims[1], dims[2] = cnp.PyArray_DIM(rows, 0), cnp.PyArray_DIM(rows, 1), 1
    return _view(rows, 3, dims)


def nll_loss(input, target, ignore_index, reduction, torch_loss):
    """nll_loss of (N, C) log-probabilities and int64 labels (N,), no class weights,
    by fastloss._torch_kernels.nll_loss on torch's threads as the Python path calls
    it (the same arguments: the same bits); or None for a call the path leaves
    (fastloss.torch.nll_loss tests the size first)."""
    cdef bint grad_enabled
    cdef int how = _labels_call(input, target, ignore_index, reduction, &grad_enabled)
    if how < 0:
        return None
    dtype = input.dtype
    shape = input.shape
    if len(shape) != 2 or len(target.shape) != 1 or target.shape[0] != shape[0]:
        return None
    cdef cnp.npy_intp dims[3]
    dims[0], dims[1], dims[2] = shape[0], shape[1], 1
    if dims[0] == 0 or dims[1] == 0:
        return None
    cdef bint is_float = dtype is _float32
    cdef int type_num = cnp.NPY_FLOAT if is_float else cnp.NPY_DOUBLE
    cdef bint need_grad = grad_enabled and input.requires_grad
    cdef cnp.ndarray grad = _empty(shape, is_float) if need_grad else None
    cdef cnp.ndarray loss_out = _empty(target.shape, is_float) if how == 2 else None
    x = _tensor_array(input, 3, dims, type_num)
    labels = _tensor_array(target, 1, dims, cnp.NPY_INT64)
    kernel = _nll_loss_float if is_float else _nll_loss_double
    first_bad, total, denominator = kernel(
        x, labels, _no_weight, ignore_index, how == 0,
        loss_out if how == 2 else (_no_values_float if is_float else _no_values_double),
        _blocks(grad) if need_grad else (_no_blocks_float if is_float else _no_blocks_double),
        _threads())
    if first_bad >= 0 or how == 0 and denominator == 0:
        return None                 # torch's error for the label, its 0 / 0 = NaN
    loss = _from_numpy(loss_out) if how == 2 else _scalar(
        total / denominator if how == 0 else total, is_float)
    return _finish(input, loss, grad, torch_loss)
