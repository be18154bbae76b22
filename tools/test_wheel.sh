#!/usr/bin/env bash
# Test a built fastloss wheel the way a user gets it: installed, not built.
#
# Usage:
#   tools/test_wheel.sh WHEEL [PYTEST_ARGS...]
#   EXTRA_PACKAGES="torch" tools/test_wheel.sh WHEEL   # also test fastloss.torch
#   BASELINE_ARGS="tests/test_accuracy.py" tools/test_wheel.sh WHEEL tests/test_build.py
#       # a subset with the default kernels, another with the baseline forced
#
# PYTEST_ARGS select the tests of the default-kernel run (default: the whole
# suite); BASELINE_ARGS those of the baseline run (default: PYTEST_ARGS).
# FASTLOSS_EXPECT is passed on to the tests (see tests/test_build.py): for the
# baseline run, without its "v3".
#
# Steps:
#   1. find the CPython that matches the wheel's tag (cp311 -> 3.11) through
#      pyenv, else python3.X on PATH;
#   2. create a fresh virtual environment and install the wheel with its
#      [test] extras (and EXTRA_PACKAGES), binary packages only, with no C
#      compiler reachable (CC/CXX set to `false`), so nothing is compiled;
#   3. copy only tests/ and pyproject.toml (for the pytest configuration) into
#      an empty temporary directory, so no source tree is importable;
#   4. check that `import fastloss` resolves to the venv's site-packages, then
#      run the test suite there with PATH reduced to the venv's bin/ (no
#      compiler) and FASTLOSS_TEST_INSTALLED=1 (tests/test_installed.py then
#      asserts the same from inside pytest);
#   5. when the package dispatches between baseline and x86-64-v3 kernels,
#      run the suite again with FASTLOSS_FORCE_BASELINE=1, so the wheel is
#      known to work on a CPU without AVX2.
#
# Exit status: non-zero when any step or any test fails.
set -euo pipefail

if (($# < 1)); then
    echo "usage: $0 WHEEL [PYTEST_ARGS...]" >&2
    exit 2
fi
WHEEL=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
shift
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[[ -f "$WHEEL" ]] || { echo "error: no such wheel: $WHEEL" >&2; exit 2; }

# The wheel's Python tag, e.g. fastloss-0.1.0-cp311-cp311-manylinux_... -> 3.11
tag=$(basename "$WHEEL" | cut -d- -f3)
digits=${tag#cp}
version="${digits:0:1}.${digits:1}"

source "$(dirname "${BASH_SOURCE[0]}")/find_python.sh"
PY=$(find_python "$version")
[[ -n "$PY" ]] || { echo "error: no Python $version for $(basename "$WHEEL")" >&2; exit 2; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
VENV="$WORK/venv"
start=$SECONDS

echo "== fresh venv with Python $version"
"$PY" -m venv "$VENV"
# No compiler: a package that would need building fails instead of compiling.
CC=false CXX=false "$VENV/bin/python" -m pip install --quiet --only-binary=:all: \
    "$WHEEL[test]" ${EXTRA_PACKAGES:-}

echo "== tests copied alone to an empty directory"
mkdir -p "$WORK/run"
cp -r "$ROOT/tests" "$WORK/run/tests"
cp "$ROOT/pyproject.toml" "$WORK/run/pyproject.toml"
find "$WORK/run" -name __pycache__ -prune -exec rm -rf {} +

# in_clean_env [VAR=VALUE...] COMMAND...: run in the test directory with a
# clean environment whose PATH is only the venv's bin/ (no compiler).
in_clean_env() {
    (cd "$WORK/run" && env -i HOME="$WORK" PATH="$VENV/bin" LANG=C.UTF-8 \
        FASTLOSS_TEST_INSTALLED=1 FASTLOSS_EXPECT="${EXPECT:-}" "$@")
}

in_clean_env python -c 'import sys, sysconfig, fastloss
print("fastloss imported from", fastloss.__file__)
site = sysconfig.get_paths()["platlib"]
sys.exit(0 if fastloss.__file__.startswith(site) else "not the installed wheel")'

PYTEST=(python -m pytest -q -p no:cacheprovider)
EXPECT=${FASTLOSS_EXPECT:-}
echo "== tests with the default kernels: ${*:-the whole suite}"
in_clean_env "${PYTEST[@]}" "$@"

# The wheel holds a baseline and an x86-64-v3 build of the kernels, chosen at
# import; forcing the baseline proves the wheel works on a CPU without AVX2.
if in_clean_env python -c 'import fastloss._dispatch' 2>/dev/null; then
    in_clean_env python -c 'import fastloss._dispatch as d; print("default kernels:", d.PATH, "-", d.REASON)'
    in_clean_env FASTLOSS_FORCE_BASELINE=1 python -c 'import sys, fastloss._dispatch as d
print("forced kernels:", d.PATH, "-", d.REASON); sys.exit(d.PATH != "baseline")'
    # shellcheck disable=SC2206
    baseline_args=(${BASELINE_ARGS:-"$@"})
    EXPECT=$(tr ',' '\n' <<<"${FASTLOSS_EXPECT:-}" | { grep -vx v3 || true; } | paste -sd, -)
    echo "== tests with the baseline kernels forced: ${baseline_args[*]:-the whole suite}"
    in_clean_env FASTLOSS_FORCE_BASELINE=1 "${PYTEST[@]}" "${baseline_args[@]}"
else
    echo "== this fastloss has no baseline/x86-64-v3 dispatch: no baseline run"
fi

echo "== $(basename "$WHEEL"): installed and tested in $((SECONDS - start)) s"
