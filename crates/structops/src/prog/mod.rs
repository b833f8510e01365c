//! Programs: `BPF_PROG_LOAD` with the kernel's attribute checks, program objects with
//! ids and handles, `bpf_prog_info`, and the rules for putting programs into
//! `PROG_ARRAY`s.
//!
//! # Loading
//!
//! [`crate::Runtime::prog_load`] takes a [`ProgLoadAttr`] (the `BPF_PROG_LOAD` fields of
//! `union bpf_attr`) and makes the checks of the kernel's `bpf_prog_load` and of the
//! early, structural part of `bpf_check`, in the kernel's order and with its errnos:
//! flags, capabilities, instruction count, attach type and attach BTF id, license,
//! name, func_info and line_info records, subprogram layout and jump ranges,
//! instruction encodings, kfunc calls, and the map references of `LD_IMM64`
//! (`BPF_PSEUDO_MAP_FD`, `MAP_VALUE`, `MAP_IDX`, `MAP_IDX_VALUE`), which are resolved
//! through the descriptor table or `fd_array` and rewritten to the map's address, as in
//! the kernel's translated ("xlated") program. The program holds a reference to every map
//! it uses.
//!
//! # Verification
//!
//! After those checks `prog_load` runs `structops-verifier` (the kernel's `do_check`
//! and the rest of `bpf_check`) on the submitted instructions, with the runtime's
//! facts about maps, helpers, the context and return values of the program type (see
//! the runtime's `verify` module). Only a [`structops_verifier::VerifiedProgram`] — which only
//! the verifier can construct — makes a program [`Verification::Verified`]; a
//! rejection fails `prog_load` with the verifier's errno, its log appended to the
//! caller's log.
//!
//! Verified programs run on the runtime's engine ([`crate::RuntimeConfig::engine`]: the
//! JIT where the host has one, the interpreter's unchecked mode otherwise, or per load
//! [`ProgLoadAttr::engine`]); [`crate::RunMode::Checked`] test runs check every access
//! on the interpreter.
//!
//! [`crate::RuntimeConfig::run_unverified`] is a test and development switch: with
//! it, a program the verifier rejects is still loaded, as [`Verification::Unverified`]
//! carrying the rejection, and runs only in checked mode, which traps every memory
//! access outside the regions a run grants. Differential tests use it to keep running
//! programs the kernel accepts but this verifier cannot yet prove safe.

mod host;
pub(crate) mod load;
pub(crate) mod tag;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use std::sync::{Arc, RwLock};

use structops_btf::ext::{FuncInfo, LineInfo};
use structops_isa::{Insn, Program};
pub use structops_obj::{AttachType, ProgType};
use structops_vm::{Code, Engine, JitProgram};

pub use self::host::collecting_sink;
use crate::btf_obj::BtfObject;
use crate::helpers::HostHelper;
use crate::kfunc::KfuncTable;
use crate::maps::{Map, MapType, TailCallTarget};
use crate::memcg::{Charge, MemCgroup};
use crate::object::{Handle, IdTable, KernelObject, ObjHeader, ObjKind};

/// `BPF_F_STRICT_ALIGNMENT`.
pub const BPF_F_STRICT_ALIGNMENT: u32 = 1 << 0;
/// `BPF_F_ANY_ALIGNMENT`.
pub const BPF_F_ANY_ALIGNMENT: u32 = 1 << 1;
/// `BPF_F_TEST_RND_HI32`.
pub const BPF_F_TEST_RND_HI32: u32 = 1 << 2;
/// `BPF_F_TEST_STATE_FREQ`.
pub const BPF_F_TEST_STATE_FREQ: u32 = 1 << 3;
/// `BPF_F_SLEEPABLE`: the program may sleep (call sleepable helpers and kfuncs).
pub const BPF_F_SLEEPABLE: u32 = 1 << 4;
/// `BPF_F_XDP_HAS_FRAGS`: an XDP program that handles multi-buffer packets.
pub const BPF_F_XDP_HAS_FRAGS: u32 = 1 << 5;
/// `BPF_F_XDP_DEV_BOUND_ONLY`.
pub const BPF_F_XDP_DEV_BOUND_ONLY: u32 = 1 << 6;
/// `BPF_F_TEST_REG_INVARIANTS`.
pub const BPF_F_TEST_REG_INVARIANTS: u32 = 1 << 7;
/// `BPF_F_TOKEN_FD`: `prog_token_fd` names a BPF token.
pub const BPF_F_TOKEN_FD: u32 = 1 << 16;

