# Sourced by the scripts: make .venv (if needed) and install meshdns into it, with extras "$1".
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
extras="${1:-}"
stamp=".venv/.installed${extras:+-$extras}"
# Python may cache what it compiles (__pycache__, ignored by git), whatever the shell says:
# with PYTHONDONTWRITEBYTECODE set, every meshdns process (and the suite starts hundreds)
# compiled its modules anew, a second and more at each start on this 2-core machine.
unset PYTHONDONTWRITEBYTECODE
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "installing meshdns${extras:+[$extras]} into .venv" >&2
    # --no-compile: each module is compiled when first imported, and cached then (see
    # above), instead of all of them at install, most never imported.
    .venv/bin/python -m pip install --quiet --no-compile --disable-pip-version-check \
        -e ".${extras:+[$extras]}"
    touch "$stamp"
    # An install with extras is the plain install too: ./scripts/serve need not redo it.
    if [ -n "$extras" ]; then touch .venv/.installed; fi
fi
