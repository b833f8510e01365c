//! Shared helpers: assemble, run checked, and (for well-behaved programs)
//! run unchecked too and demand the same result.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use structops_isa::assemble;
use structops_vm::{Code, Env, Interpreter, NoEnv, Region, VmError};

/// Assembles `src` (panics on assembler errors: the test is wrong).
pub fn code(src: &str) -> Code {
    let prog = assemble(src).unwrap_or_else(|e| panic!("{e}\n{src}"));
    Code::new(&prog)
}

/// Runs `src` checked with `env` and a 64-byte zeroed context.
pub fn checked_env(env: &mut dyn Env, src: &str) -> Result<u64, VmError> {
    let mut ctx = [0u8; 64];
    Interpreter::new().run_checked(&code(src), env, Region::read_write(&mut ctx), &[])
}

/// Runs `src` checked with no environment and a 64-byte zeroed context.
pub fn checked(src: &str) -> Result<u64, VmError> {
    checked_env(&mut NoEnv, src)
}

/// Runs `src` in both modes and returns `r0`, asserting the modes agree.
/// Only for programs that are valid (every access in bounds).
pub fn both_env(env: &mut dyn Env, src: &str) -> u64 {
    let code = code(src);
    let mut ctx = [0u8; 64];
    let mut vm = Interpreter::new();
    let a = vm
        .run_checked(&code, env, Region::read_write(&mut ctx), &[])
        .unwrap_or_else(|e| panic!("checked run failed: {e}\n{src}"));
    let mut ctx2 = [0u8; 64];
    // SAFETY: callers only pass programs whose accesses stay inside the
    // stack and the 64-byte context, as the checked run just confirmed.
    let b = unsafe { vm.run_unchecked(&code, env, ctx2.as_mut_ptr() as u64) }
        .unwrap_or_else(|e| panic!("unchecked run failed: {e}\n{src}"));
    assert_eq!(a, b, "modes disagree on\n{src}");
    assert_eq!(ctx, ctx2, "modes leave different contexts after\n{src}");
    a
}

/// [`both_env`] with no environment.
pub fn both(src: &str) -> u64 {
    both_env(&mut NoEnv, src)
}
