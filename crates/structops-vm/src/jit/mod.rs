//! The Cranelift JIT: [`JitProgram`], native code for a [`Code`] with the
//! interpreter's semantics, and [`Engine`], the choice between the two.
//!
//! ```
//! use structops_vm::{Code, Engine, Interpreter, NoEnv};
//!
//! let prog = structops_isa::assemble("r0 = *(u64 *)(r1 +0)\nr0 *= 3\nr0 /= 0\nr0 += 7\nexit")?;
//! let code = Code::new(&prog);
//! let mut ctx = [14u64];
//! let mut vm = Interpreter::new();
//! for engine in [Engine::Interp, Engine::Jit] {
//!     // SAFETY: the program only reads the 8-byte context.
//!     let r0 = unsafe { vm.run(engine, &code, &mut NoEnv, ctx.as_mut_ptr() as u64)? };
//!     assert_eq!(r0, 7);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Semantics
//!
//! The JIT runs what [`Interpreter::run_unchecked`](crate::Interpreter::run_unchecked)
//! runs, with the same results, the same [`Env`](crate::Env) calls in the
//! same order and the same errors. It has no checked mode: JIT code is
//! for programs the verifier accepted, and checking stays with the
//! interpreter. Where the two engines may differ is only in what a
//! verifier rejects or marks unreadable:
//!
//! - registers at function entry: a bpf-to-bpf callee, a callback or a
//!   tail-call target starts with `r0` and `r6` to `r9` zero in the JIT,
//!   while the interpreter leaves the caller's values there;
//! - `r1` to `r5` after a bpf-to-bpf call keep the caller's values in the
//!   JIT and hold the callee's in the interpreter (the verifier treats
//!   them as clobbered);
//! - jumps between BPF functions (the verifier's "jump out of range")
//!   stay inside the function in the JIT (the target's code is
//!   duplicated into it), and callback values forged by arithmetic
//!   rather than produced by a `BPF_PSEUDO_FUNC` load of a function entry
//!   are refused with [`VmError::BadCallback`](crate::VmError::BadCallback).
//!
//! Verifier facts ([`Code::with_facts`](crate::Code::with_facts)) let the
//! JIT drop work a verifier proved unnecessary: the zero-divisor and
//! `MIN / -1` branches of divisions by registers that cannot be zero or
//! `-1`, and the zero extension of 32-bit results whose upper half nothing
//! reads (such a register may then hold a garbage upper half, visible only
//! through [`Caller::registers`](crate::Caller::registers) in a helper; not
//! with [`JitOptions::capture_registers`]). Results are unchanged.
//!
//! Registers after a run ([`Interpreter::registers`](crate::Interpreter::registers))
//! are only `r0`, unless the program was compiled with
//! [`JitOptions::capture_registers`].
//!
//! # Entry points
//!
//! [`EntryPoint`] turns a program into a native `extern "C"` function with
//! a struct_ops member's signature ([`FuncModel`]), as the kernel's
//! trampoline does: it stores its arguments into a `u64` context array (one
//! slot per integer or pointer, up to two per small struct) and runs the
//! program with `r1` pointing at it. A JIT-compiled program that needs no
//! environment is called directly ([`EntryPoint::is_direct`]), and a
//! single-function one is compiled into the entry point itself
//! ([`EntryPoint::is_inline`]); any other program, and every program on
//! [`Engine::Interp`], runs through the runtime with the environment an
//! [`EntryEnv`] lends. A run that fails anyway returns 0 and is counted
//! ([`EntryPoint::faults`]): a native caller cannot receive an error.
//!
//! # Code and memory
//!
//! Each BPF function becomes one native function (see the translation
//! module for its shape); functions call each other directly. Code is
//! placed in its own pages, written while they are read+write and then
//! switched to read+execute, never both, and unmapped when the last clone
//! of the [`JitProgram`] (including the one [`Code::jit`] caches) is gone.
//! x86-64 hosts run the code; arm64 code generation is compiled and tested
//! through [`emit_machine_code`], but executing it needs instruction-cache maintenance
//! that is not written yet.

mod entry;
mod memory;
mod runtime;
mod translate;

use std::sync::{Arc, OnceLock};