/// What `prog_load` fails with when a program's native code does not fit under
/// [`crate::RuntimeConfig::jit_memory_limit`]: the kernel's JIT gives up when
/// `bpf_jit_charge_modmem` refuses (`-EPERM`, not passed on), and
/// `bpf_prog_select_runtime` then fails the load with `-ENOTSUPP` under
/// `CONFIG_BPF_JIT_ALWAYS_ON`.
const JIT_LIMIT_LOAD_ERRNO: crate::Errno = crate::Errno::ENOTSUPP;

/// `offsetof(struct bpf_prog, insns)` on 64-bit kernels: the header `bpf_prog_alloc`
/// allocates before the instructions.
const BPF_PROG_HEADER_SIZE: u64 = 72;

/// The kernel's `PAGE_SIZE` on x86-64: program allocations are whole pages.
const PAGE_SIZE: u64 = 4096;

/// The bytes the kernel's `bpf_prog_alloc` (and `bpf_prog_realloc`) charge to the memcg
/// for a program of `insn_cnt` instructions: `bpf_prog_size`, rounded up to whole
/// pages.
pub(crate) fn prog_alloc_size(insn_cnt: usize) -> u64 {
    (BPF_PROG_HEADER_SIZE + 8 * insn_cnt as u64).next_multiple_of(PAGE_SIZE)
}

/// `BPF_MAXINSNS`: most instructions an unprivileged program may have.
pub const BPF_MAXINSNS: u32 = 4096;
/// `BPF_COMPLEXITY_LIMIT_INSNS`: most instructions a `CAP_BPF` program may have.
pub const BPF_COMPLEXITY_LIMIT_INSNS: u32 = 1_000_000;
/// `MAX_USED_MAPS`: most distinct maps one program may reference.
pub const MAX_USED_MAPS: usize = 64;

/// The `BPF_PROG_LOAD` attributes, with the kernel's field names and meanings.
///
/// Buffers the kernel reads through user pointers are owned here; a buffer shorter
/// than its count and record size say is `EFAULT`, as a short user buffer is.
///
/// ```
/// use structops::{Errno, ProgLoadAttr, ProgType, Runtime};
///
/// let rt = Runtime::default();
/// let insns = structops_isa::assemble("r0 = 2\nexit")?.encode();
/// let prog = rt.prog_load(&ProgLoadAttr::new(ProgType::XDP, insns.clone(), "GPL").name("pass"))?;
/// let info = rt.prog_info(&prog);
/// assert_eq!((info.name.as_str(), info.prog_type), ("pass", ProgType::XDP.0));
///
/// // The kernel's attribute checks: a name with a character outside [A-Za-z0-9_.].
/// let bad = ProgLoadAttr::new(ProgType::XDP, insns, "GPL").name("pass!");
/// assert_eq!(rt.prog_load(&bad).err(), Some(Errno::EINVAL));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgLoadAttr {
    /// `prog_type` (raw, so unknown types can be requested and refused).
    pub prog_type: u32,
    /// `insns`; `insn_cnt` is its length.
    pub insns: Vec<Insn>,
    /// `license` (the kernel reads at most 127 bytes).
    pub license: String,
    /// `kern_version` (ignored, as by the kernel for these program types).
    pub kern_version: u32,
    /// `prog_flags` (`BPF_F_*`).
    pub prog_flags: u32,
    /// `prog_name`: up to 15 of `[A-Za-z0-9_.]`, NUL-terminated.
    pub prog_name: [u8; 16],
    /// `prog_ifindex`: offload or device binding (no devices exist here).
    pub prog_ifindex: u32,
    /// `expected_attach_type`; for struct_ops programs the member index.
    pub expected_attach_type: u32,
    /// `prog_btf_fd`: the program's BTF, for func_info and line_info.
    pub prog_btf_fd: u32,
    /// `func_info_rec_size`.
    pub func_info_rec_size: u32,
    /// `func_info`: `func_info_cnt` records of `func_info_rec_size` bytes.
    pub func_info: Vec<u8>,
    /// `func_info_cnt`.
    pub func_info_cnt: u32,
    /// `line_info_rec_size`.
    pub line_info_rec_size: u32,
    /// `line_info`: `line_info_cnt` records of `line_info_rec_size` bytes.
    pub line_info: Vec<u8>,
    /// `line_info_cnt`.
    pub line_info_cnt: u32,
    /// `attach_btf_id`: with no `attach_prog_fd`, a type of the host BTF.
    pub attach_btf_id: u32,
    /// `attach_prog_fd` / `attach_btf_obj_fd` (a union in the kernel): a program or a
    /// BTF object, 0 for none.
    pub attach_prog_fd: u32,
    /// `fd_array`: descriptors that `BPF_PSEUDO_MAP_IDX` loads index; `None` is NULL.
    pub fd_array: Option<Vec<u32>>,
    /// `prog_token_fd` (used with `BPF_F_TOKEN_FD`; tokens do not exist here).
    pub prog_token_fd: i32,
    /// `log_level`: 0 (only the error line on rejection), 1 (the verifier's
    /// instruction log), 2 (also register states); `| 4` (`BPF_LOG_STATS`) adds the
    /// stats line. The log goes to [`crate::Runtime::prog_load_with_log`]'s buffer.
    pub log_level: u32,
    /// Not a kernel attribute: the engine this program runs on once verified; `None`
    /// is the runtime's [`crate::RuntimeConfig::engine`].
    pub engine: Option<Engine>,
}

