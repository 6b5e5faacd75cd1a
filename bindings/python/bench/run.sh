#!/usr/bin/env bash
# The Python benchmark (bench.py): builds a release wheel of the extension with maturin,
# installs it in its own venv (target/python/bench-venv) with the pinned requirements, and
# runs bench.py (arguments are passed on: --calls N --rounds R). Not run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$(cd ../.. && pwd)/target}"
venv="$target/python/bench-venv"
wheels="$target/python/bench-wheels"
if [ ! -x "$venv/bin/python" ]; then
    "${JWKSTASH_PYTHON:-python3}" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r requirements-test.txt
rm -rf "$wheels"
"$venv/bin/maturin" build --release --interpreter "$venv/bin/python" --out "$wheels"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$wheels"/jwkstash-*.whl
exec "$venv/bin/python" bench/bench.py "$@"
