//! Damaged and unsupported Keras files give specific errors (snapshotted), never a panic.

use snnc_compiler::keras::{KerasOptions, load_bytes};
use snnc_tests::repo_root;
use std::io::{Cursor, Read, Write};
use std::path::Path;

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(repo_root().join("tests/fixtures").join(rel)).unwrap()
}

/// Rebuild a .keras archive, passing each member through `edit` (None drops it).
fn rezip(bytes: &[u8], edit: impl Fn(&str, Vec<u8>) -> Option<Vec<u8>>) -> Vec<u8> {
    let mut src = zip::ZipArchive::new(Cursor::new(bytes.to_vec())).unwrap();
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for i in 0..src.len() {
        let mut f = src.by_index(i).unwrap();
        let name = f.name().unwrap().to_string();
        let mut data = Vec::new();
        f.read_to_end(&mut data).unwrap();
        if let Some(d) = edit(&name, data) {
            out.start_file(name, zip::write::SimpleFileOptions::default())
                .unwrap();
            out.write_all(&d).unwrap();
        }
    }
    out.finish().unwrap().into_inner()
}

fn edit_config(bytes: &[u8], f: impl Fn(String) -> String) -> Vec<u8> {
    rezip(bytes, |name, data| {
        Some(if name == "config.json" {
            f(String::from_utf8(data).unwrap()).into_bytes()
        } else {
            data
        })
    })
}

fn error(name: &str, bytes: Vec<u8>) -> String {
    match load_bytes(Path::new(name), bytes, &KerasOptions::default()) {
        Ok(_) => "converted without error".into(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_files_give_specific_errors() {
    let mlp = fixture("keras3/dense_mlp.keras");
    let branches = fixture("keras3/functional_branches.keras");
    let conv1d = fixture("keras3/conv1d.keras");
    let cases = [
        ("empty.keras", Vec::new()),
        ("notes.keras", b"just some text, not a model".to_vec()),
        ("truncated.keras", mlp[..mlp.len() / 2].to_vec()),
        (
            "no_config.keras",
            rezip(&mlp, |n, d| (n != "config.json").then_some(d)),
        ),
        (
            "bad_json.keras",
            edit_config(&mlp, |s| s[..s.len() / 2].to_string()),
        ),
        (
            "bad_weights.keras",
            rezip(&mlp, |n, d| {
                Some(if n == "model.weights.h5" {
                    d[..d.len() / 3].to_vec()
                } else {
                    d
                })
            }),
        ),
        (
            "unknown_layer.keras",
            edit_config(&mlp, |s| s.replacen("\"Dropout\"", "\"LSTM\"", 1)),
        ),
        (
            "unsupported_activation.keras",
            edit_config(&mlp, |s| s.replacen("\"relu\"", "\"log_softmax\"", 1)),
        ),
        (
            "wrong_shape.keras",
            edit_config(&mlp, |s| s.replacen("\"units\": 16", "\"units\": 15", 1)),
        ),
        (
            "cycle.keras",
            edit_config(&branches, |s| {
                let v: serde_json::Value = serde_json::from_str(&s).unwrap();
                let mut v = v;
                let layers = v["config"]["layers"].as_array_mut().unwrap();
                let a = layers.iter_mut().find(|l| l["name"] == "branch_a").unwrap();
                a["inbound_nodes"] = serde_json::json!([{"args": [{"class_name": "__keras_tensor__",
                    "config": {"shape": [null, 6], "dtype": "float32", "keras_history": ["cat", 0, 0]}}], "kwargs": {}}]);
                v.to_string()
            }),
        ),
        (
            "dangling.keras",
            edit_config(&branches, |s| {
                s.replacen("\"branch_a\", 0, 0", "\"nowhere\", 0, 0", 1)
            }),
        ),
        (
            "empty_concat.keras",
            edit_config(&branches, |s| {
                let mut v: serde_json::Value = serde_json::from_str(&s).unwrap();
                let layers = v["config"]["layers"].as_array_mut().unwrap();
                let c = layers.iter_mut().find(|l| l["name"] == "cat").unwrap();
                c["inbound_nodes"] = serde_json::json!([{"args": [[]], "kwargs": {}}]);
                v.to_string()
            }),
        ),
        (
            "zero_kernel_causal.keras",
            edit_config(&conv1d, |s| {
                s.replacen("\"kernel_size\": [3]", "\"kernel_size\": [0]", 1)
            }),
        ),
        (
            "zero_strides.keras",
            edit_config(&conv1d, |s| {
                s.replacen("\"strides\": [2]", "\"strides\": [0]", 1)
            }),
        ),
        (
            "zero_filters.keras",
            edit_config(&conv1d, |s| {
                s.replacen("\"filters\": 4", "\"filters\": 0", 1)
            }),
        ),
        (
            "huge_units.keras",
            edit_config(&mlp, |s| {
                s.replacen("\"units\": 16", "\"units\": 99999999999", 1)
            }),
        ),
        ("missing_weight.h5", fixture("bad/missing_weight.h5")),
        ("weights_only.h5", fixture("bad/weights_only.h5")),
        (
            "unspecified_input.keras",
            edit_config(&mlp, |s| {
                s.replacen(
                    "\"batch_shape\": [null, 8]",
                    "\"batch_shape\": [null, null]",
                    1,
                )
            }),
        ),
    ];
    let mut report = String::new();
    for (name, bytes) in cases {
        report.push_str(&format!("{}\n", error(name, bytes)));
    }
    insta::assert_snapshot!("keras_errors", report);
}
