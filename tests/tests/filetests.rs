//! Runs every filetest under tests/ir/ (see snnc_tests::filetest for the format).

use snnc_tests::filetest::{FileTest, Kind, bless_requested, run_filetest};
use snnc_tests::{files_with_ext, repo_root};

#[test]
fn ir_filetests() {
    let files = files_with_ext(&repo_root().join("tests/ir"), "sir");
    assert!(
        files.len() >= 15,
        "expected the filetest corpus, found {} files",
        files.len()
    );
    let bless = bless_requested();
    let mut failures = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let name = f.strip_prefix(repo_root()).unwrap().display().to_string();
        match run_filetest(&name, &text, bless) {
            Ok(None) => {}
            Ok(Some(blessed)) => std::fs::write(f, blessed).unwrap(),
            Err(report) => failures.push(report),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} filetests failed:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}

/// Every op of the IR is run by at least one `run` filetest.
#[test]
fn run_filetests_cover_every_op() {
    let mut seen = std::collections::HashSet::new();
    for f in files_with_ext(&repo_root().join("tests/ir/run"), "sir") {
        let text = std::fs::read_to_string(&f).unwrap();
        let t = FileTest::parse(&text).unwrap();
        assert_eq!(t.kind, Kind::Run, "{}", f.display());
        for inst in snnc_ir::parse(&t.body).unwrap().insts {
            seen.insert(inst.op.name());
        }
    }
    let missing: Vec<_> = snnc_ir::Op::NAMES
        .iter()
        .filter(|n| !seen.contains(*n))
        .collect();
    assert!(
        missing.is_empty(),
        "ops without a run filetest: {missing:?}"
    );
}