impl ProgLoadAttr {
    /// Attributes for a program of `ty` with `insns` and `license`.
    pub fn new(ty: ProgType, insns: Vec<Insn>, license: &str) -> ProgLoadAttr {
        ProgLoadAttr {
            prog_type: ty.0,
            insns,
            license: license.to_string(),
            ..ProgLoadAttr::default()
        }
    }

    /// Sets `prog_name` from `name` (truncated to 15 bytes).
    pub fn name(mut self, name: &str) -> ProgLoadAttr {
        self.prog_name = [0; 16];
        for (d, s) in self.prog_name.iter_mut().zip(name.bytes().take(15)) {
            *d = s;
        }
        self
    }

    /// Sets `expected_attach_type`.
    pub fn expected_attach_type(mut self, t: AttachType) -> ProgLoadAttr {
        self.expected_attach_type = t.0;
        self
    }

    /// Runs the program on `engine` instead of the runtime's default.
    pub fn engine(mut self, engine: Engine) -> ProgLoadAttr {
        self.engine = Some(engine);
        self
    }

    /// Sets `log_level`.
    pub fn log_level(mut self, level: u32) -> ProgLoadAttr {
        self.log_level = level;
        self
    }

    /// Sets `prog_flags`.
    pub fn flags(mut self, flags: u32) -> ProgLoadAttr {
        self.prog_flags = flags;
        self
    }

    /// Sets `prog_btf_fd` and the func_info records (8-byte `bpf_func_info`, `insn_off`
    /// in instructions, as libbpf submits them).
    pub fn func_info(mut self, btf_fd: u32, records: &[FuncInfo]) -> ProgLoadAttr {
        self.prog_btf_fd = btf_fd;
        self.func_info_rec_size = 8;
        self.func_info_cnt = records.len() as u32;
        self.func_info = records
            .iter()
            .flat_map(|r| [r.insn_off, r.type_id])
            .flat_map(u32::to_ne_bytes)
            .collect();
        self
    }

    /// Sets `prog_btf_fd` and the line_info records (16-byte `bpf_line_info`).
    pub fn line_info(mut self, btf_fd: u32, records: &[LineInfo]) -> ProgLoadAttr {
        self.prog_btf_fd = btf_fd;
        self.line_info_rec_size = 16;
        self.line_info_cnt = records.len() as u32;
        self.line_info = records
            .iter()
            .flat_map(|r| [r.insn_off, r.file_name_off, r.line_off, r.line_col])
            .flat_map(u32::to_ne_bytes)
            .collect();
        self
    }
}

/// A program the verifier accepted: the verifier's proof, the translated instructions
/// (map references as addresses) in the interpreter's form, and the engine it runs on
/// (with its native code when that is the JIT).
#[derive(Clone, Debug)]
pub struct VerifiedProgram {
    proof: structops_verifier::VerifiedProgram,
    code: Code,
    program: Program,
    engine: Engine,
}

impl VerifiedProgram {
    /// Pairs the verifier's proof with the translated program it was checked for, and
    /// compiles it when `engine` is the JIT. A program the JIT cannot compile runs in
    /// the interpreter, as the kernel falls back to its interpreter when its JIT fails
    /// (without `CONFIG_BPF_JIT_ALWAYS_ON`). Compiled code is charged, in whole pages,
    /// to `jit_memory` (`bpf_jit_charge_modmem`); the charge comes back with the
    /// program.
    ///
    /// # Errors
    ///
    /// `ENOTSUPP` when the code does not fit under the JIT memory limit (the kernel's
    /// `bpf_prog_select_runtime` when its JIT gave up with `CONFIG_BPF_JIT_ALWAYS_ON`);
    /// the reason goes to `log`, and the compiled code is freed.
    pub(crate) fn new(
        proof: structops_verifier::VerifiedProgram,
        program: Program,
        code: Code,
        engine: Engine,
        jit: &structops_vm::JitOptions,
        jit_memory: &Arc<MemCgroup>,
        log: &mut String,
    ) -> Result<(VerifiedProgram, Option<Charge>), crate::Errno> {
        let compiled = match engine {
            Engine::Jit => code.jit_with(jit).ok(),
            Engine::Interp => None,
        };
        let charge = match compiled {
            None => None,
            Some(native) => {
                let bytes = native.mapped_size() as u64;
                match Charge::new(jit_memory, bytes) {
                    Ok(c) => Some(c),
                    Err(_) => {
                        log.push_str(&format!(
                            "JIT memory limit of {} bytes reached: {} bytes in use, {bytes} more needed\n",
                            jit_memory.limit(),
                            jit_memory.used(),
                        ));
                        return Err(JIT_LIMIT_LOAD_ERRNO);
                    }
                }
            }
        };
        let engine = if charge.is_some() {
            Engine::Jit
        } else {
            Engine::Interp
        };
        Ok((
            VerifiedProgram {
                proof,
                code,
                program,
                engine,
            },
            charge,
        ))
    }

