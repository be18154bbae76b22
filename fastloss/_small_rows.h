/* Softmax cross-entropy of short float32 rows (labels, n <= 16 classes), 8 rows
 * at a time, one row per SIMD lane, everything in registers.
 *
 * A row of 10 classes is too short for a SIMD pass of its own: taken alone,
 * its scalar work (maximum, first position, sums, log1p, coefficients)
 * costs several times its exps.  Here 8 rows are read transposed (8 x 8
 * blocks through registers: the columns 0-7, then the columns n-8 to n-1,
 * overlapping for n < 16; masked loads for n < 8), and every step runs across
 * the 8 rows at once:
 *
 *   - maximum m, minimum and NaN scan: the rows are "ordinary" (no NaN,
 *     |m| < 2^20, every logit within 85 of m) or the group is declined;
 *   - e'_c = exp(x_c - K ln2), K = rint(m log2 e), by the Cody-Waite
 *     reduction of _vecmath.h (fl_exp_around_v8: no TwoSum, the exponent
 *     scaling one integer add); the terms at m are left out of the sums and
 *     counted instead, so that S = sum_{c != k} e_c keeps its digits when it
 *     is tiny;
 *   - the sums: groups of 4 columns in float (at most 2 float roundings
 *     per term, as the long rows), then double lanes;
 *   - per row, in 4-lane double vectors: the row factor exp(K ln2 - m)
 *     (Taylor, degree 9, |K ln2 - m| < 0.42: remainder < 5e-11), S, 1 / T,
 *     log1p(S) (fdlibm's log reduction, Goldberg's correction through 1 / T),
 *     the loss, the gradient coefficients and the label's gradient element
 *     (from q_y = 1 - p_y, or S / T when x_y = m: no cancellation), with the
 *     z-loss z lse^2 (lse = m + L) and its 2 z lse p_c;
 *   - the gradient scaled in float, the label element merged by a lane mask,
 *     written back transposed (every x read before the first write, so grad
 *     may be x).
 *
 * The labels are compared lane by lane (never used as addresses), so a bad
 * label reads nothing outside the rows; the caller checks them.
 *
 * Only in the x86-64-v3 build (AVX2, FMA); elsewhere it declines every group.
 */
#ifndef FASTLOSS_SMALL_ROWS_H
#define FASTLOSS_SMALL_ROWS_H

#include "_vecmath.h"

#ifdef FL_HAVE_FAST_ROWS

#ifndef FL_SMALL_PREFETCH
#define FL_SMALL_PREFETCH 8     /* groups of 8 rows ahead (measured: 4-16 alike, none slower) */
#endif

/* log1p(s) for 0 <= s < 2^10, given u = fl(1 + s) and inv_u = 1 / u:
 * fl_log_core's reduction and polynomial (u = 2^k m, m in [sqrt(1/2),
 * sqrt(2))), with Goldberg's correction (s - (u - 1)) / u through inv_u. */
static inline __m256d fl_small_log1p_v4d(__m256d s, __m256d u, __m256d inv_u)
{
    const __m256d LN2_HI = _mm256_set1_pd(6.93147180369123816490e-01);
    const __m256d LN2_LO = _mm256_set1_pd(1.90821492927058770002e-10);
    const __m256d one = _mm256_set1_pd(1.0);
    const __m256d shifter = _mm256_set1_pd(4503599627370496.0);          /* 2^52 */
    __m256i bits = _mm256_castpd_si256(u);
    __m256d biased = _mm256_sub_pd(
        _mm256_castsi256_pd(_mm256_or_si256(_mm256_srli_epi64(bits, 52),
                                            _mm256_castpd_si256(shifter))), shifter);
    __m256d m = _mm256_castsi256_pd(_mm256_or_si256(
        _mm256_and_si256(bits, _mm256_set1_epi64x(0x000fffffffffffffLL)),
        _mm256_castpd_si256(one)));
    __m256d big = _mm256_cmp_pd(m, _mm256_set1_pd(1.4142135623730951), _CMP_GT_OQ);
    m = _mm256_blendv_pd(m, _mm256_mul_pd(m, _mm256_set1_pd(0.5)), big);
    __m256d k = _mm256_add_pd(_mm256_sub_pd(biased, _mm256_set1_pd(1023.0)),
                              _mm256_and_pd(big, one));
    __m256d f = _mm256_sub_pd(m, one);
    __m256d sr = _mm256_div_pd(f, _mm256_add_pd(_mm256_set1_pd(2.0), f));
    __m256d z = _mm256_mul_pd(sr, sr);
    __m256d w = _mm256_mul_pd(z, z);
    __m256d t1 = _mm256_fmadd_pd(w, _mm256_set1_pd(1.531383769920937332e-01),
                                 _mm256_set1_pd(2.222219843214978396e-01));
    t1 = _mm256_fmadd_pd(w, t1, _mm256_set1_pd(3.999999999940941908e-01));
    t1 = _mm256_mul_pd(w, t1);
    __m256d t2 = _mm256_fmadd_pd(w, _mm256_set1_pd(1.479819860511658591e-01),
                                 _mm256_set1_pd(1.818357216161805012e-01));
    t2 = _mm256_fmadd_pd(w, t2, _mm256_set1_pd(2.857142874366239149e-01));
    t2 = _mm256_fmadd_pd(w, t2, _mm256_set1_pd(6.666666666666735130e-01));
    t2 = _mm256_mul_pd(z, t2);
    __m256d R = _mm256_add_pd(t2, t1);
    __m256d hfsq = _mm256_mul_pd(_mm256_mul_pd(_mm256_set1_pd(0.5), f), f);
    __m256d c = _mm256_mul_pd(_mm256_sub_pd(s, _mm256_sub_pd(u, one)), inv_u);
    /* k LN2_HI - ((hfsq - (sr (hfsq + R) + (k LN2_LO + c))) - f) */
    __m256d inner = _mm256_fmadd_pd(sr, _mm256_add_pd(hfsq, R), _mm256_fmadd_pd(k, LN2_LO, c));
    return _mm256_fmsub_pd(k, LN2_HI, _mm256_sub_pd(_mm256_sub_pd(hfsq, inner), f));
}

