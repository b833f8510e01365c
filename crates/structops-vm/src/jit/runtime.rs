//! What JIT code calls at run time: the run state it carries, the Rust
//! shims behind helpers, kfuncs, tail calls, `LD_IMM64` resolution,
//! packet loads and errors, and [`Interpreter::run_jit`].
//!
//! The shims mirror the interpreter's unchecked mode instruction for
//! instruction (they call the same [`Env`] methods with the same
//! arguments), so both engines see the same environment traffic. Errors
//! cannot cross native frames: a shim stores the [`VmError`] in the state
//! and sets `status`; the JIT code returns at once. A panic in the
//! environment is caught at the shim, carried out the same way, and
//! resumed once the JIT code has returned, so it reaches the caller as it
//! would from the interpreter.

use std::any::Any;
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use structops_isa::Width;

use super::{JitError, JitProgram};
use crate::code::Code;
use crate::env::{Env, TailCallTarget};
use crate::error::VmError;
use crate::interp::{
    CALLBACK_TAG, CALLBACK_TAG_MASK, Caller, Interpreter, MAX_TAIL_CALL_CNT, trap_error,
};
use crate::memory::{MAX_CALL_FRAMES, STACK_SIZE};

/// `status`: the run goes on.
pub(crate) const STATUS_OK: u64 = 0;
/// `status`: a shim failed; the error is in `error`.
pub(crate) const STATUS_ERROR: u64 = 1;
/// `status`: the environment panicked; the payload is in `panic`.
pub(crate) const STATUS_PANIC: u64 = 2;
/// `status`: a packet load was out of bounds; the function returns 0.
pub(crate) const STATUS_PACKET_EXIT: u64 = 3;

/// `fail` shim reasons.
pub(crate) const FAIL_TRAP: u64 = 0;
pub(crate) const FAIL_MISALIGNED: u64 = 1;
pub(crate) const FAIL_CALL_DEPTH: u64 = 2;
pub(crate) const FAIL_FELL_OFF: u64 = 3;

/// The native type of every compiled BPF function:
/// `(state, fp, prog, r1, r2, r3, r4, r5) -> r0`.
pub(crate) type BpfFn = unsafe extern "C" fn(*mut c_void, u64, u64, u64, u64, u64, u64, u64) -> u64;

/// The native type of every shim: `(state, pc, arg, prog, a, b) -> u64`.
type ShimFn = unsafe extern "C" fn(*mut c_void, u64, u64, u64, u64, u64) -> u64;

/// The state of one JIT run, passed to every compiled function. JIT code
/// reads and writes only the leading fields, at [`state_offsets`].
#[repr(C)]
pub(crate) struct JitState {
    /// [`STATUS_OK`] or why the run is stopping.
    pub(crate) status: u64,
    /// The highest frame pointer a call may use (the last frame's).
    pub(crate) stack_top: u64,
    /// Program index of the target of the last successful tail call.
    pub(crate) tail_prog: u64,
    /// r0 to r10, spilled before every shim call.
    pub(crate) regs: [u64; 11],
    pub(crate) vm: *mut Interpreter,
    /// The environment; its lifetime is that of the run (erased).
    pub(crate) env: *mut (dyn Env + 'static),
    pub(crate) error: Option<VmError>,
    pub(crate) panic: Option<Box<dyn Any + Send + 'static>>,
}

/// Byte offsets of the fields JIT code accesses.
pub(crate) mod state_offsets {
    use super::JitState;