    /// The engine the program runs on when not checked.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The native code, when the program runs on the JIT.
    pub fn jited(&self) -> Option<&JitProgram> {
        match self.engine {
            Engine::Jit => self.code.jit().ok(),
            Engine::Interp => None,
        }
    }

    /// What the verifier returned: the instructions it checked, statistics, stack
    /// depths, and the log of an accepted load.
    pub fn proof(&self) -> &structops_verifier::VerifiedProgram {
        &self.proof
    }

    /// Verification statistics (processed instructions, states).
    pub fn stats(&self) -> structops_verifier::Stats {
        self.proof.stats()
    }

    /// The decoded translated program.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// The interpreter's form of the translated program.
    pub fn code(&self) -> &Code {
        &self.code
    }
}

/// Whether a program was verified.
#[derive(Clone, Debug)]
pub enum Verification {
    /// The verifier rejected it and [`crate::RuntimeConfig::run_unverified`] let it
    /// load anyway: it runs only in checked mode.
    Unverified(structops_verifier::VerifyError),
    /// The verifier accepted it (boxed: the proof carries per-instruction facts).
    Verified(Box<VerifiedProgram>),
}

/// How a map is referenced from a program's `LD_IMM64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapRef {
    /// The map itself (`BPF_PSEUDO_MAP_FD` / `BPF_PSEUDO_MAP_IDX`).
    Map {
        /// Index into [`ProgBody::used_maps`].
        map: usize,
    },
    /// Byte `off` of the map's value (`BPF_PSEUDO_MAP_VALUE` / `MAP_IDX_VALUE`).
    Value {
        /// Index into [`ProgBody::used_maps`].
        map: usize,
        /// The offset.
        off: u32,
    },
}

/// Everything about a program that `prog_load` establishes before verification; what a
/// the runtime's verifier environment sees. A loaded [`Prog`] dereferences to it.
pub struct ProgBody {
    pub(crate) prog_type: ProgType,
    pub(crate) expected_attach_type: AttachType,
    pub(crate) attach_btf_id: u32,
    pub(crate) attach_btf: Option<Arc<BtfObject>>,
    pub(crate) attach_func_proto: u32,
    pub(crate) dst_prog: Option<Arc<Prog>>,
    pub(crate) name: String,
    pub(crate) tag: [u8; 8],
    pub(crate) gpl_compatible: bool,
    pub(crate) sleepable: bool,
    pub(crate) xdp_has_frags: bool,
    pub(crate) load_time: u64,
    pub(crate) orig_insns: Vec<Insn>,
    pub(crate) xlated: Vec<Insn>,
    pub(crate) program: Program,
    pub(crate) code: Code,
    pub(crate) map_refs: Vec<(usize, MapRef)>,
    pub(crate) used_maps: Vec<Arc<Map>>,
    pub(crate) kfuncs: Vec<u32>,
    pub(crate) btf: Option<Arc<BtfObject>>,
    pub(crate) func_info: Vec<FuncInfo>,
    pub(crate) line_info: Vec<LineInfo>,
    pub(crate) subprogs: Vec<usize>,
    pub(crate) caps: crate::caps::Capabilities,
    /// The program's pages, charged to the runtime's memory account
    /// ([`crate::RuntimeConfig::memory_limit`]) until the program is freed.
    pub(crate) mem: Charge,
    /// Its native code's pages, charged against
    /// [`crate::RuntimeConfig::jit_memory_limit`] until the program is freed, when it
    /// runs on the JIT.
    pub(crate) jit_mem: Option<Charge>,
}

impl fmt::Debug for ProgBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProgBody")
            .field("type", &self.prog_type)
            .field("name", &self.name)
            .field("insns", &self.xlated.len())
            .finish_non_exhaustive()
    }
}

