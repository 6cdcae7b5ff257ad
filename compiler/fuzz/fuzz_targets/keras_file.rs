//! Any bytes as a Keras model file (a `.keras` zip or an HDF5 `.h5`, told apart by content):
//! converting must return a module or an error, never panic, overflow the stack or allocate
//! without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use snnc_compiler::keras::{KerasOptions, load_bytes};

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz.keras");
    if let Ok(m) = load_bytes(path, data.to_vec(), &KerasOptions::default()) {
        let _ = snnc_ir::check(&m, snnc_ir::Target::Any);
    }
});
