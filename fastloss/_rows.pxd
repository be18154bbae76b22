# The stable row maths shared by the multiclass kernels, written once.
#
# Every function works on one row of C values in place, through pointers, so
# that the kernels can read the logits and write the gradient into the same
# buffer (out=logits).  The row rule (the NumPy reference follows it too):
#
#   m = max_c x_c, k = the first class with x_k = m,
#   z_c = x_c - m (the shifted logit), e_c = exp(z_c),
#   S = sum_{c != k} e_c, T = 1 + S = sum_c e_c,
#   log-sum-exp = m + log1p(S),  log p_c = z_c - log1p(S),  p_c = e_c / T.
#
# Writing the log-sum-exp as m + log1p(S) rather than m + log(T) keeps the
# digits of S when it is tiny (Blanchard, Higham & Higham, "Accurately
# computing the log-sum-exp and softmax functions", IMA J. Numer. Anal. 2021).
#
# Infinite maximum (+inf, or -inf for a row of -inf only): the classes at m
# share the probability equally (z_c = 0 there) and z_c = x_c - m = -inf
# elsewhere.  NaN in a row reaches S and so every result of the row.

from libc.math cimport expm1, INFINITY

from fastloss._scalar cimport (fl_exp, fl_exp_for_float, fl_exp_split_low, fl_expf, fl_log,
                              fl_log1p, two_sum)

ctypedef fused floating:
    float
    double


# --- the elementary functions: the vectorisable ones of _vecmath.h (about 1 ulp) ---

cdef inline double math_exp(double x) noexcept nogil:
    return fl_exp(x)


cdef inline double math_log(double x) noexcept nogil:
    return fl_log(x)


cdef inline double math_log1p(double x) noexcept nogil:
    return fl_log1p(x)


cdef inline double math_expm1(double x) noexcept nogil:
    return expm1(x)


# --- scalar pieces -----------------------------------------------------------

cdef inline double shifted_logit(double x, double row_max) noexcept nogil:
    """x - m, with 0 at the maximum itself (so also when m is infinite)."""
    return 0.0 if x == row_max else x - row_max


cdef inline double shift_error(double x, double row_max, double z) noexcept nogil:
    """The rounding error of z = fl(x - m): x - m = z + shift_error exactly.

    Knuth's TwoSum of x and -m (TAOCP vol. 2, 4.2.2).  It is 0 for float32
    logits, whose difference is exact in float64, and is taken as 0 where z
    is not finite (the formula gives NaN there and there is nothing to correct).
    """
    cdef double from_m = z - x
    cdef double error = (x - (z - from_m)) + (-row_max - from_m)
    return error if error == error else 0.0


cdef inline double shifted_exp(double x, double row_max) noexcept nogil:
    """exp(x - m) with the rounding of x - m compensated.

    exp(z + dz) = exp(z) (1 + dz) to O(dz^2), |dz| <= ulp(z) / 2.  Without the
    correction the relative error of exp(x - m) grows like |x - m| / 2 ulps
    (350 ulps at x - m = -700) for float64 logits.
    """
    cdef double z = shifted_logit(x, row_max)
    cdef double e = math_exp(z)
    return e + e * shift_error(x, row_max, z)


cdef inline double shifted_exp_split(double x, double row_max, double* rel) noexcept nogil:
    """exp(x - m) = e (1 + rel[0]) to about 2^-60 relative: shifted_exp with the
    roundings of fl_exp and of x - m carried in rel[0] (fl_exp_split_low)."""
    cdef double z = shifted_logit(x, row_max)
    return fl_exp_split_low(z, shift_error(x, row_max, z), rel)


cdef struct Sum:
    double total
    double compensation


cdef inline void add(Sum* s, double value, const floating* kind) noexcept nogil:
    """s += value; for float64 rows (``kind`` points into the row and selects the
    specialisation) with Kahan's compensation, so that a sum over C classes errs
    by about 2 ulps whatever C instead of ~sqrt(C).  float32 rows add float64
    terms plainly: their error stays far below a float32 ulp.

    W. Kahan, "Further remarks on reducing truncation errors", CACM 8(1), 1965.
    """
    cdef double y, t
    if floating is float:
        s.total += value
    else:
        y = value - s.compensation
        t = s.total + y
        if t - t == 0.0:            # finite: carry the rounding error of this addition
            s.compensation = (t - s.total) - y
        else:                       # inf or NaN: nothing to carry (inf - inf would be NaN)
            s.compensation = 0.0
        s.total = t