/// A loaded program.
pub struct Prog {
    header: ObjHeader,
    body: ProgBody,
    verification: Verification,
}

/// A user reference to a program (the analog of a program fd).
pub type ProgHandle = Handle<Prog>;

impl fmt::Debug for Prog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prog")
            .field("id", &self.id())
            .field("type", &self.prog_type)
            .field("name", &self.name)
            .field("insns", &self.xlated.len())
            .field("verified", &self.is_verified())
            .finish_non_exhaustive()
    }
}

impl KernelObject for Prog {
    const KIND: ObjKind = ObjKind::Prog;
    fn header(&self) -> &ObjHeader {
        &self.header
    }
}

impl TailCallTarget for Prog {
    fn prog_id(&self) -> u32 {
        self.id()
    }
}

impl std::ops::Deref for Prog {
    type Target = ProgBody;
    fn deref(&self) -> &ProgBody {
        &self.body
    }
}

impl ProgBody {
    /// Its type.
    pub fn prog_type(&self) -> ProgType {
        self.prog_type
    }

    /// `expected_attach_type` (for struct_ops programs, the member index).
    pub fn expected_attach_type(&self) -> AttachType {
        self.expected_attach_type
    }

    /// `attach_btf_id` (0 without one).
    pub fn attach_btf_id(&self) -> u32 {
        self.attach_btf_id
    }

    /// The BTF object `attach_btf_id` refers to.
    pub fn attach_btf(&self) -> Option<&Arc<BtfObject>> {
        self.attach_btf.as_ref()
    }

    /// For struct_ops programs: the BTF id of the member's `FUNC_PROTO` in the attach
    /// BTF (the kernel's `attach_func_proto`), else 0.
    pub fn attach_func_proto(&self) -> u32 {
        self.attach_func_proto
    }

    /// The program it was loaded to extend or trace (`attach_prog_fd`).
    pub fn dst_prog(&self) -> Option<&Arc<Prog>> {
        self.dst_prog.as_ref()
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its tag (see [`ProgInfo::tag`]).
    pub fn tag(&self) -> [u8; 8] {
        self.tag
    }

    /// Was the license GPL-compatible (`license_is_gpl_compatible`)?
    pub fn gpl_compatible(&self) -> bool {
        self.gpl_compatible
    }

    /// Was it loaded with `BPF_F_SLEEPABLE`?
    pub fn sleepable(&self) -> bool {
        self.sleepable
    }

    /// Was it loaded with `BPF_F_XDP_HAS_FRAGS`?
    pub fn xdp_has_frags(&self) -> bool {
        self.xdp_has_frags
    }

    /// The instructions as submitted.
    pub fn orig_insns(&self) -> &[Insn] {
        &self.orig_insns
    }

    /// The translated instructions: map references replaced by map and value addresses
    /// (plain 64-bit constants, as after the kernel's `convert_pseudo_ld_imm64`).
    pub fn xlated_insns(&self) -> &[Insn] {
        &self.xlated
    }

    /// The translated instructions as `bpf_prog_info.xlated_prog_insns` shows them
    /// (`bpf_insn_prepare_dump`): map addresses back to `BPF_PSEUDO_MAP_FD` /
    /// `BPF_PSEUDO_MAP_VALUE` loads of the map's id.
    pub fn xlated_insns_dump(&self) -> Vec<Insn> {
        let mut out = self.xlated.clone();
        for &(pc, r) in &self.map_refs {
            let (src, id, off) = match r {
                MapRef::Map { map } => (1u8, self.used_maps.get(map).map_or(0, |m| m.id()), 0),
                MapRef::Value { map, off } => {
                    (2u8, self.used_maps.get(map).map_or(0, |m| m.id()), off)
                }
            };
            if let Some(first) = out.get_mut(pc) {
                first.set_src_reg(src);
                first.imm = id as i32;
            }
            if let Some(second) = out.get_mut(pc + 1) {
                second.imm = off as i32;
            }
        }
        out
    }

    /// The decoded translated program.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// Where each map reference is: slot index of the `LD_IMM64` and what it loads.
    pub fn map_refs(&self) -> &[(usize, MapRef)] {
        &self.map_refs
    }

    /// The maps the program references (`used_maps`), in first-use order.
    pub fn used_maps(&self) -> &[Arc<Map>] {
        &self.used_maps
    }

    /// BTF ids (in the host BTF) of the kfuncs it calls.
    pub fn kfuncs(&self) -> &[u32] {
        &self.kfuncs
    }

    /// The program's BTF (`prog_btf_fd`), if it came with func_info or line_info.
    pub fn btf(&self) -> Option<&Arc<BtfObject>> {
        self.btf.as_ref()
    }

    /// func_info, `insn_off` in instructions.
    pub fn func_info(&self) -> &[FuncInfo] {
        &self.func_info
    }

    /// line_info, `insn_off` in instructions.
    pub fn line_info(&self) -> &[LineInfo] {
        &self.line_info
    }

    /// Slot indices where the subprograms start (the main program's 0 first).
    pub fn subprogs(&self) -> &[usize] {
        &self.subprogs
    }

    /// Bytes of the runtime's memory account ([`crate::RuntimeConfig::memory_limit`])
    /// the program holds: what the kernel's `bpf_prog_alloc` charges and its fdinfo
    /// shows as `memlock` (`bpf_prog_size` of the translated program, in whole pages).
    pub fn memlock(&self) -> u64 {
        self.mem.bytes()
    }

    /// The capabilities it was loaded with (they decide which helpers it may call).
    pub fn load_caps(&self) -> crate::caps::Capabilities {
        self.caps
    }
}

impl Prog {
    pub(crate) fn new(header: ObjHeader, body: ProgBody, verification: Verification) -> Prog {
        Prog {
            header,
            body,
            verification,
        }
    }