    pub(crate) const STATUS: i32 = std::mem::offset_of!(JitState, status) as i32;
    pub(crate) const STACK_TOP: i32 = std::mem::offset_of!(JitState, stack_top) as i32;
    pub(crate) const TAIL_PROG: i32 = std::mem::offset_of!(JitState, tail_prog) as i32;
    pub(crate) const REGS: i32 = std::mem::offset_of!(JitState, regs) as i32;
    /// Entry points build only the fields up to and including this one.
    pub(crate) const VM: i32 = std::mem::offset_of!(JitState, vm) as i32;
}

// The layout JIT code was generated for.
const _: () = {
    assert!(state_offsets::STATUS == 0);
    assert!(state_offsets::STACK_TOP == 8);
    assert!(state_offsets::TAIL_PROG == 16);
    assert!(state_offsets::REGS == 24);
    assert!(state_offsets::VM == 112);
};

/// Addresses of the shims, baked into the code as constants.
pub(crate) struct Shims {
    pub(crate) helper: u64,
    pub(crate) kfunc: u64,
    pub(crate) tail_call: u64,
    pub(crate) ld_imm64: u64,
    pub(crate) load_packet: u64,
    pub(crate) probe_load: u64,
    pub(crate) inline_loop: u64,
    pub(crate) fail: u64,
}

impl Shims {
    /// This process's shims.
    pub(crate) fn host() -> Shims {
        let addr = |f: ShimFn| f as usize as u64;
        Shims {
            helper: addr(shim_helper),
            kfunc: addr(shim_kfunc),
            tail_call: addr(shim_tail_call),
            ld_imm64: addr(shim_ld_imm64),
            load_packet: addr(shim_load_packet),
            probe_load: addr(shim_probe_load),
            inline_loop: addr(shim_inline_loop),
            fail: addr(shim_fail),
        }
    }
}

/// Runs `body` for a shim with the interpreter and the environment of the
/// run; records its error or panic in the state.
///
/// # Safety
///
/// `state` is the live state of the running JIT call.
unsafe fn guarded(
    state: *mut c_void,
    body: impl FnOnce(*mut JitState, &mut Interpreter, &mut dyn Env) -> Result<u64, VmError>,
) -> u64 {
    let st = state.cast::<JitState>();
    // SAFETY: the state, the interpreter and the environment outlive the
    // run; the JIT code holds no references into them while it calls a
    // shim, so these are the only live ones.
    let result = catch_unwind(AssertUnwindSafe(|| unsafe {
        let vm = &mut *(*st).vm;
        let env = &mut *(*st).env;
        body(st, vm, env)
    }));
    // SAFETY: as above; the references made inside are gone.
    unsafe {
        match result {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                if (*st).status != STATUS_PANIC {
                    (*st).status = STATUS_ERROR;
                    (*st).error = Some(e);
                }
                0
            }
            Err(payload) => {
                (*st).status = STATUS_PANIC;
                (*st).panic = Some(payload);
                0
            }
        }
    }
}

/// `r1` to `r5` as spilled.
///
/// # Safety
///
/// `st` is the live state.
unsafe fn args(st: *mut JitState) -> [u64; 5] {
    // SAFETY: the caller's contract.
    let regs = unsafe { (*st).regs };
    [regs[1], regs[2], regs[3], regs[4], regs[5]]
}

/// Helper call: the native function if the environment has one (as the
/// unchecked interpreter does), else [`Env::call_helper`].
unsafe extern "C" fn shim_helper(
    state: *mut c_void,
    pc: u64,
    id: u64,
    prog: u64,
    _: u64,
    _: u64,
) -> u64 {
    // SAFETY: called by JIT code with its live state.
    unsafe {
        guarded(state, |st, vm, env| {
            let id = id as u32 as i32;
            let args = args(st);
            if let Some(native) = env.native_helper(id) {
                // SAFETY: as in the unchecked interpreter: a verified
                // program and the environment's promise for its natives.
                return Ok(native.call(args));
            }
            let mut caller = Caller::for_jit(vm, pc as usize, prog as usize, st);
            env.call_helper(pc as usize, id, args, &mut caller)
        })
    }
}

/// kfunc call; `arg` is `btf_id | off << 32`.
unsafe extern "C" fn shim_kfunc(
    state: *mut c_void,
    pc: u64,
    arg: u64,
    prog: u64,
    _: u64,
    _: u64,
) -> u64 {
    // SAFETY: called by JIT code with its live state.
    unsafe {
        guarded(state, |st, vm, env| {
            let btf_id = arg as u32;
            let off = (arg >> 32) as u16 as i16;
            let args = args(st);
            if let Some(native) = env.native_kfunc(btf_id, off) {
                // SAFETY: as for helpers.
                return Ok(native.call(args));
            }
            let mut caller = Caller::for_jit(vm, pc as usize, prog as usize, st);
            env.call_kfunc(pc as usize, btf_id, off, args, &mut caller)
        })
    }
}