use cranelift_codegen::binemit::Reloc;
use cranelift_codegen::isa::{OwnedTargetIsa, TargetIsa};
use cranelift_codegen::settings::{self, Configurable};
use thiserror::Error;

use crate::code::{Code, CodeInner};
pub use entry::{
    ArgKind, EntryEnv, EntryPoint, FuncModel, MAX_ARGS, MAX_STRUCT_ARG_SIZE, RetKind,
    emit_entry_machine_code,
};
use memory::ExecMemory;
use runtime::{BpfFn, Shims};
pub(crate) use runtime::{
    JitState, call_callback as runtime_call_callback, registers as runtime_registers,
};
use translate::{CompiledFunction, Translator, function_entries};

/// Which engine runs a program.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Engine {
    /// The reference interpreter ([`Interpreter::run_unchecked`](crate::Interpreter::run_unchecked)).
    Interp,
    /// Native code from Cranelift ([`Interpreter::run_jit`](crate::Interpreter::run_jit)).
    #[default]
    Jit,
}

/// Why compilation failed.
#[derive(Clone, Debug, Error)]
#[non_exhaustive]
pub enum JitError {
    /// Native code cannot be generated or run for this target.
    #[error("no JIT for this target: {reason}")]
    UnsupportedTarget {
        /// What is missing.
        reason: &'static str,
    },
    /// A code generator setting was refused.
    #[error("code generator setting {name}: {message}")]
    Settings {
        /// The setting.
        name: &'static str,
        /// Cranelift's message.
        message: String,
    },
    /// Cranelift failed on a function (a bug of the translation).
    #[error("code generation of the function at insn index {entry} failed: {message}")]
    Codegen {
        /// Instruction index of the function's first instruction.
        entry: u32,
        /// Cranelift's message.
        message: String,
    },
    /// Linking met a relocation it does not handle.
    #[error("cannot link {kind}")]
    Relocation {
        /// What kind.
        kind: &'static str,
    },
    /// Mapping executable memory failed.
    #[error("{op} of executable memory failed with errno {errno}")]
    Memory {
        /// `mmap`, `mprotect` or `size`.
        op: &'static str,
        /// The errno.
        errno: i32,
    },
    /// An instruction the translator does not handle.
    #[error("{what} is not supported by the JIT")]
    Unsupported {
        /// What.
        what: &'static str,
    },
    /// A member's function model the kernel would refuse.
    #[error("unsupported function model: {reason}")]
    FuncModel {
        /// Which limit it exceeds.
        reason: &'static str,
    },
    /// [`Interpreter::run_compiled`](crate::Interpreter::run_compiled)
    /// got a program compiled from another [`Code`].
    #[error("the compiled program was not compiled from this code")]
    WrongCode,
}

/// Compilation settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct JitOptions {
    /// Zero each 512-byte frame on entry, as the interpreter does. The
    /// kernel's JITs do not; a verifier that rejects reads of unwritten
    /// stack makes this unobservable, except for programs loaded with
    /// `allow_uninit_stack`.
    pub zero_stack: bool,
    /// Store all registers at every `exit`, so that
    /// [`Interpreter::registers`](crate::Interpreter::registers) shows
    /// them after the run (for tests; costs eleven stores per return).
    pub capture_registers: bool,
    /// Keep the final IR of every function ([`JitProgram::ir`]). It is
    /// logged at trace level (target `structops_vm::jit`) either way.
    pub keep_ir: bool,
    /// Constant blinding (the kernel's `bpf_jit_harden`): no immediate the
    /// program chose (ALU and jump operands, store immediates, `LD_IMM64`
    /// values) appears as such in the native code. Each becomes `k ^ key`
    /// in the code, XORed at run time with a random key that lives in data
    /// memory (one per process, drawn on first use), so a program cannot
    /// plant chosen byte sequences in executable memory (JIT spraying).
    /// Costs a load per function and an XOR per immediate.
    pub blind_constants: bool,
    /// Helpers without arguments that need no environment (the time helpers): the
    /// compiled code calls them directly instead of through the environment, and a
    /// program whose only environment needs are these runs on the direct path of an
    /// entry point ([`crate::EntryPoint`]).
    pub nullary_helpers: Option<NullaryHelpers>,
}

