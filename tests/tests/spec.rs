//! Every ```sir block in ir-spec/SPEC.md is a filetest; they run here. `SNNC_BLESS=1` rewrites
//! the `; check:` lines inside SPEC.md.

use snnc_tests::filetest::{bless_requested, run_filetest};
use snnc_tests::repo_root;

/// (start line, block text) of every ```sir block.
fn sir_blocks(md: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut cur: Option<(usize, String)> = None;
    for (i, line) in md.lines().enumerate() {
        match &mut cur {
            None if line.trim() == "```sir" => cur = Some((i + 1, String::new())),
            Some(_) if line.trim() == "```" => out.push(cur.take().expect("inside a block")),
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
            None => {}
        }
    }
    out
}

#[test]
fn spec_examples_pass() {
    let path = repo_root().join("ir-spec/SPEC.md");
    let md = std::fs::read_to_string(&path).unwrap();
    let blocks = sir_blocks(&md);
    assert!(
        blocks.len() >= 12,
        "SPEC.md should hold an example per op family, found {}",
        blocks.len()
    );
    let bless = bless_requested();
    let mut failures = Vec::new();
    let mut new_md = md.clone();
    for (line, text) in &blocks {
        match run_filetest(&format!("SPEC.md:{line}"), text, bless) {
            Ok(None) => {}
            Ok(Some(blessed)) => new_md = new_md.replacen(text.as_str(), &blessed, 1),
            Err(report) => failures.push(report),
        }
    }
    if bless && new_md != md {
        std::fs::write(&path, new_md).unwrap();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn spec_examples_round_trip() {
    let md = std::fs::read_to_string(repo_root().join("ir-spec/SPEC.md")).unwrap();
    for (line, text) in sir_blocks(&md) {
        let Ok(m) = snnc_ir::parse(&text) else {
            continue;
        };
        let printed = m.to_string();
        let again = snnc_ir::parse(&printed)
            .unwrap_or_else(|e| panic!("SPEC.md:{line}: reparse: {e}\n{printed}"));
        assert_eq!(again.to_string(), printed, "SPEC.md:{line}");
    }
}