/// `bpf_tail_call`: returns the target's entry function (its program
/// index in `tail_prog`), or 0 to fall through. Mirrors the interpreter
/// (and `___bpf_prog_run`'s three exits).
unsafe extern "C" fn shim_tail_call(
    state: *mut c_void,
    pc: u64,
    _: u64,
    _: u64,
    _: u64,
    _: u64,
) -> u64 {
    // SAFETY: called by JIT code with its live state.
    unsafe {
        guarded(state, |st, vm, env| {
            let pc = pc as usize;
            let regs = (*st).regs;
            let (map, index) = (regs[2], regs[3] as u32);
            match env.tail_call(pc, map, index)? {
                TailCallTarget::OutOfRange => Ok(0),
                _ if vm.tail_calls >= MAX_TAIL_CALL_CNT => Ok(0),
                TailCallTarget::Empty => {
                    vm.tail_calls += 1;
                    Ok(0)
                }
                TailCallTarget::Program(target) => {
                    let prog = target
                        .jit()
                        .map_err(|source| VmError::Jit { pc, source })?
                        .clone();
                    let entry = prog.entry().ok_or(VmError::Jit {
                        pc,
                        source: JitError::Unsupported {
                            what: "a compiled program without an entry",
                        },
                    })?;
                    vm.tail_calls += 1;
                    vm.codes.push(target);
                    (*st).tail_prog = (vm.codes.len() - 1) as u64;
                    Ok(entry as usize as u64)
                }
            }
        })
    }
}

/// `LD_IMM64` the environment resolves: entry `idx` of the program's
/// table.
unsafe extern "C" fn shim_ld_imm64(
    state: *mut c_void,
    pc: u64,
    idx: u64,
    prog: u64,
    _: u64,
    _: u64,
) -> u64 {
    // SAFETY: called by JIT code with its live state.
    unsafe {
        guarded(state, |_, vm, env| {
            let pc = pc as usize;
            let imm = vm
                .codes
                .get(prog as usize)
                .and_then(|c| c.inner().imm64.get(idx as usize).map(|(_, imm)| *imm));
            match imm {
                Some(imm) => env.resolve_imm64(pc, &imm),
                None => Err(VmError::UnresolvedImm64 { pc, src: 0 }),
            }
        })
    }
}

/// The access width in the low byte of a shim argument (its size in bytes).
fn width_of(arg: u64) -> Width {
    match arg & 0xff {
        1 => Width::B,
        2 => Width::H,
        4 => Width::W,
        _ => Width::DW,
    }
}

/// `LD_ABS`/`LD_IND`; `arg` is `width | k << 8 | (src | 0x10) << 40`.
unsafe extern "C" fn shim_load_packet(
    state: *mut c_void,
    pc: u64,
    arg: u64,
    _: u64,
    _: u64,
    _: u64,
) -> u64 {
    // SAFETY: called by JIT code with its live state.
    unsafe {
        guarded(state, |st, _, env| {
            let regs = (*st).regs;
            let width = width_of(arg);
            let k = (arg >> 8) as u32 as i32;
            let src = (arg >> 40) & 0xff;
            let offset = if src & 0x10 != 0 {
                // The kernel adds in 64 bits and passes an `int`.
                let s = regs[(src & 0xf).min(10) as usize];
                s.wrapping_add(k as i64 as u64) as i32
            } else {
                k
            };
            match env.load_packet(pc as usize, regs[6], offset, width)? {
                Some(v) => Ok(v),
                None => {
                    (*st).status = STATUS_PACKET_EXIT;
                    Ok(0)
                }
            }
        })
    }
}

/// Whether this run may inline `bpf_loop` ([`Env::inline_bpf_loop`]): 1 or 0.
unsafe extern "C" fn shim_inline_loop(
    state: *mut c_void,
    _: u64,
    _: u64,
    _: u64,
    _: u64,
    _: u64,
) -> u64 {
    // SAFETY: called by JIT code with its live state.
    unsafe { guarded(state, |_, _, env| Ok(u64::from(env.inline_bpf_loop()))) }
}