cdef inline double log1mexp(double a) noexcept nogil:
    """log(1 - exp(a)) for a <= 0, switching at -log 2 (Maechler 2012).

    Near 0, 1 - exp(a) = -expm1(a) keeps its digits; far below, log1p(-exp(a))
    does.  M. Maechler, "Accurately computing log(1 - exp(-|a|))", 2012.
    """
    if a > -0.6931471805599453:
        return math_log(-math_expm1(a))
    return math_log1p(-math_exp(a))


# --- row passes --------------------------------------------------------------

cdef struct RowMax:
    double value        # m
    Py_ssize_t index    # k, the first position of m (0 when the row holds NaN first)


cdef enum:
    # Independent accumulators of the row passes: lanes the compiler keeps in
    # SIMD registers.  Their combination order is fixed, so the result is the
    # same at every SIMD width (baseline or x86-64-v3).
    LANES = 8


cdef extern from "_vecmath.h" nogil:
    float fl_row_max_float(const float* x, Py_ssize_t n)
    double fl_row_max_double(const double* x, Py_ssize_t n)
    Py_ssize_t fl_first_equal_float(const float* x, Py_ssize_t n, float value)
    Py_ssize_t fl_first_equal_double(const double* x, Py_ssize_t n, double value)
    # The fast exp pass of an ordinary float32 row (x86-64-v3 build only)
    bint fl_fast_rows_built()
    # The 512-bit twins of a few passes on AVX-512 CPUs (set once, at import)
    bint fl_set_wide_lanes(bint on)
    bint fl_row_ordinary_float(const float* x, Py_ssize_t n, float* row_max)
    double fl_row_exp_sum_float(const float* x, Py_ssize_t n, float row_max, float* exp_out,
                                const float* next_x, float* next_out, double* exp_scale)
    void fl_row_affine_float(float* e, Py_ssize_t n, float a, float b)
    # The same for an ordinary float64 row, in double lanes (x86-64-v3 build only)
    bint fl_row_ordinary_double(const double* x, Py_ssize_t n, double* row_max)
    double fl_row_exp_sum_double(const double* x, Py_ssize_t n, double row_max, double* exp_out,
                                 const double* next_x, double* next_out, double* exp_scale)
    double fl_row_weighted_shift_double(const double* x, Py_ssize_t n, double row_max,
                                        const double* weight)
    # cap tanh(x / cap) and its slope sech^2(x / cap), and the soft-capped rows (any build)
    void fl_softcap(double x, double cap, double* capped, double* slope)
    bint fl_row_max_min_float(const float* x, Py_ssize_t n, float* row_max, float* row_min)
    bint fl_row_abs_max_float(const float* x, Py_ssize_t n, float* abs_max)
    double fl_row_softcap_exp_sum_float(const float* x, Py_ssize_t n, double cap, float row_max,
                                        double capped_max, float* exp_out, float* slope_out,
                                        const double* weight, double* weighted_shift)
    void fl_row_affine_slope_float(float* e, const float* slope, Py_ssize_t n, double a,
                                   double b, const double* weight)
    double fl_row_softcap_exp_sum_small_float(const float* x, Py_ssize_t n, Py_ssize_t label,
                                              double cap, double capped_y, float* exp_out,
                                              const float* next_x, float* next_out,
                                              double* exp_scale)
    void fl_row_affine_slope_float1(float* e, const float* slope, Py_ssize_t n, float a,
                                    float b)
    double fl_row_softcap_exp_sum_mid_float(const float* x, Py_ssize_t n, Py_ssize_t label,
                                            double cap, double capped_y, float* exp_out,
                                            float* slope_out, const float* next_x,
                                            float* next_out, double* exp_scale)



cdef extern from "_small_rows.h" nogil:
    # Softmax cross-entropy (z-loss z, 0: none) of 8 float32 rows of at most
    # 16 classes, one per SIMD lane (x86-64-v3 build only; elsewhere it declines)
    bint fl_small_ce8_float(const float* x, Py_ssize_t n, const Py_ssize_t* labels,
                            const double* scale, const double* delta, const double* weight_y,
                            double gamma, double beta, double z_loss,
                            const double* class_weight, float* grad, float* hess, double* loss)
    # The same of 4 float32 rows of at least 8 classes, one after another
    # (no Hessian; x86-64-v3 build only; elsewhere it declines)
    bint fl_mid_ce4_float(const float* x, Py_ssize_t n, const Py_ssize_t* labels,
                          const double* scale, const double* delta, const double* weight_y,
                          double gamma, double beta, double z_loss,
                          const double* class_weight, float* grad, double* loss)