    /// The program's id.
    pub fn id(&self) -> u32 {
        self.header.id()
    }

    /// Its verification state.
    pub fn verification(&self) -> &Verification {
        &self.verification
    }

    /// Did a verifier accept it?
    pub fn is_verified(&self) -> bool {
        matches!(self.verification, Verification::Verified(_))
    }

    /// The engine the program runs on: the JIT or the interpreter for a verified
    /// program, the interpreter (checked) for an unverified one.
    pub fn engine(&self) -> Engine {
        match &self.verification {
            Verification::Verified(v) => v.engine(),
            Verification::Unverified(_) => Engine::Interp,
        }
    }

    /// The native code of a program on the JIT.
    pub fn jited(&self) -> Option<&JitProgram> {
        match &self.verification {
            Verification::Verified(v) => v.jited(),
            Verification::Unverified(_) => None,
        }
    }

    fn jited_len(&self) -> u32 {
        self.jited()
            .map_or(0, |j| u32::try_from(j.code_size()).unwrap_or(u32::MAX))
    }

    /// The interpreter's form of the translated program (verified or not).
    pub(crate) fn unverified_code(&self) -> &Code {
        &self.body.code
    }

    /// Why the verifier rejected it, for programs loaded with
    /// [`crate::RuntimeConfig::run_unverified`].
    pub fn rejection(&self) -> Option<&structops_verifier::VerifyError> {
        match &self.verification {
            Verification::Unverified(e) => Some(e),
            Verification::Verified(_) => None,
        }
    }

    /// `BPF_OBJ_GET_INFO_BY_FD` on a program.
    pub fn info(&self) -> ProgInfo {
        let verified_insns = match &self.verification {
            Verification::Verified(v) => {
                u32::try_from(v.stats().insn_processed).unwrap_or(u32::MAX)
            }
            Verification::Unverified(_) => 0,
        };
        let xlated = self.xlated.len();
        ProgInfo {
            prog_type: self.prog_type.0,
            id: self.id(),
            tag: self.tag,
            jited_prog_len: self.jited_len(),
            xlated_prog_len: (xlated * 8) as u32,
            load_time: self.load_time,
            created_by_uid: 0,
            map_ids: self.used_maps.iter().map(|m| m.id()).collect(),
            name: self.name.clone(),
            gpl_compatible: self.gpl_compatible,
            btf_id: self.btf.as_ref().map_or(0, |b| b.id()),
            nr_func_info: self.func_info.len() as u32,
            nr_line_info: self.line_info.len() as u32,
            attach_btf_obj_id: self.attach_btf.as_ref().map_or(0, |b| b.id()),
            attach_btf_id: self.attach_btf_id,
            verified_insns,
            verified: self.is_verified(),
        }
    }
}

/// The useful subset of `struct bpf_prog_info`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgInfo {
    /// `type`.
    pub prog_type: u32,
    /// `id`.
    pub id: u32,
    /// `tag`: the first 8 bytes of the SHA-1 of the submitted instructions with map
    /// descriptors zeroed (`bpf_prog_calc_tag`); equal to the kernel's for the same
    /// instructions.
    pub tag: [u8; 8],
    /// `jited_prog_len`: bytes of native code (0 for a program on the interpreter).
    pub jited_prog_len: u32,
    /// `xlated_prog_len`: bytes of translated instructions.
    pub xlated_prog_len: u32,
    /// `load_time`: `CLOCK_BOOTTIME` in ns at load.
    pub load_time: u64,
    /// `created_by_uid`: 0.
    pub created_by_uid: u32,
    /// `map_ids` (`nr_map_ids` is its length).
    pub map_ids: Vec<u32>,
    /// `name`.
    pub name: String,
    /// `gpl_compatible`.
    pub gpl_compatible: bool,
    /// `btf_id`: the program's BTF object, 0 without.
    pub btf_id: u32,
    /// `nr_func_info`.
    pub nr_func_info: u32,
    /// `nr_line_info`.
    pub nr_line_info: u32,
    /// `attach_btf_obj_id`.
    pub attach_btf_obj_id: u32,
    /// `attach_btf_id`.
    pub attach_btf_id: u32,
    /// `verified_insns`: instructions the verifier processed (0 for unverified
    /// programs).
    pub verified_insns: u32,
    /// Not in the kernel's struct: did a verifier accept the program?
    pub verified: bool,
}

