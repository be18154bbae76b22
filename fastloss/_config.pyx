# cython: language_level=3
"""Build-time facts about the compiled kernels."""

from fastloss._parallel cimport fl_openmp_enabled, fl_max_threads


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(fl_openmp_enabled())


def default_n_threads():
    """The thread count a kernel uses when n_threads is None (OMP default)."""
    return fl_max_threads()


def show_config():
    """Print how the kernels were built and how they will run; return it as a dict."""
    import platform
    config = {
        "fastloss": __import__("fastloss").__version__,
        "openmp": openmp_enabled(),
        "default_n_threads": default_n_threads(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
    for key, value in config.items():
        print(f"{key}: {value}")
    return config
