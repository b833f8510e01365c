//! Unit tests of the JIT internals; behaviour against the interpreter is
//! tested in `tests/`.

use super::*;
use structops_isa::assemble;

fn code(src: &str) -> Code {
    Code::new(&assemble(src).unwrap())
}

#[test]
fn functions_are_found_from_calls_and_callbacks() {
    let c = code("call f\nr2 = subprog[+4]\nexit\nf:\nr0 = 1\nexit\ng:\nr0 = 2\nexit");
    let entries = function_entries(c.inner());
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert_eq!(entries[0], 0);
}

#[test]
fn only_functions_that_read_r10_zero_their_frame() {
    let zeroing = JitOptions::default();
    let plain = JitOptions {
        zero_stack: false,
        ..JitOptions::default()
    };
    let size = |src: &str, options: &JitOptions| {
        JitProgram::compile(&code(src), options)
            .unwrap()
            .code_size()
    };
    let frameless = "r0 = *(u64 *)(r1 +0)\nr0 += 1\nexit";
    assert_eq!(size(frameless, &zeroing), size(frameless, &plain));
    let framed = "*(u64 *)(r10 -8) = r1\nr0 = *(u64 *)(r10 -8)\nexit";
    assert!(size(framed, &zeroing) > size(framed, &plain) + 64);
}

#[test]
fn verifier_facts_drop_division_checks_and_zero_extensions() {
    // r2 is 1..=8; r0 / r2 and r3 s% r2 need no zero or -1 branch. w0 += w3
    // feeds only the 32-bit multiply: its zero extension is unobservable.
    let prog = assemble(
        "r2 = *(u64 *)(r1 +0)\n\
         r2 &= 7\n\
         r2 += 1\n\
         r0 = *(u64 *)(r1 +8)\n\
         r0 /= r2\n\
         r3 = r0\n\
         r3 s%= r2\n\
         w0 += w3\n\
         w0 *= 3\n\
         exit",
    )
    .unwrap();
    let mut facts = vec![crate::InsnFacts::default(); prog.slot_count()];
    for pc in [4, 6] {
        facts[pc].divisor_nonzero = true;
        facts[pc].divisor_not_minus_one = true;
    }
    facts[7].zext_redundant = true;
    let plain = Code::new(&prog);
    // SAFETY: the facts hold: r2 is in 1..=8 and r0's upper half after
    // insn 7 is only overwritten by the 32-bit multiply.
    let fast = unsafe { Code::with_facts(&prog, &facts) };
    let opts = JitOptions {
        keep_ir: true,
        ..JitOptions::default()
    };
    let host = Target::host().unwrap();
    let plain_mc = emit_machine_code(&plain, host, &opts).unwrap();
    let fast_mc = emit_machine_code(&fast, host, &opts).unwrap();
    let count = |ir: &Option<String>, what: &str| ir.as_deref().unwrap().matches(what).count();
    assert_eq!(count(&plain_mc.ir, "select"), 5, "{:?}", plain_mc.ir);
    assert_eq!(count(&fast_mc.ir, "select"), 0, "{:?}", fast_mc.ir);
    assert!(count(&fast_mc.ir, "uextend") < count(&plain_mc.ir, "uextend"));
    assert!(
        fast_mc.bytes.len() < plain_mc.bytes.len(),
        "{} vs {} bytes",
        fast_mc.bytes.len(),
        plain_mc.bytes.len()
    );
    // Same results as the interpreter, with and without facts.
    let mut vm = crate::Interpreter::new();
    for (a, b) in [(0u64, 7u64), (7, u64::MAX), (3, 1 << 63), (u64::MAX, 12345)] {
        let mut results = Vec::new();
        for (engine, code) in [
            (Engine::Interp, &plain),
            (Engine::Jit, &plain),
            (Engine::Jit, &fast),
        ] {
            let mut ctx = [a, b];
            // SAFETY: the program reads 16 bytes of its context.
            let r0 = unsafe {
                vm.run(engine, code, &mut crate::NoEnv, ctx.as_mut_ptr() as u64)
                    .unwrap()
            };
            results.push(r0);
        }
        assert!(results.windows(2).all(|w| w[0] == w[1]), "{results:?}");
    }
}
