//! The interpreter: [`Interpreter`], its two modes, and [`Caller`], the
//! view of a running program that helpers get.
//!
//! Semantics follow the kernel's `___bpf_prog_run` together with the
//! verifier's rewrites that change what instructions mean at run time
//! (`do_misc_fixups`: division by zero and by -1, `may_goto`, tail calls).
//! The crate docs list the semantics, including the arithmetic corner
//! cases.

use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering, fence};

use structops_isa::{AtomicOp, Width};

use crate::alu::{arsh32, arsh64, div32, div64, mod32, mod64, sdiv32, sdiv64, smod32, smod64};
use crate::code::{Code, CodeInner, Inst, Trap};
use crate::env::{Env, TailCallTarget};
use crate::error::VmError;
use crate::jit::{Engine, JitState};
use crate::memory::{Access, MAX_CALL_FRAMES, RawRegion, Region, Stack};

/// Most tail calls one run may make (the kernel's `MAX_TAIL_CALL_CNT`).
pub const MAX_TAIL_CALL_CNT: u32 = 33;

/// Budget of a function's `may_goto` instructions: the first
/// `BPF_MAX_LOOPS` executions in one frame fall through, later ones jump
/// (the kernel's count-based `may_goto`; JITs that time loops instead
/// differ only in when the budget runs out).
pub const BPF_MAX_LOOPS: u32 = 8 * 1024 * 1024;

/// The default [`Config::step_limit`].
pub const DEFAULT_STEP_LIMIT: u64 = 100_000_000;

/// Tag in the high bits of the values `BPF_PSEUDO_FUNC` loads produce
/// (callback addresses): bits 32..48 hold the index of the program of
/// this run (0, or a tail-call target) and the low 32 bits the
/// instruction index. Not an address any region can contain.
pub(crate) const CALLBACK_TAG: u64 = 0xbf0c_0000_0000_0000;
pub(crate) const CALLBACK_TAG_MASK: u64 = 0xffff_0000_0000_0000;

// The tag lies in the non-canonical hole of x86-64 and arm64 address
// spaces, between the user half and the kernel half.
const _: () = assert!(CALLBACK_TAG > (1 << 47) - 1 && CALLBACK_TAG < 0xffff_8000_0000_0000);

/// Settings of checked runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Most instructions one checked run may execute before it stops with
    /// [`VmError::InstructionLimit`]. Unchecked runs are not limited: the
    /// verifier has proven that they terminate.
    pub step_limit: u64,
    /// Whether a read of never-written stack bytes is an error
    /// ([`VmError::UninitializedRead`]). The kernel lets programs loaded
    /// with `CAP_PERFMON` read such bytes (`allow_uninit_stack`); set this
    /// to `false` to run those. The stack is zeroed on frame entry either
    /// way, so such reads see 0.
    pub trap_uninit_stack: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            step_limit: DEFAULT_STEP_LIMIT,
            trap_uninit_stack: true,
        }
    }
}

/// The mode of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Every access is checked ([`Interpreter::run_checked`]).
    Checked,
    /// Nothing is checked ([`Interpreter::run_unchecked`]).
    Unchecked,
}

/// The state of a caller, saved across a bpf-to-bpf call or a callback.
struct Frame {
    /// Instruction index to continue at in `code`.
    ret: usize,
    /// The caller's program (differs from the callee's after a tail call).
    code: Arc<CodeInner>,
    /// Its index in the run's program list (for callback values).
    code_idx: usize,
    /// `r6` to `r10`.
    saved: [u64; 5],
    /// The caller's remaining `may_goto` budget.
    may_goto: u32,
}

/// What kind of access a checked memory operation makes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
    /// Atomics: must be writable and, on the stack, initialized.
    Update,
}

impl Kind {
    fn writes(self) -> bool {
        self != Kind::Read
    }
}

/// Why a checked access failed, before the pc is attached.
#[derive(Clone, Copy)]
enum Fault {
    OutOfBounds,
    Uninitialized,
}

/// Index of register `n` in the 16-entry register file; never out of range.
#[inline(always)]
fn ri(n: u8) -> usize {
    usize::from(n & 15)
}

#[cold]
fn fault(f: Fault, pc: usize, addr: u64, len: u64, kind: Kind) -> VmError {
    match f {
        Fault::OutOfBounds => VmError::OutOfBounds {
            pc,
            addr,
            len,
            write: kind.writes(),
        },
        Fault::Uninitialized => VmError::UninitializedRead { pc, addr, len },
    }
}

#[cold]
pub(crate) fn trap_error(code: &CodeInner, idx: u32) -> VmError {
    match code.traps.get(idx as usize) {
        Some(&Trap::BadJump { pc, target }) => VmError::BadJump { pc, target },
        Some(&Trap::BadCallTarget { pc, target }) => VmError::BadCallTarget { pc, target },
        Some(&Trap::Unsupported { pc, what }) => VmError::Unsupported { pc, what },
        Some(&Trap::FellOffEnd { pc }) => VmError::FellOffEnd { pc },
        None => VmError::FellOffEnd {
            pc: code.slot_count,
        },
    }
}

/// An eBPF interpreter. Holds the register file, the stack (eight frames
/// of 512 bytes, allocated once) and the bookkeeping of one run at a
/// time; reuse it across runs to avoid allocation.
///
/// # Example
///
/// ```
/// use structops_vm::{Code, Interpreter, NoEnv, Region};
///
/// let prog = structops_isa::assemble("r0 = *(u32 *)(r1 +4)\nr0 *= 3\nexit")?;
/// let code = Code::new(&prog);
/// let mut ctx = [0u8; 8];
/// ctx[4..].copy_from_slice(&14u32.to_ne_bytes());
/// let mut vm = Interpreter::new();
/// let r0 = vm.run_checked(&code, &mut NoEnv, Region::read_write(&mut ctx), &[])?;
/// assert_eq!(r0, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Interpreter {
    config: Config,
    /// r0 to r10; 11 to 15 are padding so `reg & 15` never leaves the array.
    pub(crate) regs: [u64; 16],
    frames: Vec<Frame>,
    /// Programs of the current run: the entry program, then tail-call
    /// targets in the order they were entered.
    pub(crate) codes: Vec<Code>,
    /// [`Interpreter::keep_code`].
    keep_code: bool,
    pub(crate) stack: Stack,
    /// Checked mode: the context, the extra regions, then granted ones.
    regions: Vec<RawRegion>,
    /// Regions given at the start of the run (not revocable).
    fixed_regions: usize,
    pub(crate) tail_calls: u32,
    steps: u64,
    mode: Mode,
}

impl Default for Interpreter {
    fn default() -> Interpreter {
        Interpreter::new()
    }
}

impl std::fmt::Debug for Interpreter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interpreter")
            .field("config", &self.config)
            .field("mode", &self.mode)
            .field("regs", &self.registers())
            .field("depth", &self.frames.len())
            .finish_non_exhaustive()
    }
}

