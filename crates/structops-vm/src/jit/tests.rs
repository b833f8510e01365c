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
