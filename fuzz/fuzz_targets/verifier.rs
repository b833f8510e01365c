//! The verifier as a security boundary, through the runtime's `prog_load`:
//!
//! - the first byte picks the mode: even bytes take the rest of the input as raw
//!   instructions (any bytes at all: `prog_load` must return a typed errno or a
//!   program, never panic, whatever the slots hold); odd bytes seed the soundness
//!   generator shared with `crates/structops/tests/verifier_soundness.rs`, which builds
//!   XDP programs near the verifier's edges;
//! - whatever the verifier accepts is test-run in the interpreter's checked mode on a
//!   packet from the input, and must not fault.
//!
//! The runtime grants `CAP_BPF` and `CAP_NET_ADMIN` but not `CAP_PERFMON`, so the verifier
//! must refuse every read of uninitialized stack too (with `CAP_PERFMON` the kernel allows
//! those in-bounds reads, and checked runs would trap them).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use structops::{
    Capabilities, MapCreateAttr, MapType, ProgLoadAttr, ProgType, RunMode, Runtime, RuntimeConfig,
    TestRun,
};

#[path = "../../crates/structops/tests/common/progen.rs"]
mod progen;

struct Fixture {
    rt: Runtime,
    maps: progen::GenMaps,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = Runtime::new(RuntimeConfig {
            ncpus: 2,
            caps: Capabilities::BPF | Capabilities::NET_ADMIN,
            ..RuntimeConfig::default()
        });
        let array = rt
            .map_create(&MapCreateAttr::new(MapType::Array, 4, 48, 4))
            .expect("array map");
        let hash = rt
            .map_create(&MapCreateAttr::new(MapType::Hash, 8, 16, 64))
            .expect("hash map");
        let maps = progen::GenMaps {
            array_fd: rt.fd_install(array).expect("fd"),
            array_value: 48,
            array_entries: 4,
            hash_fd: rt.fd_install(hash).expect("fd"),
            hash_value: 16,
        };
        Fixture { rt, maps }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((insns, packet)) = progen::decode_input(data, &f.maps) else {
        return;
    };
    let attr = ProgLoadAttr::new(ProgType::XDP, insns, "GPL");
    let Ok(prog) = f.rt.prog_load(&attr) else {
        return;
    };
    if !f.rt.prog_info(&prog).verified {
        return;
    }
    let mut t = TestRun::with_data(packet);
    t.mode = RunMode::Checked;
    // Only a checked-mode fault is a finding: other errors are test_run refusing the
    // input (a packet shorter than an Ethernet header, or longer than one page allows).
    if f.rt.prog_test_run(&prog, &mut t).is_err()
        && let Some(fault) = &t.fault
    {
        panic!("accepted program faulted: {fault}");
    }
});
