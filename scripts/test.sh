#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine: installs redis-server (and redis-cli)
# from Debian's packages when they are missing (the tests start their own instances), then
# `cargo test --workspace --all-features` with any extra arguments passed on, then the Python
# package's tests (scripts/test-python.sh: maturin, a venv under target/python, pytest).
#
# JWKSTASH_SKIP_REDIS=1 skips the tests that need redis-server instead (each test binary
# then says how many it skipped); without it and without redis-server, those tests fail.
# JWKSTASH_SKIP_PYTHON=1 skips the Python tests.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${JWKSTASH_SKIP_REDIS:-}" ] && ! { command -v redis-server && command -v redis-cli; } >/dev/null; then
    sudo=""
    if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then sudo="sudo"; fi
    echo "redis-server is missing: installing Debian's redis-server package" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server redis-tools
fi
command -v redis-server >/dev/null && redis-server --version

cargo test --workspace --all-features "$@"

if [ -n "${JWKSTASH_SKIP_PYTHON:-}" ]; then
    echo "JWKSTASH_SKIP_PYTHON is set: the Python package's tests are skipped" >&2
else
    scripts/test-python.sh
fi