/* exp(d) for |d| < 0.42: Taylor, degree 9 (remainder < 5e-11 relative, below
 * 1/1000 of a float ulp). */
static inline __m256d fl_small_exp_v4d(__m256d d)
{
    __m256d p = _mm256_set1_pd(1.0 / 362880.0);
    p = _mm256_fmadd_pd(p, d, _mm256_set1_pd(1.0 / 40320.0));
    p = _mm256_fmadd_pd(p, d, _mm256_set1_pd(1.0 / 5040.0));
    p = _mm256_fmadd_pd(p, d, _mm256_set1_pd(1.0 / 720.0));
    p = _mm256_fmadd_pd(p, d, _mm256_set1_pd(1.0 / 120.0));
    p = _mm256_fmadd_pd(p, d, _mm256_set1_pd(1.0 / 24.0));
    p = _mm256_fmadd_pd(p, d, _mm256_set1_pd(1.0 / 6.0));
    p = _mm256_fmadd_pd(p, d, _mm256_set1_pd(0.5));
    p = _mm256_fmadd_pd(p, d, _mm256_set1_pd(1.0));
    return _mm256_fmadd_pd(p, d, _mm256_set1_pd(1.0));
}

/* |a| == 0 or 1e-30 <= |a| <= 1e30, lane by lane (false for NaN) */
static inline __m256d fl_small_in_range(__m256d a)
{
    a = _mm256_andnot_pd(_mm256_set1_pd(-0.0), a);
    return _mm256_or_pd(_mm256_cmp_pd(a, _mm256_setzero_pd(), _CMP_EQ_OQ),
                        _mm256_and_pd(_mm256_cmp_pd(a, _mm256_set1_pd(1e-30), _CMP_GE_OQ),
                                      _mm256_cmp_pd(a, _mm256_set1_pd(1e30), _CMP_LE_OQ)));
}

/* One row per double lane (4 rows): the row's scalars after its exp pass, as
 * the callers below define them.  m the row maximum, kd = K, raw the sum of
 * e'_c = exp(x_c - K ln2) over c with x_c != m, ties the count of x_c == m,
 * xy = x_y and ey = e'_y, wz = sum_c w_c (x_c - m) (read only when beta != 0),
 * z the z-loss coefficient (0: none):
 *
 *   factor = exp(K ln2 - m),  S = factor raw + ties - 1,  T = 1 + S,
 *   L = log1p(S),  p_y = factor ey / T (1 / T at m),  q_y = 1 - p_y (S / T at m),
 *   lse = m + L,  g = gamma + 2 z lse                 (the z-loss's gradient 2 z lse p_c)
 *   loss = delta (L - z_y) + gamma L - beta wz + z lse^2    (written to loss[0:4])
 *   coef = scale (delta + g) factor / T               (grad_c = coef e'_c - bsc w_c)
 *   bsc = scale beta,  gy = scale (-delta q_y + g p_y - beta w_y)
 *
 * and the Hessian's scale (delta + g), factor / T and its value S / T^2 at
 * m; ok: coef and bsc are 0 or within [1e-30, 1e30] (float's range, scaled
 * in float without underflow or overflow). */
typedef struct {
    __m256d coef, gy, bsc, ok, hscale, pf, hmax;
} fl_ce_coefs4;