/// A probe load (`Inst::ProbeLoad`): `a` is the address, `arg` is
/// `bytes | signed << 8`.
unsafe extern "C" fn shim_probe_load(
    state: *mut c_void,
    pc: u64,
    arg: u64,
    prog: u64,
    a: u64,
    _: u64,
) -> u64 {
    // SAFETY: called by JIT code with its live state.
    unsafe {
        guarded(state, |st, vm, env| {
            let width = width_of(arg);
            let signed = arg & 0x100 != 0;
            let mut caller = Caller::for_jit(vm, pc as usize, prog as usize, st);
            Ok(crate::interp::probe_load(
                env,
                &mut caller,
                a,
                width,
                signed,
            ))
        })
    }
}

/// Reports a failure the code detected itself.
unsafe extern "C" fn shim_fail(
    state: *mut c_void,
    pc: u64,
    what: u64,
    prog: u64,
    a: u64,
    b: u64,
) -> u64 {
    let st = state.cast::<JitState>();
    // SAFETY: every run state has the fields up to `vm`; a direct call of
    // an entry point builds only those, with `vm` null, and has no error
    // slot or environment: it only learns that the run failed.
    unsafe {
        if (&raw const (*st).vm).read().is_null() {
            (&raw mut (*st).status).write(STATUS_ERROR);
            return 0;
        }
    }
    // SAFETY: called by JIT code with its live state.
    unsafe {
        guarded(state, |_, vm, _| {
            let pc = pc as usize;
            Err(match what {
                FAIL_MISALIGNED => VmError::MisalignedAtomic {
                    pc,
                    addr: a,
                    len: b,
                },
                FAIL_CALL_DEPTH => VmError::CallDepthExceeded {
                    pc,
                    max_frames: MAX_CALL_FRAMES,
                },
                FAIL_TRAP => match vm.codes.get(prog as usize) {
                    Some(code) => trap_error(code.inner(), a as u32),
                    None => VmError::FellOffEnd { pc },
                },
                _ => VmError::FellOffEnd { pc },
            })
        })
    }
}

/// Runs the callback `value` for [`Caller::call_function`] in a JIT run.
///
/// # Safety
///
/// `st` is the live state of the run that called the helper.
pub(crate) unsafe fn call_callback(
    st: *mut JitState,
    env: &mut dyn Env,
    pc: usize,
    value: u64,
    args: [u64; 5],
) -> Result<u64, VmError> {
    let bad = || VmError::BadCallback { pc, value };
    if value & CALLBACK_TAG_MASK != CALLBACK_TAG {
        return Err(bad());
    }
    let code_idx = ((value >> 32) & 0xffff) as usize;
    let target = (value & 0xffff_ffff) as u32;
    // SAFETY: the caller's contract; the interpreter is not otherwise
    // borrowed while a helper runs (its `Caller` only holds the pointer).
    // No handle is cloned (a callback runs once per loop iteration): the
    // function pointer stays valid because `codes` only grows during a run,
    // so the compiled program it points into lives until the run ends.
    let f = unsafe {
        let vm: &Interpreter = &*(*st).vm;
        let Some(code) = vm.codes.get(code_idx) else {
            return Err(bad());
        };
        let prog = code.jit().map_err(|source| VmError::Jit { pc, source })?;
        prog.function(target)
    };
    let Some(f) = f else {
        return Err(bad());
    };
    // SAFETY: the caller's contract.
    unsafe {
        let fp = (*st).regs[10].wrapping_add(STACK_SIZE as u64);
        if fp > (*st).stack_top {
            return Err(VmError::CallDepthExceeded {
                pc,
                max_frames: MAX_CALL_FRAMES,
            });
        }
        let saved_regs = (*st).regs;
        let saved_env = (*st).env;
        (*st).env = erase(env);
        let [a, b, c, d, e] = args;
        let r0 = f(st.cast(), fp, code_idx as u64, a, b, c, d, e);
        (*st).env = saved_env;
        (*st).regs = saved_regs;
        match (*st).status {
            STATUS_OK => Ok(r0),
            STATUS_PANIC => Err(VmError::Unsupported {
                pc,
                what: "a callback whose environment panicked",
            }),
            _ => {
                (*st).status = STATUS_OK;
                Err((*st).error.take().unwrap_or_else(bad))
            }
        }
    }
}

