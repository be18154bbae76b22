"""When testing a built wheel, prove that the tests ran against the installed package.

tools/test_wheel.sh sets FASTLOSS_TEST_INSTALLED=1; without it (a test run in
a source checkout) this module is skipped.
"""
import os
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("FASTLOSS_TEST_INSTALLED") != "1",
                                reason="only when testing an installed wheel")


def test_fastloss_is_imported_from_site_packages():
    import fastloss

    package = Path(fastloss.__file__).resolve().parent
    site_dirs = {Path(sysconfig.get_paths()[key]).resolve() for key in ("platlib", "purelib")}
    assert package.parent in site_dirs, f"fastloss imported from {package}, not site-packages"
    # No source tree beside the tests: the kernels are the wheel's compiled ones.
    assert not (Path(__file__).resolve().parent.parent / "fastloss").exists()
    assert any(package.glob("_elementwise_kernels*.so"))


def test_the_wheel_ships_py_typed_and_no_demo_code():
    """py.typed marks the package as typed (PEP 561); the showcase stays in examples/."""
    import fastloss

    package = Path(fastloss.__file__).resolve().parent
    assert (package / "py.typed").is_file()
    assert not (package / "showcase").exists()
    assert not any(package.glob("*.c")), "the generated C sources are not package data"
