#!/usr/bin/env bash
# Mutation testing of the security core with cargo-mutants: the code that decides whether a
# token is accepted (claims, token, alg, json, keyset, the x5c certificate reader), the
# freshness decision and the policy, run against the tests of jwkstash-jwks (the crate's own;
# the root crate's fleet tests are not needed to see these files), and the Redis envelope
# codec against jwkstash-redis's tests. Prints caught / missed / unviable / timeout per file.
#
# Typical run on 2 cores: about 75 min for everything (roughly 20 s per mutant: an incremental
# build and the crate's tests). One file: scripts/mutants.sh crates/jwks-client/src/claims.rs
# Not run in CI. Needs `cargo install cargo-mutants`.
#
# Survivors that no test can kill (no behaviour tells them apart) are explained in
# scripts/mutants-equivalent.md.
set -euo pipefail
cd "$(dirname "$0")/.."

JWKS_FILES=(
    crates/jwks-client/src/claims.rs
    crates/jwks-client/src/token.rs
    crates/jwks-client/src/alg.rs
    crates/jwks-client/src/json.rs
    crates/jwks-client/src/keyset.rs
    crates/jwks-client/src/certificate.rs
    crates/jwks-client/src/freshness.rs
    crates/jwks-client/src/policy.rs
)
REDIS_FILES=(crates/redis-backend/src/envelope.rs)

if [ $# -gt 0 ]; then
    JWKS_FILES=(); REDIS_FILES=()
    for file in "$@"; do
        case "$file" in
            crates/redis-backend/*) REDIS_FILES+=("$file") ;;
            *) JWKS_FILES+=("$file") ;;
        esac
    done
fi

out="${MUTANTS_OUT:-target/mutants}"
mkdir -p "$out"

run() { # package, output dir, files...
    local package="$1" dir="$2"; shift 2
    [ $# -gt 0 ] || return 0
    local filters=()
    for file in "$@"; do filters+=(--file "$file"); done
    # Exit code 2 means "some mutants were missed": the report below says which.
    cargo mutants --package "$package" --all-features --output "$dir" --timeout 300 \
        "${filters[@]}" || [ $? -eq 2 ]
}

run jwkstash-jwks "$out/jwks" "${JWKS_FILES[@]}"
run jwkstash-redis "$out/redis" "${REDIS_FILES[@]}"

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
