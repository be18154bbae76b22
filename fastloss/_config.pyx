# cython: language_level=3
"""Build-time facts about the compiled kernels."""

from fastloss._parallel cimport fl_openmp_enabled, fl_max_threads

cdef extern from "_openmp.h":
    int fl_openmp_version()
    int fl_team_size(int n_threads) nogil
    const char* FL_OPENMP_RUNTIME

cdef extern from "_cpu.h":
    int fl_cpu_has_x86_64_v3()


def cpu_has_x86_64_v3():
    """True when this CPU and OS run x86-64-v3 code (AVX2, FMA, BMI2)."""
    return bool(fl_cpu_has_x86_64_v3())


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(fl_openmp_enabled())


def openmp_runtime():
    """The OpenMP runtime and the spec version (yyyymm), or None without OpenMP."""
    if not fl_openmp_enabled():
        return None
    return f"{FL_OPENMP_RUNTIME.decode()}, OpenMP {fl_openmp_version()}"


def default_n_threads():
    """The thread count a kernel uses when n_threads is None (OMP default)."""
    return fl_max_threads()


def team_size(int n_threads):
    """How many threads an OpenMP region asking for n_threads really runs on (1 without OpenMP)."""
    with nogil:
        n_threads = fl_team_size(n_threads)
    return n_threads


def show_config():
    """Print how the kernels were built and how they will run; return it as a dict."""
    import platform
    from fastloss import _dispatch
    config = {
        "fastloss": __import__("fastloss").__version__,
        "kernels": _dispatch.PATH,
        "kernels_reason": _dispatch.REASON,
        "avx512_lanes": _dispatch.WIDE_LANES,
        "openmp": openmp_enabled(),
        "openmp_runtime": openmp_runtime(),
        "default_n_threads": default_n_threads(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
    for key, value in config.items():
        print(f"{key}: {value}")
    return config
