//! ELF object parser and the pure relocation steps: arbitrary bytes must give a typed
//! error or an `Object` that relocates to programs or a typed error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use structops_obj::{Object, ParseOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(mut obj) = Object::parse_with(data, &ParseOptions::named("fuzz")) else {
        return;
    };
    let _ = obj.relocate(&|m| m as i32);
    if let Some(btf) = obj.btf().cloned() {
        let _ = obj.init_struct_ops(&btf);
        let _ = obj.relocate_core(&btf);
        let _ = obj.relocate(&|m| m as i32);
    }
});