impl Interpreter {
    /// An interpreter with the default [`Config`].
    pub fn new() -> Interpreter {
        Interpreter::with_config(Config::default())
    }

    /// An interpreter with `config`.
    pub fn with_config(config: Config) -> Interpreter {
        Interpreter {
            config,
            regs: [0; 16],
            frames: Vec::with_capacity(MAX_CALL_FRAMES),
            codes: Vec::new(),
            keep_code: false,
            stack: Stack::new(),
            regions: Vec::new(),
            fixed_regions: 0,
            tail_calls: 0,
            steps: 0,
            mode: Mode::Checked,
        }
    }

    /// For loops that run the same program many times (a test run with `repeat`):
    /// keep the program's [`Code`] handle from one run to the next instead of taking
    /// and dropping a reference on every run (two atomic operations). The handle stays
    /// until a run of other code or until this is switched off or the interpreter is
    /// dropped, so switch it off (or drop the interpreter) when the program may go.
    pub fn keep_code(&mut self, keep: bool) {
        self.keep_code = keep;
        if !keep {
            self.codes.clear();
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Changes the configuration for later runs.
    pub fn set_config(&mut self, config: Config) {
        self.config = config;
    }

    /// `r0` to `r10` as the last run left them (after an error, as they
    /// were when it stopped).
    pub fn registers(&self) -> [u64; 11] {
        let mut out = [0; 11];
        out.copy_from_slice(&self.regs[..11]);
        out
    }

    /// Instructions the last checked run executed (0 after an unchecked
    /// run, which does not count).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Tail calls the last run made.
    pub fn tail_calls(&self) -> u32 {
        self.tail_calls
    }

    /// Runs `code` in checked mode: `r1` is the address of `ctx`, and the
    /// program may use its stack frames, `ctx`, the `extra` regions and
    /// whatever the environment grants; any other access, a read of
    /// unwritten stack, or running past the step limit stops the run with
    /// a typed error. Returns `r0` of the final `exit`.
    ///
    /// This is sound for any program: nothing it does can touch memory
    /// outside those regions. Helpers and kfuncs run as the environment
    /// implements them; checking their pointer arguments is its job (see
    /// [`Caller`]).
    ///
    /// # Errors
    ///
    /// Any [`VmError`].
    pub fn run_checked(
        &mut self,
        code: &Code,
        env: &mut dyn Env,
        ctx: Region<'_>,
        extra: &[Region<'_>],
    ) -> Result<u64, VmError> {
        self.start(code, ctx.addr(), Mode::Checked);
        self.regions.push(ctx.raw());
        self.regions.extend(extra.iter().map(Region::raw));
        self.fixed_regions = self.regions.len();
        let result = self.exec::<true>(env, code.inner().clone(), 0, 0, 0);
        self.finish();
        result
    }

    /// Runs `code` without any checks, with `r1 = ctx`. Returns `r0` of
    /// the final `exit`.
    ///
    /// Errors still stop the run where they cannot be ruled out by a
    /// verifier (a helper failing, the environment refusing) or where
    /// checking is free (call depth, structural traps, misaligned atomics).
    ///
    /// # Safety
    ///
    /// Only for programs the verifier accepted for this context and this
    /// environment: every load, store and atomic then touches only memory
    /// that is valid for it (the stack, `ctx`, what helpers returned), the
    /// program terminates, and it calls only helpers and kfuncs the
    /// environment provides with arguments their prototypes allow. The
    /// environment's [`Env::native_helper`] functions must be sound to
    /// call with such arguments, and it must pass [`Caller::read`] and
    /// [`Caller::write`] only ranges the helper's prototype guarantees
    /// valid.
    ///
    /// # Errors
    ///
    /// Any [`VmError`] except the memory and step-limit ones.
    pub unsafe fn run_unchecked(
        &mut self,
        code: &Code,
        env: &mut dyn Env,
        ctx: u64,
    ) -> Result<u64, VmError> {
        self.start(code, ctx, Mode::Unchecked);
        let result = self.exec::<false>(env, code.inner().clone(), 0, 0, 0);
        self.finish();
        result
    }

    /// Runs `code` with `r1 = ctx` on `engine`: the unchecked
    /// interpreter ([`Interpreter::run_unchecked`]) or the JIT
    /// ([`Interpreter::run_jit`]), which give the same results.
    ///
    /// # Safety
    ///
    /// As for [`Interpreter::run_unchecked`].
    ///
    /// # Errors
    ///
    /// As for the engine's own method.
    pub unsafe fn run(
        &mut self,
        engine: Engine,
        code: &Code,
        env: &mut dyn Env,
        ctx: u64,
    ) -> Result<u64, VmError> {
        // SAFETY: forwarded to the caller's contract.
        unsafe {
            match engine {
                Engine::Interp => self.run_unchecked(code, env, ctx),
                Engine::Jit => self.run_jit(code, env, ctx),
            }
        }
    }

    pub(crate) fn start(&mut self, code: &Code, ctx: u64, mode: Mode) {
        self.start_native(code, ctx);
        self.mode = mode;
        self.stack.reset_frame(0, mode == Mode::Checked);
    }

    /// [`Interpreter::start`] of a JIT run: unchecked, and the first frame is not
    /// cleared (the compiled code zeroes the frames it can reach).
    pub(crate) fn start_native(&mut self, code: &Code, ctx: u64) {
        self.mode = Mode::Unchecked;
        self.regs = [0; 16];
        self.regs[1] = ctx;
        self.regs[10] = self.stack.frame_pointer(0);
        self.frames.clear();
        if self.keep_code && self.codes.first().is_some_and(|c| c.ptr_eq(code)) {
            self.codes.truncate(1);
        } else {
            self.codes.clear();
            self.codes.push(code.clone());
        }
        self.regions.clear();
        self.fixed_regions = 0;
        self.tail_calls = 0;
        self.steps = 0;
    }

    pub(crate) fn finish(&mut self) {
        self.regions.clear();
        self.fixed_regions = 0;
        self.frames.clear();
        if self.keep_code {
            // Tail-call targets go; the program's own handle stays for the next run.
            self.codes.truncate(1);
        } else {
            self.codes.clear();
        }
    }

    /// Checks an access of `len` bytes at `addr` against the live stack
    /// frames and the regions, tracking stack initialization.
    #[inline]
    fn check(&mut self, addr: u64, len: u64, kind: Kind) -> Result<(), Fault> {
        let end = addr.checked_add(len).ok_or(Fault::OutOfBounds)?;
        let lo = self.stack.base;
        let hi = self.stack.live_end(self.frames.len());
        if addr >= lo && end <= hi {
            let (a, b) = ((addr - lo) as usize, (end - lo) as usize);
            let flags = self.stack.init.get_mut(a..b).ok_or(Fault::OutOfBounds)?;
            if kind != Kind::Write && self.config.trap_uninit_stack && !flags.iter().all(|&f| f) {
                return Err(Fault::Uninitialized);
            }
            if kind.writes() {
                flags.fill(true);
            }
            return Ok(());
        }
        let write = kind.writes();
        if self.regions.iter().any(|r| r.allows(addr, end, write)) {
            Ok(())
        } else {
            Err(Fault::OutOfBounds)
        }
    }

    /// Pushes a frame for a call from instruction `ret - 1` and enters the
    /// callee's fresh stack frame.
    fn push_frame(
        &mut self,
        ret: usize,
        code: &Arc<CodeInner>,
        code_idx: usize,
        may_goto: u32,
        pc: usize,
    ) -> Result<(), VmError> {
        if self.frames.len() + 1 >= MAX_CALL_FRAMES {
            return Err(VmError::CallDepthExceeded {
                pc,
                max_frames: MAX_CALL_FRAMES,
            });
        }
        let [_, _, _, _, _, _, r6, r7, r8, r9, r10, ..] = self.regs;
        self.frames.push(Frame {
            ret,
            code: Arc::clone(code),
            code_idx,
            saved: [r6, r7, r8, r9, r10],
            may_goto,
        });
        let depth = self.frames.len();
        self.stack.reset_frame(depth, self.mode == Mode::Checked);
        self.regs[10] = self.stack.frame_pointer(depth);
        Ok(())
    }

    /// Restores the caller's `r6` to `r10` from `frame`.
    fn restore(&mut self, frame: &Frame) {
        let [r6, r7, r8, r9, r10] = frame.saved;
        self.regs[6] = r6;
        self.regs[7] = r7;
        self.regs[8] = r8;
        self.regs[9] = r9;
        self.regs[10] = r10;
    }

    /// Runs from instruction `pc` of `cur` (program `code_idx` of this
    /// run) until the frame at depth `base` exits; returns its `r0`.
    fn exec<const CHECKED: bool>(
        &mut self,
        env: &mut dyn Env,
        mut cur: Arc<CodeInner>,
        mut code_idx: usize,
        mut pc: usize,
        base: usize,
    ) -> Result<u64, VmError> {
        let mut may_goto = BPF_MAX_LOOPS;
        'code: loop {
            let code = Arc::clone(&cur);
            let insts: &[Inst] = &code.insts;

            macro_rules! reg {
                ($n:expr) => {
                    self.regs[ri($n)]
                };
            }
            macro_rules! slot {
                ($at:expr) => {
                    code.slot_of($at)
                };
            }
            macro_rules! checked {
                ($at:expr, $addr:expr, $len:expr, $kind:expr) => {
                    if CHECKED {
                        if let Err(f) = self.check($addr, $len, $kind) {
                            return Err(fault(f, slot!($at), $addr, $len, $kind));
                        }
                    }
                };
            }
            macro_rules! load {
                ($at:expr, $ty:ty, $b:expr, $off:expr) => {{
                    let addr = reg!($b).wrapping_add($off as i64 as u64);
                    checked!($at, addr, size_of::<$ty>() as u64, Kind::Read);
                    // SAFETY: checked mode: the range lies in a live stack
                    // frame or an allowed region. Unchecked mode: the
                    // verifier proved it valid (`run_unchecked`'s contract).
                    unsafe { ptr::with_exposed_provenance::<$ty>(addr as usize).read_unaligned() }
                }};
            }
            macro_rules! store {
                ($at:expr, $ty:ty, $b:expr, $off:expr, $v:expr) => {{
                    let addr = reg!($b).wrapping_add($off as i64 as u64);
                    checked!($at, addr, size_of::<$ty>() as u64, Kind::Write);
                    // SAFETY: as for loads, for writing.
                    unsafe {
                        ptr::with_exposed_provenance_mut::<$ty>(addr as usize)
                            .write_unaligned($v as $ty)
                    }
                }};
            }
            macro_rules! alu64 {
                ($d:expr, $b:expr, |$x:ident, $y:ident| $e:expr) => {{
                    let $x = reg!($d);
                    let $y: u64 = $b;
                    reg!($d) = $e;
                }};
            }
            macro_rules! alu32 {
                ($d:expr, $b:expr, |$x:ident, $y:ident| $e:expr) => {{
                    let $x = reg!($d) as u32;
                    let $y: u32 = $b;
                    reg!($d) = u64::from($e);
                }};
            }
            macro_rules! jump {
                ($cond:expr, $t:expr) => {
                    if $cond {
                        pc = $t as usize;
                    }
                };
            }
            // Leaves the current function with `r0`; the run's result when
            // it is the base frame.
            macro_rules! exit {
                () => {{
                    if self.frames.len() <= base {
                        return Ok(self.regs[0]);
                    }
                    let Some(frame) = self.frames.pop() else {
                        return Ok(self.regs[0]);
                    };
                    self.restore(&frame);
                    may_goto = frame.may_goto;
                    pc = frame.ret;
                    if !Arc::ptr_eq(&frame.code, &code) {
                        cur = frame.code;
                        code_idx = frame.code_idx;
                        continue 'code;
                    }
                }};
            }

            loop {
                let at = pc;
                let Some(&inst) = insts.get(at) else {
                    return Err(VmError::FellOffEnd {
                        pc: code.slot_count,
                    });
                };
                if CHECKED {
                    self.steps += 1;
                    if self.steps > self.config.step_limit {
                        return Err(VmError::InstructionLimit {
                            pc: slot!(at),
                            limit: self.config.step_limit,
                        });
                    }
                }
                pc = at + 1;
                match inst {
                    Inst::Add64X { d, s } => alu64!(d, reg!(s), |a, b| a.wrapping_add(b)),
                    Inst::Sub64X { d, s } => alu64!(d, reg!(s), |a, b| a.wrapping_sub(b)),
                    Inst::Mul64X { d, s } => alu64!(d, reg!(s), |a, b| a.wrapping_mul(b)),
                    Inst::Div64X { d, s } => alu64!(d, reg!(s), |a, b| div64(a, b)),
                    Inst::SDiv64X { d, s } => alu64!(d, reg!(s), |a, b| sdiv64(a, b)),
                    Inst::Mod64X { d, s } => alu64!(d, reg!(s), |a, b| mod64(a, b)),
                    Inst::SMod64X { d, s } => alu64!(d, reg!(s), |a, b| smod64(a, b)),
                    Inst::Or64X { d, s } => alu64!(d, reg!(s), |a, b| a | b),
                    Inst::And64X { d, s } => alu64!(d, reg!(s), |a, b| a & b),
                    Inst::Xor64X { d, s } => alu64!(d, reg!(s), |a, b| a ^ b),
                    Inst::Lsh64X { d, s } => alu64!(d, reg!(s), |a, b| a << (b & 63)),
                    Inst::Rsh64X { d, s } => alu64!(d, reg!(s), |a, b| a >> (b & 63)),
                    Inst::Arsh64X { d, s } => alu64!(d, reg!(s), |a, b| arsh64(a, b)),
                    Inst::Mov64X { d, s } => reg!(d) = reg!(s),
                    Inst::Add64K { d, k } => alu64!(d, k, |a, b| a.wrapping_add(b)),
                    Inst::Sub64K { d, k } => alu64!(d, k, |a, b| a.wrapping_sub(b)),
                    Inst::Mul64K { d, k } => alu64!(d, k, |a, b| a.wrapping_mul(b)),
                    Inst::Div64K { d, k } => alu64!(d, k, |a, b| div64(a, b)),
                    Inst::SDiv64K { d, k } => alu64!(d, k, |a, b| sdiv64(a, b)),
                    Inst::Mod64K { d, k } => alu64!(d, k, |a, b| mod64(a, b)),
                    Inst::SMod64K { d, k } => alu64!(d, k, |a, b| smod64(a, b)),
                    Inst::Or64K { d, k } => alu64!(d, k, |a, b| a | b),
                    Inst::And64K { d, k } => alu64!(d, k, |a, b| a & b),
                    Inst::Xor64K { d, k } => alu64!(d, k, |a, b| a ^ b),
                    // Lowering already masked the shift amount.
                    Inst::Lsh64K { d, k } => alu64!(d, k, |a, b| a << (b & 63)),
                    Inst::Rsh64K { d, k } => alu64!(d, k, |a, b| a >> (b & 63)),
                    Inst::Arsh64K { d, k } => alu64!(d, k, |a, b| arsh64(a, b)),
                    Inst::Mov64K { d, k } => reg!(d) = k,
                    Inst::Add32X { d, s } => alu32!(d, reg!(s) as u32, |a, b| a.wrapping_add(b)),
                    Inst::Sub32X { d, s } => alu32!(d, reg!(s) as u32, |a, b| a.wrapping_sub(b)),
                    Inst::Mul32X { d, s } => alu32!(d, reg!(s) as u32, |a, b| a.wrapping_mul(b)),
                    Inst::Div32X { d, s } => alu32!(d, reg!(s) as u32, |a, b| div32(a, b)),
                    Inst::SDiv32X { d, s } => alu32!(d, reg!(s) as u32, |a, b| sdiv32(a, b)),
                    Inst::Mod32X { d, s } => alu32!(d, reg!(s) as u32, |a, b| mod32(a, b)),
                    Inst::SMod32X { d, s } => alu32!(d, reg!(s) as u32, |a, b| smod32(a, b)),
                    Inst::Or32X { d, s } => alu32!(d, reg!(s) as u32, |a, b| a | b),
                    Inst::And32X { d, s } => alu32!(d, reg!(s) as u32, |a, b| a & b),
                    Inst::Xor32X { d, s } => alu32!(d, reg!(s) as u32, |a, b| a ^ b),
                    Inst::Lsh32X { d, s } => alu32!(d, reg!(s) as u32, |a, b| a << (b & 31)),
                    Inst::Rsh32X { d, s } => alu32!(d, reg!(s) as u32, |a, b| a >> (b & 31)),
                    Inst::Arsh32X { d, s } => alu32!(d, reg!(s) as u32, |a, b| arsh32(a, b)),
                    Inst::Mov32X { d, s } => reg!(d) = u64::from(reg!(s) as u32),
                    Inst::Add32K { d, k } => alu32!(d, k, |a, b| a.wrapping_add(b)),
                    Inst::Sub32K { d, k } => alu32!(d, k, |a, b| a.wrapping_sub(b)),
                    Inst::Mul32K { d, k } => alu32!(d, k, |a, b| a.wrapping_mul(b)),
                    Inst::Div32K { d, k } => alu32!(d, k, |a, b| div32(a, b)),
                    Inst::SDiv32K { d, k } => alu32!(d, k, |a, b| sdiv32(a, b)),
                    Inst::Mod32K { d, k } => alu32!(d, k, |a, b| mod32(a, b)),
                    Inst::SMod32K { d, k } => alu32!(d, k, |a, b| smod32(a, b)),
                    Inst::Or32K { d, k } => alu32!(d, k, |a, b| a | b),
                    Inst::And32K { d, k } => alu32!(d, k, |a, b| a & b),
                    Inst::Xor32K { d, k } => alu32!(d, k, |a, b| a ^ b),
                    Inst::Lsh32K { d, k } => alu32!(d, k, |a, b| a << (b & 31)),
                    Inst::Rsh32K { d, k } => alu32!(d, k, |a, b| a >> (b & 31)),
                    Inst::Arsh32K { d, k } => alu32!(d, k, |a, b| arsh32(a, b)),
                    Inst::Mov32K { d, k } => reg!(d) = u64::from(k),
                    Inst::Neg64 { d } => reg!(d) = reg!(d).wrapping_neg(),
                    Inst::Neg32 { d } => reg!(d) = u64::from((reg!(d) as u32).wrapping_neg()),
                    Inst::MovSx64 { d, s, from } => {
                        let v = reg!(s);
                        reg!(d) = match from {
                            Width::B => v as i8 as i64 as u64,
                            Width::H => v as i16 as i64 as u64,
                            Width::W => v as i32 as i64 as u64,
                            Width::DW => v,
                        };
                    }
                    Inst::MovSx32 { d, s, from } => {
                        let v = reg!(s);
                        reg!(d) = u64::from(match from {
                            Width::B => v as i8 as i32 as u32,
                            Width::H => v as i16 as i32 as u32,
                            Width::W | Width::DW => v as u32,
                        });
                    }
                    Inst::Trunc16 { d } => reg!(d) = u64::from(reg!(d) as u16),
                    Inst::Trunc32 { d } => reg!(d) = u64::from(reg!(d) as u32),
                    Inst::Swap16 { d } => reg!(d) = u64::from((reg!(d) as u16).swap_bytes()),
                    Inst::Swap32 { d } => reg!(d) = u64::from((reg!(d) as u32).swap_bytes()),
                    Inst::Swap64 { d } => reg!(d) = reg!(d).swap_bytes(),
                    Inst::Nop => {}

                    Inst::Jeq64X { d, s, t } => jump!(reg!(d) == reg!(s), t),
                    Inst::Jne64X { d, s, t } => jump!(reg!(d) != reg!(s), t),
                    Inst::Jgt64X { d, s, t } => jump!(reg!(d) > reg!(s), t),
                    Inst::Jge64X { d, s, t } => jump!(reg!(d) >= reg!(s), t),
                    Inst::Jlt64X { d, s, t } => jump!(reg!(d) < reg!(s), t),
                    Inst::Jle64X { d, s, t } => jump!(reg!(d) <= reg!(s), t),
                    Inst::Jsgt64X { d, s, t } => jump!((reg!(d) as i64) > (reg!(s) as i64), t),
                    Inst::Jsge64X { d, s, t } => jump!((reg!(d) as i64) >= (reg!(s) as i64), t),
                    Inst::Jslt64X { d, s, t } => jump!((reg!(d) as i64) < (reg!(s) as i64), t),
                    Inst::Jsle64X { d, s, t } => jump!((reg!(d) as i64) <= (reg!(s) as i64), t),
                    Inst::Jset64X { d, s, t } => jump!(reg!(d) & reg!(s) != 0, t),
                    Inst::Jeq64K { d, k, t } => jump!(reg!(d) == k, t),
                    Inst::Jne64K { d, k, t } => jump!(reg!(d) != k, t),
                    Inst::Jgt64K { d, k, t } => jump!(reg!(d) > k, t),
                    Inst::Jge64K { d, k, t } => jump!(reg!(d) >= k, t),
                    Inst::Jlt64K { d, k, t } => jump!(reg!(d) < k, t),
                    Inst::Jle64K { d, k, t } => jump!(reg!(d) <= k, t),
                    Inst::Jsgt64K { d, k, t } => jump!((reg!(d) as i64) > (k as i64), t),
                    Inst::Jsge64K { d, k, t } => jump!((reg!(d) as i64) >= (k as i64), t),
                    Inst::Jslt64K { d, k, t } => jump!((reg!(d) as i64) < (k as i64), t),
                    Inst::Jsle64K { d, k, t } => jump!((reg!(d) as i64) <= (k as i64), t),
                    Inst::Jset64K { d, k, t } => jump!(reg!(d) & k != 0, t),
                    Inst::Jeq32X { d, s, t } => jump!(reg!(d) as u32 == reg!(s) as u32, t),
                    Inst::Jne32X { d, s, t } => jump!(reg!(d) as u32 != reg!(s) as u32, t),
                    Inst::Jgt32X { d, s, t } => jump!(reg!(d) as u32 > reg!(s) as u32, t),
                    Inst::Jge32X { d, s, t } => jump!(reg!(d) as u32 >= reg!(s) as u32, t),
                    Inst::Jlt32X { d, s, t } => jump!((reg!(d) as u32) < reg!(s) as u32, t),
                    Inst::Jle32X { d, s, t } => jump!(reg!(d) as u32 <= reg!(s) as u32, t),
                    Inst::Jsgt32X { d, s, t } => jump!((reg!(d) as i32) > (reg!(s) as i32), t),
                    Inst::Jsge32X { d, s, t } => jump!((reg!(d) as i32) >= (reg!(s) as i32), t),
                    Inst::Jslt32X { d, s, t } => jump!((reg!(d) as i32) < (reg!(s) as i32), t),
                    Inst::Jsle32X { d, s, t } => jump!((reg!(d) as i32) <= (reg!(s) as i32), t),
                    Inst::Jset32X { d, s, t } => jump!(reg!(d) as u32 & reg!(s) as u32 != 0, t),
                    Inst::Jeq32K { d, k, t } => jump!(reg!(d) as u32 == k, t),
                    Inst::Jne32K { d, k, t } => jump!(reg!(d) as u32 != k, t),
                    Inst::Jgt32K { d, k, t } => jump!(reg!(d) as u32 > k, t),
                    Inst::Jge32K { d, k, t } => jump!(reg!(d) as u32 >= k, t),
                    Inst::Jlt32K { d, k, t } => jump!((reg!(d) as u32) < k, t),
                    Inst::Jle32K { d, k, t } => jump!(reg!(d) as u32 <= k, t),
                    Inst::Jsgt32K { d, k, t } => jump!((reg!(d) as i32) > (k as i32), t),
                    Inst::Jsge32K { d, k, t } => jump!((reg!(d) as i32) >= (k as i32), t),
                    Inst::Jslt32K { d, k, t } => jump!((reg!(d) as i32) < (k as i32), t),
                    Inst::Jsle32K { d, k, t } => jump!((reg!(d) as i32) <= (k as i32), t),
                    Inst::Jset32K { d, k, t } => jump!(reg!(d) as u32 & k != 0, t),
                    Inst::Ja { t } => pc = t as usize,
                    Inst::MayGoto { t } => {
                        if may_goto == 0 {
                            pc = t as usize;
                        } else {
                            may_goto -= 1;
                        }
                    }

                    Inst::Call { t } => {
                        self.push_frame(pc, &code, code_idx, may_goto, slot!(at))?;
                        may_goto = BPF_MAX_LOOPS;
                        pc = t as usize;
                    }
                    Inst::Helper { id } => {
                        let args = [reg!(1), reg!(2), reg!(3), reg!(4), reg!(5)];
                        let native = if CHECKED { None } else { env.native_helper(id) };
                        reg!(0) = match native {
                            // SAFETY: unchecked mode only: the program was
                            // verified and the environment vouches for its
                            // native helpers (`run_unchecked`'s contract).
                            Some(f) => unsafe { f.call(args) },
                            None => {
                                let pc_slot = slot!(at);
                                let mut caller = Caller {
                                    vm: self,
                                    pc: pc_slot,
                                    code_idx,
                                    jit: std::ptr::null_mut(),
                                };
                                env.call_helper(pc_slot, id, args, &mut caller)?
                            }
                        };
                    }
                    Inst::Kfunc { btf_id, off } => {
                        let args = [reg!(1), reg!(2), reg!(3), reg!(4), reg!(5)];
                        let native = if CHECKED {
                            None
                        } else {
                            env.native_kfunc(btf_id, off)
                        };
                        reg!(0) = match native {
                            // SAFETY: as for helpers.
                            Some(f) => unsafe { f.call(args) },
                            None => {
                                let pc_slot = slot!(at);
                                let mut caller = Caller {
                                    vm: self,
                                    pc: pc_slot,
                                    code_idx,
                                    jit: std::ptr::null_mut(),
                                };
                                env.call_kfunc(pc_slot, btf_id, off, args, &mut caller)?
                            }
                        };
                    }
                    Inst::TailCall => {
                        // Mirrors BPF_TAIL_CALL in `___bpf_prog_run`: an
                        // index past the array falls through uncounted; at
                        // the limit every tail call falls through; an empty
                        // slot falls through but counts.
                        let (map, index) = (reg!(2), reg!(3) as u32);
                        match env.tail_call(slot!(at), map, index)? {
                            TailCallTarget::OutOfRange => {}
                            _ if self.tail_calls >= MAX_TAIL_CALL_CNT => {}
                            TailCallTarget::Empty => self.tail_calls += 1,
                            TailCallTarget::Program(target) => {
                                self.tail_calls += 1;
                                // The target replaces the current function:
                                // same frame (now fresh), same registers.
                                let checked = self.mode == Mode::Checked;
                                self.stack.reset_frame(self.frames.len(), checked);
                                cur = Arc::clone(target.inner());
                                self.codes.push(target);
                                code_idx = self.codes.len() - 1;
                                may_goto = BPF_MAX_LOOPS;
                                pc = 0;
                                continue 'code;
                            }
                        }
                    }
                    Inst::Exit => exit!(),

                    Inst::LdB { d, s, off } => reg!(d) = u64::from(load!(at, u8, s, off)),
                    Inst::LdH { d, s, off } => reg!(d) = u64::from(load!(at, u16, s, off)),
                    Inst::LdW { d, s, off } => reg!(d) = u64::from(load!(at, u32, s, off)),
                    Inst::LdDW { d, s, off } => reg!(d) = load!(at, u64, s, off),
                    Inst::LdSxB { d, s, off } => reg!(d) = load!(at, i8, s, off) as i64 as u64,
                    Inst::LdSxH { d, s, off } => reg!(d) = load!(at, i16, s, off) as i64 as u64,
                    Inst::LdSxW { d, s, off } => reg!(d) = load!(at, i32, s, off) as i64 as u64,
                    Inst::StBX { d, s, off } => store!(at, u8, d, off, reg!(s)),
                    Inst::StHX { d, s, off } => store!(at, u16, d, off, reg!(s)),
                    Inst::StWX { d, s, off } => store!(at, u32, d, off, reg!(s)),
                    Inst::StDWX { d, s, off } => store!(at, u64, d, off, reg!(s)),
                    Inst::StBK { d, off, k } => store!(at, u8, d, off, k),
                    Inst::StHK { d, off, k } => store!(at, u16, d, off, k),
                    Inst::StWK { d, off, k } => store!(at, u32, d, off, k),
                    Inst::StDWK { d, off, k } => store!(at, u64, d, off, k),
                    Inst::Atomic {
                        op,
                        wide,
                        d,
                        s,
                        off,
                    } => {
                        let addr = reg!(d).wrapping_add(off as i64 as u64);
                        let len: u64 = if wide { 8 } else { 4 };
                        if !addr.is_multiple_of(len) {
                            return Err(VmError::MisalignedAtomic {
                                pc: slot!(at),
                                addr,
                                len,
                            });
                        }
                        checked!(at, addr, len, Kind::Update);
                        let (src, r0) = (reg!(s), reg!(0));
                        let (old, new_r0) = if wide {
                            // SAFETY: the access is valid (checked, or the
                            // verifier's proof) and aligned (checked above).
                            let cell = unsafe {
                                AtomicU64::from_ptr(ptr::with_exposed_provenance_mut(addr as usize))
                            };
                            atomic_u64(cell, op, src, r0)
                        } else {
                            // SAFETY: as above.
                            let cell = unsafe {
                                AtomicU32::from_ptr(ptr::with_exposed_provenance_mut(addr as usize))
                            };
                            atomic_u32(cell, op, src as u32, r0 as u32)
                        };
                        match op {
                            AtomicOp::CmpXchg => reg!(0) = new_r0,
                            _ if op.fetches() => reg!(s) = old,
                            _ => {}
                        }
                    }
                    Inst::LoadAcquire { width, d, s, off } => {
                        let addr = reg!(s).wrapping_add(off as i64 as u64);
                        let len = width.bytes() as u64;
                        if !addr.is_multiple_of(len) {
                            return Err(VmError::MisalignedAtomic {
                                pc: slot!(at),
                                addr,
                                len,
                            });
                        }
                        checked!(at, addr, len, Kind::Read);
                        let p = addr as usize;
                        // A plain aligned load followed by an acquire fence:
                        // unlike `AtomicU*::from_ptr`, this is also fine on
                        // read-only regions. Racing writers are the same
                        // accepted race as for every other load.
                        // SAFETY: valid (checked, or the verifier's proof)
                        // and aligned (checked above).
                        let v = unsafe {
                            match width {
                                Width::B => u64::from(ptr::with_exposed_provenance::<u8>(p).read()),
                                Width::H => {
                                    u64::from(ptr::with_exposed_provenance::<u16>(p).read())
                                }
                                Width::W => {
                                    u64::from(ptr::with_exposed_provenance::<u32>(p).read())
                                }
                                Width::DW => ptr::with_exposed_provenance::<u64>(p).read(),
                            }
                        };
                        fence(Ordering::Acquire);
                        reg!(d) = v;
                    }
                    Inst::StoreRelease { width, d, s, off } => {
                        let addr = reg!(d).wrapping_add(off as i64 as u64);
                        let len = width.bytes() as u64;
                        if !addr.is_multiple_of(len) {
                            return Err(VmError::MisalignedAtomic {
                                pc: slot!(at),
                                addr,
                                len,
                            });
                        }
                        checked!(at, addr, len, Kind::Write);
                        let (p, v) = (addr as usize, reg!(s));
                        // SAFETY: valid and aligned, as for atomics.
                        unsafe {
                            match width {
                                Width::B => AtomicU8::from_ptr(ptr::with_exposed_provenance_mut(p))
                                    .store(v as u8, Ordering::Release),
                                Width::H => {
                                    AtomicU16::from_ptr(ptr::with_exposed_provenance_mut(p))
                                        .store(v as u16, Ordering::Release)
                                }
                                Width::W => {
                                    AtomicU32::from_ptr(ptr::with_exposed_provenance_mut(p))
                                        .store(v as u32, Ordering::Release)
                                }
                                Width::DW => {
                                    AtomicU64::from_ptr(ptr::with_exposed_provenance_mut(p))
                                        .store(v, Ordering::Release)
                                }
                            }
                        }
                    }
                    Inst::LdFunc { d, t } => {
                        reg!(d) = CALLBACK_TAG | ((code_idx as u64 & 0xffff) << 32) | u64::from(t);
                    }
                    Inst::LdImm64Env { d, idx } => {
                        let pc_slot = slot!(at);
                        reg!(d) = match code.imm64.get(idx as usize) {
                            Some((_, imm)) => env.resolve_imm64(pc_slot, imm)?,
                            None => {
                                return Err(VmError::UnresolvedImm64 {
                                    pc: pc_slot,
                                    src: 0,
                                });
                            }
                        };
                    }
                    Inst::LdAbs { width, k } => {
                        match env.load_packet(slot!(at), reg!(6), k, width)? {
                            Some(v) => reg!(0) = v,
                            None => {
                                reg!(0) = 0;
                                exit!();
                            }
                        }
                    }
                    Inst::LdInd { width, s, k } => {
                        // The kernel adds in 64 bits and passes an `int`.
                        let offset = reg!(s).wrapping_add(k as i64 as u64) as i32;
                        match env.load_packet(slot!(at), reg!(6), offset, width)? {
                            Some(v) => reg!(0) = v,
                            None => {
                                reg!(0) = 0;
                                exit!();
                            }
                        }
                    }
                    Inst::ProbeLoad {
                        width,
                        signed,
                        d,
                        s,
                        off,
                    } => {
                        let addr = reg!(s).wrapping_add(off as i64 as u64);
                        let pc_slot = slot!(at);
                        let mut caller = Caller {
                            vm: self,
                            pc: pc_slot,
                            code_idx,
                            jit: std::ptr::null_mut(),
                        };
                        reg!(d) = probe_load(env, &mut caller, addr, width, signed);
                    }
                    Inst::Trap { idx } => return Err(trap_error(&code, idx)),
                }
            }
        }
    }

    /// Runs the callback `value` (from a `BPF_PSEUDO_FUNC` load) as a new
    /// function with `args` in `r1` to `r5`; returns its `r0`.
    fn call_callback(
        &mut self,
        env: &mut dyn Env,
        pc: usize,
        caller_code: usize,
        value: u64,
        args: [u64; 5],
    ) -> Result<u64, VmError> {
        let bad = VmError::BadCallback { pc, value };
        if value & CALLBACK_TAG_MASK != CALLBACK_TAG {
            return Err(bad);
        }
        let code_idx = ((value >> 32) & 0xffff) as usize;
        let target = (value & 0xffff_ffff) as usize;
        let Some(code) = self.codes.get(code_idx).map(|c| Arc::clone(c.inner())) else {
            return Err(bad);
        };
        if target >= code.pcs.len() {
            return Err(bad);
        }
        let caller = match self.codes.get(caller_code) {
            Some(c) => Arc::clone(c.inner()),
            None => Arc::clone(&code),
        };
        let depth = self.frames.len();
        self.push_frame(usize::MAX, &caller, caller_code, BPF_MAX_LOOPS, pc)?;
        self.regs[1..6].copy_from_slice(&args);
        let base = self.frames.len();
        let result = match self.mode {
            Mode::Checked => self.exec::<true>(env, code, code_idx, target, base),
            Mode::Unchecked => self.exec::<false>(env, code, code_idx, target, base),
        };
        // Unwind whatever the callback left (on error, frames above it).
        let mut saved = None;
        while self.frames.len() > depth {
            saved = self.frames.pop();
        }
        if let Some(frame) = saved {
            self.restore(&frame);
        }
        result
    }
}

/// Performs a 64-bit read-modify-write; returns the old value and the new
/// `r0` (for `cmpxchg`).
fn atomic_u64(cell: &AtomicU64, op: AtomicOp, src: u64, r0: u64) -> (u64, u64) {
    // Fetching operations are fully ordered in the kernel's memory model;
    // the others are unordered.
    let (seq, relaxed) = (Ordering::SeqCst, Ordering::Relaxed);
    let old = match op {
        AtomicOp::Add => cell.fetch_add(src, relaxed),
        AtomicOp::And => cell.fetch_and(src, relaxed),
        AtomicOp::Or => cell.fetch_or(src, relaxed),
        AtomicOp::Xor => cell.fetch_xor(src, relaxed),
        AtomicOp::FetchAdd => cell.fetch_add(src, seq),
        AtomicOp::FetchAnd => cell.fetch_and(src, seq),
        AtomicOp::FetchOr => cell.fetch_or(src, seq),
        AtomicOp::FetchXor => cell.fetch_xor(src, seq),
        AtomicOp::Xchg => cell.swap(src, seq),
        AtomicOp::CmpXchg => {
            let (Ok(old) | Err(old)) = cell.compare_exchange(r0, src, seq, seq);
            return (old, old);
        }
    };
    (old, r0)
}

/// The 32-bit counterpart of [`atomic_u64`]; results are zero-extended.
fn atomic_u32(cell: &AtomicU32, op: AtomicOp, src: u32, r0: u32) -> (u64, u64) {
    let (seq, relaxed) = (Ordering::SeqCst, Ordering::Relaxed);
    let old = match op {
        AtomicOp::Add => cell.fetch_add(src, relaxed),
        AtomicOp::And => cell.fetch_and(src, relaxed),
        AtomicOp::Or => cell.fetch_or(src, relaxed),
        AtomicOp::Xor => cell.fetch_xor(src, relaxed),
        AtomicOp::FetchAdd => cell.fetch_add(src, seq),
        AtomicOp::FetchAnd => cell.fetch_and(src, seq),
        AtomicOp::FetchOr => cell.fetch_or(src, seq),
        AtomicOp::FetchXor => cell.fetch_xor(src, seq),
        AtomicOp::Xchg => cell.swap(src, seq),
        AtomicOp::CmpXchg => {
            let (Ok(old) | Err(old)) = cell.compare_exchange(r0, src, seq, seq);
            return (u64::from(old), u64::from(old));
        }
    };
    (u64::from(old), u64::from(r0))
}

/// A running program, as a helper or kfunc sees it: check, read and write
/// its memory, grant it regions, and call back into it.
///
/// In checked mode every read and write is checked against the regions
/// the program may use; in unchecked mode they are raw copies (trusted,
/// see [`Interpreter::run_unchecked`]).
pub struct Caller<'a> {
    vm: &'a mut Interpreter,
    pc: usize,
    code_idx: usize,
    /// The JIT run's state when the caller is JIT code; null for the
    /// interpreter.
    jit: *mut JitState,
}

impl std::fmt::Debug for Caller<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("pc", &self.pc)
            .field("mode", &self.vm.mode)
            .finish_non_exhaustive()
    }
}

