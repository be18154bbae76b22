"""Build the fastloss Cython extensions.

Environment variables read at build time:

* ``FASTLOSS_DEBUG=1``  -- compile with Cython's bounds, wraparound and
  initialisation checks and without optimisation (the debug build).
* ``FASTLOSS_NO_OPENMP=1`` -- build without OpenMP even if the compiler has it.
"""
import os
import sys
import tempfile
import textwrap
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
PACKAGE = HERE / "fastloss"
DEBUG = os.environ.get("FASTLOSS_DEBUG", "") not in ("", "0")

# Kernels generated from a Tempita template (one loop written once, one
# specialisation per loss).
TEMPLATES = ["_elementwise_kernels.pyx.tp", "_multiclass_kernels.pyx.tp"]
MODULES = ["_elementwise_kernels", "_multiclass_kernels", "_config"]


def render_templates():
    from Cython import Tempita

    for name in TEMPLATES:
        src = PACKAGE / name
        dst = PACKAGE / name[: -len(".tp")]
        text = Tempita.sub(src.read_text())
        header = "# Generated from %s by setup.py: edit the template, not this file.\n" % name
        text = header + text
        if not dst.exists() or dst.read_text() != text:
            dst.write_text(text)


def compiler_has_openmp(compiler):
    """Compile and link a tiny OpenMP program to see if the toolchain has it."""
    if os.environ.get("FASTLOSS_NO_OPENMP", "") not in ("", "0"):
        return False
    code = textwrap.dedent(
        """
        #include <omp.h>
        int main(void) { int n = 0;
        #pragma omp parallel reduction(+:n)
          n += 1;
          return omp_get_max_threads() > 0 ? 0 : 1; }
        """
    )
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "check_openmp.c")
        with open(src, "w") as f:
            f.write(code)
        try:
            objects = compiler.compile([src], output_dir=tmp, extra_postargs=["-fopenmp"])
            compiler.link_executable(objects, "check_openmp", output_dir=tmp,
                                     extra_postargs=["-fopenmp"])
        except Exception:
            return False
    return True


def compiler_accepts(compiler, flags):
    """True when the compiler builds a trivial file with these flags."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "check_flags.c")
        with open(src, "w") as f:
            f.write("int fastloss_check(void) { return 0; }\n")
        try:
            compiler.compile([src], output_dir=tmp, extra_postargs=flags)
        except Exception:
            return False
    return True


# gcc stops inlining when a translation unit has grown by its default limit;
# Cython's boilerplate fills most of that budget, so the stable scalar maths
# would stay an opaque call inside the loops and nothing would vectorise.
INLINE_FLAGS = ["--param", "inline-unit-growth=1000", "--param", "max-inline-insns-single=1000"]


class BuildExt(build_ext):
    def build_extensions(self):
        openmp = sys.platform != "win32" and compiler_has_openmp(self.compiler)
        if not openmp:
            print("fastloss: building WITHOUT OpenMP (kernels run on one thread)")
        inline_flags = INLINE_FLAGS if compiler_accepts(self.compiler, INLINE_FLAGS) else []
        for ext in self.extensions:
            if DEBUG:
                ext.extra_compile_args += ["-O0", "-g"]
            else:
                # No -ffast-math: NaN and inf must keep their IEEE meaning.
                ext.extra_compile_args += ["-O3", "-fno-math-errno", "-fno-trapping-math"]
                ext.extra_compile_args += inline_flags
            if openmp:
                ext.extra_compile_args.append("-fopenmp")
                ext.extra_link_args.append("-fopenmp")
        super().build_extensions()


def cython_mode_changed():
    """True when the C files were last generated in the other mode (debug or not).

    The Cython directives are not part of cythonize's dependency check, so
    without this a debug build would compile the old, unchecked C files (and a
    normal build after a debug one would keep the checks).
    """
    stamp = HERE / "build" / "cython-mode"
    mode = "debug" if DEBUG else "optimised"
    changed = not stamp.exists() or stamp.read_text() != mode
    stamp.parent.mkdir(exist_ok=True)
    stamp.write_text(mode)
    return changed


def extensions():
    from Cython.Build import cythonize

    render_templates()
    directives = {
        "language_level": 3,
        "boundscheck": DEBUG,
        "wraparound": DEBUG,
        "initializedcheck": DEBUG,
        "cdivision": not DEBUG,
        "nonecheck": DEBUG,
    }
    exts = [
        Extension(
            "fastloss." + name,
            [str(Path("fastloss") / (name + ".pyx"))],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        )
        for name in MODULES
    ]
    return cythonize(exts, compiler_directives=directives, force=cython_mode_changed(),
                     compile_time_env={"FASTLOSS_DEBUG": DEBUG})


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
