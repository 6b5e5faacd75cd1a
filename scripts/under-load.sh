#!/usr/bin/env bash
# Runs a command while every core is kept busy by a CPU hog (one busy loop per core, at the
# same priority as the tests), so that timing that holds only on a quiet machine shows up.
#
#   scripts/under-load.sh                      # the fleet tests (in-process and OS processes)
#   scripts/under-load.sh cargo test ...       # anything else
#
# JWKSTASH_HOGS sets the number of hogs (default: the number of cores).
set -euo pipefail
cd "$(dirname "$0")/.."

hogs="${JWKSTASH_HOGS:-$(nproc)}"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT
for _ in $(seq "$hogs"); do
    sh -c 'while :; do :; done' &
    pids+=("$!")
done
echo "under-load: $hogs CPU hog(s) running (pids ${pids[*]})" >&2

if [ "$#" -eq 0 ]; then
    # --workspace --all-features: the same build as scripts/test.sh, nothing rebuilt. The
    # in-process fleets are modules of the facade's `it` binary (tests/it/fleet.rs and
    # cli_fleet.rs; no other crate's `it` has a test under those names); the fleets of OS
    # processes are a binary of their own, run whole.
    cargo test --workspace --all-features --test it -- fleet:: cli_fleet::
    cargo test --workspace --all-features --test fleet_processes
    exit
fi
"$@"
