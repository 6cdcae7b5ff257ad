//! Any bytes as a .snn archive: reading must return an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = snnc_ir::read_snn(std::io::Cursor::new(data)) {
        let _ = snnc_ir::check(&m, snnc_ir::Target::Any);
    }
});
