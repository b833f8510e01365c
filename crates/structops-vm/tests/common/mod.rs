//! Shared helpers: assemble, run checked, and (for well-behaved programs)
//! run unchecked and on the JIT too and demand the same result, the same
//! memory and the same environment traffic.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::cell::RefCell;

use structops_isa::{Imm64, Width, assemble};
use structops_vm::{
    Caller, Code, Engine, Env, Interpreter, NativeCall, NoEnv, Region, TailCallTarget, VmError,
};

/// Assembles `src` (panics on assembler errors: the test is wrong).
pub fn code(src: &str) -> Code {
    let prog = assemble(src).unwrap_or_else(|e| panic!("{e}\n{src}"));
    Code::new(&prog)
}

/// Whether an error of a checked run leaves the executed path valid for
/// the unchecked engines: everything but memory faults and the step
/// limit (which would mean an endless loop for them).
pub fn unchecked_safe(result: &Result<u64, VmError>) -> bool {
    !matches!(
        result,
        Err(VmError::OutOfBounds { .. }
            | VmError::UninitializedRead { .. }
            | VmError::InstructionLimit { .. })
    )
}

/// A result in a comparable form (errors by their debug rendering).
pub fn outcome(result: &Result<u64, VmError>) -> Result<u64, String> {
    result.as_ref().map(|&v| v).map_err(|e| format!("{e:?}"))
}

/// Runs `src` checked with `env` and a 64-byte zeroed context.
pub fn checked_env(env: &mut dyn Env, src: &str) -> Result<u64, VmError> {
    let mut ctx = [0u8; 64];
    Interpreter::new().run_checked(&code(src), env, Region::read_write(&mut ctx), &[])
}

/// Runs `src` checked with no environment and a 64-byte zeroed context;
/// when the run shows the path is safe, runs it unchecked and on the JIT
/// too and asserts all three agree.
pub fn checked(src: &str) -> Result<u64, VmError> {
    let code = code(src);
    let mut ctx = [0u8; 64];
    let mut vm = Interpreter::new();
    let result = vm.run_checked(&code, &mut NoEnv, Region::read_write(&mut ctx), &[]);
    if unchecked_safe(&result) {
        for engine in [Engine::Interp, Engine::Jit] {
            let mut ctx2 = [0u8; 64];
            // SAFETY: the checked run went down the same path without a
            // memory fault; the program is deterministic.
            let other = unsafe { vm.run(engine, &code, &mut NoEnv, ctx2.as_mut_ptr() as u64) };
            assert_eq!(
                outcome(&result),
                outcome(&other),
                "{engine:?} disagrees on\n{src}"
            );
            assert_eq!(
                ctx, ctx2,
                "{engine:?} leaves a different context after\n{src}"
            );
        }
    }
    result
}

/// Records what a run asks of its environment, forwarding to `inner`.
pub struct Recorder<'a> {
    pub inner: &'a mut dyn Env,
    pub log: RefCell<Vec<String>>,
}

impl<'a> Recorder<'a> {
    pub fn new(inner: &'a mut dyn Env) -> Recorder<'a> {
        Recorder {
            inner,
            log: RefCell::new(Vec::new()),
        }
    }

    fn note(&self, entry: String) {
        self.log.borrow_mut().push(entry);
    }

    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.log.borrow_mut())
    }
}

impl Env for Recorder<'_> {
    fn call_helper(
        &mut self,
        pc: usize,
        id: i32,
        args: [u64; 5],
        caller: &mut Caller<'_>,
    ) -> Result<u64, VmError> {
        self.note(format!("helper {id} at {pc} {args:x?}"));
        let r = self.inner.call_helper(pc, id, args, caller);
        self.note(format!("  -> {:?}", outcome(&r)));
        r
    }

    fn native_helper(&self, id: i32) -> Option<NativeCall> {
        self.note(format!("native helper {id}"));
        self.inner.native_helper(id)
    }

    fn call_kfunc(
        &mut self,
        pc: usize,
        btf_id: u32,
        off: i16,
        args: [u64; 5],
        caller: &mut Caller<'_>,
    ) -> Result<u64, VmError> {
        self.note(format!("kfunc {btf_id}/{off} at {pc} {args:x?}"));
        let r = self.inner.call_kfunc(pc, btf_id, off, args, caller);
        self.note(format!("  -> {:?}", outcome(&r)));
        r
    }

    fn native_kfunc(&self, btf_id: u32, off: i16) -> Option<NativeCall> {
        self.note(format!("native kfunc {btf_id}/{off}"));
        self.inner.native_kfunc(btf_id, off)
    }

    fn resolve_imm64(&mut self, pc: usize, imm: &Imm64) -> Result<u64, VmError> {
        self.note(format!("imm64 {imm:?} at {pc}"));
        self.inner.resolve_imm64(pc, imm)
    }

    fn tail_call(&mut self, pc: usize, map: u64, index: u32) -> Result<TailCallTarget, VmError> {
        self.note(format!("tail call {map:#x}[{index}] at {pc}"));
        self.inner.tail_call(pc, map, index)
    }

    fn load_packet(
        &mut self,
        pc: usize,
        ctx: u64,
        offset: i32,
        width: Width,
    ) -> Result<Option<u64>, VmError> {
        self.note(format!("packet {width:?} at {offset} at {pc}"));
        self.inner.load_packet(pc, ctx, offset, width)
    }
}

/// Runs `src` checked, unchecked and on the JIT and returns `r0`,
/// asserting all agree on `r0`, the context, and (unchecked and JIT,
/// which take the same paths into the environment) every request to the
/// environment. Only for programs that are valid (every access in bounds).
pub fn both_env(env: &mut dyn Env, src: &str) -> u64 {
    let code = code(src);
    let mut ctx = [0u8; 64];
    let mut vm = Interpreter::new();
    let a = vm
        .run_checked(&code, env, Region::read_write(&mut ctx), &[])
        .unwrap_or_else(|e| panic!("checked run failed: {e}\n{src}"));
    let mut logs = Vec::new();
    for engine in [Engine::Interp, Engine::Jit] {
        let mut ctx2 = [0u8; 64];
        let mut rec = Recorder::new(env);
        // SAFETY: callers only pass programs whose accesses stay inside the
        // stack and the 64-byte context, as the checked run just confirmed.
        let b = unsafe { vm.run(engine, &code, &mut rec, ctx2.as_mut_ptr() as u64) }
            .unwrap_or_else(|e| panic!("{engine:?} run failed: {e}\n{src}"));
        assert_eq!(a, b, "checked and {engine:?} disagree on\n{src}");
        assert_eq!(
            ctx, ctx2,
            "{engine:?} leaves a different context after\n{src}"
        );
        logs.push(rec.take());
    }
    assert_eq!(
        logs[0], logs[1],
        "the engines ask the environment different things for\n{src}"
    );
    a
}

/// [`both_env`] with no environment.
pub fn both(src: &str) -> u64 {
    both_env(&mut NoEnv, src)
}
