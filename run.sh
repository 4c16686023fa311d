#!/usr/bin/env bash
# Set up normgrad in its own virtual environment (.venv) and run one job.
#
#   ./run.sh demo [ARGS...]   install normgrad, then run `normgrad demo ARGS...`
#   ./run.sh test [ARGS...]   install normgrad with its test extra, then run pytest
#   ./run.sh bench [ARGS...]  install with the test extra (PyTorch), then run the benchmark
#   ./run.sh docs [ARGS...]   install with the docs extra (MkDocs), then build the site into site/ (strict)
#
# Needs Python >= 3.10 as `python3` (or set PYTHON). Re-running skips the
# install when pyproject.toml has not changed.
set -euo pipefail
cd "$(dirname "$0")"

job=${1:-}
[ $# -gt 0 ] && shift
case "$job" in
  demo)  extras="" ;;
  test|bench) extras="[test]" ;;
  docs)  extras="[docs]" ;;
  *) echo "usage: ./run.sh demo|test|bench|docs [ARGS...]" >&2; exit 2 ;;
esac

py=${PYTHON:-python3}
venv=.venv
if [ ! -x "$venv/bin/python" ]; then
  "$py" -c 'import sys; assert sys.version_info >= (3, 10), "normgrad needs Python >= 3.10"'
  "$py" -m venv "$venv"
fi

stamp="$venv/.installed${extras}"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "run.sh: installing normgrad${extras} into $venv ..." >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".${extras}" 2>&1 \
    | { grep -v "^WARNING: Location" || true; } >&2
  echo "$want" > "$stamp"
fi

case "$job" in
  demo)  exec "$venv/bin/normgrad" demo "$@" ;;
  test)  exec "$venv/bin/python" -m pytest "$@" ;;
  bench) exec "$venv/bin/python" benchmarks/run.py "$@" ;;
  docs)  NO_MKDOCS_2_WARNING=1 exec "$venv/bin/python" -m mkdocs build --strict -d site "$@" ;;
esac