static inline __attribute__((always_inline)) void fl_ce_rows4(
    __m256d m, __m256d kd, __m256d raw, __m256d tie_count, __m256d xyd, __m256d eyd,
    const double *scale, const double *delta, const double *weight_y, double gamma,
    double beta, double z_loss, __m256d wz, double *loss, fl_ce_coefs4 *out)
{
    const double LN2_HI = 6.93147180369123816490e-01;
    const double LN2_LO = 1.90821492927058770002e-10;
    __m256d d = _mm256_fmadd_pd(kd, _mm256_set1_pd(LN2_LO),
                                _mm256_fmsub_pd(kd, _mm256_set1_pd(LN2_HI), m));
    __m256d factor = fl_small_exp_v4d(d);
    __m256d others = _mm256_fmadd_pd(factor, raw,
                                     _mm256_sub_pd(tie_count, _mm256_set1_pd(1.0)));
    __m256d u = _mm256_add_pd(_mm256_set1_pd(1.0), others);
    __m256d inv = _mm256_div_pd(_mm256_set1_pd(1.0), u);
    __m256d L = fl_small_log1p_v4d(others, u, inv);
    __m256d z_y = _mm256_sub_pd(xyd, m);                         /* exact */
    __m256d at_y = _mm256_cmp_pd(xyd, m, _CMP_EQ_OQ);
    __m256d p_y = _mm256_blendv_pd(_mm256_mul_pd(_mm256_mul_pd(factor, eyd), inv), inv, at_y);
    __m256d q_y = _mm256_blendv_pd(_mm256_sub_pd(_mm256_set1_pd(1.0), p_y),
                                   _mm256_mul_pd(others, inv), at_y);
    __m256d dl = _mm256_loadu_pd(delta);
    __m256d sc = _mm256_loadu_pd(scale);
    __m256d g = _mm256_set1_pd(gamma), b = _mm256_set1_pd(beta);
    __m256d lv = _mm256_mul_pd(dl, _mm256_sub_pd(L, z_y));
    if (beta != 0.0)
        lv = _mm256_add_pd(lv, _mm256_fmsub_pd(g, L, _mm256_mul_pd(b, wz)));
    if (z_loss != 0.0) {
        /* z lse^2 in the loss, 2 z lse in the coefficient of p (the head's rule) */
        __m256d z = _mm256_set1_pd(z_loss), lse = _mm256_add_pd(m, L);
        lv = _mm256_add_pd(lv, _mm256_mul_pd(z, _mm256_mul_pd(lse, lse)));
        g = _mm256_add_pd(g, _mm256_mul_pd(_mm256_add_pd(z, z), lse));
    }
    _mm256_storeu_pd(loss, lv);
    out->coef = _mm256_mul_pd(_mm256_mul_pd(sc, _mm256_add_pd(dl, g)),
                              _mm256_mul_pd(factor, inv));
    out->bsc = _mm256_mul_pd(sc, b);
    /* the Hessian's diagonal: scale (delta + gamma) p_c (1 - p_c), S / T^2 at m */
    out->hscale = _mm256_mul_pd(sc, _mm256_add_pd(dl, g));
    out->pf = _mm256_mul_pd(factor, inv);
    out->hmax = _mm256_mul_pd(out->hscale, _mm256_mul_pd(_mm256_mul_pd(others, inv), inv));
    /* scale (-delta q_y + gamma p_y - beta w_y) */
    __m256d gy = _mm256_fmsub_pd(g, p_y, _mm256_mul_pd(dl, q_y));
    if (beta != 0.0)
        gy = _mm256_fnmadd_pd(b, _mm256_loadu_pd(weight_y), gy);
    out->gy = _mm256_mul_pd(sc, gy);
    out->ok = _mm256_and_pd(fl_small_in_range(out->coef), fl_small_in_range(out->bsc));
}

/* t[j] lane r = x[r n + c0 + j] (j < 4, r < 8): 4 columns of 8 rows, as two 4 x 4
 * transposes within the 128-bit halves (rows 0-3 low, 4-7 high; no lane crossing). */
static inline void fl_small_load4(const float *x, ptrdiff_t n, ptrdiff_t c0, __m256 t[4])
{
    __m256 a[4];
    for (int r = 0; r < 4; r++)
        a[r] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(x + r * n + c0)),
                                    _mm_loadu_ps(x + (r + 4) * n + c0), 1);
    __m256 t0 = _mm256_unpacklo_ps(a[0], a[1]), t1 = _mm256_unpackhi_ps(a[0], a[1]);
    __m256 t2 = _mm256_unpacklo_ps(a[2], a[3]), t3 = _mm256_unpackhi_ps(a[2], a[3]);
    t[0] = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
    t[1] = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
    t[2] = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
    t[3] = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
}

/* The inverse: out[r n + c0 + j] = t[j] lane r. */
static inline void fl_small_store4(const __m256 t[4], float *out, ptrdiff_t n, ptrdiff_t c0)
{
    __m256 t0 = _mm256_unpacklo_ps(t[0], t[1]), t1 = _mm256_unpackhi_ps(t[0], t[1]);
    __m256 t2 = _mm256_unpacklo_ps(t[2], t[3]), t3 = _mm256_unpackhi_ps(t[2], t[3]);
    __m256 a[4];
    a[0] = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
    a[1] = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
    a[2] = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
    a[3] = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
    for (int r = 0; r < 4; r++) {
        _mm_storeu_ps(out + r * n + c0, _mm256_castps256_ps128(a[r]));
        _mm_storeu_ps(out + (r + 4) * n + c0, _mm256_extractf128_ps(a[r], 1));
    }
}

