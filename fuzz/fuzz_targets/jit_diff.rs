//! The JIT against the interpreter, through the runtime: random programs that the
//! verifier accepts run on both engines and must give the same result.
//!
//! Two twin runtimes (`crates/structops/tests/common/twin.rs`), one per engine, are built
//! alike: the same maps (same descriptors), the same `bpf_get_prandom_u32` seed, a fixed
//! clock for the time helpers, and a helper trace. For each input (raw instructions or a
//! seed of the soundness generator, as in the `verifier` target) both load the program;
//! when it is verified, both maps are reset and both run it once on the packet from the
//! input. A finding is any difference in: the test run's result (errno, retval, output
//! packet), the maps' contents afterwards, or the sequence of helper calls (which helper,
//! from which instruction, with which arguments, returning what; values that are host
//! addresses — stack, map values, packet — differ between runtimes by nature and are
//! compared as "an address"). A third runtime runs the JIT without a trace, which is how
//! programs normally run: native map and ring buffer helpers, `bpf_loop` inlined; its
//! result and maps must equal the interpreter's too.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use structops::{Engine, ProgLoadAttr, ProgType};

#[path = "../../crates/structops/tests/common/progen.rs"]
mod progen;
#[path = "../../crates/structops/tests/common/twin.rs"]
mod twin;

fn sides() -> &'static [twin::Side; 3] {
    static S: OnceLock<[twin::Side; 3]> = OnceLock::new();
    S.get_or_init(|| {
        [
            twin::side(Engine::Interp),
            twin::side(Engine::Jit),
            // Untraced: the native helper paths runs normally take.
            twin::side_untraced(Engine::Jit),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let [interp, jit, fast] = sides();
    let Some((insns, packet)) = progen::decode_input(data, &interp.maps) else {
        return;
    };
    let attr = ProgLoadAttr::new(ProgType::XDP, insns, "GPL");
    let c = fast.rt.prog_load(&attr);
    let (a, b) = (interp.rt.prog_load(&attr), jit.rt.prog_load(&attr));
    let (a, b) = match (a, b) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(x), Err(y)) => {
            assert_eq!(x, y, "the two runtimes' loads disagree");
            return;
        }
        (x, y) => panic!(
            "one runtime loaded the program: {:?} vs {:?}",
            x.err(),
            y.err()
        ),
    };
    assert_eq!(a.is_verified(), b.is_verified());
    if !a.is_verified() {
        return;
    }
    assert_eq!((a.engine(), b.engine()), (Engine::Interp, Engine::Jit));
    let x = twin::run(interp, &a, packet).unwrap_or_else(|e| panic!("{e}"));
    let y = twin::run(jit, &b, packet).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(x, y, "interpreter vs JIT");
    let c = c.expect("the untraced runtime loads what the others load");
    let z = twin::run(fast, &c, packet).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(x.effects(), z.effects(), "interpreter vs untraced JIT");
});
