# Sourced by the scripts: make .venv (if needed) and install meshdns into it, with extras "$1".
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
extras="${1:-}"
stamp=".venv/.installed${extras:+-$extras}"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "installing meshdns${extras:+[$extras]} into .venv" >&2
    # --no-compile: modules are compiled when first imported, not all at install (a third
    # of the install's time, most of it for modules never imported).
    .venv/bin/python -m pip install --quiet --no-compile --disable-pip-version-check \
        -e ".${extras:+[$extras]}"
    touch "$stamp"
    # An install with extras is the plain install too: ./scripts/serve need not redo it.
    if [ -n "$extras" ]; then touch .venv/.installed; fi
fi