/* The body for a constant n (the dispatcher below makes one per n, fully unrolled). */
static inline __attribute__((always_inline)) int fl_small_ce8_body(
    const float *x, const ptrdiff_t n, const ptrdiff_t *labels, const double *scale,
    const double *delta, const double *weight_y, double gamma, double beta, double z_loss,
    const double *class_weight, float *grad, float *hess, double *loss)
{
    __m256 col[16], e[16], v[8];
    __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
#ifdef FL_SMALL_PREFETCH
    /* the rows FL_SMALL_PREFETCH groups ahead (read) and their gradient (write):
     * the hardware prefetcher stops at page boundaries (a prefetch past the
     * arrays' end reads nothing and cannot fault) */
    for (ptrdiff_t b = 0; b < 8 * n * 4; b += 64) {
        _mm_prefetch((const char *)(x + FL_SMALL_PREFETCH * 8 * n) + b, _MM_HINT_T0);
        if (grad != NULL)
            __builtin_prefetch((const char *)(grad + FL_SMALL_PREFETCH * 8 * n) + b, 1, 3);
    }
#endif
    /* --- the 8 rows, transposed: col[c] lane r = x[r n + c], 4 columns at a time
     * (the last 4 overlapping the others when 4 does not divide n; masked
     * loads below 4 columns) */
    if (n >= 4) {
        _Pragma("GCC unroll 4")
        for (ptrdiff_t c0 = 0; c0 < n; c0 += 4) {
            ptrdiff_t at = c0 + 4 <= n ? c0 : n - 4;
            __m256 t[4];
            fl_small_load4(x, n, at, t);
            _Pragma("GCC unroll 4")
            for (ptrdiff_t j = c0 - at; j < 4; j++)
                col[at + j] = t[j];
        }
    } else {
        __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), lane);
        _Pragma("GCC unroll 16")
        for (int r = 0; r < 8; r++)
            v[r] = _mm256_maskload_ps(x + r * n, mask);
        fl_transpose8(v);
        _Pragma("GCC unroll 16")
        for (ptrdiff_t c = 0; c < n; c++)
            col[c] = v[c];
    }
    /* --- maximum, minimum, NaN (pairwise trees: short dependency chains): ordinary
     * rows or nothing */
    __m256 hv[8], lv[8], nv[8];
    ptrdiff_t half = (n + 1) / 2;
    _Pragma("GCC unroll 16")
    for (ptrdiff_t c = 0; c < half; c++) {
        __m256 a = col[c], b = col[c + half < n ? c + half : c];
        hv[c] = _mm256_max_ps(a, b);
        lv[c] = _mm256_min_ps(a, b);
        nv[c] = _mm256_cmp_ps(a, b, _CMP_UNORD_Q);
    }
    _Pragma("GCC unroll 16")
    for (ptrdiff_t width = half; width > 1; width = (width + 1) / 2) {
        ptrdiff_t h2 = (width + 1) / 2;
        _Pragma("GCC unroll 16")
        for (ptrdiff_t c = 0; c + h2 < width; c++) {
            hv[c] = _mm256_max_ps(hv[c], hv[c + h2]);
            lv[c] = _mm256_min_ps(lv[c], lv[c + h2]);
            nv[c] = _mm256_or_ps(nv[c], nv[c + h2]);
        }
    }
    __m256 hi = hv[0], lo = lv[0], nan = nv[0];
    __m256 ok = _mm256_and_ps(
        _mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), hi), _mm256_set1_ps(1048576.0f),
                      _CMP_LT_OQ),
        _mm256_cmp_ps(lo, _mm256_sub_ps(hi, _mm256_set1_ps(FL_ROW_SPREAD)), _CMP_GE_OQ));
    if (_mm256_movemask_ps(_mm256_andnot_ps(nan, ok)) != 0xff)
        return 0;
    /* --- the exps around K ln2 and their sums without the terms at m (4 columns in
     * float, then double lanes), the label's lane values (labels as 8 int32
     * lanes: the caller has checked that they fit) */
    __m256 k = _mm256_round_ps(_mm256_mul_ps(hi, _mm256_set1_ps(FL_LOG2E_F)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 shifter = _mm256_sub_ps(_mm256_set1_ps(12582912.0f), k);
    __m256i ties = _mm256_setzero_si256();
    __m256i pick = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
    __m256i l0 = _mm256_permutevar8x32_epi32(_mm256_loadu_si256((const __m256i *)labels), pick);
    __m256i l1 = _mm256_permutevar8x32_epi32(_mm256_loadu_si256((const __m256i *)(labels + 4)),
                                             pick);
    __m256i lab = _mm256_permute2x128_si256(l0, l1, 0x20);
    __m256 xy = _mm256_setzero_ps(), is_y[16];
    __m256d sum_lo = _mm256_setzero_pd(), sum_hi = _mm256_setzero_pd();
    __m256i one_i = _mm256_set1_epi32(1), column = _mm256_setzero_si256();
    _Pragma("GCC unroll 16")
    for (ptrdiff_t c0 = 0; c0 < n; c0 += 4) {
        __m256 t4[4];
        const ptrdiff_t width = n - c0 < 4 ? n - c0 : 4;
        _Pragma("GCC unroll 4")
        for (ptrdiff_t c = c0; c < c0 + width; c++) {
            e[c] = fl_exp_around_v8(col[c], shifter);
            __m256 at_max = _mm256_cmp_ps(col[c], hi, _CMP_EQ_OQ);
            ties = _mm256_sub_epi32(ties, _mm256_castps_si256(at_max));
            t4[c - c0] = _mm256_andnot_ps(at_max, e[c]);
            is_y[c] = _mm256_castsi256_ps(_mm256_cmpeq_epi32(lab, column));
            column = _mm256_add_epi32(column, one_i);
            xy = _mm256_or_ps(xy, _mm256_and_ps(is_y[c], col[c]));
        }
        __m256 s = t4[0];          /* (t0 + t1) + (t2 + t3): at most 2 roundings per term */
        if (width == 4)
            s = _mm256_add_ps(_mm256_add_ps(t4[0], t4[1]), _mm256_add_ps(t4[2], t4[3]));
        else if (width == 3)
            s = _mm256_add_ps(_mm256_add_ps(t4[0], t4[1]), t4[2]);
        else if (width == 2)
            s = _mm256_add_ps(t4[0], t4[1]);
        sum_lo = _mm256_add_pd(sum_lo, fl_lo_pd(s));
        sum_hi = _mm256_add_pd(sum_hi, fl_hi_pd(s));
    }
    /* e'_y, as e'_c above (the same operations on the same value) */
    __m256 ey = fl_exp_around_v8(xy, shifter);
    /* weighted shifted sum of label smoothing: sum_c w_c (x_c - m), exact terms in double */
    __m256d wz_lo = _mm256_setzero_pd(), wz_hi = _mm256_setzero_pd();
    if (beta != 0.0) {
        __m256d m_lo = fl_lo_pd(hi), m_hi = fl_hi_pd(hi);
        _Pragma("GCC unroll 16")
        for (ptrdiff_t c = 0; c < n; c++) {
            __m256d w = _mm256_set1_pd(class_weight == NULL ? 1.0 : class_weight[c]);
            wz_lo = _mm256_fmadd_pd(w, _mm256_sub_pd(fl_lo_pd(col[c]), m_lo), wz_lo);
            wz_hi = _mm256_fmadd_pd(w, _mm256_sub_pd(fl_hi_pd(col[c]), m_hi), wz_hi);
        }
    }
    /* --- per row, 4 double lanes at a time */
    fl_ce_coefs4 co[2];
    _Pragma("GCC unroll 16")
    for (int h = 0; h < 2; h++) {
        __m128i ties4 = h ? _mm256_extracti128_si256(ties, 1) : _mm256_castsi256_si128(ties);
        fl_ce_rows4(h ? fl_hi_pd(hi) : fl_lo_pd(hi),
                    h ? fl_hi_pd(k) : fl_lo_pd(k), h ? sum_hi : sum_lo,
                    _mm256_cvtepi32_pd(ties4), h ? fl_hi_pd(xy) : fl_lo_pd(xy),
                    h ? fl_hi_pd(ey) : fl_lo_pd(ey), scale + 4 * h, delta + 4 * h,
                    weight_y + 4 * h, gamma, beta, z_loss, h ? wz_hi : wz_lo, loss + 4 * h,
                    &co[h]);
    }
    __m256d coef_h[2] = {co[0].coef, co[1].coef}, bsc_h[2] = {co[0].bsc, co[1].bsc};
    __m256d gy_h[2] = {co[0].gy, co[1].gy}, ok_h[2] = {co[0].ok, co[1].ok};
    __m256d hscale_h[2] = {co[0].hscale, co[1].hscale}, pf_h[2] = {co[0].pf, co[1].pf};
    __m256d hmax_h[2] = {co[0].hmax, co[1].hmax};
    if (_mm256_movemask_pd(_mm256_and_pd(ok_h[0], ok_h[1])) != 0xf)
        return 0;
    if (grad == NULL)
        return 1;
    if (hess != NULL) {
        __m256 hmax = fl_join_ps(hmax_h[0], hmax_h[1]);
        __m256 hc[16];
        _Pragma("GCC unroll 16")
        for (ptrdiff_t c = 0; c < n; c++) {
            __m256d hh[2];
            for (int h = 0; h < 2; h++) {
                __m256d p = _mm256_mul_pd(pf_h[h], h ? fl_hi_pd(e[c]) : fl_lo_pd(e[c]));
                hh[h] = _mm256_mul_pd(hscale_h[h],
                                      _mm256_mul_pd(p, _mm256_sub_pd(_mm256_set1_pd(1.0), p)));
            }
            hc[c] = _mm256_blendv_ps(fl_join_ps(hh[0], hh[1]), hmax,
                                     _mm256_cmp_ps(col[c], hi, _CMP_EQ_OQ));
        }
        if (n >= 4) {
            _Pragma("GCC unroll 4")
            for (ptrdiff_t c0 = 0; c0 < n; c0 += 4) {
                ptrdiff_t at = c0 + 4 <= n ? c0 : n - 4;
                fl_small_store4(hc + at, hess, n, at);
            }
        } else {
            __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), lane);
            for (int c = 0; c < 8; c++)
                v[c] = c < n ? hc[c] : _mm256_setzero_ps();
            fl_transpose8(v);
            for (int r = 0; r < 8; r++)
                _mm256_maskstore_ps(hess + r * n, mask, v[r]);
        }
    }
    __m256 coef = fl_join_ps(coef_h[0], coef_h[1]);
    __m256 gy = fl_join_ps(gy_h[0], gy_h[1]);
    __m256 bsc = fl_join_ps(bsc_h[0], bsc_h[1]);
    _Pragma("GCC unroll 16")
    for (ptrdiff_t c = 0; c < n; c++) {
        __m256 gc;
        if (beta == 0.0)
            gc = _mm256_mul_ps(coef, e[c]);
        else if (class_weight == NULL)
            gc = _mm256_fmsub_ps(coef, e[c], bsc);
        else {
            __m256d w = _mm256_set1_pd(class_weight[c]);
            gc = _mm256_fmsub_ps(coef, e[c], fl_join_ps(_mm256_mul_pd(bsc_h[0], w),
                                                              _mm256_mul_pd(bsc_h[1], w)));
        }
        e[c] = _mm256_blendv_ps(gc, gy, is_y[c]);
    }
    /* --- written back transposed (overlapping tiles write the same values twice) */
    if (n >= 4) {
        _Pragma("GCC unroll 4")
        for (ptrdiff_t c0 = 0; c0 < n; c0 += 4) {
            ptrdiff_t at = c0 + 4 <= n ? c0 : n - 4;
            fl_small_store4(e + at, grad, n, at);
        }
    } else {
        __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), lane);
        _Pragma("GCC unroll 16")
        for (int c = 0; c < 8; c++)
            v[c] = c < n ? e[c] : _mm256_setzero_ps();
        fl_transpose8(v);
        _Pragma("GCC unroll 16")
        for (int r = 0; r < 8; r++)
            _mm256_maskstore_ps(grad + r * n, mask, v[r]);
    }
    return 1;
}