impl ProgInfo {
    /// The number of translated instructions.
    pub fn xlated_insn_cnt(&self) -> u32 {
        self.xlated_prog_len / 8
    }

    /// The tag as bpftool prints it (16 hex digits).
    pub fn tag_hex(&self) -> String {
        self.tag.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// What a `PROG_ARRAY` remembers about the first program that used it (`map->owner`):
/// every later program must match (`__bpf_prog_map_compatible`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProgArrayOwner {
    prog_type: ProgType,
    jited: bool,
    xdp_has_frags: bool,
    attach_func_proto: (u32, u32),
}

/// `bpf_prog_map_compatible`: claims `map` for `prog` if nobody owns it, else checks that
/// `prog` matches the owner. Only `PROG_ARRAY`s have owners here.
pub(crate) fn prog_map_compatible(map: &Map, prog: &ProgBody) -> bool {
    if map.map_type() != MapType::ProgArray {
        return true;
    }
    let ty = match (&prog.dst_prog, prog.prog_type) {
        (Some(dst), ProgType::EXT) => dst.prog_type,
        _ => prog.prog_type,
    };
    let mine = ProgArrayOwner {
        prog_type: ty,
        // A program on the JIT holds a JIT charge: JIT-compiled programs and
        // interpreted ones do not share a `PROG_ARRAY`, as in the kernel (the JIT's
        // tail calls reach only compiled code).
        jited: prog.jit_mem.is_some(),
        xdp_has_frags: prog.xdp_has_frags,
        attach_func_proto: (
            prog.attach_btf.as_ref().map_or(0, |b| b.id()),
            prog.attach_func_proto,
        ),
    };
    let mut owner = map.prog_owner().lock().unwrap_or_else(|p| p.into_inner());
    match *owner {
        None => {
            *owner = Some(mine);
            true
        }
        Some(o) => {
            let mut ok = o.prog_type == mine.prog_type
                && o.jited == mine.jited
                && o.xdp_has_frags == mine.xdp_has_frags;
            if ok
                && o.attach_func_proto != mine.attach_func_proto
                && matches!(
                    ty,
                    ProgType::TRACING | ProgType::LSM | ProgType::EXT | ProgType::STRUCT_OPS
                )
            {
                ok = false;
            }
            ok
        }
    }
}

/// A sink for `bpf_trace_printk` lines (the runtime's `trace_pipe`).
pub type TraceSink = Arc<dyn Fn(&str) + Send + Sync>;

/// Which clock a time helper reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClockKind {
    /// `CLOCK_MONOTONIC`: `bpf_ktime_get_ns`, and `bpf_jiffies64` through `CONFIG_HZ`.
    Monotonic,
    /// `CLOCK_BOOTTIME`: `bpf_ktime_get_boot_ns`.
    Boottime,
    /// `CLOCK_MONOTONIC_COARSE`: `bpf_ktime_get_coarse_ns`.
    MonotonicCoarse,
}

/// What a traced call called.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Callee {
    /// Helper `BPF_FUNC_*` id (built-in or host).
    Helper(i32),
    /// The kfunc with this host BTF id.
    Kfunc(u32),
}

/// One helper or kfunc call a program made, as [`crate::Runtime::set_helper_trace`]
/// reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HelperCall {
    /// The program the run started with (tail calls keep it).
    pub prog_id: u32,
    /// Slot of the call instruction in the running program.
    pub pc: usize,
    /// The helper or kfunc.
    pub callee: Callee,
    /// `r1` to `r5`; for a helper, those past its arguments (`ARG_DONTCARE` in its
    /// prototype) are 0, since they hold whatever earlier code left there.
    pub args: [u64; 5],
    /// `r0` after the call, `None` when the call failed the run.
    pub ret: Option<u64>,
}

