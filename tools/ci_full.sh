#!/usr/bin/env bash
# Everything CI could run, for changes to the kernels or the build (about
# 25 minutes on 2 cores).  .ci/run is the quick subset every change passes.
#
# Beyond .ci/run:
# * the slow tests (-m slow) and the property-based tests with ten times as
#   many examples (FASTLOSS_HYPOTHESIS_EXAMPLES);
# * the whole suite, not only the kernel tests, against the debug build
#   instrumented by AddressSanitizer (but torch's and the showcase's tests);
# * wheels for every CPython 3.10-3.13 found, each installed in a fresh venv
#   with torch and scikit-learn where they install, the whole suite run
#   against it with the default and with the baseline kernels.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
start=$SECONDS
step() { echo; echo "== [$((SECONDS - start)) s] $*"; }

export FASTLOSS_STRICT=1
export FASTLOSS_EXPECT=v3,openmp
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

step "the README's test command, then the slow and the large-memory tests"
python -m pip install -e ".[test,bench,peers]" && python -m pytest
python -m pytest -m slow
python -m pytest -m largemem tests/test_large.py

step "the type checker on the package, then its docstring examples"
python -m mypy
python -m pytest -q --doctest-modules fastloss

step "property-based tests with ten times the examples"
FASTLOSS_HYPOTHESIS_EXAMPLES=600 python -m pytest -q tests/test_robustness.py tests/test_multiclass.py

step "the quick main job and the showcase"
python -m bench.compare --quick --out "$WORK/bench"
python -m bench.torch_matrix --quick --out "$WORK/bench"
python -m bench.bench_linear_cross_entropy --quick --out "$WORK/bench"
python examples/showcase --quick --out "$WORK/showcase" > /dev/null

step "the whole suite against the debug build with AddressSanitizer (a copy of the tree)"
mkdir -p "$WORK/tree"
git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$WORK/tree"
(
    cd "$WORK/tree"
    FASTLOSS_DEBUG=1 FASTLOSS_ASAN=1 FASTLOSS_BUILD_CACHE="$ROOT/build/cache" \
        python setup.py build_ext --inplace > "$WORK/debug-build.log"
    LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 \
        FASTLOSS_EXPECT=v3,openmp,debug,asan \
        python -m pytest -q -p no:cacheprovider -W error::pytest.PytestUnraisableExceptionWarning \
            --ignore-glob='*torch*' --ignore=tests/test_showcase.py
)   # torch and matplotlib abort under a preloaded ASan when they throw C++ exceptions

step "wheels for every Python found, each tested in a fresh venv"
rm -rf dist
tools/build_wheels.sh dist
for wheel in dist/fastloss-*-cp3*-manylinux*.whl; do
    extra="scikit-learn"
    [[ "$wheel" == *cp311* ]] && extra="torch==2.13.0 scikit-learn"
    EXTRA_PACKAGES="$extra" tools/test_wheel.sh "$wheel"
done

step "done: tools/ci_full.sh passed in $((SECONDS - start)) s"