#endif

/* Softmax cross-entropy of 8 float32 rows of n <= 16 classes at x (row stride
 * n) with labels: per row r, with its label coefficient delta[r] = (1 - eps)
 * w_{y_r}, weight_y[r] = w_{y_r}, gamma = (eps / C) W and beta = eps / C
 * (the notation of the kernels' label engine; 0 without smoothing) and the
 * z-loss z (0: none) of lse = m + L,
 *
 *   loss[r] = delta (L - z_y) + gamma L - beta sum_c w_c z_c + z lse^2
 *   grad[r n + c] = scale[r] (delta (p_c - [c == y]) + (gamma + 2 z lse) p_c - beta w_c)
 *
 * and, unless hess is NULL (it needs grad), the Hessian's diagonal
 * scale[r] (delta + gamma) p_c (1 - p_c) (S / T^2 where x_c = m, free of the
 * cancellation of 1 - p_c) (grad may be x or NULL; class_weight NULL for
 * w = 1).  A row with scale 0
 * and delta 0 (an ignored one) gets a zero gradient.  Returns 0, having
 * written nothing to grad, unless all 8 rows are ordinary and every gradient
 * coefficient is within float's range (the caller then takes the rows one by
 * one), or n is outside [1, 16] or this is not the x86-64-v3 build. */
