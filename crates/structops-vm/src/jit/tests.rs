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