cdef inline RowMax row_max(const floating* x, Py_ssize_t n) noexcept nogil:
    """The maximum of x[0:n] (n >= 1) and its first position.

    A NaN that is not first is skipped here; it reaches S in the exp pass.
    A leading NaN stays the maximum, as in a sequential scan, at position 0.
    Two SIMD scans (_vecmath.h): the maximum, then its first position.
    """
    cdef RowMax result
    cdef double best
    cdef Py_ssize_t index = 0
    if floating is float:
        best = fl_row_max_float(x, n)
        if best == best:
            index = fl_first_equal_float(x, n, <float>best)
    else:
        best = fl_row_max_double(x, n)
        if best == best:
            index = fl_first_equal_double(x, n, best)
    result.value = x[index]      # the value at the first position (its sign, if it is 0)
    result.index = index
    return result


cdef inline double exp_shifted(floating x, double row_max) noexcept nogil:
    """exp(x - m): float32 logits shift exactly in float64; float64 ones are compensated.

    A float32 row's results are rounded to float32, so its exp needs only
    ~1e-8 relative accuracy (half the polynomial of the float64 one).
    """
    if floating is float:
        return fl_exp_for_float(shifted_logit(x, row_max))
    else:
        return shifted_exp(x, row_max)


cdef inline float exp_shifted_float(float x, float row_max) noexcept nogil:
    """exp(x - m) in float arithmetic for a float32 row (8 SIMD lanes, not 4).

    z = fl(x - m) may round (x = -1e-9, m = 3); its error dz is recovered
    exactly by Knuth's TwoSum and applied as exp(z + dz) = exp(z) (1 + dz),
    as shift_error does in double.  fl_expf errs by at most 0.89 ulp (x86-64-v3
    build) or 1.19 ulp (baseline) as measured by tests/test_vecmath.py, so
    the result errs by about 1 float ulp; it feeds sums only (S, in float64
    lanes), never a stored result.
    """
    cdef float z = <float>0.0 if x == row_max else x - row_max
    cdef float from_m = z - x
    cdef float dz = (x - (z - from_m)) + (-row_max - from_m)
    cdef float e = fl_expf(z)
    dz = dz if dz - dz == <float>0.0 else <float>0.0     # inf or NaN: nothing to correct
    return e + e * dz


cdef inline void add_exp_blocks_float(const float* x, Py_ssize_t start, Py_ssize_t stop,
                                      float row_max, double* lanes,
                                      float* exp_out) noexcept nogil:
    """lanes[l] += exp(x_c - m) for c = start + LANES j + l in [start, stop), whole blocks.

    Also writes each exp to exp_out[c] unless it is NULL (exp_out may be x).
    """
    cdef float block[LANES]
    cdef Py_ssize_t c = start, l
    if exp_out == NULL:
        while c + LANES <= stop:
            for l in range(LANES):
                block[l] = exp_shifted_float(x[c + l], row_max)
            for l in range(LANES):
                lanes[l] += block[l]
            c += LANES
    else:
        while c + LANES <= stop:
            for l in range(LANES):
                block[l] = exp_shifted_float(x[c + l], row_max)
            for l in range(LANES):
                lanes[l] += block[l]
                exp_out[c + l] = block[l]
            c += LANES


cdef inline double exp_sum_others_float(const float* x, Py_ssize_t n, RowMax m,
                                        float* exp_out) noexcept nogil:
    """exp_sum_others of a float32 row without exp_out: the exps in float, the sums in float64.

    The blocks of LANES other than the one holding k need no test of c == k
    and run as plain SIMD code; the lanes receive their terms in the same
    order as in exp_sum_others.
    """
    cdef double lanes[LANES]
    cdef double total = 0.0
    cdef float row_max = <float>m.value
    cdef Py_ssize_t k = m.index, full = n - n % LANES, k_block = k - k % LANES, c, l
    cdef float e
    for l in range(LANES):
        lanes[l] = 0.0
    if k_block > full:
        k_block = full
    add_exp_blocks_float(x, 0, k_block, row_max, lanes, exp_out)
    if k_block < full:
        for l in range(LANES):
            c = k_block + l
            e = exp_shifted_float(x[c], row_max)
            if exp_out != NULL:
                exp_out[c] = e
            lanes[l] += 0.0 if c == k else e
        add_exp_blocks_float(x, k_block + LANES, full, row_max, lanes, exp_out)
    for c in range(full, n):
        e = exp_shifted_float(x[c], row_max)
        if exp_out != NULL:
            exp_out[c] = e
        lanes[c - full] += 0.0 if c == k else e
    if m.value != m.value:
        return m.value
    for l in range(LANES):
        total += lanes[l]
    return total