/// Helpers of no arguments compiled as direct native calls
/// ([`JitOptions::nullary_helpers`]): `func(id, data)` returns the helper's result.
///
/// Whoever sets them promises that `func` is sound to call with `data` whenever the
/// compiled code runs (what `data` points to outlives every run), that it does what the
/// environment's helper `id` does, and that it does not unwind.
#[derive(Clone, Copy, Debug)]
pub struct NullaryHelpers {
    /// Helper ids below 256, as a bit set (`ids[id / 64] >> (id % 64) & 1`).
    pub ids: [u64; 4],
    /// The implementation.
    pub func: unsafe extern "C" fn(id: u64, data: u64) -> u64,
    /// Its second argument.
    pub data: u64,
}

impl PartialEq for NullaryHelpers {
    /// Same ids, data and function address.
    fn eq(&self, other: &NullaryHelpers) -> bool {
        self.ids == other.ids
            && self.data == other.data
            && self.func as usize == other.func as usize
    }
}

impl Eq for NullaryHelpers {}

impl std::hash::Hash for NullaryHelpers {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.ids.hash(h);
        self.data.hash(h);
        (self.func as usize).hash(h);
    }
}

impl NullaryHelpers {
    /// Whether helper `id` is one of them.
    pub fn covers(&self, id: i32) -> bool {
        u32::try_from(id)
            .ok()
            .filter(|&i| i < 256)
            .is_some_and(|i| self.ids[(i / 64) as usize] >> (i % 64) & 1 == 1)
    }

    /// The set of `ids`.
    pub fn id_set(ids: &[i32]) -> [u64; 4] {
        let mut set = [0u64; 4];
        for &id in ids {
            if let Ok(i) = u32::try_from(id)
                && i < 256
            {
                set[(i / 64) as usize] |= 1 << (i % 64);
            }
        }
        set
    }
}

impl Default for JitOptions {
    fn default() -> JitOptions {
        JitOptions {
            zero_stack: true,
            capture_registers: false,
            keep_ir: false,
            blind_constants: false,
            nullary_helpers: None,
        }
    }
}

/// A target to generate code for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// x86-64 (System V).
    X86_64,
    /// arm64 (AAPCS64).
    Aarch64,
}

impl Target {
    /// The target of this process, if the JIT supports it.
    pub fn host() -> Option<Target> {
        if cfg!(target_arch = "x86_64") {
            Some(Target::X86_64)
        } else if cfg!(target_arch = "aarch64") {
            Some(Target::Aarch64)
        } else {
            None
        }
    }

    fn triple(self) -> &'static str {
        match self {
            Target::X86_64 => "x86_64-unknown-linux-gnu",
            Target::Aarch64 => "aarch64-unknown-linux-gnu",
        }
    }
}

/// Builds the Cranelift ISA for `target`, enabling the host's CPU
/// features when `target` is the host.
fn build_isa(target: Target) -> Result<OwnedTargetIsa, JitError> {
    let mut flags = settings::builder();
    let set = |flags: &mut settings::Builder, name: &'static str, value: &str| {
        flags.set(name, value).map_err(|e| JitError::Settings {
            name,
            message: e.to_string(),
        })
    };
    set(&mut flags, "opt_level", "speed")?;
    set(&mut flags, "unwind_info", "false")?;
    set(&mut flags, "enable_probestack", "false")?;
    set(&mut flags, "is_pic", "false")?;
    set(
        &mut flags,
        "enable_verifier",
        if cfg!(debug_assertions) {
            "true"
        } else {
            "false"
        },
    )?;
    let mut isa = cranelift_codegen::isa::lookup_by_name(target.triple()).map_err(|_| {
        JitError::UnsupportedTarget {
            reason: "Cranelift was built without this architecture",
        }
    })?;
    #[cfg(target_arch = "x86_64")]
    if target == Target::X86_64 {
        let features: [(&str, bool); 9] = [
            ("has_sse3", std::is_x86_feature_detected!("sse3")),
            ("has_ssse3", std::is_x86_feature_detected!("ssse3")),
            ("has_sse41", std::is_x86_feature_detected!("sse4.1")),
            ("has_sse42", std::is_x86_feature_detected!("sse4.2")),
            ("has_popcnt", std::is_x86_feature_detected!("popcnt")),
            ("has_avx", std::is_x86_feature_detected!("avx")),
            ("has_bmi1", std::is_x86_feature_detected!("bmi1")),
            ("has_bmi2", std::is_x86_feature_detected!("bmi2")),
            ("has_lzcnt", std::is_x86_feature_detected!("lzcnt")),
        ];
        for (name, on) in features {
            if on {
                // A feature this Cranelift does not know is simply not used.
                let _ = isa.enable(name);
            }
        }
    }
    isa.finish(settings::Flags::new(flags))
        .map_err(|e| JitError::Settings {
            name: "isa",
            message: e.to_string(),
        })
}

