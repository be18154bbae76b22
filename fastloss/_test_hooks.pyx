# cython: language_level=3
"""Entry points for the tests alone: nothing in fastloss imports this module.

It reaches what the public functions do not expose, the elementary functions
of _vecmath.h, so that tests/test_vecmath.py can measure them in ulps.  It
is compiled with the kernels' flags and, like them, twice on x86-64 (this
module for the baseline, ``_test_hooks_v3`` for x86-64-v3; see setup.py):
the two builds round differently (FMA), and each is measured.
"""

from fastloss._scalar cimport (fl_exp, fl_exp_for_float, fl_log, fl_log1p,
                               fl_expf, fl_logf, fl_log1pf)
from fastloss._parallel cimport build_facts

# How this module was compiled (tests/test_vecmath.py reads "debug": the
# debug build forms no fused multiply-adds).
BUILD = build_facts()

ctypedef fused floating:
    float
    double


def vecmath(str function, const floating[::1] x, floating[::1] out):
    """out = function(x) for "exp", "log", "log1p" or "exp_for_float" of _vecmath.h.

    The float versions run on float32 arrays, the double versions (and
    exp_for_float) on float64 arrays.
    """
    cdef Py_ssize_t i, n = x.shape[0]
    cdef tuple names = ("exp", "log", "log1p", "exp_for_float")
    if function not in names:
        raise ValueError(f"unknown function {function!r}")
    cdef int which = names.index(function)
    with nogil:
        for i in range(n):
            if which == 3:
                out[i] = <floating>fl_exp_for_float(x[i])
            elif floating is float:
                out[i] = fl_expf(x[i]) if which == 0 else (fl_logf(x[i]) if which == 1
                                                           else fl_log1pf(x[i]))
            else:
                out[i] = fl_exp(x[i]) if which == 0 else (fl_log(x[i]) if which == 1
                                                          else fl_log1p(x[i]))
