# Sourced by the wheel scripts.
# find_python 3.X: print the path of a CPython 3.X interpreter, or nothing.
find_python() {
    local version=$1 full
    if command -v pyenv >/dev/null 2>&1; then
        full=$(pyenv versions --bare --skip-aliases 2>/dev/null \
               | grep -E "^${version//./\\.}\.[0-9]+$" | sort -V | tail -n 1 || true)
        if [[ -n "$full" && -x "$(pyenv root)/versions/$full/bin/python" ]]; then
            echo "$(pyenv root)/versions/$full/bin/python"
            return
        fi
    fi
    command -v "python$version" 2>/dev/null || true
}
