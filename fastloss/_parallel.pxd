# Work split and ordered reductions shared by every kernel.
#
# A kernel splits its rows into "chunks" whose boundaries depend only on the
# array's shape (never on the thread count).  Each chunk's loss is summed in
# float64 into partial[chunk]; the partials are then added in chunk order.
# The result is therefore bit-identical for every n_threads.

cdef extern from "_openmp.h" nogil:
    int fl_openmp_enabled()
    int fl_max_threads()

cdef extern from "_build.h" nogil:
    # 1 in the debug build (FASTLOSS_DEBUG=1), and under AddressSanitizer.
    int FL_DEBUG_BUILD
    int FL_ASAN_BUILD


cdef inline dict build_facts():
    """How the calling module was compiled: a dict the tests check (see setup.py)."""
    return {"debug": bool(FL_DEBUG_BUILD), "asan": bool(FL_ASAN_BUILD),
            "openmp": bool(fl_openmp_enabled())}

cdef enum:
    # At most this many chunks: the partial sums live in a stack array.
    MAX_CHUNKS = 256
    # A chunk holds at least this many elements, so a thread's work
    # outweighs the cost of waking it.
    CHUNK_MIN_ELEMENTS = 32768
    # Elements whose losses go through one stack buffer at a time.
    SPAN = 512

cdef struct ChunkPlan:
    Py_ssize_t rows_per_chunk
    Py_ssize_t n_chunks


cdef inline ChunkPlan plan_chunks(Py_ssize_t n_rows, Py_ssize_t row_size) noexcept nogil:
    """Chunks of whole rows: >= CHUNK_MIN_ELEMENTS elements, <= MAX_CHUNKS chunks."""
    cdef ChunkPlan plan
    cdef Py_ssize_t by_size = (CHUNK_MIN_ELEMENTS + row_size - 1) // row_size if row_size > 0 else n_rows
    cdef Py_ssize_t by_count = (n_rows + MAX_CHUNKS - 1) // MAX_CHUNKS
    plan.rows_per_chunk = by_size if by_size > by_count else by_count
    if plan.rows_per_chunk < 1:
        plan.rows_per_chunk = 1
    plan.n_chunks = (n_rows + plan.rows_per_chunk - 1) // plan.rows_per_chunk
    return plan


cdef inline int resolve_threads(int n_threads, Py_ssize_t n_chunks) noexcept nogil:
    """n_threads <= 0 means the OpenMP default; never more threads than chunks."""
    if n_threads <= 0:
        n_threads = fl_max_threads()
    if n_threads > n_chunks:
        n_threads = <int>n_chunks
    if n_threads < 1:
        n_threads = 1
    return n_threads


cdef inline double sum_span(const double* values, Py_ssize_t n) noexcept nogil:
    """Sum n doubles with eight independent accumulators (fixed order).

    The accumulators are lanes the compiler keeps in SIMD registers, so the
    sum costs a fraction of a cycle per value, and its order, hence its
    rounding, is the same at every SIMD width.
    """
    cdef double acc[8]
    cdef Py_ssize_t j = 0, k
    for k in range(8):
        acc[k] = 0.0
    while j + 8 <= n:
        for k in range(8):
            acc[k] += values[j + k]
        j += 8
    k = 0
    while j < n:
        acc[k] += values[j]
        j += 1
        k += 1
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))


cdef inline double sum_in_order(const double* partial, Py_ssize_t n) noexcept nogil:
    """Neumaier-compensated sum of the chunk partials, in chunk order."""
    cdef double total = 0.0, compensation = 0.0, t
    cdef Py_ssize_t c
    for c in range(n):
        t = total + partial[c]
        if abs(total) >= abs(partial[c]):
            compensation += (total - t) + partial[c]
        else:
            compensation += (partial[c] - t) + total
        total = t
    if total - total != 0.0:
        return total        # inf or NaN: the compensation is meaningless
    return total + compensation