cdef inline double exp_sum_others(const floating* x, Py_ssize_t n, RowMax m,
                                  floating* exp_out) noexcept nogil:
    """S = sum_{c != k} exp(z_c); writes exp(z_c) for every c to exp_out unless NULL.

    exp_out may be x itself: each x[c] is read before exp_out[c] is written.
    The terms go to LANES interleaved sums (the term of k counting 0), so
    that exp vectorises; each lane is compensated for float64 rows (see add),
    and the lanes are then added in a fixed order with compensation, so S errs
    by about 2 ulps whatever C and is the same in every build.  A NaN maximum
    (x[0] is NaN) makes S NaN, also when the row has one class.
    """
    cdef Sum lanes[LANES]
    cdef Sum total
    cdef double e
    cdef Py_ssize_t c = 0, l, k = m.index
    if floating is float:
        # A caller that stores the exps keeps float32 values anyway: float
        # arithmetic (8 lanes) suffices.  Without exp_out (softmax BCE,
        # log-sum-exp), S may be needed far below float's range: float64.
        if exp_out != NULL:
            return exp_sum_others_float(x, n, m, exp_out)
    for l in range(LANES):
        lanes[l].total = 0.0
        lanes[l].compensation = 0.0
    while c + LANES <= n:
        for l in range(LANES):
            e = exp_shifted(x[c + l], m.value)
            if exp_out != NULL:
                exp_out[c + l] = <floating>e
            add(&lanes[l], 0.0 if c + l == k else e, x)
        c += LANES
    for l in range(n - c):
        e = exp_shifted(x[c + l], m.value)
        if exp_out != NULL:
            exp_out[c + l] = <floating>e
        add(&lanes[l], 0.0 if c + l == k else e, x)
    if m.value != m.value:
        return m.value
    total.total = 0.0
    total.compensation = 0.0
    for l in range(LANES):
        add(&total, lanes[l].total, x)
        add(&total, -lanes[l].compensation, x)
    return total.total


cdef inline void add_exp_split(const double* x, Py_ssize_t c, RowMax m, double* exp_out,
                               double* total, double* low) noexcept nogil:
    """One term of exp_sum_others_split: e_c = exp(z_c) (0 at k) to total by TwoSum,
    the sum's rounding and the exp's own (e_c rel_c) to low; e_c (1 + rel_c) to
    exp_out unless NULL."""
    cdef double rel, error
    cdef double e = shifted_exp_split(x[c], m.value, &rel)
    if exp_out != NULL:
        exp_out[c] = e + e * rel        # corrected by its carried roundings (x - m's too)
    e = 0.0 if c == m.index else e
    total[0] = two_sum(total[0], e, &error)
    low[0] += error + e * rel


cdef inline double exp_sum_others_split(const double* x, Py_ssize_t n, RowMax m,
                                        double* exp_out, double* low) noexcept nogil:
    """exp_sum_others of a float64 row as an unevaluated sum S + low[0], to about
    2^-60 relative: each exp(z_c) = e_c (1 + rel_c) with its roundings carried
    (shifted_exp_split), the e_c summed by TwoSum into LANES interleaved lanes,
    the lanes then in a fixed order, every TwoSum's error and every e_c rel_c
    into the low part (Ogita, Rump and Oishi's Sum2, "Accurate sum and dot
    product", SISC 2005).  For the focal loss, whose q^gamma multiplies S's
    relative error by gamma.  Writes e_c (1 + rel_c), rounded, to exp_out
    unless NULL (it may be x).  A NaN maximum gives NaN, as exp_sum_others does.
    """
    cdef double sums[LANES]
    cdef double lows[LANES]
    cdef double error, total = 0.0, total_low = 0.0
    cdef Py_ssize_t c = 0, l
    for l in range(LANES):
        sums[l] = 0.0
        lows[l] = 0.0
    while c + LANES <= n:
        for l in range(LANES):
            add_exp_split(x, c + l, m, exp_out, &sums[l], &lows[l])
        c += LANES
    for l in range(n - c):
        add_exp_split(x, c + l, m, exp_out, &sums[l], &lows[l])
    low[0] = 0.0
    if m.value != m.value:
        return m.value
    for l in range(LANES):
        total = two_sum(total, sums[l], &error)
        total_low += error + lows[l]
    # renormalised: S rounded to nearest (the lanes' plain sums may err by many
    # ulps on long rows; the low part holds that) for the callers that read S alone
    return two_sum(total, total_low, low)


