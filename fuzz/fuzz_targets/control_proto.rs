//! The control protocol's request side (see the harness,
//! `crates/structops-control/tests/common/proto_harness.rs`): arbitrary frames are
//! refused with a typed error or decode to requests that the handler answers without a
//! panic, against a TCP host with real objects; nothing registered outlives an input.
#![no_main]

#[path = "../../crates/structops-control/tests/common/proto_harness.rs"]
#[allow(dead_code)]
mod proto_harness;

use libfuzzer_sys::fuzz_target;

thread_local! {
    static HARNESS: proto_harness::ProtoHarness = proto_harness::ProtoHarness::new();
}

fuzz_target!(|data: &[u8]| {
    HARNESS.with(|h| {
        let _ = h.run(data);
    });
});
