//! A `.keras` archive assembled from its parts, so the fuzzer mutates the config JSON and the
//! weights HDF5 themselves rather than the zip around them: the input is a 4-byte little-endian
//! length `n`, then `n` bytes of `config.json`, then `model.weights.h5`. Seeds: `seed.py` beside
//! this file splits the fixtures' archives into this form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use snnc_compiler::keras::{KerasOptions, load_bytes};
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    let Some((len, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let n = (u32::from_le_bytes(*len) as usize).min(rest.len());
    let (config, weights) = rest.split_at(n);
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in [("config.json", config), ("model.weights.h5", weights)] {
        if zip.start_file(name, opts).is_err() || zip.write_all(bytes).is_err() {
            return;
        }
    }
    let Ok(archive) = zip.finish() else { return };
    let path = std::path::Path::new("fuzz.keras");
    if let Ok(m) = load_bytes(path, archive.into_inner(), &KerasOptions::default()) {
        let _ = snnc_ir::check(&m, snnc_ir::Target::Any);
    }
});
