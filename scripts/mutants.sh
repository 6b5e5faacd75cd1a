#!/usr/bin/env bash
# Mutation testing of the security core with cargo-mutants: the code that decides whether a
# token is accepted (claims, token, alg, json, keyset, the x5c certificate reader), the
# freshness decision and the policy, and the Redis envelope codec. Prints caught / missed /
# unviable / timeout per file, and each missed mutant.
#
# Which tests see each file: jwkstash-jwks's unit tests and the modules of its `it` binary about
# tokens, keys, claims and the policy (JWKS_TESTS: `--lib --test it --test logs` and, after `--`, name
# filters that libtest ORs: `tests::` keeps every unit test (they live in `mod tests`), each
# other one module of tests/it, and the logs binary's test of the once-per-set warning of a
# skipped key; the crate's other modules and binaries are about caching and the network and
# see these files only through them), and jwkstash-core's unit tests for the
# envelope (crates/core/src/envelope.rs, used by the Redis and file tiers). The root crate's
# fleet tests are not used.
#
# Typical run time on the 2-core machine (nothing else compiling): about 12 s per mutant for
# jwkstash-jwks (a rebuild of the crate, its unit tests and tests/it, 6 s each; it was 20-25 s
# when these tests were 13 binaries), about 8 s for the envelope. certificate, claims, token,
# json and policy in full (201 mutants) took 31 min on 2026-12-03; the whole suite (about 505
# mutants) would take about 100 min.
#
# Runs in place (the source tree is mutated and restored file by file; do not edit while it
# runs) so that builds are incremental. Not run in CI. Needs `cargo install cargo-mutants`.
# One file: scripts/mutants.sh crates/jwks-client/src/jose/claims.rs
# Only the lines changed since a commit (moves followed, so a moved file counts only its edits):
# scripts/mutants.sh --since 1d8b3e7 [files...]; the 111 mutants since 1d8b3e7 took 22 min.
#
# Survivors that no test can kill (no behaviour tells them apart) are explained in
# scripts/mutants-equivalent.md.
set -euo pipefail
cd "$(dirname "$0")/.."

JWKS_FILES=(
    crates/jwks-client/src/jose/claims.rs
    crates/jwks-client/src/jose/token.rs
    crates/jwks-client/src/jose/alg.rs
    crates/jwks-client/src/jose/json.rs
    crates/jwks-client/src/jose/keyset.rs
    crates/jwks-client/src/jose/certificate.rs
    crates/jwks-client/src/store/freshness.rs
    crates/jwks-client/src/store/policy.rs
)
CORE_FILES=(crates/core/src/envelope.rs)
JWKS_TESTS=(--lib --test it --test logs -- tests:: edges:: hostile_tokens:: hostile_jwks::
    key_sets:: strict_jose:: verification:: policy:: x5t:: wycheproof:: properties:: tenants::
    reused_kid:: es512:: fully_specified_ed25519:: a_skipped_key_is_warned)

out="${MUTANTS_OUT:-target/mutants}"
mkdir -p "$out"

since=()
if [ "${1:-}" = --since ]; then
    git diff -M "$2" -- . > "$out/since.diff"
    since=(--in-diff "$out/since.diff")
    shift 2
fi

if [ $# -gt 0 ]; then
    JWKS_FILES=(); CORE_FILES=()
    for file in "$@"; do
        case "$file" in
            crates/core/*) CORE_FILES+=("$file") ;;
            *) JWKS_FILES+=("$file") ;;
        esac
    done
fi

run() { # package, output dir, files..., [-- cargo test args]
    local package="$1" dir="$2"; shift 2
    local filters=() tests=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do filters+=(--file "$1"); shift; done
    [ $# -gt 0 ] && shift && tests=("$@")
    [ ${#filters[@]} -gt 0 ] || return 0
    # Exit code 2 means "some mutants were missed": the report below says which.
    cargo mutants --in-place --package "$package" --all-features --output "$dir" \
        --timeout 300 "${since[@]}" "${filters[@]}" -- "${tests[@]}" || [ $? -eq 2 ]
}

run jwkstash-jwks "$out/jwks" "${JWKS_FILES[@]}" -- "${JWKS_TESTS[@]}"
run jwkstash-core "$out/core" "${CORE_FILES[@]}" -- --lib
# The property tests that killed mutants wrote their seeds here: failures of mutants, not of
# the code, so they are not kept.
rm -rf crates/jwks-client/tests/proptest-regressions

python3 - "$out" <<'PY'
import collections, json, pathlib, sys
root = pathlib.Path(sys.argv[1])
counts = collections.defaultdict(collections.Counter)
missed = []
for outcomes in root.glob("*/mutants.out/outcomes.json"):
    for outcome in json.loads(outcomes.read_text())["outcomes"]:
        scenario = outcome["scenario"]
        if not isinstance(scenario, dict) or "Mutant" not in scenario:
            continue
        mutant = scenario["Mutant"]
        file = mutant["file"]
        summary = outcome["summary"]
        counts[file][summary] += 1
        if summary == "MissedMutant":
            line = mutant.get("span", {}).get("start", {}).get("line", "?")
            missed.append(f"{file}:{line}: {mutant.get('name') or mutant.get('replacement')}")
print(f"{'file':<45} {'caught':>7} {'missed':>7} {'unviable':>9} {'timeout':>8}")
for file in sorted(counts):
    c = counts[file]
    print(f"{file:<45} {c['CaughtMutant']:>7} {c['MissedMutant']:>7} {c['Unviable']:>9} {c['Timeout']:>8}")
if missed:
    print("\nmissed:")
    print("\n".join(missed))
PY