/// The host ISA, built once.
fn host_isa() -> Result<&'static dyn TargetIsa, JitError> {
    static ISA: OnceLock<Result<OwnedTargetIsa, JitError>> = OnceLock::new();
    if !cfg!(target_arch = "x86_64") {
        return Err(JitError::UnsupportedTarget {
            reason: "executing JIT code needs x86-64 for now (arm64 lacks instruction-cache maintenance)",
        });
    }
    let target = Target::host().ok_or(JitError::UnsupportedTarget {
        reason: "no code generator for this architecture",
    })?;
    match ISA.get_or_init(|| build_isa(target)) {
        Ok(isa) => Ok(&**isa),
        Err(e) => Err(e.clone()),
    }
}

/// Functions laid out in one buffer: code, and the offset of each BPF
/// function by entry instruction.
struct Layout {
    bytes: Vec<u8>,
    functions: Vec<(u32, usize)>,
    /// Bytes of each function (code and its constants), in `functions` order.
    sizes: Vec<usize>,
    relocs: Vec<(usize, translate::Relocation)>,
    ir: Option<String>,
}

fn compile_all(
    code: &CodeInner,
    isa: &dyn TargetIsa,
    shims: &Shims,
    options: &JitOptions,
) -> Result<Layout, JitError> {
    // A panic inside Cranelift or the translation is a bug, but it must not take the
    // host down with it at load time: it becomes an error, and a runtime then runs
    // the program on the interpreter.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        compile_all_inner(code, isa, shims, options)
    }))
    .unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_owned());
        Err(JitError::Codegen { entry: 0, message })
    })
}

fn compile_all_inner(
    code: &CodeInner,
    isa: &dyn TargetIsa,
    shims: &Shims,
    options: &JitOptions,
) -> Result<Layout, JitError> {
    let mut translator = Translator::new(isa);
    let align = (isa.function_alignment().preferred.max(16)) as usize;
    let mut layout = Layout {
        bytes: Vec::new(),
        functions: Vec::new(),
        sizes: Vec::new(),
        relocs: Vec::new(),
        ir: options.keep_ir.then(String::new),
    };
    for entry in function_entries(code) {
        let CompiledFunction {
            entry,
            code: bytes,
            relocs,
            ir,
        } = translator.compile_function(code, entry, shims, options)?;
        let start = layout.bytes.len().next_multiple_of(align);
        layout.bytes.resize(start, 0);
        layout.bytes.extend_from_slice(&bytes);
        layout.functions.push((entry, start));
        layout.sizes.push(bytes.len());
        layout.relocs.extend(relocs.into_iter().map(|r| (start, r)));
        if let (Some(all), Some(ir)) = (layout.ir.as_mut(), ir) {
            all.push_str(&ir);
            all.push('\n');
        }
    }
    Ok(layout)
}