static inline int fl_small_ce8_float(const float *x, ptrdiff_t n, const ptrdiff_t *labels,
                                     const double *scale, const double *delta,
                                     const double *weight_y, double gamma, double beta,
                                     double z_loss, const double *class_weight, float *grad,
                                     float *hess, double *loss)
{
#ifdef FL_HAVE_FAST_ROWS
#define FL_SMALL_CASE(N) case N: return fl_small_ce8_body(x, N, labels, scale, delta, weight_y, \
                                                           gamma, beta, z_loss, class_weight, \
                                                           grad, hess, loss);
    switch (n) {
    FL_SMALL_CASE(1) FL_SMALL_CASE(2) FL_SMALL_CASE(3) FL_SMALL_CASE(4)
    FL_SMALL_CASE(5) FL_SMALL_CASE(6) FL_SMALL_CASE(7) FL_SMALL_CASE(8)
    FL_SMALL_CASE(9) FL_SMALL_CASE(10) FL_SMALL_CASE(11) FL_SMALL_CASE(12)
    FL_SMALL_CASE(13) FL_SMALL_CASE(14) FL_SMALL_CASE(15) FL_SMALL_CASE(16)
    default: return 0;
    }
#undef FL_SMALL_CASE
#else
    (void)x; (void)n; (void)labels; (void)scale; (void)delta; (void)weight_y; (void)gamma;
    (void)beta; (void)z_loss; (void)class_weight; (void)grad; (void)hess; (void)loss;
    return 0;
#endif
}

/* ------------------------------------------------------------------ mid-range rows */

/* Softmax cross-entropy of 4 float32 rows of n >= 8 classes (labels), the
 * same notation and results as fl_small_ce8_float, for rows too long to hold
 * in registers but short enough that one row's scalar work (its maximum's
 * reduction, the row factor, log1p, 1 / T, the coefficients) would cost as
 * much as its exps:
 *
 *   - each row scanned once for its maximum m, minimum and NaN, whole vectors
 *     (the last one overlapping the others: read only); the 4 rows are
 *     ordinary (as above) or the group is declined before anything is written;
 *   - the exp pass of each row (fl_exp_around_v8 around K ln2, the terms at m
 *     counted apart, pairs of float blocks then double lanes as in
 *     fl_row_exp_sum_float), the last partial vector by masked loads and
 *     stores (the masked lanes left out of the sums and counts);
 *   - the 4 rows' scalars together, one row per double lane (fl_ce_rows4);
 *   - the gradient scaled in float (one FMA per element; in double for a row
 *     whose coefficients fall outside float's range), the label's element
 *     last.
 *
 * Every x of a row is read before its first write, so grad may be x.  A
 * label outside [0, n) (an ignored row, scale 0) is never used as an address.
 */
#ifdef FL_HAVE_FAST_ROWS

/* the lanes [0, count) of a mask (count <= 8) */
static inline __m256i fl_mid_mask(ptrdiff_t count)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)count),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* Is x[0:n] (n >= 8) ordinary?  Writes its maximum. */
static inline int fl_mid_scan(const float *x, ptrdiff_t n, float *row_max)
{
    __m256 hi0 = _mm256_loadu_ps(x + n - 8), hi1 = hi0, lo0 = hi0, lo1 = hi0;
    __m256 nan = _mm256_cmp_ps(hi0, hi0, _CMP_UNORD_Q);
    ptrdiff_t c = 0;
    for (; c + 16 <= n; c += 16) {
        __m256 a = _mm256_loadu_ps(x + c), b = _mm256_loadu_ps(x + c + 8);
        hi0 = _mm256_max_ps(hi0, a);
        hi1 = _mm256_max_ps(hi1, b);
        lo0 = _mm256_min_ps(lo0, a);
        lo1 = _mm256_min_ps(lo1, b);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(a, b, _CMP_UNORD_Q));
    }
    if (c + 8 <= n) {
        __m256 a = _mm256_loadu_ps(x + c);
        hi0 = _mm256_max_ps(hi0, a);
        lo0 = _mm256_min_ps(lo0, a);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
    }
    /* vmaxps/vminps: NaN is tracked apart, so their operand order does not matter */
    __m256 hi = _mm256_max_ps(hi0, hi1), lo = _mm256_min_ps(lo0, lo1);
    hi = _mm256_max_ps(hi, _mm256_permute2f128_ps(hi, hi, 1));
    lo = _mm256_min_ps(lo, _mm256_permute2f128_ps(lo, lo, 1));
    hi = _mm256_max_ps(hi, _mm256_shuffle_ps(hi, hi, _MM_SHUFFLE(1, 0, 3, 2)));
    lo = _mm256_min_ps(lo, _mm256_shuffle_ps(lo, lo, _MM_SHUFFLE(1, 0, 3, 2)));
    hi = _mm256_max_ps(hi, _mm256_shuffle_ps(hi, hi, _MM_SHUFFLE(2, 3, 0, 1)));
    lo = _mm256_min_ps(lo, _mm256_shuffle_ps(lo, lo, _MM_SHUFFLE(2, 3, 0, 1)));
    float m = _mm256_cvtss_f32(hi), low = _mm256_cvtss_f32(lo);
    *row_max = m;
    return _mm256_movemask_ps(nan) == 0 && m < 1048576.0f && m > -1048576.0f
        && low >= m - FL_ROW_SPREAD;
}