impl<'a> Caller<'a> {
    /// The caller of a helper called from JIT code.
    pub(crate) fn for_jit(
        vm: &'a mut Interpreter,
        pc: usize,
        code_idx: usize,
        jit: *mut JitState,
    ) -> Caller<'a> {
        Caller {
            vm,
            pc,
            code_idx,
            jit,
        }
    }

    /// Slot index of the call instruction.
    pub fn pc(&self) -> usize {
        self.pc
    }

    /// The mode of the run.
    pub fn mode(&self) -> Mode {
        self.vm.mode
    }

    /// `r0` to `r10` at the call.
    pub fn registers(&self) -> [u64; 11] {
        if self.jit.is_null() {
            self.vm.registers()
        } else {
            // SAFETY: a non-null `jit` is the live state of the JIT run
            // that called the helper (`for_jit`).
            unsafe { crate::jit::runtime_registers(self.jit) }
        }
    }

    /// The run's whole stack, every call frame: `[start, end)`. The same
    /// memory in every mode and on both engines (the JIT runs on the
    /// interpreter's stack), so an environment can recognize stack addresses
    /// even in unchecked runs, where [`Caller::check`] says nothing.
    pub fn stack_range(&self) -> (u64, u64) {
        let base = self.vm.stack.base;
        (
            base,
            self.vm.stack.live_end(crate::memory::MAX_CALL_FRAMES - 1),
        )
    }

    /// Checks that the program may access `len` bytes at `addr` (always
    /// `Ok` in unchecked mode). A read of stack bytes must find them
    /// initialized; a check for [`Access::ReadWrite`] does not mark them
    /// initialized (only [`Caller::write`] does).
    ///
    /// # Errors
    ///
    /// [`VmError::OutOfBounds`] or [`VmError::UninitializedRead`].
    pub fn check(&mut self, addr: u64, len: u64, access: Access) -> Result<(), VmError> {
        if self.vm.mode == Mode::Unchecked || len == 0 {
            return Ok(());
        }
        let kind = match access {
            Access::Read => Kind::Read,
            Access::ReadWrite => Kind::Update,
        };
        self.vm
            .check(addr, len, kind)
            .map_err(|f| fault(f, self.pc, addr, len, kind))
    }

    /// Copies `buf.len()` bytes of program memory at `addr` into `buf`.
    ///
    /// # Errors
    ///
    /// In checked mode, as [`Caller::check`] for reading.
    pub fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), VmError> {
        let len = buf.len() as u64;
        self.check(addr, len, Access::Read)?;
        if len == 0 {
            return Ok(());
        }
        // SAFETY: checked mode: the range is inside an allowed region or a
        // live stack frame, none of which overlaps `buf` (a Rust borrow the
        // program cannot see). Unchecked mode: the environment only passes
        // ranges the helper's prototype guarantees (`run_unchecked`).
        unsafe {
            ptr::copy_nonoverlapping(
                ptr::with_exposed_provenance::<u8>(addr as usize),
                buf.as_mut_ptr(),
                buf.len(),
            );
        }
        Ok(())
    }

    /// Copies `data` into program memory at `addr`, marking stack bytes
    /// initialized.
    ///
    /// # Errors
    ///
    /// In checked mode, [`VmError::OutOfBounds`] when the range is not
    /// writable.
    pub fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), VmError> {
        let len = data.len() as u64;
        if len == 0 {
            return Ok(());
        }
        if self.vm.mode == Mode::Checked {
            self.vm
                .check(addr, len, Kind::Write)
                .map_err(|f| fault(f, self.pc, addr, len, Kind::Write))?;
        }
        // SAFETY: as for `read`, for writing.
        unsafe {
            ptr::copy_nonoverlapping(
                data.as_ptr(),
                ptr::with_exposed_provenance_mut::<u8>(addr as usize),
                data.len(),
            );
        }
        Ok(())
    }

    /// Lets the program use `len` bytes at `addr` until the run ends (or
    /// [`Caller::revoke`]): a map value a lookup returns, a ring buffer
    /// record. No effect on unchecked runs, which check nothing.
    ///
    /// # Safety
    ///
    /// As for [`Region::from_raw_parts`], until the run ends or the region
    /// is revoked.
    pub unsafe fn grant(&mut self, addr: u64, len: usize, access: Access) {
        if self.vm.mode == Mode::Checked {
            self.vm
                .regions
                .push(RawRegion::new(addr, len, access == Access::ReadWrite));
        }
    }

    /// Withdraws every granted region that starts at `addr` (a submitted
    /// or discarded ring buffer record); returns whether there was one.
    /// The context and the regions given at the start stay.
    pub fn revoke(&mut self, addr: u64) -> bool {
        let fixed = self.vm.fixed_regions.min(self.vm.regions.len());
        let before = self.vm.regions.len();
        let mut i = fixed;
        while i < self.vm.regions.len() {
            if self.vm.regions.get(i).is_some_and(|r| r.start == addr) {
                self.vm.regions.swap_remove(i);
            } else {
                i += 1;
            }
        }
        self.vm.regions.len() != before
    }

    /// Calls the BPF callback `callback` (a value a `BPF_PSEUDO_FUNC`
    /// `LD_IMM64` of this run produced, passed to the helper as an
    /// argument) with `args` in `r1` to `r5`, in a new frame; returns its
    /// `r0`. This is how `bpf_loop` and `bpf_for_each_map_elem` call back.
    ///
    /// # Errors
    ///
    /// [`VmError::BadCallback`] when `callback` is no such value,
    /// [`VmError::CallDepthExceeded`], or whatever the callback raises.
    pub fn call_function(
        &mut self,
        env: &mut dyn Env,
        callback: u64,
        args: [u64; 5],
    ) -> Result<u64, VmError> {
        if !self.jit.is_null() {
            // SAFETY: as in `registers`.
            return unsafe {
                crate::jit::runtime_call_callback(self.jit, env, self.pc, callback, args)
            };
        }
        let regs = self.vm.regs;
        let result = self
            .vm
            .call_callback(env, self.pc, self.code_idx, callback, args);
        // The helper's own view of the registers is unchanged by the
        // callback (r0 to r5 are the helper's to clobber anyway).
        self.vm.regs[..6].copy_from_slice(&regs[..6]);
        result
    }
}