/// Applies the calls between functions, with the code at address `base`.
fn link(
    bytes: &mut [u8],
    base: u64,
    functions: &[(u32, usize)],
    relocs: &[(usize, translate::Relocation)],
) -> Result<(), JitError> {
    for &(func_start, r) in relocs {
        let Some(&(_, target)) = functions.iter().find(|(e, _)| *e == r.target) else {
            return Err(JitError::Relocation {
                kind: "a call of a function that was not compiled",
            });
        };
        let at = func_start + r.offset as usize;
        let place = base.wrapping_add(at as u64);
        let value = base
            .wrapping_add(target as u64)
            .wrapping_add(r.addend as u64);
        let delta = value.wrapping_sub(place) as i64;
        match r.kind {
            Reloc::X86CallPCRel4 | Reloc::X86PCRel4 => {
                let delta = i32::try_from(delta).map_err(|_| JitError::Relocation {
                    kind: "a call farther than 2 GiB",
                })?;
                let slot = bytes.get_mut(at..at + 4).ok_or(JitError::Relocation {
                    kind: "a relocation outside the code",
                })?;
                slot.copy_from_slice(&delta.to_le_bytes());
            }
            Reloc::Abs8 => {
                let slot = bytes.get_mut(at..at + 8).ok_or(JitError::Relocation {
                    kind: "a relocation outside the code",
                })?;
                slot.copy_from_slice(&value.to_le_bytes());
            }
            Reloc::Arm64Call => {
                if delta % 4 != 0 || !(-(1 << 27)..(1 << 27)).contains(&delta) {
                    return Err(JitError::Relocation {
                        kind: "an arm64 call out of range",
                    });
                }
                let slot = bytes.get_mut(at..at + 4).ok_or(JitError::Relocation {
                    kind: "a relocation outside the code",
                })?;
                let mut insn = [0u8; 4];
                insn.copy_from_slice(slot);
                let insn = u32::from_le_bytes(insn);
                let imm26 = ((delta >> 2) as u32) & 0x03ff_ffff;
                slot.copy_from_slice(&((insn & !0x03ff_ffff) | imm26).to_le_bytes());
            }
            _ => {
                return Err(JitError::Relocation {
                    kind: "a relocation kind other than a direct call",
                });
            }
        }
    }
    Ok(())
}

/// Machine code for a target other than (or the same as) the host, laid
/// out and linked as if loaded at address 0; for tests and inspection.
#[derive(Clone, Debug)]
pub struct MachineCode {
    /// The code of all functions.
    pub bytes: Vec<u8>,
    /// `(entry instruction index, byte offset)` of every BPF function.
    pub functions: Vec<(u32, usize)>,
    /// How many calls between functions were linked.
    pub calls_linked: usize,
    /// The final IR, when asked for.
    pub ir: Option<String>,
}

/// Generates machine code for `code` for `target` without running it.
///
/// # Errors
///
/// A [`JitError`] when code generation or linking fails.
pub fn emit_machine_code(
    code: &Code,
    target: Target,
    options: &JitOptions,
) -> Result<MachineCode, JitError> {
    let isa = build_isa(target)?;
    // Shim addresses are placeholders here: the code is not run.
    let shims = Shims::host();
    let mut layout = compile_all(code.inner(), &*isa, &shims, options)?;
    link(&mut layout.bytes, 0, &layout.functions, &layout.relocs)?;
    Ok(MachineCode {
        bytes: layout.bytes,
        functions: layout.functions,
        calls_linked: layout.relocs.len(),
        ir: layout.ir,
    })
}

/// A program compiled to native code for this host. Cheap to clone (the
/// code is reference counted and freed with the last clone), `Send` and
/// `Sync`: many threads may run it at once, each with its own
/// [`Interpreter`](crate::Interpreter).
#[derive(Clone)]
pub struct JitProgram {
    inner: Arc<JitInner>,
}

struct JitInner {
    mem: ExecMemory,
    /// `(entry instruction index, address)`, ascending by entry.
    functions: Box<[(u32, u64)]>,
    /// Bytes of each function, in `functions` order.
    sizes: Box<[usize]>,
    /// Address of the `CodeInner` compiled from, to refuse other code.
    source: usize,
    options: JitOptions,
    ir: Option<String>,
}