/* One vector X of the exp pass below: its e'_c (e0) stored by STORE, their sum
 * over the lanes of mask with x_c != m added to sum0 and sum1 (from float, one
 * conversion), the count of x_c == m there subtracted from ties (a true lane
 * is -1). */
#define FL_MID_EXP_VECTOR(X, STORE)                                                 \
    {                                                                               \
        __m256 e0 = fl_exp_around_v8(X, sh);                                        \
        if (out != NULL)                                                            \
            STORE;                                                                  \
        __m256 q0 = _mm256_and_ps(_mm256_cmp_ps(X, mv, _CMP_EQ_OQ),                 \
                                  _mm256_castsi256_ps(mask));                       \
        __m256 s = _mm256_andnot_ps(q0, _mm256_and_ps(e0, _mm256_castsi256_ps(mask))); \
        sum0 = _mm256_add_pd(sum0, _mm256_cvtps_pd(_mm256_castps256_ps128(s)));     \
        sum1 = _mm256_add_pd(sum1, _mm256_cvtps_pd(_mm256_extractf128_ps(s, 1)));   \
        ties = _mm256_sub_epi32(ties, _mm256_castps_si256(q0));                     \
    }

/* The exp pass of an ordinary row x[0:n] (n >= 8) around K ln2 (sh = 1.5 2^23 - K
 * in every lane, mv = m): writes e'_c to out unless NULL (it may be x), returns
 * the sum of e'_c over x_c != m in 4 double lanes and the count of x_c == m in
 * *n_ties; the same row of the next group of 4 (x + 4 n, out + 4 n) is
 * fetched into the cache meanwhile. */
static inline __m256d fl_mid_exp_pass(const float *x, ptrdiff_t n, __m256 mv, __m256 sh,
                                      float *out, int *n_ties)
{
    __m256d sum0 = _mm256_setzero_pd(), sum1 = _mm256_setzero_pd();
    __m256i ties = _mm256_setzero_si256();
    ptrdiff_t c = 0;
    for (; c + 32 <= n; c += 32) {
        /* the next group's row (read) and gradient row (write) meanwhile: a
         * prefetch past the arrays' end reads nothing and cannot fault */
        _mm_prefetch((const char *)(x + 4 * n + c), _MM_HINT_T0);
        _mm_prefetch((const char *)(x + 4 * n + c + 16), _MM_HINT_T0);
        if (out != NULL)
            __builtin_prefetch(out + 4 * n + c, 1, 3), __builtin_prefetch(out + 4 * n + c + 16, 1, 3);
        fl_exp_block32(x + c, out ? out + c : NULL, sh, mv, &sum0, &sum1, &ties);
    }
    __m256i mask = _mm256_set1_epi32(-1);
    for (; c + 8 <= n; c += 8) {
        _mm_prefetch((const char *)(x + 4 * n + c), _MM_HINT_T0);
        if (out != NULL)
            __builtin_prefetch(out + 4 * n + c, 1, 3);
        __m256 x0 = _mm256_loadu_ps(x + c);
        FL_MID_EXP_VECTOR(x0, _mm256_storeu_ps(out + c, e0))
    }
    if (c < n) {
        mask = fl_mid_mask(n - c);
        __m256 x0 = _mm256_maskload_ps(x + c, mask);
        FL_MID_EXP_VECTOR(x0, _mm256_maskstore_ps(out + c, mask, e0))
    }
    __m128i t = _mm_add_epi32(_mm256_castsi256_si128(ties), _mm256_extracti128_si256(ties, 1));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, _MM_SHUFFLE(1, 0, 3, 2)));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, _MM_SHUFFLE(2, 3, 0, 1)));
    *n_ties = _mm_cvtsi128_si32(t);
    return _mm256_add_pd(sum0, sum1);
}
#undef FL_MID_EXP_VECTOR

/* sum_c w_c (x_c - m) (w NULL: 1), every term exact before its rounding. */
static inline double fl_mid_weighted_shift(const float *x, ptrdiff_t n, float m, const double *w)
{
    __m256d acc = _mm256_setzero_pd(), mv = _mm256_set1_pd((double)m);
    ptrdiff_t c = 0;
    for (; c + 4 <= n; c += 4) {
        __m256d z = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + c)), mv);
        acc = w == NULL ? _mm256_add_pd(acc, z) : _mm256_fmadd_pd(_mm256_loadu_pd(w + c), z, acc);
    }
    double lanes[4];
    _mm256_storeu_pd(lanes, acc);
    double total = (lanes[0] + lanes[2]) + (lanes[1] + lanes[3]);
    for (; c < n; c++)
        total += (w == NULL ? 1.0 : w[c]) * ((double)x[c] - m);
    return total;
}

/* g[c] = coef g[c] - bsc w_c (w NULL: 1), in float when both coefficients are
 * within float's range (in_range), else in double. */
