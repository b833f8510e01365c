//! Probe loads (`InsnFacts::probe_mem`, the kernel's `BPF_PROBE_MEM`): a
//! load through a pointer nobody vouches for reads what the environment
//! lets it read and gives 0 everywhere else, on every engine, instead of
//! touching the address.

use structops_isa::assemble;
use structops_vm::{Caller, Code, Engine, Env, InsnFacts, Interpreter, Region};

/// Reads only inside one host object.
struct HostObject {
    base: u64,
    len: u64,
    /// Every address asked for, in order.
    asked: Vec<u64>,
}

impl Env for HostObject {
    fn probe_read(
        &mut self,
        _pc: usize,
        addr: u64,
        buf: &mut [u8],
        _caller: &mut Caller<'_>,
    ) -> bool {
        self.asked.push(addr);
        let inside = addr >= self.base
            && addr
                .checked_add(buf.len() as u64)
                .is_some_and(|end| end <= self.base + self.len);
        if !inside {
            return false;
        }
        let off = (addr - self.base) as usize;
        // SAFETY: inside the object, which the test keeps alive.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                std::ptr::with_exposed_provenance::<u8>(self.base as usize),
                self.len as usize,
            )
        };
        buf.copy_from_slice(&bytes[off..off + buf.len()]);
        true
    }
}

/// `r2` = the pointer in the context; then four probe loads through it
/// (u64 at +8, s32 at +0, u8 at +3, s16 at +4) summed into `r0`.
const SRC: &str = "r2 = *(u64 *)(r1 +0)\n\
                   r0 = *(u64 *)(r2 +8)\n\
                   r3 = *(s32 *)(r2 +0)\n\
                   r0 += r3\n\
                   r3 = *(u8 *)(r2 +3)\n\
                   r0 += r3\n\
                   r3 = *(s16 *)(r2 +4)\n\
                   r0 += r3\n\
                   exit";

fn probe_code() -> Code {
    let prog = assemble(SRC).unwrap();
    let mut facts = vec![InsnFacts::default(); prog.slot_count()];
    for pc in [1, 2, 4, 6] {
        facts[pc].probe_mem = true;
    }
    // SAFETY: probe facts only make loads safer.
    unsafe { Code::with_facts(&prog, &facts) }
}

/// Runs the program with `ptr` in the context on the checked interpreter,
/// the unchecked interpreter and the JIT; returns the three results and
/// what the environment was asked.
fn run_all(ptr: u64, object: &[u8]) -> Vec<(u64, Vec<u64>)> {
    let code = probe_code();
    let mut out = Vec::new();
    let mut vm = Interpreter::new();
    let env = || HostObject {
        base: object.as_ptr() as u64,
        len: object.len() as u64,
        asked: Vec::new(),
    };
    let mut ctx = ptr.to_ne_bytes();
    let mut e = env();
    // The object is deliberately not a region: a probe reads only through
    // the environment, in every mode.
    let r = vm
        .run_checked(&code, &mut e, Region::read_write(&mut ctx), &[])
        .unwrap();
    out.push((r, e.asked));
    for engine in [Engine::Interp, Engine::Jit] {
        let mut ctx = ptr.to_ne_bytes();
        let mut e = env();
        // SAFETY: the only loads outside the context are probes.
        let r = unsafe { vm.run(engine, &code, &mut e, ctx.as_mut_ptr() as u64) }.unwrap();
        out.push((r, e.asked));
    }
    out
}

#[test]
fn a_readable_object_is_read_with_its_extension() {
    let mut object = [0u8; 16];
    object[..4].copy_from_slice(&(-5i32).to_ne_bytes());
    object[4..6].copy_from_slice(&(-300i16).to_ne_bytes());
    object[8..].copy_from_slice(&1000u64.to_ne_bytes());
    let base = object.as_ptr() as u64;
    let u8_at_3 = u64::from(object[3]);
    let want = 1000u64
        .wrapping_add(-5i64 as u64)
        .wrapping_add(u8_at_3)
        .wrapping_add(-300i64 as u64);
    for (i, (r0, asked)) in run_all(base, &object).into_iter().enumerate() {
        assert_eq!(r0, want, "engine {i}");
        assert_eq!(
            asked,
            vec![base + 8, base, base + 3, base + 4],
            "engine {i}"
        );
    }
}

#[test]
fn null_and_wild_pointers_read_zero_without_touching_memory() {
    let object = [0xffu8; 16];
    // NULL, the last bytes of the address space, a kernel address, and
    // one past the object: all would fault or read garbage as plain loads.
    let end = object.as_ptr() as u64 + 16;
    for ptr in [0u64, u64::MAX - 2, 0xffff_8000_0000_0000, end] {
        for (i, (r0, asked)) in run_all(ptr, &object).into_iter().enumerate() {
            assert_eq!(r0, 0, "pointer {ptr:#x}, engine {i}");
            assert_eq!(asked.len(), 4, "pointer {ptr:#x}, engine {i}");
        }
    }
}

#[test]
fn a_straddling_read_is_refused_whole() {
    // The u64 at +8 of a pointer 4 bytes before the object's end straddles
    // it: the probe gives 0, not the bytes that happen to be inside.
    let object = [0x11u8; 16];
    let ptr = object.as_ptr() as u64 + 4;
    for (i, (r0, _)) in run_all(ptr, &object).into_iter().enumerate() {
        // +8: straddles (0); s32 at +0: 0x11111111; u8 at +3: 0x11; s16 at +4: 0x1111.
        assert_eq!(r0, 0x1111_1111 + 0x11 + 0x1111, "engine {i}");
    }
}

#[test]
fn without_the_fact_a_load_is_a_plain_load() {
    // The same program without facts faults in checked mode: the object is
    // not a region, and only probes go to the environment.
    let code = Code::new(&assemble(SRC).unwrap());
    let object = [0u8; 16];
    let mut ctx = (object.as_ptr() as u64).to_ne_bytes();
    let mut e = HostObject {
        base: object.as_ptr() as u64,
        len: 16,
        asked: Vec::new(),
    };
    let r = Interpreter::new().run_checked(&code, &mut e, Region::read_write(&mut ctx), &[]);
    assert!(r.is_err(), "{r:?}");
    assert!(e.asked.is_empty());
}
