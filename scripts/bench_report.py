#!/usr/bin/env python3
"""Writes the results table of BENCHMARKS.md and benches/verify_hit.svg from criterion's output.

Run after `cargo bench --features redis,testkit` (criterion writes target/criterion/). Medians,
and ratios of medians measured in the same run.
"""
import json
import pathlib
import platform
import re
import subprocess
import sys
from datetime import date

ROOT = pathlib.Path(__file__).resolve().parent.parent
CRITERION = ROOT / "target" / "criterion"
REPORT = ROOT / "BENCHMARKS.md"
CHART = ROOT / "benches" / "verify_hit.svg"

# (label, group, baseline, candidate, target ratio or None, what the ratio compares)
PAIRS = [
    ("verify_hit RS256", "verify_hit", "rs256_floor", "rs256_jwkstash", 1.02, "jwkstash / floor"),
    ("verify_hit ES256", "verify_hit", "es256_floor", "es256_jwkstash", 1.02, "jwkstash / floor"),
    ("verify_hit EdDSA", "verify_hit", "eddsa_floor", "eddsa_jwkstash", None, "jwkstash / floor"),
    ("verify_hit_concurrent RS256 (16 tasks, 2 workers)", "verify_hit_concurrent", "rs256_floor", "rs256_jwkstash", 1.03, "jwkstash / floor, per verification"),
    ("key_lookup (near-tier hit through Tiered<Memory, Redis>)", "key_lookup", "hashmap", "tiered_memory_redis", 10.0, "stack / HashMap"),
    ("l2_hit (near tier cold, Redis warm)", "l2_hit", "get_and_parse_floor", "jwkstash", 1.5, "jwkstash / (GET + parse)"),
    ("verified_token_cache_hit", "verified_token_cache_hit", "rs256_floor", "rs256_cached", 0.1, "cached / RS256 floor"),
    ("verify_stale_while_refreshing RS256 (refresh hanging)", "verify_stale_while_refreshing", "rs256_floor", "rs256_jwkstash", 1.05, "jwkstash / floor"),
]


def median_ns(group, bench):
    path = CRITERION / group / bench / "new" / "estimates.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())["median"]["point_estimate"]


def human(ns):
    if ns >= 1000:
        return f"{ns / 1000:.2f} µs"
    return f"{ns:.1f} ns"


def machine():
    cpu = "unknown CPU"
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return f"{cpu}, {cores} cores, {platform.system()} {platform.release()}; {rustc}"


def table():
    rows = ["| benchmark | floor (median) | jwkstash (median) | ratio | target | met |", "|---|---|---|---|---|---|"]
    for label, group, base, cand, target, what in PAIRS:
        b, c = median_ns(group, base), median_ns(group, cand)
        if b is None or c is None:
            rows.append(f"| {label} | not run | not run | | {'≤ ' + str(target) + '×' if target else ''} | |")
            continue
        ratio = c / b
        met = "" if target is None else ("yes" if ratio <= target else "**no**")
        rows.append(
            f"| {label} | {human(b)} | {human(c)} | {ratio:.3f}× ({what}) | "
            f"{'≤ ' + str(target) + '×' if target else '—'} | {met} |"
        )
    return "\n".join(rows)


def chart():
    bars = []
    for label, group, base, cand, _, _ in PAIRS[:4]:
        b, c = median_ns(group, base), median_ns(group, cand)
        if b is not None and c is not None:
            short = "RS256, 16 tasks" if group == "verify_hit_concurrent" else label.split()[-1]
            bars.append((short, b / 1000, c / 1000))
    width, row, left = 820, 64, 140
    height = 70 + row * len(bars)
    scale = (width - left - 170) / max(max(b, c) for _, b, c in bars)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="13">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        '<text x="12" y="22" font-size="15" font-weight="bold">verify_hit: jwkstash beside the floor (jsonwebtoken::decode, pre-parsed key)</text>',
        '<rect x="12" y="34" width="12" height="12" fill="#9aa5b1"/><text x="30" y="45">floor</text>',
        '<rect x="90" y="34" width="12" height="12" fill="#2f6fde"/><text x="108" y="45">jwkstash</text>',
    ]
    for i, (label, b, c) in enumerate(bars):
        y = 62 + i * row
        out.append(f'<text x="12" y="{y + 22}">{label}</text>')
        for j, (value, color) in enumerate(((b, "#9aa5b1"), (c, "#2f6fde"))):
            bar_y = y + j * 22
            out.append(f'<rect x="{left}" y="{bar_y}" width="{value * scale:.1f}" height="18" fill="{color}"/>')
            out.append(f'<text x="{left + value * scale + 6:.1f}" y="{bar_y + 14}">{value:.2f} µs</text>')
        out.append(f'<text x="{width - 10}" y="{y + 26}" text-anchor="end" font-weight="bold">{c / b:.3f}×</text>')
    out.append("</svg>")
    CHART.write_text("\n".join(out) + "\n")


def main():
    if not CRITERION.exists():
        sys.exit("no target/criterion: run `cargo bench --features redis,testkit` first")
    results = (
        f"Run of {date.today().isoformat()} on {machine()}.\n"
        f"Command: `cargo bench --features redis,testkit` then `python3 scripts/bench_report.py`.\n\n"
        f"{table()}\n"
    )
    text = REPORT.read_text()
    text = re.sub(
        r"(<!-- results -->\n).*?(<!-- /results -->)",
        lambda m: m.group(1) + results + m.group(2),
        text,
        flags=re.S,
    )
    REPORT.write_text(text)
    chart()
    print(results)


if __name__ == "__main__":
    main()