static inline void fl_mid_grad_row(float *g, ptrdiff_t n, double coef, double bsc,
                                   const double *w, int in_range)
{
    ptrdiff_t c = 0;
    if (!in_range) {
        for (; c < n; c++)
            g[c] = (float)(coef * g[c] - bsc * (w == NULL ? 1.0 : w[c]));
        return;
    }
    __m256 cv = _mm256_set1_ps((float)coef), bv = _mm256_set1_ps((float)bsc);
    __m256d bd = _mm256_set1_pd(bsc);
    if (w == NULL) {
        for (; c + 8 <= n; c += 8)
            _mm256_storeu_ps(g + c, _mm256_fmsub_ps(cv, _mm256_loadu_ps(g + c), bv));
        if (c < n) {
            __m256i mask = fl_mid_mask(n - c);
            _mm256_maskstore_ps(g + c, mask,
                                _mm256_fmsub_ps(cv, _mm256_maskload_ps(g + c, mask), bv));
        }
        return;
    }
    for (; c + 8 <= n; c += 8) {
        __m256 b = fl_join_ps(_mm256_mul_pd(bd, _mm256_loadu_pd(w + c)),
                                    _mm256_mul_pd(bd, _mm256_loadu_pd(w + c + 4)));
        _mm256_storeu_ps(g + c, _mm256_fmsub_ps(cv, _mm256_loadu_ps(g + c), b));
    }
    for (; c < n; c++)
        g[c] = fmaf((float)coef, g[c], -(float)(bsc * w[c]));
}

#endif

/* Softmax cross-entropy of 4 float32 rows of n >= 8 classes at x (row stride n)
 * with labels, as fl_small_ce8_float (the same arguments for 4 rows, no
 * Hessian): per row r, with lse = m + L,
 *
 *   loss[r] = delta (L - z_y) + gamma L - beta sum_c w_c z_c + z lse^2
 *   grad[r n + c] = scale[r] (delta (p_c - [c == y]) + (gamma + 2 z lse) p_c - beta w_c)
 *
 * (grad may be x or NULL; class_weight NULL for w = 1).  Returns 0, having
 * written nothing, unless all 4 rows are ordinary, or when n < 8 or this is
 * not the x86-64-v3 build. */
static inline int fl_mid_ce4_float(const float *x, ptrdiff_t n, const ptrdiff_t *labels,
                                   const double *scale, const double *delta,
                                   const double *weight_y, double gamma, double beta,
                                   double z_loss, const double *class_weight, float *grad,
                                   double *loss)
{
#ifdef FL_HAVE_FAST_ROWS
    float m[4], xy[4], sh[4];
    double wz[4] = {0.0, 0.0, 0.0, 0.0};
    int ties[4];
    __m256d raw[4];
    if (n < 8)
        return 0;
    for (int r = 0; r < 4; r++)
        if (!fl_mid_scan(x + r * n, n, &m[r]))
            return 0;
    for (int r = 0; r < 4; r++) {
        size_t label = (size_t)labels[r];
        xy[r] = x[r * n + (label < (size_t)n ? (ptrdiff_t)label : 0)];
        if (beta != 0.0)
            wz[r] = fl_mid_weighted_shift(x + r * n, n, m[r], class_weight);
    }
    __m128 m4 = _mm_loadu_ps(m), xy4 = _mm_loadu_ps(xy);
    __m128 k4 = _mm_round_ps(_mm_mul_ps(m4, _mm_set1_ps(FL_LOG2E_F)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m128 sh4 = _mm_sub_ps(_mm_set1_ps(12582912.0f), k4);   /* 1.5 * 2^23 - K, exact */
    _mm_storeu_ps(sh, sh4);
    for (int r = 0; r < 4; r++)
        raw[r] = fl_mid_exp_pass(x + r * n, n, _mm256_set1_ps(m[r]), _mm256_set1_ps(sh[r]),
                                 grad == NULL ? NULL : grad + r * n, &ties[r]);
    /* row r's 4 lanes summed into lane r: (l0 + l1) + (l2 + l3) */
    __m256d a = _mm256_hadd_pd(raw[0], raw[1]), b = _mm256_hadd_pd(raw[2], raw[3]);
    __m256d sums = _mm256_add_pd(_mm256_permute2f128_pd(a, b, 0x20),
                                 _mm256_permute2f128_pd(a, b, 0x31));
    /* e'_y, as e'_c (the same operations on the same value) */
    __m256 ey = fl_exp_around_v8(_mm256_set_m128(xy4, xy4), _mm256_set_m128(sh4, sh4));
    fl_ce_coefs4 co;
    fl_ce_rows4(_mm256_cvtps_pd(m4), _mm256_cvtps_pd(k4), sums,
                _mm256_cvtepi32_pd(_mm_loadu_si128((const __m128i *)ties)), _mm256_cvtps_pd(xy4),
                _mm256_cvtps_pd(_mm256_castps256_ps128(ey)), scale, delta, weight_y, gamma, beta,
                z_loss, _mm256_loadu_pd(wz), loss, &co);
    if (grad == NULL)
        return 1;
    double coef[4], bsc[4], gy[4];
    _mm256_storeu_pd(coef, co.coef);
    _mm256_storeu_pd(bsc, co.bsc);
    _mm256_storeu_pd(gy, co.gy);
    int ok = _mm256_movemask_pd(co.ok);
    for (int r = 0; r < 4; r++) {
        size_t label = (size_t)labels[r];
        fl_mid_grad_row(grad + r * n, n, coef[r], bsc[r], beta != 0.0 ? class_weight : NULL,
                        (ok >> r) & 1);
        if (label < (size_t)n)
            grad[r * n + (ptrdiff_t)label] = (float)gy[r];
    }
    return 1;
#else
    (void)x; (void)n; (void)labels; (void)scale; (void)delta; (void)weight_y; (void)gamma;
    (void)beta; (void)z_loss; (void)class_weight; (void)grad; (void)loss;
    return 0;
#endif
}

#endif
