//! Any text: parsing and verifying must not panic, and whatever parses prints canonically.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(m) = snnc_ir::parse(text) {
        let _ = snnc_ir::check(&m, snnc_ir::Target::Neural);
        let printed = m.to_string();
        let again = snnc_ir::parse(&printed).expect("canonical text parses");
        assert_eq!(again.to_string(), printed);
    }
});
