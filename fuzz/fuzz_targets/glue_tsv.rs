#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = slimfit_fuzz::run(slimfit_fuzz::Target::GlueTsv, data);
});