/// Erases the lifetime of an environment pointer for the run state.
fn erase<'e>(env: &mut (dyn Env + 'e)) -> *mut (dyn Env + 'static) {
    let p: *mut (dyn Env + 'e) = env;
    // SAFETY: only the lifetime changes; the pointer is used only while
    // the run (and so the borrow) lasts.
    unsafe { std::mem::transmute::<*mut (dyn Env + 'e), *mut (dyn Env + 'static)>(p) }
}

/// The `r0`-to-`r10` view of a JIT run for [`Caller::registers`].
///
/// # Safety
///
/// `st` is the live state.
pub(crate) unsafe fn registers(st: *mut JitState) -> [u64; 11] {
    // SAFETY: the caller's contract.
    unsafe { (*st).regs }
}

impl Interpreter {
    /// Runs `code` as native code with `r1 = ctx`, compiling it first if
    /// needed (once per `Code`, see [`Code::jit`]). Returns `r0` of the
    /// final `exit`, or the error the interpreter's unchecked mode
    /// reports for the same program (see [`crate::jit`] for the few
    /// differences on programs a verifier would reject).
    ///
    /// There is no checked JIT mode: checking stays with the interpreter
    /// ([`Interpreter::run_checked`]).
    ///
    /// # Safety
    ///
    /// As for [`Interpreter::run_unchecked`].
    ///
    /// # Errors
    ///
    /// As for [`Interpreter::run_unchecked`], plus [`VmError::Jit`] when
    /// compilation fails.
    pub unsafe fn run_jit(
        &mut self,
        code: &Code,
        env: &mut dyn Env,
        ctx: u64,
    ) -> Result<u64, VmError> {
        let prog = code
            .jit()
            .map_err(|source| VmError::Jit { pc: 0, source })?;
        // SAFETY: forwarded.
        unsafe { self.run_compiled(prog, code, env, ctx) }
    }

    /// Runs `prog`, which must have been compiled from `code`, as
    /// [`Interpreter::run_jit`] does (for programs compiled with
    /// non-default [`JitOptions`](super::JitOptions)).
    ///
    /// # Safety
    ///
    /// As for [`Interpreter::run_unchecked`].
    ///
    /// # Errors
    ///
    /// As for [`Interpreter::run_jit`]; [`JitError::WrongCode`] when
    /// `prog` was compiled from another `Code`.
    pub unsafe fn run_compiled(
        &mut self,
        prog: &JitProgram,
        code: &Code,
        env: &mut dyn Env,
        ctx: u64,
    ) -> Result<u64, VmError> {
        if !prog.compiled_from(code) {
            return Err(VmError::Jit {
                pc: 0,
                source: JitError::WrongCode,
            });
        }
        let Some(f) = prog.entry() else {
            return Err(VmError::Jit {
                pc: 0,
                source: JitError::Unsupported {
                    what: "a compiled program without an entry",
                },
            });
        };
        // The code zeroes its frames itself (when it can reach them).
        self.start_native(code, ctx);
        let fp = self.stack.frame_pointer(0);
        let stack_top = self.stack.frame_pointer(MAX_CALL_FRAMES - 1);
        let mut state = JitState {
            status: STATUS_OK,
            stack_top,
            tail_prog: 0,
            regs: [0; 11],
            vm: self,
            env: erase(env),
            error: None,
            panic: None,
        };
        let st: *mut JitState = &mut state;
        // SAFETY: the function was compiled for this process from `code`;
        // the state outlives the call; memory safety of what the program
        // does is the caller's contract (a verified program).
        let r0 = unsafe { f(st.cast(), fp, 0, ctx, 0, 0, 0, 0) };
        if prog.captures_registers() {
            self.regs[..11].copy_from_slice(&state.regs);
        } else {
            self.regs = [0; 16];
            self.regs[0] = r0;
        }
        self.finish();
        // The common case reads two words of the state, not its error slot (copying a
        // just-initialized slot out whole stalls on store forwarding every run).
        if state.status == STATUS_OK && state.panic.is_none() {
            return Ok(r0);
        }
        let JitState {
            status,
            error,
            panic,
            ..
        } = state;
        if let Some(payload) = panic {
            resume_unwind(payload);
        }
        match status {
            STATUS_OK => Ok(r0),
            _ => Err(error.unwrap_or(VmError::FellOffEnd { pc: 0 })),
        }
    }
}