impl std::fmt::Debug for JitProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JitProgram")
            .field("code_size", &self.code_size())
            .field("functions", &self.inner.functions.len())
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl JitProgram {
    /// Compiles `code` for this host.
    ///
    /// # Errors
    ///
    /// A [`JitError`] when the host has no JIT or code generation fails.
    pub fn compile(code: &Code, options: &JitOptions) -> Result<JitProgram, JitError> {
        let isa = host_isa()?;
        let shims = Shims::host();
        let layout = compile_all(code.inner(), isa, &shims, options)?;
        let mem = ExecMemory::new(&layout.bytes, |bytes, base| {
            link(bytes, base, &layout.functions, &layout.relocs)
        })?;
        let base = mem.addr();
        let functions = layout
            .functions
            .iter()
            .map(|&(entry, off)| (entry, base + off as u64))
            .collect();
        Ok(JitProgram {
            inner: Arc::new(JitInner {
                mem,
                functions,
                sizes: layout.sizes.into_boxed_slice(),
                source: Arc::as_ptr(code.inner()).addr(),
                options: *options,
                ir: layout.ir,
            }),
        })
    }

    /// Bytes of machine code.
    pub fn code_size(&self) -> usize {
        self.inner.mem.len()
    }

    /// Bytes of memory the code occupies: [`JitProgram::code_size`] rounded up to
    /// whole pages, since each compiled program is a mapping of its own.
    pub fn mapped_size(&self) -> usize {
        self.inner.mem.mapped_len()
    }

    /// The machine code.
    pub fn machine_code(&self) -> &[u8] {
        self.inner.mem.bytes()
    }

    /// Number of native functions (BPF functions reached by calls or
    /// callbacks, plus the entry).
    pub fn function_count(&self) -> usize {
        self.inner.functions.len()
    }

    /// The native functions: `(first BPF instruction, byte offset in
    /// [`JitProgram::machine_code`], bytes)`, ascending by instruction. A
    /// function's bytes are its instructions followed by its constants.
    pub fn functions(&self) -> Vec<(u32, usize, usize)> {
        let base = self.inner.mem.addr();
        self.inner
            .functions
            .iter()
            .zip(self.inner.sizes.iter())
            .map(|(&(entry, addr), &size)| (entry, addr.saturating_sub(base) as usize, size))
            .collect()
    }

    /// The options it was compiled with.
    pub fn options(&self) -> &JitOptions {
        &self.inner.options
    }

    /// The final Cranelift IR, if compiled with [`JitOptions::keep_ir`].
    pub fn ir(&self) -> Option<&str> {
        self.inner.ir.as_deref()
    }

    pub(crate) fn compiled_from(&self, code: &Code) -> bool {
        self.inner.source == Arc::as_ptr(code.inner()).addr()
    }

    pub(crate) fn captures_registers(&self) -> bool {
        self.inner.options.capture_registers
    }

    /// The native function of the BPF function starting at instruction
    /// `entry`.
    pub(crate) fn function(&self, entry: u32) -> Option<BpfFn> {
        let &(_, addr) = self.inner.functions.iter().find(|(e, _)| *e == entry)?;
        // SAFETY: `addr` is the start of a function compiled with the
        // `BpfFn` signature in memory that lives as long as `self`;
        // callers keep a clone alive while it runs.
        Some(unsafe { std::mem::transmute::<usize, BpfFn>(addr as usize) })
    }

    /// The entry function (instruction 0; every compilation has it).
    pub(crate) fn entry(&self) -> Option<BpfFn> {
        self.function(0)
    }
}

impl Code {
    /// This program compiled for the host with default [`JitOptions`],
    /// compiled on first use and kept with the `Code` (so tail-call
    /// targets and callbacks compile once).
    ///
    /// # Errors
    ///
    /// The [`JitError`] of the (first) compilation.
    #[inline]
    pub fn jit(&self) -> Result<&JitProgram, JitError> {
        self.jit_with(&JitOptions::default())
    }

    /// This program compiled for the host with `options` on first use and
    /// kept with the `Code`, like [`Code::jit`]. The first compilation's
    /// options stay: compile with the options you need before anything
    /// calls [`Code::jit`] (a runtime does it at load).
    ///
    /// # Errors
    ///
    /// The [`JitError`] of the (first) compilation.
    #[inline]
    pub fn jit_with(&self, options: &JitOptions) -> Result<&JitProgram, JitError> {
        if let Some(Ok(p)) = self.inner().jit.get() {
            return Ok(p);
        }
        match self
            .inner()
            .jit
            .get_or_init(|| JitProgram::compile(self, options))
        {
            Ok(p) => Ok(p),
            Err(e) => Err(e.clone()),
        }
    }
}

#[cfg(test)]
mod tests;
