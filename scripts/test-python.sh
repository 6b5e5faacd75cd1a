#!/usr/bin/env bash
# The tests of the Python package (bindings/python), run by scripts/test.sh after the Rust
# tests: builds the extension with maturin in the dev profile, in the workspace's target
# directory (so it shares most of the workspace's build: the crates whose features differ, such
# as tokio without test-util, are built once more), installs the wheel in a venv under
# target/python with the pinned test requirements, builds the Rust fleet peer
# (examples/fleet_peer.rs), and runs pytest. The tests start their own redis-server and
# identity provider on 127.0.0.1.
#
# JWKSTASH_PYTHON picks the interpreter (default python3; 3.9 or later). Arguments go to pytest.
# JWKSTASH_SKIP_REDIS=1 skips the tests that need redis-server instead of failing them.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
target="${CARGO_TARGET_DIR:-$root/target}"
venv="$target/python/venv"
wheels="$target/python/wheels"

if [ ! -x "$venv/bin/python" ]; then
    "${JWKSTASH_PYTHON:-python3}" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r bindings/python/requirements-test.txt

# The Rust fleet peer first: it builds the crates whose features differ from the workspace's
# build, which maturin then reuses (only pyo3 and the extension are built again, since maturin
# configures pyo3 for an extension module).
cargo build -p jwkstash-python --example fleet_peer
export JWKSTASH_FLEET_PEER="$target/debug/examples/fleet_peer"
rm -rf "$wheels"
(cd bindings/python && "$venv/bin/maturin" build --profile dev --interpreter "$venv/bin/python" --out "$wheels")
"$venv/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$wheels"/jwkstash-*.whl

cd bindings/python
exec "$venv/bin/python" -m pytest "$@"
