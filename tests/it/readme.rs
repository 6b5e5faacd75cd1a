//! The README as a newcomer reads it: every Rust block is compiled as written (the doctests of
//! `src/lib.rs` compile them; here, none is ignored and none hides a line), its event loop
//! survives a lag, each ratio it quotes is in BENCHMARKS.md, and each file it cites exists.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

fn read(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(name)).unwrap()
}

/// The Rust code blocks: info string and lines.
fn rust_blocks(markdown: &str) -> Vec<(String, Vec<String>)> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, Vec<String>)> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start().strip_prefix("```")) {
            (None, Some(info)) => current = Some((info.to_owned(), Vec::new())),
            (Some(_), Some(_)) => {
                let (info, lines) = current.take().unwrap();
                if info.starts_with("rust") {
                    blocks.push((info, lines));
                }
            }
            (Some((_, lines)), None) => lines.push(line.to_owned()),
            (None, None) => {}
        }
    }
    assert!(current.is_none(), "an unclosed code block");
    blocks
}

#[test]
fn every_rust_block_compiles_as_written() {
    let blocks = rust_blocks(&read("README.md"));
    assert!(blocks.len() >= 10, "{} blocks", blocks.len());
    for (info, lines) in &blocks {
        assert!(
            !info.contains("ignore") && !info.contains("compile_fail"),
            "a block the doctests do not compile: {info}"
        );
        for line in lines {
            let code = line.trim_start();
            assert!(
                !(code == "#" || code.starts_with("# ")),
                "a hidden line in a README example: {line:?}"
            );
        }
    }
}

/// A subscriber that falls behind gets `Err(Lagged)` once; a loop on `Ok` stops for good there.
#[test]
fn the_readme_event_loop_survives_a_lag() {
    for (_, lines) in rust_blocks(&read("README.md")) {
        let code = lines.join("\n");
        assert!(
            !(code.contains("while let Ok(") && code.contains(".recv()")),
            "a receive loop that ends at the first lag:\n{code}"
        );
        if code.contains("subscribe()") {
            assert!(code.contains("KeyEvents"), "{code}");
        }
    }
}

/// Every ratio the README quotes (`1.018×`) is a measured one in BENCHMARKS.md.
#[test]
fn every_ratio_in_the_readme_is_in_benchmarks() {
    let (readme, benchmarks) = (read("README.md"), read("BENCHMARKS.md"));
    let mut quoted = Vec::new();
    for (at, _) in readme.match_indices('×') {
        let number: String = readme[..at]
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if number.contains('.') {
            quoted.push(number);
        }
    }
    assert!(quoted.len() >= 5, "{quoted:?}");
    for ratio in quoted {
        assert!(
            benchmarks.contains(&format!("{ratio}×")),
            "the README quotes {ratio}×, which BENCHMARKS.md does not"
        );
    }
}

/// Every source file the README cites as its evidence (`crates/.../tests/x.rs`) exists.
#[test]
fn every_file_the_readme_cites_exists() {
    let readme = read("README.md");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cited = 0;
    for (i, quoted) in readme.split('`').enumerate() {
        let is_path = i % 2 == 1
            && quoted.contains('/')
            && (quoted.ends_with(".rs") || quoted.ends_with(".sh") || quoted.ends_with(".md"))
            && !quoted.contains(' ');
        if is_path {
            cited += 1;
            assert!(root.join(quoted).exists(), "the README cites {quoted}");
        }
    }
    assert!(cited >= 5, "{cited} files cited");
}
