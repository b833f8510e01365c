//! The struct_ops map update path with arbitrary values (see the harness,
//! `crates/structops-tcp/tests/common/update_harness.rs`): update, registration, calls
//! through the registered table and teardown end in a result or an errno, and leave the
//! TCP host's registry and the runtime's maps as they were.
#![no_main]

#[path = "../../crates/structops-tcp/tests/common/update_harness.rs"]
#[allow(dead_code)]
mod update_harness;

use libfuzzer_sys::fuzz_target;

thread_local! {
    static HARNESS: update_harness::Harness = update_harness::Harness::new();
}

fuzz_target!(|data: &[u8]| {
    HARNESS.with(|h| {
        let _ = h.run(data);
    });
});