cdef inline double exp_sum_others_to_float_range(const floating* x, Py_ssize_t n, RowMax m,
                                                floating* exp_out) noexcept nogil:
    """exp_sum_others for a caller whose results depend on S only to float32's range.

    The cross-entropy loss log1p(S) - z_y and its gradient are such: where S
    falls below float's range, so does every result that depends on it.  A
    float32 row then takes the float path also without exp_out (grad=False).
    """
    if floating is float:
        return exp_sum_others_float(x, n, m, exp_out)
    return exp_sum_others(x, n, m, exp_out)


cdef inline double exp_sum_around_second(const floating* x, Py_ssize_t n, RowMax m,
                                         double* second) noexcept nogil:
    """S' = sum_{c != k} exp(x_c - m2), m2 the largest logit other than x_k (n >= 2).

    S' >= 1 never underflows: S = S' exp(m2 - m) rescaled.  Writes m2 to second.
    """
    cdef double top = -INFINITY, total = 0.0
    cdef Py_ssize_t c
    for c in range(n):
        if c != m.index and x[c] > top:
            top = x[c]
    for c in range(n):
        if c != m.index:
            total += exp_shifted(x[c], top)
    second[0] = top
    return total


cdef inline double log_sum_exp_others(const floating* x, Py_ssize_t n, RowMax m,
                                      double others) noexcept nogil:
    """log S = log(sum_{c != k} exp(z_c)), also when S underflows.

    ``others`` is S as summed by exp_sum_others.  When it is tiny (its terms
    are subnormal or zero), log S is recomputed as the log-sum-exp of the
    other classes around their own maximum m2: (m2 - m) + log(sum exp(x_c - m2)).
    """
    cdef double second, total
    if others > 1e-280 or n < 2:
        return math_log(others)
    total = exp_sum_around_second(x, n, m, &second)
    return shifted_logit(second, m.value) + math_log(total)


# --- small rows: the exp pass of a block of rows at once ---------------------

cdef enum:
    # Rows of at most SMALL_ROW classes are processed BLOCK_ROWS at a time: a
    # row of 10 classes is too short for a SIMD pass of its own.
    SMALL_ROW = 16
    MID_ROW = 1024      # rows of SMALL_ROW < C <= MID_ROW classes: 4 at a time (fl_mid_ce4_float)
    BLOCK_ROWS = 64


cdef inline void block_exp_sums_float(const float* x, Py_ssize_t n_rows, Py_ssize_t n_classes,
                                      RowMax* maxima, double* sums,
                                      float* exp_out) noexcept nogil:
    """row_max and exp_sum_others of n_rows <= BLOCK_ROWS consecutive float32 rows
    of n_classes <= SMALL_ROW classes (exp_out must not overlap x).

    The same values as row by row: maxima[i] = row_max(row i), sums[i] = S of
    row i, and exp(z_c) written to exp_out, but the exps of the whole block are
    one contiguous SIMD pass (each element beside its row's maximum), and each
    S adds the same terms to the same lanes in the same order as exp_sum_others.
    """
    cdef float shift[BLOCK_ROWS * SMALL_ROW]
    cdef double lanes[LANES]
    cdef double total
    cdef Py_ssize_t i, c, l, k, n = n_rows * n_classes
    cdef const float* row
    cdef float* e
    cdef float best
    for i in range(n_rows):
        # row_max's rule in one short scan: a strict > keeps the first
        # position, and a leading NaN stays (no comparison with it holds).
        # Calling row_max (a maximum scan, then a search for its position)
        # measured 9-17% slower at 1_000_000 x 10 and x 16.
        row = x + i * n_classes
        best = row[0]
        k = 0
        for c in range(1, n_classes):
            k = c if row[c] > best else k
            best = row[c] if row[c] > best else best
        maxima[i].value = row[k]
        maxima[i].index = k
        for c in range(n_classes):
            shift[i * n_classes + c] = best
    for c in range(n):
        exp_out[c] = exp_shifted_float(x[c], shift[c])
    for i in range(n_rows):
        e = exp_out + i * n_classes
        k = maxima[i].index
        for l in range(LANES):
            lanes[l] = 0.0
        for c in range(n_classes):
            lanes[c % LANES] += 0.0 if c == k else e[c]
        total = 0.0
        for l in range(LANES):
            total += lanes[l]
        sums[i] = maxima[i].value if maxima[i].value != maxima[i].value else total