/// A probe load of `width` bytes at `addr` (see [`Inst::ProbeLoad`]): the
/// value, zero- or sign-extended, or 0 when the environment cannot read
/// it. Shared by the interpreter and the JIT's shim.
pub(crate) fn probe_load(
    env: &mut dyn Env,
    caller: &mut Caller<'_>,
    addr: u64,
    width: Width,
    signed: bool,
) -> u64 {
    let mut buf = [0u8; 8];
    let n = width.bytes();
    let Some(dst) = buf.get_mut(..n) else {
        return 0;
    };
    let pc = caller.pc;
    if !env.probe_read(pc, addr, dst, caller) {
        return 0;
    }
    let [a, b, c, d, e, f, g, h] = buf;
    match (signed, width) {
        (false, Width::B) => u64::from(a),
        (false, Width::H) => u64::from(u16::from_ne_bytes([a, b])),
        (false, Width::W) => u64::from(u32::from_ne_bytes([a, b, c, d])),
        (true, Width::B) => a as i8 as i64 as u64,
        (true, Width::H) => i16::from_ne_bytes([a, b]) as i64 as u64,
        (true, Width::W) => i32::from_ne_bytes([a, b, c, d]) as i64 as u64,
        (_, Width::DW) => u64::from_ne_bytes([a, b, c, d, e, f, g, h]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn interpreters_move_between_threads_and_code_is_shared() {
        assert_send::<Interpreter>();
        assert_send_sync::<Code>();
        assert_send_sync::<VmError>();
    }

    #[test]
    fn frames_deeper_than_the_limit_are_refused() {
        let mut vm = Interpreter::new();
        let code = Code::new(&structops_isa::Program::default());
        vm.start(&code, 0, Mode::Checked);
        let inner = Arc::clone(code.inner());
        for _ in 0..MAX_CALL_FRAMES - 1 {
            vm.push_frame(0, &inner, 0, 0, 3)
                .expect("room for the frame");
        }
        let err = vm.push_frame(0, &inner, 0, 0, 3).unwrap_err();
        assert!(matches!(
            err,
            VmError::CallDepthExceeded {
                pc: 3,
                max_frames: MAX_CALL_FRAMES
            }
        ));
        // The deepest frame pointer is the end of the stack allocation.
        assert_eq!(vm.regs[10], vm.stack.frame_pointer(MAX_CALL_FRAMES - 1));
    }
}
