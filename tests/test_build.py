"""Which build of the kernels is loaded, proven rather than assumed.

CI sets ``FASTLOSS_EXPECT`` to a comma-separated list of what the build
under test must have, so that losing a feature fails instead of skipping:

* ``v3``: the x86-64-v3 kernels are installed and chosen (unless
  ``FASTLOSS_FORCE_BASELINE`` forces the baseline);
* ``openmp``: every kernel module was compiled with OpenMP, and a parallel
  region asking for 2 threads really runs on 2;
* ``debug``: the loaded kernels are the debug build (Cython's bounds checks);
* ``asan``: the loaded kernels are instrumented by AddressSanitizer, and an
  out-of-bounds read inside a raw-pointer span loop is caught.

Without ``FASTLOSS_EXPECT`` only what holds for every build is checked.
"""
import importlib
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastloss import _config, _dispatch

EXPECT = {word.strip() for word in os.environ.get("FASTLOSS_EXPECT", "").split(",")
          if word.strip()}
KNOWN = {"v3", "openmp", "debug", "asan"}
FORCED_BASELINE = os.environ.get("FASTLOSS_FORCE_BASELINE", "") not in ("", "0")
LOADED = [_dispatch.elementwise_kernels, _dispatch.multiclass_kernels]


def expects(feature):
    if feature not in EXPECT:
        pytest.skip(f"FASTLOSS_EXPECT does not name {feature!r}")


def test_expectations_are_known_words():
    assert EXPECT <= KNOWN, f"unknown words in FASTLOSS_EXPECT: {sorted(EXPECT - KNOWN)}"


def test_every_kernel_module_reports_how_it_was_built():
    for module in LOADED:
        assert set(module.BUILD) == {"debug", "asan", "openmp"}
        assert module.BUILD["openmp"] == _config.openmp_enabled()


def test_the_v3_kernels_are_built_and_chosen():
    expects("v3")
    assert _config.cpu_has_x86_64_v3(), "FASTLOSS_EXPECT=v3 on a CPU without x86-64-v3"
    for name in ("fastloss._elementwise_kernels_v3", "fastloss._multiclass_kernels_v3"):
        importlib.import_module(name)       # an ImportError fails the test
    if not FORCED_BASELINE:
        assert _dispatch.PATH == _dispatch.X86_64_V3, _dispatch.REASON
        assert _dispatch.multiclass_kernels.__name__.endswith("_v3")


def test_openmp_is_built_and_runs_threads():
    expects("openmp")
    for module in LOADED:
        assert module.BUILD["openmp"], f"{module.__name__} was built without OpenMP"
    assert _config.openmp_enabled()
    assert _config.team_size(2) == 2


def test_the_debug_build_is_loaded():
    expects("debug")
    for module in LOADED:
        assert module.BUILD["debug"], f"{module.__name__} is not the debug build"


def test_an_optimised_build_says_so():
    if "debug" in EXPECT:
        pytest.skip("the debug build is expected")
    if EXPECT:
        for module in LOADED:
            assert not module.BUILD["debug"], f"{module.__name__} is the debug build"


def elf_section_names(path):
    """The section names of an ELF64 shared object (a skip for any other format)."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        pytest.skip(f"{path} is not an ELF64 file")
    order = "<" if data[5] == 1 else ">"
    (table,) = struct.unpack_from(order + "Q", data, 0x28)             # e_shoff
    entry_size, count, names_index = struct.unpack_from(order + "HHH", data, 0x3A)

    def name_offset_and_offset(i):      # sh_name and sh_offset of section i
        fields = struct.unpack_from(order + "IIQQQQIIQQ", data, table + i * entry_size)
        return fields[0], fields[4]

    names_at = name_offset_and_offset(names_index)[1]
    names = []
    for i in range(count):
        start = names_at + name_offset_and_offset(i)[0]
        names.append(data[start:data.index(b"\0", start)].decode())
    return names


def test_only_the_debug_build_carries_debug_information():
    """The optimised modules are built with -g0 (a quarter of the size), the debug build with -g."""
    debug = LOADED[0].BUILD["debug"]        # every module of a build is compiled alike
    for module in LOADED + [_config]:
        sections = elf_section_names(module.__file__)
        assert ".text" in sections and ".dynsym" in sections      # the parser reads real names
        assert (".debug_info" in sections) == debug, (module.__name__, sections)


# A raw kernel called with a target shorter than the predictions: the
# validation layer never does this, so the span loop reads past the end of
# the target.  Cython's bounds checks see only the span's first element
# (&target[i, 0], in bounds); the sanitizer sees the read itself.
OUT_OF_BOUNDS = """
import numpy as np
from fastloss import _dispatch
mse = _dispatch.elementwise_kernels.mse.__signatures__["double"]
pred = np.zeros((1000, 1))
target = np.zeros((600, 1))
none = np.empty((0, 0))
mse(pred, target, np.empty(0), none, none, none, 1.0, 1)
print("no error")
"""


def test_the_sanitizer_catches_a_read_past_an_array_in_a_span_loop():
    expects("asan")
    for module in LOADED:
        assert module.BUILD["asan"], f"{module.__name__} is not instrumented"
    done = subprocess.run([sys.executable, "-c", OUT_OF_BOUNDS], capture_output=True,
                          text=True, env=dict(os.environ), timeout=120)
    assert done.returncode != 0, done.stdout
    assert "AddressSanitizer: heap-buffer-overflow" in done.stderr, done.stderr[-2000:]
    assert "no error" not in done.stdout


def test_the_same_call_in_bounds_is_fine():
    """The probe above fails only because of the short target (a control)."""
    mse = _dispatch.elementwise_kernels.mse.__signatures__["double"]
    pred = np.zeros((1000, 1))
    none = np.empty((0, 0))
    total = mse(pred, np.ones((1000, 1)), np.empty(0), none, none, none, 1.0, 1)
    assert total == 1000.0