/// A hook that sees every helper and kfunc call of every run, in order.
pub type HelperTrace = Arc<dyn Fn(&HelperCall) + Send + Sync>;

/// A host clock for the time helpers (e.g. a simulator's virtual time), in ns.
pub type Clock = Arc<dyn Fn(ClockKind) -> u64 + Send + Sync>;

/// The host's socket-storage owners ([`crate::Runtime::set_storage_owner`]): the
/// [`crate::HostObject`] whose values `bpf_sk_storage_get`/`_delete` reach for the socket
/// at an address a program passed, or `None` for an address that is no live socket of
/// the host.
pub type StorageOwner = Arc<dyn Fn(u64) -> Option<crate::maps::HostObject> + Send + Sync>;

/// The program half of the runtime: the id table, registries and switches.
pub(crate) struct ProgRegistry {
    pub(crate) table: Arc<IdTable<Prog>>,
    /// [`crate::RuntimeConfig::struct_ops_image_limit`].
    pub(crate) struct_ops_image_limit: u64,
    /// The account of [`crate::RuntimeConfig::jit_memory_limit`].
    pub(crate) jit_memory: Arc<MemCgroup>,
    /// [`crate::RuntimeConfig::verifier_memory_limit`].
    pub(crate) verifier_limits: structops_verifier::Limits,
    pub(crate) helpers: RwLock<Vec<HostHelper>>,
    pub(crate) kfuncs: RwLock<KfuncTable>,
    pub(crate) trace_sink: RwLock<Option<TraceSink>>,
    /// Host memory `bpf_probe_read_kernel` may read: `[start, end)` ranges.
    pub(crate) probe_memory: RwLock<Vec<(u64, u64)>>,
    /// [`crate::RuntimeConfig::probe_any_mapped`].
    pub(crate) probe_any_mapped: bool,
    /// [`crate::RuntimeConfig::jit_harden`].
    pub(crate) jit_harden: crate::JitHarden,
    /// [`crate::RuntimeConfig::ncpus`] (at least 1).
    pub(crate) ncpus: u32,
    pub(crate) run_unverified: AtomicBool,
    pub(crate) hz: u32,
    /// [`crate::RuntimeConfig::engine`].
    pub(crate) engine: Engine,
    /// [`crate::RuntimeConfig::prandom_seed`].
    pub(crate) prandom_seed: Option<u64>,
    /// Runs that seeded a generator from `prandom_seed`.
    pub(crate) prandom_runs: std::sync::atomic::AtomicU64,
    /// [`crate::Runtime::set_clock`], and whether one is set (read before the lock).
    pub(crate) clock: RwLock<Option<Clock>>,
    pub(crate) clock_on: AtomicBool,
    /// [`crate::Runtime::set_helper_trace`], and whether one is set (read once per run).
    pub(crate) helper_trace: RwLock<Option<HelperTrace>>,
    pub(crate) trace_on: AtomicBool,
    /// [`crate::Runtime::set_storage_owner`].
    pub(crate) storage_owner: RwLock<Option<StorageOwner>>,
}

impl fmt::Debug for ProgRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProgRegistry")
            .field("table", &self.table)
            .field(
                "run_unverified",
                &self.run_unverified.load(Ordering::Relaxed),
            )
            .field("hz", &self.hz)
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl ProgRegistry {
    pub(crate) fn new(config: &crate::RuntimeConfig) -> ProgRegistry {
        ProgRegistry {
            table: IdTable::with_limit(config.max_progs),
            struct_ops_image_limit: config.struct_ops_image_limit,
            jit_memory: MemCgroup::new(config.jit_memory_limit),
            verifier_limits: structops_verifier::Limits {
                state_memory: config.verifier_memory_limit,
                log_size: config.verifier_log_limit,
            },
            helpers: RwLock::new(Vec::new()),
            kfuncs: RwLock::new(KfuncTable::default()),
            trace_sink: RwLock::new(None),
            probe_memory: RwLock::new(Vec::new()),
            probe_any_mapped: config.probe_any_mapped,
            jit_harden: config.jit_harden,
            ncpus: config.ncpus.max(1),
            run_unverified: AtomicBool::new(config.run_unverified),
            hz: config.hz.max(1),
            engine: config.engine,
            prandom_seed: config.prandom_seed,
            prandom_runs: std::sync::atomic::AtomicU64::new(0),
            clock: RwLock::new(None),
            clock_on: AtomicBool::new(false),
            helper_trace: RwLock::new(None),
            trace_on: AtomicBool::new(false),
            storage_owner: RwLock::new(None),
        }
    }
}
