//! struct_ops: host-declared ops types, struct_ops maps, links and ops tables, with the
//! semantics of the kernel's `kernel/bpf/bpf_struct_ops.c`.
//!
//! # Ops types
//!
//! A host declares an ops type (the analog of a kernel subsystem's `struct bpf_struct_ops`)
//! with a [`StructOpsDesc`]: the name of a struct in the host BTF, the callbacks
//! ([`StructOps`]: `init`, `check_member`, `init_member`, `validate`, `reg`, `unreg`,
//! `update`, and the verifier hooks) and per-member markers (which function members the host
//! can call — the kernel's `cfi_stubs` —, and `__nullable` / `__ref` arguments).
//! [`crate::Runtime::register_struct_ops`] checks it exactly as `bpf_struct_ops_desc_init`
//! does, with the same errnos, and publishes an [`OpsType`]. The host BTF must also hold
//! the value type `bpf_struct_ops_<name>` (`{ struct bpf_struct_ops_common_value common;
//! struct <name> data; }`, data cacheline aligned), as vmlinux does; [`add_value_type`]
//! adds it (and the common header) to a host BTF being built.
//! [`crate::Runtime::unregister_struct_ops`] removes a type (the analog of unloading the
//! module): maps created from it keep the [`OpsType`] alive through their own reference.
//!
//! # Maps and ops tables
//!
//! A `BPF_MAP_TYPE_STRUCT_OPS` map ([`map`]) holds one value: the user's view (program ids
//! in the function slots, `refcnt`, `state`) and, once updated, an [`OpsTable`]: the
//! kernel's `kvalue.data` — the ops struct as the host sees it, data members as
//! `init_member` and the user set them — plus one [`MemberImpl`] per implemented function
//! member. `reg` hands the table to the host ([`StructOps::reg`]); the host keeps it (for
//! example in an [`OpsSlot`]) and calls members with [`OpsTable::call`].
//!
//! # Calls, hot swap and reclamation
//!
//! An [`OpsTable`] never changes after it is built: a link update builds nothing, it makes
//! the host switch from one table to another (`update(new, old, link)`), so every call runs
//! entirely on the old or entirely on the new table. [`OpsSlot`] is the host's pointer to
//! its current table: [`OpsSlot::load`] is one acquire load under an epoch guard
//! ([`crate::read_lock`], the runtime's `rcu_read_lock`), and a replaced table is dropped
//! only after every guard that could have seen it is gone. Tables hold their programs, so
//! code is never freed under a running call. The per-call path takes no lock and makes no
//! atomic read-modify-write on shared memory (the epoch pin writes only the calling
//! thread's own epoch slot).
//!
//! [`OpsTable::get`] and [`OpsRef`] are the kernel's `bpf_struct_ops_get` / `put`: a
//! counted reference on the map (it fails once the map is being freed), which the
//! syscall-side lookup reports as `refcnt`.
//!
//! # Native entry points
//!
//! The map update builds a native entry point ([`MemberImpl::entry`]) for each function
//! member implemented by a verified program: an `extern "C"` function with the member's C
//! signature that puts the arguments into the BPF context array and runs the program
//! unchecked on the engine it was verified for (the JIT's code, or the interpreter). Its
//! address goes both into [`MemberImpl`] and into the member's slot of
//! [`OpsTable::kdata`], as the kernel puts the trampoline there, so a `#[repr(C)]` host
//! can call through its own mirror of the ops struct ([`OpsTable::ops`], [`OpsStruct`]).
//! Members without a native form (unverified programs, signatures the entry point cannot
//! express, or code the generator refuses) keep 0 in their slot and stay callable through
//! [`OpsTable::call`], which runs the program itself rather than through the entry
//! point. The entry's code lives as long as the table (which holds the program), and the
//! table's lifetime rules above already cover in-flight calls.

pub mod dummy;
pub mod link;
pub mod map;
pub mod tcp_ca;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use structops_btf::BtfBuilder;
use structops_btf::{Btf, Kind, TypeId, TypeKind};
use structops_vm::{Access, Config, Engine, Interpreter, Mode, Region};
use thiserror::Error;

use crate::btf_obj::BtfObject;
use crate::errno::Errno;
use crate::exec::{ExecError, ProgEnv};
use crate::maps::Map;
use crate::object::IdTable;
use crate::prog::{Prog, Verification};
use crate::runtime::Runtime;

pub use self::link::{Link, LinkCreateAttr, LinkHandle, LinkInfo, LinkUpdateAttr};
pub use self::map::OpsRef;

/// `BPF_MAP_TYPE_STRUCT_OPS`.
pub const MAP_TYPE_STRUCT_OPS: u32 = 26;
/// `BPF_F_LINK`: the map is registered through a link (`link_create`), not by its update.
pub const BPF_F_LINK: u32 = 1 << 13;
/// `BPF_F_VTYPE_BTF_OBJ_FD`: the value type is in the module BTF `value_type_btf_obj_fd`.
pub const BPF_F_VTYPE_BTF_OBJ_FD: u32 = 1 << 15;
/// `BPF_STRUCT_OPS_MAX_NR_MEMBERS`.
pub const MAX_MEMBERS: usize = 64;
/// `MAX_BPF_FUNC_ARGS`.
pub const MAX_FUNC_ARGS: usize = 12;
/// The prefix of value type names (`VALUE_PREFIX`).
pub const VALUE_PREFIX: &str = "bpf_struct_ops_";
/// The common header of every value (`struct bpf_struct_ops_common_value`).
pub const COMMON_VALUE_NAME: &str = "bpf_struct_ops_common_value";
/// Where the data of a value starts when the host BTF lays it out as the kernel does
/// (`____cacheline_aligned_in_smp`).
pub const DATA_ALIGN: u32 = 64;
/// What `kdata` holds in a `struct module *owner` member (`BPF_MODULE_OWNER`).
pub const MODULE_OWNER: u64 = (0xeb9f_u64 << 2) + 0xdead_0000_0000_0000;

/// `enum bpf_struct_ops_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum State {
    /// `BPF_STRUCT_OPS_STATE_INIT`: not (successfully) updated.
    Init = 0,
    /// `BPF_STRUCT_OPS_STATE_INUSE`: registered by its update.
    InUse = 1,
    /// `BPF_STRUCT_OPS_STATE_TOBEFREE`: unregistered by a delete.
    ToBeFree = 2,
    /// `BPF_STRUCT_OPS_STATE_READY`: a link map, updated, ready for `link_create`.
    Ready = 3,
}

impl State {
    pub(crate) fn from_raw(v: u32) -> State {
        match v {
            1 => State::InUse,
            2 => State::ToBeFree,
            3 => State::Ready,
            _ => State::Init,
        }
    }
}

/// The callbacks of an ops type: the kernel's `struct bpf_struct_ops` functions and the
/// verifier hooks of its `bpf_verifier_ops`. Every method but `reg` and `unreg` has the
/// kernel's default (what a NULL callback means there).
pub trait StructOps: Send + Sync + 'static {
    /// `init(btf)`: called once at registration; an error makes it fail with `EINVAL`.
    fn init(&self, btf: &Btf) -> Result<(), Errno> {
        let _ = btf;
        Ok(())
    }

    /// `check_member`: may a program (sleepable or not) implement `member`? Called by
    /// `prog_load` (see [`OpsType::check_member`]); an error refuses the load.
    fn check_member(&self, member: &MemberInfo, sleepable: bool) -> Result<(), Errno> {
        let _ = (member, sleepable);
        Ok(())
    }

    /// `init_member`: gets every member but the `struct module *` owner during a map
    /// update, with the user's data (`udata`, the whole ops struct) and the table being
    /// built (`kdata`). `Ok(true)`: handled (the member is then left alone); `Ok(false)`:
    /// not handled (function members take programs, other members must be zero); an
    /// error fails the update with it.
    fn init_member(
        &self,
        member: &MemberInfo,
        kdata: &mut [u8],
        udata: &[u8],
    ) -> Result<bool, Errno> {
        let _ = (member, kdata, udata);
        Ok(false)
    }

    /// `validate(kdata)`: the whole table, after every member; an error fails the update.
    fn validate(&self, table: &OpsTable) -> Result<(), Errno> {
        let _ = table;
        Ok(())
    }

    /// `reg(kdata, link)`: make `table` live in the host (`link` is `None` for a map
    /// registered by its update).
    fn reg(&self, table: &Arc<OpsTable>, link: Option<&Link>) -> Result<(), Errno>;

    /// `unreg(kdata, link)`: take `table` out of the host. Calls already running on it may
    /// finish; the runtime frees it only after them.
    fn unreg(&self, table: &Arc<OpsTable>, link: Option<&Link>);

    /// Whether the type has an `update` callback (link updates are `EOPNOTSUPP`
    /// without).
    fn has_update(&self) -> bool {
        false
    }

    /// `update(kdata, old_kdata, link)`: atomically replace `old` by `new` in the host.
    fn update(&self, new: &Arc<OpsTable>, old: &Arc<OpsTable>, link: &Link) -> Result<(), Errno> {
        let _ = (new, old, link);
        Err(Errno::EOPNOTSUPP)
    }

    /// `get_func_proto` of the type's verifier ops: may a program implementing `member`
    /// call helper `helper_id`? An allowed helper's prototype is the runtime's built-in
    /// one (subject to the base helper rules and the loader's capabilities) or, for ids
    /// the runtime does not implement, the host helper registered for struct_ops
    /// programs ([`Runtime::register_helper`]). Defaults to every helper (the base set
    /// and the host's).
    fn helper_allowed(&self, helper_id: i32, member: &MemberInfo) -> bool {
        let _ = (helper_id, member);
        true
    }

    /// `arg<N>_btf_id` of the helpers this type hands out: the host BTF struct that
    /// `ARG_PTR_TO_BTF_ID` argument `arg` (0-based) of helper `helper_id` must point to,
    /// `None` for any struct (`bpf_tcp_send_ack`'s first argument is a `tcp_sock`).
    fn helper_arg_btf_id(&self, btf: &Btf, helper_id: i32, arg: usize) -> Option<u32> {
        let _ = (btf, helper_id, arg);
        None
    }

    /// `is_valid_access` retyping of a pointer argument: the host BTF struct a member's
    /// pointer-to-`btf_id` argument is seen as (`tcp_congestion_ops` promotes `sock` to
    /// `tcp_sock`). Defaults to `btf_id`.
    fn ctx_arg_btf_id(&self, btf: &Btf, btf_id: u32) -> u32 {
        let _ = btf;
        btf_id
    }

    /// `btf_struct_access`: may a program write `size` bytes at `off` of host struct
    /// `btf_id`? `None`: the type has no hook (writes are refused); `Some(Err(msg))`:
    /// refused with the verifier log line `msg` (`EACCES`).
    fn struct_write(
        &self,
        btf: &Btf,
        btf_id: u32,
        off: i32,
        size: u32,
    ) -> Option<Result<(), String>> {
        let _ = (btf, btf_id, off, size);
        None
    }
}

/// Per-member markers of a [`StructOpsDesc`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct MemberMarks {
    unsupported: bool,
    nullable: BTreeSet<u32>,
    refcounted: BTreeSet<u32>,
}

/// What a host registers: the kernel's `struct bpf_struct_ops` before
/// `bpf_struct_ops_desc_init`.
pub struct StructOpsDesc {
    name: String,
    ops: Arc<dyn StructOps>,
    marks: Vec<(String, MemberMarks)>,
}

impl fmt::Debug for StructOpsDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StructOpsDesc")
            .field("name", &self.name)
            .field("marks", &self.marks)
            .finish_non_exhaustive()
    }
}

impl StructOpsDesc {
    /// An ops type for the host BTF struct `name` with callbacks `ops`. Every function
    /// member is supported (has a stub) until [`StructOpsDesc::unsupported`] says not.
    pub fn new(name: &str, ops: Arc<dyn StructOps>) -> StructOpsDesc {
        StructOpsDesc {
            name: name.to_string(),
            ops,
            marks: Vec::new(),
        }
    }

    fn marks(&mut self, member: &str) -> &mut MemberMarks {
        let i = match self.marks.iter().position(|(n, _)| n == member) {
            Some(i) => i,
            None => {
                self.marks
                    .push((member.to_string(), MemberMarks::default()));
                self.marks.len() - 1
            }
        };
        &mut self.marks[i].1
    }

    /// Marks function member `member` as one the host never calls (no `cfi_stubs`
    /// entry): programs cannot implement it.
    pub fn unsupported(mut self, member: &str) -> StructOpsDesc {
        self.marks(member).unsupported = true;
        self
    }

    /// Marks argument `arg` (0-based) of function member `member` as `__nullable`: a
    /// pointer to a struct that may be NULL, which programs must check.
    pub fn nullable(mut self, member: &str, arg: u32) -> StructOpsDesc {
        self.marks(member).nullable.insert(arg);
        self
    }

    /// Marks argument `arg` of function member `member` as `__ref`: a referenced pointer
    /// the program must release (or return).
    pub fn refcounted(mut self, member: &str, arg: u32) -> StructOpsDesc {
        self.marks(member).refcounted.insert(arg);
        self
    }
}

/// The kernel's `struct btf_func_model` of a function member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FuncModel {
    /// Size of the return value in bytes (0 for `void`).
    pub ret_size: u8,
    /// Number of arguments.
    pub nr_args: u8,
    /// Size of each argument in bytes.
    pub arg_size: [u8; MAX_FUNC_ARGS],
}

/// Verifier facts of one pointer argument (`struct bpf_ctx_arg_aux`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArgInfo {
    /// The argument's index.
    pub arg: u32,
    /// Byte offset in the context (`btf_ctx_arg_offset`).
    pub offset: u32,
    /// The struct it points to (host BTF id).
    pub btf_id: u32,
    /// `__nullable`: `PTR_TRUSTED | PTR_TO_BTF_ID | PTR_MAYBE_NULL`.
    pub nullable: bool,
    /// `__ref`: a referenced `PTR_TRUSTED | PTR_TO_BTF_ID`.
    pub refcounted: bool,
}

/// What kind of member a struct_ops member is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberKind {
    /// A `struct module *` (the owner): zero from the user, `MODULE_OWNER` in `kdata`.
    Module,
    /// A function pointer.
    Func {
        /// Its `FUNC_PROTO` in the host BTF.
        proto: TypeId,
        /// Whether the host can call it (a `cfi_stubs` entry); only supported members have
        /// a model and argument info.
        supported: bool,
        /// The function model (`func_models[i]`), for supported members.
        model: Option<FuncModel>,
        /// `__nullable` / `__ref` arguments.
        args: Vec<ArgInfo>,
    },
    /// Anything else: set through `init_member`, or zero.
    Data,
}

/// One member of a registered ops type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    /// Its name.
    pub name: String,
    /// Its index (a program's `expected_attach_type`).
    pub index: u32,
    /// Byte offset in the ops struct.
    pub offset: u32,
    /// Byte size (`btf_resolve_size`).
    pub size: u32,
    /// Its type in the host BTF.
    pub ty: TypeId,
    /// What it is.
    pub kind: MemberKind,
}

impl MemberInfo {
    /// Is it a function pointer the host can call?
    pub fn is_supported_func(&self) -> bool {
        matches!(
            self.kind,
            MemberKind::Func {
                supported: true,
                ..
            }
        )
    }

    /// The function prototype, for function members.
    pub fn func_proto(&self) -> Option<TypeId> {
        match self.kind {
            MemberKind::Func { proto, .. } => Some(proto),
            _ => None,
        }
    }

    /// The argument info of argument `arg`, if it is annotated.
    pub fn arg_info(&self, arg: u32) -> Option<&ArgInfo> {
        match &self.kind {
            MemberKind::Func { args, .. } => args.iter().find(|a| a.arg == arg),
            _ => None,
        }
    }
}

/// A registered ops type (the kernel's `struct bpf_struct_ops_desc`).
pub struct OpsType {
    name: String,
    ops: Arc<dyn StructOps>,
    btf: Arc<BtfObject>,
    type_id: TypeId,
    value_id: TypeId,
    value_size: u32,
    data_off: u32,
    size: u32,
    members: Vec<MemberInfo>,
}

impl fmt::Debug for OpsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpsType")
            .field("name", &self.name)
            .field("type_id", &self.type_id)
            .field("value_id", &self.value_id)
            .field("members", &self.members.len())
            .finish_non_exhaustive()
    }
}

impl OpsType {
    /// Its name (the host BTF struct's).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The ops struct's id in the host BTF (what struct_ops programs give as
    /// `attach_btf_id`).
    pub fn type_id(&self) -> TypeId {
        self.type_id
    }

    /// The value type's id (`btf_vmlinux_value_type_id` of its maps).
    pub fn value_id(&self) -> TypeId {
        self.value_id
    }

    /// The value size (`value_size` of its maps).
    pub fn value_size(&self) -> u32 {
        self.value_size
    }

    /// Byte offset of the ops struct in the value.
    pub fn data_offset(&self) -> u32 {
        self.data_off
    }

    /// Size of the ops struct.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// The members.
    pub fn members(&self) -> &[MemberInfo] {
        &self.members
    }

    /// The member named `name`.
    pub fn member(&self, name: &str) -> Option<&MemberInfo> {
        self.members.iter().find(|m| m.name == name)
    }

    /// The host BTF it was registered against.
    pub fn btf(&self) -> &Arc<BtfObject> {
        &self.btf
    }

    /// The callbacks.
    pub fn ops(&self) -> &Arc<dyn StructOps> {
        &self.ops
    }

    /// The verifier's `bpf_struct_ops_supported` for the member at byte offset `moff`.
    pub fn member_supported(&self, moff: u32) -> bool {
        self.members
            .iter()
            .any(|m| m.offset == moff && m.is_supported_func())
    }

    /// What `prog_load` checks for a struct_ops program implementing member
    /// `member_idx` (`check_struct_ops_btf_id` after the BTF checks): the member must be
    /// a supported function (`ENOTSUPP`, "attach to unsupported member"), and the type's
    /// `check_member` must accept it.
    pub fn check_member(&self, member_idx: u32, sleepable: bool) -> Result<(), Errno> {
        let m = self.members.get(member_idx as usize).ok_or(Errno::EINVAL)?;
        match m.kind {
            MemberKind::Func {
                supported: true, ..
            } => self.ops.check_member(m, sleepable),
            MemberKind::Func { .. } => Err(Errno::ENOTSUPP),
            _ => Err(Errno::EINVAL),
        }
    }
}

/// Why [`OpsTable::call`] did not return a value.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CallError {
    /// The member index is past the ops struct's members.
    #[error("member {member} does not exist")]
    NoSuchMember {
        /// The index.
        member: u32,
    },
    /// No program implements the member (the host's NULL function pointer).
    #[error("member {member} has no implementation")]
    NotImplemented {
        /// The index.
        member: u32,
    },
    /// The argument count differs from the member's prototype.
    #[error("member {member} takes {expected} arguments, {given} given")]
    Args {
        /// The index.
        member: u32,
        /// Arguments of the prototype.
        expected: usize,
        /// Arguments given.
        given: usize,
    },
    /// The program is unverified and the runtime does not run unverified programs.
    #[error("program {prog_id} is not verified")]
    Unverified {
        /// Its id.
        prog_id: u32,
    },
    /// The interpreter stopped the program.
    #[error(transparent)]
    Vm(#[from] structops_vm::VmError),
    /// The program broke a rule the verifier enforces.
    #[error(transparent)]
    Exec(#[from] ExecError),
}

/// The implementation of one function member: its program and its native entry, if any.
#[derive(Debug)]
pub struct MemberImpl {
    prog: Arc<Prog>,
    nargs: usize,
    /// The member's native `extern "C"` function (see [`MemberImpl::entry`]).
    entry: Option<structops_vm::EntryPoint>,
    /// The entry point's pages, charged against
    /// [`crate::RuntimeConfig::jit_memory_limit`].
    #[expect(
        dead_code,
        reason = "held for its drop, which returns the charge with the entry point"
    )]
    jit_mem: Option<crate::memcg::Charge>,
}

impl MemberImpl {
    /// The program.
    pub fn prog(&self) -> &Arc<Prog> {
        &self.prog
    }

    /// The member as a native function, built at map update: the pointer a kernel
    /// subsystem would call through (`kdata`'s function pointer). Transmute
    /// [`structops_vm::EntryPoint::as_ptr`] to the member's `unsafe extern "C" fn` type and call it
    /// while the table is alive (a guard of its [`OpsSlot`], or an `Arc`); it runs the
    /// program unchecked on its engine, with the arguments the host passes (which must
    /// be what the member's prototype promises, as for [`OpsTable::call`]). A failing
    /// run returns 0 and counts a fault ([`structops_vm::EntryPoint::faults`]). `None` for unverified
    /// programs and signatures without a native form.
    pub fn entry(&self) -> Option<&structops_vm::EntryPoint> {
        self.entry.as_ref()
    }

    /// Number of arguments of the member's prototype.
    pub fn nargs(&self) -> usize {
        self.nargs
    }
}

/// A finished ops table: the kernel's `kvalue.data` plus one implementation per function
/// member. Immutable once built; shared by the map, the host and in-flight calls.
pub struct OpsTable {
    ty: Arc<OpsType>,
    map: Weak<Map>,
    map_id: u32,
    refs: Arc<AtomicI64>,
    /// The ops struct, 8-byte aligned (`size` bytes used).
    kdata: Box<[u64]>,
    members: Box<[Option<MemberImpl>]>,
}

impl fmt::Debug for OpsTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpsTable")
            .field("type", &self.ty.name)
            .field("map_id", &self.map_id)
            .field(
                "progs",
                &self
                    .members
                    .iter()
                    .map(|m| m.as_ref().map(|m| m.prog.id()))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

thread_local! {
    /// One interpreter per thread for [`OpsTable::call`] (its stack is reused).
    static INTERP: RefCell<Option<Interpreter>> = const { RefCell::new(None) };
}

impl OpsTable {
    /// The ops type.
    pub fn ops_type(&self) -> &Arc<OpsType> {
        &self.ty
    }

    /// The id of the map this table belongs to.
    pub fn map_id(&self) -> u32 {
        self.map_id
    }

    /// The ops struct as the host sees it (`kvalue.data`): data members as set, and in
    /// each function member the address of its native entry point
    /// ([`MemberImpl::entry`]; 0 for members without one), so a host can call through
    /// it as a kernel subsystem calls through its ops struct ([`OpsTable::ops`]).
    pub fn kdata(&self) -> &[u8] {
        let len = self.ty.size as usize;
        // SAFETY: `kdata` holds at least `size` bytes (rounded up to words); u8 has no
        // alignment or validity requirements.
        unsafe { std::slice::from_raw_parts(self.kdata.as_ptr().cast::<u8>(), len) }
    }

    /// The address of `kdata` (stable for the table's life).
    pub fn kdata_ptr(&self) -> *const u8 {
        self.kdata.as_ptr().cast()
    }

    /// `kdata` as the host's own `#[repr(C)]` mirror `T` of the ops struct: function
    /// members are `Option<unsafe extern "C" fn(..)>`s that call the programs natively.
    /// `None` unless `T` declares this table's ops type and has its size. The reference
    /// lives as long as the borrow of the table (an [`OpsSlot`] guard keeps it).
    ///
    /// # Example
    ///
    /// The `cache_ops` host of [`crate::loader::LoadedObject::attach_struct_ops`] (hidden
    /// here): the native pointer and [`OpsTable::call`] run the same program.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use structops::loader::{LoadOptions, ObjectLoader};
    /// # use structops::struct_ops::{MemberInfo, add_value_type};
    /// # use structops::{Errno, Link, OpsSlot, OpsStruct, OpsTable, Runtime, StructOps, StructOpsDesc};
    /// # use structops_btf::host::{BtfTypes, CChar};
    /// # use structops_btf_derive::Btf;
    /// # #[derive(Btf)]
    /// # #[repr(C)]
    /// # #[btf(name = "cache_entry")]
    /// # struct CacheEntry { key: u64, hits: u64, size: u32, slot: u32 }
    /// # #[derive(Btf)]
    /// # #[repr(C)]
    /// # #[btf(name = "cache_ctx")]
    /// # struct CacheCtx { requests: u64, capacity: u32, used: u32 }
    /// # #[derive(Btf)]
    /// # #[repr(C)]
    /// # #[btf(name = "cache_ops")]
    /// # struct CacheOps {
    /// #     admit: Option<unsafe extern "C" fn(e: *mut CacheEntry) -> i32>,
    /// #     access: Option<unsafe extern "C" fn(e: *mut CacheEntry)>,
    /// #     evict: Option<unsafe extern "C" fn(ctx: *mut CacheCtx) -> u32>,
    /// #     name: [CChar; 16],
    /// # }
    /// # // SAFETY: the host BTF's `cache_ops` is derived from this very type.
    /// # unsafe impl OpsStruct for CacheOps {
    /// #     const NAME: &'static str = "cache_ops";
    /// # }
    /// # #[derive(Default)]
    /// # struct Host {
    /// #     current: OpsSlot,
    /// # }
    /// # impl StructOps for Host {
    /// #     fn init_member(&self, m: &MemberInfo, kdata: &mut [u8], udata: &[u8]) -> Result<bool, Errno> {
    /// #         let at = m.offset as usize..(m.offset + m.size) as usize;
    /// #         if m.name != "name" {
    /// #             return Ok(false);
    /// #         }
    /// #         match (kdata.get_mut(at.clone()), udata.get(at)) {
    /// #             (Some(dst), Some(src)) => dst.copy_from_slice(src),
    /// #             _ => return Err(Errno::EINVAL),
    /// #         }
    /// #         Ok(true)
    /// #     }
    /// #     fn reg(&self, table: &Arc<OpsTable>, _: Option<&Link>) -> Result<(), Errno> {
    /// #         self.current.store(Some(table.clone()));
    /// #         Ok(())
    /// #     }
    /// #     fn unreg(&self, table: &Arc<OpsTable>, _: Option<&Link>) {
    /// #         self.current.clear_if(table);
    /// #     }
    /// # }
    /// # let rt = Runtime::default();
    /// # let mut types = BtfTypes::new();
    /// # let ops = types.id_of::<CacheOps>();
    /// # let mut btf = types.into_builder();
    /// # add_value_type(&mut btf, ops, "cache_ops").expect("cache_ops is a struct");
    /// # rt.register_host_btf(btf.build())?;
    /// # let host = Arc::new(Host::default());
    /// # rt.register_struct_ops(StructOpsDesc::new("cache_ops", host.clone()))?;
    /// # let bytes = include_bytes!("../../../../bpf/cache_policy.bpf.o");
    /// # let obj = ObjectLoader::open(bytes, "cache_policy.bpf.o")?.load(&rt, &LoadOptions::default())?;
    /// # let link = obj.attach_struct_ops(&rt, "lru")?;
    /// let guard = structops::read_lock();
    /// let table = host.current.load(&guard).expect("lru is registered");
    /// let ops: &CacheOps = table.ops::<CacheOps>().expect("the table is a cache_ops");
    /// let admit = ops.admit.expect("lru implements admit");
    ///
    /// let mut entry = CacheEntry { key: 1, hits: 0, size: 1 << 20, slot: u32::MAX };
    /// // SAFETY: `admit` takes a `struct cache_entry *`, and `entry` is one.
    /// let native = unsafe { admit(&mut entry) };
    /// let index = table.ops_type().member("admit").expect("a member").index;
    /// let arg = std::ptr::from_mut(&mut entry) as u64;
    /// let interpreted = table.call(&rt, index, &[arg])?;
    /// assert_eq!((native, interpreted as i32), (-7, -7)); // -E2BIG: too large to cache
    ///
    /// // Another ops type's mirror is refused.
    /// #[repr(C)]
    /// struct OtherOps {
    ///     f: Option<unsafe extern "C" fn() -> i32>,
    /// }
    /// // SAFETY: never used for a table of this type (`ops` checks the name).
    /// unsafe impl OpsStruct for OtherOps {
    ///     const NAME: &'static str = "other_ops";
    /// }
    /// assert!(table.ops::<OtherOps>().is_none());
    /// # drop(guard);
    /// # link.detach(&rt)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ops<T: OpsStruct>(&self) -> Option<&T> {
        if self.ty.name != T::NAME
            || std::mem::size_of::<T>() != self.ty.size as usize
            || std::mem::align_of::<T>() > 8
        {
            return None;
        }
        // SAFETY: `kdata` is 8-aligned and holds `size` bytes, which `T` (by its
        // `OpsStruct` contract, checked by name and size here) lays out exactly as the
        // ops struct; function members hold entry point addresses or 0, which are valid
        // `Option<extern "C" fn>` values; the table owns the entry points.
        Some(unsafe { &*self.kdata.as_ptr().cast::<T>() })
    }

    /// The implementation of member `member`, if a program implements it.
    pub fn member(&self, member: u32) -> Option<&MemberImpl> {
        self.members.get(member as usize)?.as_ref()
    }

    /// The implementation of the member named `name`.
    pub fn member_by_name(&self, name: &str) -> Option<&MemberImpl> {
        self.member(self.ty.member(name)?.index)
    }

    /// `bpf_struct_ops_get(kdata)`: a counted reference on the table's map, `None` once
    /// the map is being freed.
    pub fn get(&self) -> Option<OpsRef> {
        OpsRef::new(self.map.upgrade()?, self.refs.clone())
    }

    /// Calls member `member` with `args` (one `u64` per argument of its prototype) and
    /// returns what the program returned in `r0`.
    ///
    /// Runs the member's program on its engine (the JIT or the interpreter, unchecked,
    /// for verified programs; unverified ones only with [`crate::RuntimeConfig::run_unverified`], checked, with
    /// the argument array as their only context). No lock and no shared atomic
    /// read-modify-write happen here; the caller keeps the table alive (an [`OpsSlot`]
    /// guard, or an `Arc`).
    pub fn call(&self, rt: &Runtime, member: u32, args: &[u64]) -> Result<u64, CallError> {
        let imp = self.implementation(member, args.len())?;
        let mut ctx = [0u64; MAX_FUNC_ARGS];
        ctx[..args.len()].copy_from_slice(args);
        run_member(rt, &imp.prog, &mut ctx[..args.len().max(1)], &[], false)
    }

    /// Calls member `member` as [`OpsTable::call`] does, but on the interpreter's checked
    /// mode whatever the program's verification: the program may touch only its stack,
    /// the argument array, `objects` (the host objects its pointer arguments point to,
    /// with the access each allows) and memory its helpers hand out; anything else stops
    /// the run with [`CallError::Vm`] naming the instruction. Loads the verifier made
    /// probes read host memory as in every mode. For debugging a host or a program, and
    /// for testing the verifier: a verified program must never fault here.
    pub fn call_checked(
        &self,
        rt: &Runtime,
        member: u32,
        args: &[u64],
        objects: &[Region<'_>],
    ) -> Result<u64, CallError> {
        let imp = self.implementation(member, args.len())?;
        let mut ctx = [0u64; MAX_FUNC_ARGS];
        ctx[..args.len()].copy_from_slice(args);
        run_member(rt, &imp.prog, &mut ctx[..args.len().max(1)], objects, true)
    }

    /// The implementation of `member`, if it takes `nargs` arguments.
    fn implementation(&self, member: u32, nargs: usize) -> Result<&MemberImpl, CallError> {
        let imp = match self.members.get(member as usize) {
            None => return Err(CallError::NoSuchMember { member }),
            Some(None) => return Err(CallError::NotImplemented { member }),
            Some(Some(m)) => m,
        };
        if nargs != imp.nargs {
            return Err(CallError::Args {
                member,
                expected: imp.nargs,
                given: nargs,
            });
        }
        Ok(imp)
    }
}

/// A host's `#[repr(C)]` Rust mirror of an ops struct, for [`OpsTable::ops`]: data
/// members with the C layout, function members as
/// `Option<unsafe extern "C" fn(..) -> ..>` with the member's C signature.
///
/// # Safety
///
/// The type must have exactly the layout of the host BTF struct named [`Self::NAME`]:
/// same size, every member at its offset with a type of the same size and a valid
/// value for every bit pattern the runtime may store there (function members take
/// entry point addresses or 0), and each function pointer type must match the
/// member's prototype, or calling through it is undefined behaviour.
pub unsafe trait OpsStruct: Sized {
    /// The ops struct's name in the host BTF.
    const NAME: &'static str;
}

/// Runs `prog` once on the argument array `ctx`, with `extra` regions granted in checked
/// mode (`checked`: whatever its verification).
pub(crate) fn run_member(
    rt: &Runtime,
    prog: &Prog,
    ctx: &mut [u64],
    extra: &[Region<'_>],
    checked: bool,
) -> Result<u64, CallError> {
    let (code, mode, engine) = match prog.verification() {
        Verification::Verified(_) if checked => {
            (prog.unverified_code(), Mode::Checked, Engine::Interp)
        }
        Verification::Verified(v) => (v.code(), Mode::Unchecked, v.engine()),
        Verification::Unverified(_) if rt.run_unverified() => {
            (prog.unverified_code(), Mode::Checked, Engine::Interp)
        }
        Verification::Unverified(_) => return Err(CallError::Unverified { prog_id: prog.id() }),
    };
    let guard = crate::read_lock();
    let mut env = ProgEnv::new(&rt.progs, prog, &guard, mode);
    let ctx_addr = ctx.as_mut_ptr().expose_provenance() as u64;
    let ctx_len = std::mem::size_of_val(ctx);
    let r0 = INTERP.with(|cell| {
        let mut slot = cell.borrow_mut();
        let vm = slot.get_or_insert_with(|| Interpreter::with_config(Config::default()));
        match mode {
            Mode::Checked => {
                let mut regions = ProgEnv::initial_regions(prog, &guard);
                regions.extend_from_slice(extra);
                // SAFETY: `ctx` is the caller's argument array, alive and not otherwise
                // borrowed for the whole run.
                let ctx = unsafe { Region::from_raw_parts(ctx_addr, ctx_len, Access::Read) };
                vm.run_checked(code, &mut env, ctx, &regions)
            }
            // SAFETY: only verified programs run unchecked (on either engine); their
            // context is the member's argument array, which the verifier checked their
            // accesses against.
            Mode::Unchecked => unsafe { vm.run(engine, code, &mut env, ctx_addr) },
        }
    })?;
    env.finish()?;
    Ok(r0)
}

/// The host's pointer to its current [`OpsTable`] (the kernel's RCU-protected ops
/// pointer, e.g. `icsk_ca_ops`): lock-free loads, deferred reclamation of replaced
/// tables.
///
/// # Example
///
/// The `cache_ops` host of [`crate::loader::LoadedObject::attach_struct_ops`] (its types
/// are hidden here), with hot swap: a link update moves its registration from the
/// `lru` table to the `fifo` one.
///
/// ```
/// # use std::sync::Arc;
/// # use structops::loader::{LoadOptions, ObjectLoader};
/// # use structops::struct_ops::{MemberInfo, add_value_type};
/// # use structops::{Errno, Link, OpsSlot, OpsStruct, OpsTable, Runtime, StructOps, StructOpsDesc};
/// # use structops_btf::host::{BtfTypes, CChar};
/// # use structops_btf_derive::Btf;
/// # #[derive(Btf)]
/// # #[repr(C)]
/// # #[btf(name = "cache_entry")]
/// # struct CacheEntry { key: u64, hits: u64, size: u32, slot: u32 }
/// # #[derive(Btf)]
/// # #[repr(C)]
/// # #[btf(name = "cache_ctx")]
/// # struct CacheCtx { requests: u64, capacity: u32, used: u32 }
/// # #[derive(Btf)]
/// # #[repr(C)]
/// # #[btf(name = "cache_ops")]
/// # struct CacheOps {
/// #     admit: Option<unsafe extern "C" fn(e: *mut CacheEntry) -> i32>,
/// #     access: Option<unsafe extern "C" fn(e: *mut CacheEntry)>,
/// #     evict: Option<unsafe extern "C" fn(ctx: *mut CacheCtx) -> u32>,
/// #     name: [CChar; 16],
/// # }
/// # // SAFETY: the host BTF's `cache_ops` is derived from this very type.
/// # unsafe impl OpsStruct for CacheOps {
/// #     const NAME: &'static str = "cache_ops";
/// # }
/// #[derive(Default)]
/// struct Host {
///     current: OpsSlot,
/// }
///
/// impl StructOps for Host {
/// #     fn init_member(&self, m: &MemberInfo, kdata: &mut [u8], udata: &[u8]) -> Result<bool, Errno> {
/// #         let at = m.offset as usize..(m.offset + m.size) as usize;
/// #         if m.name != "name" {
/// #             return Ok(false);
/// #         }
/// #         match (kdata.get_mut(at.clone()), udata.get(at)) {
/// #             (Some(dst), Some(src)) => dst.copy_from_slice(src),
/// #             _ => return Err(Errno::EINVAL),
/// #         }
/// #         Ok(true)
/// #     }
///     fn reg(&self, table: &Arc<OpsTable>, _: Option<&Link>) -> Result<(), Errno> {
///         self.current.store(Some(table.clone()));
///         Ok(())
///     }
///     fn unreg(&self, table: &Arc<OpsTable>, _: Option<&Link>) {
///         self.current.clear_if(table);
///     }
///     fn has_update(&self) -> bool {
///         true
///     }
///     fn update(&self, new: &Arc<OpsTable>, old: &Arc<OpsTable>, _: &Link) -> Result<(), Errno> {
///         // Only if `old` is still the current table.
///         if self.current.replace(old, new.clone()) { Ok(()) } else { Err(Errno::EINVAL) }
///     }
/// }
///
/// fn name(table: &OpsTable) -> String {
///     let ops = table.ops::<CacheOps>().expect("a cache_ops table");
///     ops.name.iter().map(|c| char::from(c.0)).take_while(|&c| c != '\0').collect()
/// }
///
/// # let rt = Runtime::default();
/// # let mut types = BtfTypes::new();
/// # let ops = types.id_of::<CacheOps>();
/// # let mut btf = types.into_builder();
/// # add_value_type(&mut btf, ops, "cache_ops").expect("cache_ops is a struct");
/// # rt.register_host_btf(btf.build())?;
/// # let host = Arc::new(Host::default());
/// # rt.register_struct_ops(StructOpsDesc::new("cache_ops", host.clone()))?;
/// # let bytes = include_bytes!("../../../../bpf/cache_policy.bpf.o");
/// # let obj = ObjectLoader::open(bytes, "cache_policy.bpf.o")?.load(&rt, &LoadOptions::default())?;
/// let link = obj.attach_struct_ops(&rt, "lru")?;
/// let guard = structops::read_lock();
/// let before = host.current.load(&guard).expect("registered");
/// assert_eq!(name(before), "lru");
///
/// link.update_map(&rt, &obj, "fifo")?;
/// // A caller that loaded the old table keeps it, intact, while its guard lives...
/// assert_eq!(name(before), "lru");
/// drop(guard);
/// // ...and every later load sees the new one.
/// assert_eq!(name(host.current.load(&structops::read_lock()).expect("registered")), "fifo");
/// # link.detach(&rt)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct OpsSlot {
    cur: crossbeam_epoch::Atomic<Arc<OpsTable>>,
}

impl Default for OpsSlot {
    fn default() -> OpsSlot {
        OpsSlot {
            cur: crossbeam_epoch::Atomic::null(),
        }
    }
}

impl fmt::Debug for OpsSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = crate::read_lock();
        f.debug_struct("OpsSlot")
            .field("table", &self.load(&g).map(|t| t.map_id()))
            .finish()
    }
}

impl OpsSlot {
    /// An empty slot.
    pub fn new() -> OpsSlot {
        OpsSlot::default()
    }

    /// The current table, valid while `guard` lives (one acquire load).
    pub fn load<'g>(&self, guard: &'g crate::Guard) -> Option<&'g OpsTable> {
        let p = self.cur.load(Ordering::Acquire, guard);
        // SAFETY: non-null pointers stored here come from `Owned` and are destroyed only
        // through `defer_destroy` after being unlinked, so they outlive `guard`.
        unsafe { p.as_ref() }.map(|a| &**a)
    }

    /// Replaces the current table (`rcu_assign_pointer`); the old one is released after
    /// every guard that could have loaded it is gone. Returns whether a table was there.
    pub fn store(&self, table: Option<Arc<OpsTable>>) -> bool {
        let guard = crate::read_lock();
        let new = match table {
            Some(t) => crossbeam_epoch::Owned::new(t).into_shared(&guard),
            None => crossbeam_epoch::Shared::null(),
        };
        let old = self.cur.swap(new, Ordering::AcqRel, &guard);
        if old.is_null() {
            return false;
        }
        // SAFETY: `old` is unlinked; readers that loaded it hold guards pinned no later
        // than now, and destruction waits for them.
        unsafe { guard.defer_destroy(old) };
        true
    }

    /// Replaces the table only if the current one is `expected` (by identity). Returns
    /// whether it did.
    pub fn replace(&self, expected: &OpsTable, table: Arc<OpsTable>) -> bool {
        let guard = crate::read_lock();
        let cur = self.cur.load(Ordering::Acquire, &guard);
        // SAFETY: as in `load`.
        let same = unsafe { cur.as_ref() }.is_some_and(|a| std::ptr::eq(&**a, expected));
        if !same {
            return false;
        }
        let new = crossbeam_epoch::Owned::new(table);
        match self
            .cur
            .compare_exchange(cur, new, Ordering::AcqRel, Ordering::Acquire, &guard)
        {
            Ok(_) => {
                // SAFETY: `cur` is unlinked now; see `store`.
                unsafe { guard.defer_destroy(cur) };
                true
            }
            Err(_) => false,
        }
    }

    /// Empties the slot if it holds `expected`. Returns whether it did.
    pub fn clear_if(&self, expected: &OpsTable) -> bool {
        let guard = crate::read_lock();
        let cur = self.cur.load(Ordering::Acquire, &guard);
        // SAFETY: as in `load`.
        let same = unsafe { cur.as_ref() }.is_some_and(|a| std::ptr::eq(&**a, expected));
        if !same {
            return false;
        }
        match self.cur.compare_exchange(
            cur,
            crossbeam_epoch::Shared::null(),
            Ordering::AcqRel,
            Ordering::Acquire,
            &guard,
        ) {
            Ok(_) => {
                // SAFETY: unlinked; see `store`.
                unsafe { guard.defer_destroy(cur) };
                true
            }
            Err(_) => false,
        }
    }
}

impl Drop for OpsSlot {
    fn drop(&mut self) {
        self.store(None);
    }
}

/// The runtime's struct_ops state: registered types, the link table and the
/// `update_mutex`.
pub(crate) struct Registry {
    types: RwLock<Vec<Arc<OpsType>>>,
    /// The runtime's program registry, which members' native entry points run with.
    pub(crate) progs: Arc<crate::prog::ProgRegistry>,
    pub(crate) links: Arc<IdTable<Link>>,
    pub(crate) update_lock: Mutex<()>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("types", &self.types.read().map(|t| t.len()).unwrap_or(0))
            .field("links", &self.links)
            .finish()
    }
}

impl Registry {
    pub(crate) fn new(progs: Arc<crate::prog::ProgRegistry>, max_links: usize) -> Registry {
        Registry {
            types: RwLock::new(Vec::new()),
            progs,
            links: IdTable::with_limit(max_links),
            update_lock: Mutex::new(()),
        }
    }

    pub(crate) fn types(&self) -> Vec<Arc<OpsType>> {
        self.types.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `bpf_struct_ops_find_value` on `btf`.
    pub(crate) fn find_value(&self, btf: &Arc<BtfObject>, value_id: u32) -> Option<Arc<OpsType>> {
        if value_id == 0 {
            return None;
        }
        self.types()
            .into_iter()
            .find(|t| Arc::ptr_eq(&t.btf, btf) && t.value_id == value_id)
    }

    /// `bpf_struct_ops_find` on `btf`.
    pub(crate) fn find(&self, btf: &Arc<BtfObject>, type_id: u32) -> Option<Arc<OpsType>> {
        if type_id == 0 {
            return None;
        }
        self.types()
            .into_iter()
            .find(|t| Arc::ptr_eq(&t.btf, btf) && t.type_id == type_id)
    }
}

/// `__get_type_size`: the size of the type `id` resolves to (pointers 8, void 0), or
/// `None` for kinds a function model cannot hold; with the resolved kind.
fn model_type_size(btf: &Btf, id: TypeId) -> Option<(u32, Kind)> {
    if id == 0 {
        return Some((0, Kind::Void));
    }
    let rid = btf.resolve(id).ok()?;
    let t = btf.ty(rid).ok()?;
    match &t.kind {
        TypeKind::Ptr { .. } => Some((8, Kind::Ptr)),
        TypeKind::Int { size, .. } => Some((*size, Kind::Int)),
        TypeKind::Enum(e) | TypeKind::Enum64(e) => Some((e.size, t.kind())),
        TypeKind::Struct(c) | TypeKind::Union(c) => Some((c.size, t.kind())),
        _ => None,
    }
}

/// The native signature of a function member for an entry point: integer kinds with
/// their signedness, pointers, structs by value. `None` when a type has no native form
/// here (the member is then called through [`OpsTable::call`] only).
pub(crate) fn entry_model(btf: &Btf, proto: TypeId) -> Option<structops_vm::FuncModel> {
    use structops_vm::{ArgKind, RetKind};
    /// `(size, signed, pointer, by-value struct)` of the type `id` resolves to: the
    /// function model's size and kind, plus the signedness of integers and enums.
    fn shape(btf: &Btf, id: TypeId) -> Option<(u32, bool, bool, bool)> {
        let (size, kind) = model_type_size(btf, id)?;
        let signed = match btf.resolved_ty(id).ok().map(|(_, t)| &t.kind) {
            Some(TypeKind::Int { encoding, .. }) => encoding & structops_btf::INT_SIGNED != 0,
            Some(TypeKind::Enum(e) | TypeKind::Enum64(e)) => e.signed,
            _ => false,
        };
        Some((
            size,
            signed,
            kind == Kind::Ptr,
            matches!(kind, Kind::Struct | Kind::Union),
        ))
    }
    let (ret, params) = btf.func_proto(proto).ok()?;
    let ret = if ret == 0 {
        RetKind::Void
    } else {
        match shape(btf, ret)? {
            (_, _, true, _) => RetKind::Ptr,
            (_, _, _, true) => return None,
            (1, false, ..) => RetKind::U8,
            (2, false, ..) => RetKind::U16,
            (4, false, ..) => RetKind::U32,
            (8, false, ..) => RetKind::U64,
            (1, true, ..) => RetKind::I8,
            (2, true, ..) => RetKind::I16,
            (4, true, ..) => RetKind::I32,
            (8, true, ..) => RetKind::I64,
            _ => return None,
        }
    };
    let mut args = Vec::with_capacity(params.len());
    for p in params {
        args.push(match shape(btf, p.ty)? {
            (_, _, true, _) => ArgKind::Ptr,
            (size, _, _, true) => ArgKind::Struct {
                size: u8::try_from(size).ok()?,
            },
            (1, false, ..) => ArgKind::U8,
            (2, false, ..) => ArgKind::U16,
            (4, false, ..) => ArgKind::U32,
            (8, false, ..) => ArgKind::U64,
            (1, true, ..) => ArgKind::I8,
            (2, true, ..) => ArgKind::I16,
            (4, true, ..) => ArgKind::I32,
            (8, true, ..) => ArgKind::I64,
            _ => return None,
        });
    }
    structops_vm::FuncModel::new(args, ret).ok()
}

/// The environment a member's native entry point runs its program with: the runtime's
/// program registry (shared, so the entry point does not borrow the runtime) and the
/// program. One call = one read section and one [`ProgEnv`], as [`OpsTable::call`].
struct MemberEnv {
    progs: Arc<crate::prog::ProgRegistry>,
    prog: Arc<Prog>,
}

impl structops_vm::EntryEnv for MemberEnv {
    fn with_env(
        &self,
        run: &mut dyn FnMut(&mut dyn structops_vm::Env) -> Result<u64, structops_vm::VmError>,
    ) -> Result<u64, structops_vm::VmError> {
        let guard = crate::read_lock();
        let mut env = ProgEnv::new(&self.progs, &self.prog, &guard, Mode::Unchecked);
        let r0 = run(&mut env)?;
        env.finish().map_err(|e| structops_vm::VmError::Env {
            pc: 0,
            source: Box::new(e),
        })?;
        Ok(r0)
    }
}

/// The native entry point of a member implemented by `prog`: only for verified
/// programs (they run unchecked) with a native signature; `None` otherwise, or when the
/// code generator refuses (the member stays callable through [`OpsTable::call`]).
pub(crate) fn member_entry(
    progs: &Arc<crate::prog::ProgRegistry>,
    btf: &Btf,
    proto: TypeId,
    prog: &Arc<Prog>,
) -> Option<structops_vm::EntryPoint> {
    let Verification::Verified(v) = prog.verification() else {
        return None;
    };
    let model = entry_model(btf, proto)?;
    let env = Arc::new(MemberEnv {
        progs: progs.clone(),
        prog: prog.clone(),
    });
    match (v.engine(), v.jited()) {
        (Engine::Jit, Some(jit)) => {
            structops_vm::EntryPoint::with_program(v.code(), jit, &model, env).ok()
        }
        _ => structops_vm::EntryPoint::new(v.code(), &model, Engine::Interp, env).ok(),
    }
}

/// `btf_distill_func_proto` (errors are `EINVAL`) plus the `> 8` byte return check
/// (`EOPNOTSUPP`).
fn distill(btf: &Btf, proto: TypeId) -> Result<FuncModel, Errno> {
    let (ret, params) = btf.func_proto(proto).map_err(|_| Errno::EINVAL)?;
    if params.len() > MAX_FUNC_ARGS {
        return Err(Errno::EINVAL);
    }
    let (ret_size, ret_kind) = model_type_size(btf, ret).ok_or(Errno::EINVAL)?;
    if matches!(ret_kind, Kind::Struct | Kind::Union) {
        return Err(Errno::EINVAL);
    }
    let mut m = FuncModel {
        ret_size: ret_size as u8,
        nr_args: params.len() as u8,
        arg_size: [0; MAX_FUNC_ARGS],
    };
    for (i, p) in params.iter().enumerate() {
        if i + 1 == params.len() && p.ty == 0 {
            return Err(Errno::EINVAL);
        }
        let (size, _) = model_type_size(btf, p.ty).ok_or(Errno::EINVAL)?;
        if size == 0 || size > 16 {
            return Err(Errno::EINVAL);
        }
        m.arg_size[i] = size as u8;
    }
    if ret_size > 8 {
        return Err(Errno::EOPNOTSUPP);
    }
    Ok(m)
}

/// `btf_ctx_arg_offset`: arguments occupy whole 8-byte slots (16-byte structs two).
fn ctx_arg_offset(model: &FuncModel, arg: u32) -> u32 {
    model
        .arg_size
        .iter()
        .take(arg as usize)
        .map(|&s| u32::from(s).div_ceil(8) * 8)
        .sum()
}

/// `prepare_arg_info`: the `__nullable` / `__ref` arguments of one member.
fn arg_info(
    btf: &Btf,
    proto: TypeId,
    model: &FuncModel,
    marks: &MemberMarks,
) -> Result<Vec<ArgInfo>, Errno> {
    let (_, params) = btf.func_proto(proto).map_err(|_| Errno::EINVAL)?;
    let mut out = Vec::new();
    for arg in marks.nullable.union(&marks.refcounted) {
        let p = params.get(*arg as usize).ok_or(Errno::EINVAL)?;
        // Must point to a struct.
        let (_, t) = btf.resolved_ty(p.ty).map_err(|_| Errno::EINVAL)?;
        let TypeKind::Ptr { target } = t.kind else {
            return Err(Errno::EINVAL);
        };
        let (sid, st) = btf.resolved_ty(target).map_err(|_| Errno::EINVAL)?;
        if st.kind() != Kind::Struct {
            return Err(Errno::EINVAL);
        }
        out.push(ArgInfo {
            arg: *arg,
            offset: ctx_arg_offset(model, *arg),
            btf_id: sid,
            nullable: marks.nullable.contains(arg),
            refcounted: marks.refcounted.contains(arg),
        });
    }
    Ok(out)
}

/// `is_module_member`: a pointer to a struct (or forward declaration) named `module`.
fn is_module_member(btf: &Btf, ty: TypeId) -> bool {
    let Ok((_, t)) = btf.resolved_ty(ty) else {
        return false;
    };
    let TypeKind::Ptr { target } = t.kind else {
        return false;
    };
    let Ok((_, pt)) = btf.resolved_ty(target) else {
        return false;
    };
    matches!(pt.kind(), Kind::Struct | Kind::Fwd) && btf.name(pt.name_off).ok() == Some("module")
}

/// `bpf_struct_ops_desc_init`: the checks, in the kernel's order, with its errnos.
fn desc_init(desc: &StructOpsDesc, host: &Arc<BtfObject>) -> Result<OpsType, Errno> {
    let btf = host.btf();
    let value_name = format!("{VALUE_PREFIX}{}", desc.name);
    // `value_name[128]`, NUL included.
    if value_name.len() >= 128 {
        return Err(Errno::EINVAL);
    }
    let type_id = btf
        .find_by_name_kind(&desc.name, Kind::Struct)
        .ok_or(Errno::EINVAL)?;
    let t = btf.ty(type_id).map_err(|_| Errno::EINVAL)?;
    let c = t.composite().ok_or(Errno::EINVAL)?;
    if c.members.len() > MAX_MEMBERS {
        return Err(Errno::EINVAL);
    }
    let value_id = btf
        .find_by_name_kind(&value_name, Kind::Struct)
        .ok_or(Errno::EINVAL)?;
    // `is_valid_value_type`.
    let vt = btf.ty(value_id).map_err(|_| Errno::EINVAL)?;
    let vc = vt.composite().ok_or(Errno::EINVAL)?;
    let common = btf.find_by_name_kind(COMMON_VALUE_NAME, Kind::Struct);
    let (Some(m0), Some(m1), 2) = (vc.members.first(), vc.members.get(1), vc.members.len()) else {
        return Err(Errno::EINVAL);
    };
    if Some(m0.ty) != common || m1.ty != type_id {
        return Err(Errno::EINVAL);
    }
    // Markers must name function members that exist (the kernel's stub has the same
    // prototype as the member by construction).
    for (name, _) in &desc.marks {
        let exists = c.members.iter().any(|m| {
            btf.name(m.name_off).ok() == Some(name.as_str())
                && btf.func_ptr_proto(m.ty).ok().flatten().is_some()
        });
        if !exists {
            return Err(Errno::EINVAL);
        }
    }
    let mut members = Vec::with_capacity(c.members.len());
    for (i, m) in c.members.iter().enumerate() {
        let name = btf.name(m.name_off).unwrap_or("");
        if name.is_empty() {
            return Err(Errno::EOPNOTSUPP);
        }
        if m.bitfield_size(c.kflag) != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let offset = m.bit_offset(c.kflag) / 8;
        let size = btf.size_of(m.ty).unwrap_or(0);
        let marks = desc
            .marks
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, mk)| mk.clone())
            .unwrap_or_default();
        let kind = if is_module_member(btf, m.ty) {
            MemberKind::Module
        } else if let Some(proto) = btf.func_ptr_proto(m.ty).ok().flatten() {
            if marks.unsupported {
                MemberKind::Func {
                    proto,
                    supported: false,
                    model: None,
                    args: Vec::new(),
                }
            } else {
                let model = distill(btf, proto)?;
                let args = arg_info(btf, proto, &model, &marks)?;
                MemberKind::Func {
                    proto,
                    supported: true,
                    model: Some(model),
                    args,
                }
            }
        } else {
            MemberKind::Data
        };
        members.push(MemberInfo {
            name: name.to_string(),
            index: i as u32,
            offset,
            size,
            ty: m.ty,
            kind,
        });
    }
    if desc.ops.init(btf).is_err() {
        return Err(Errno::EINVAL);
    }
    Ok(OpsType {
        name: desc.name.clone(),
        ops: desc.ops.clone(),
        btf: host.clone(),
        type_id,
        value_id,
        value_size: vc.size,
        data_off: m1.bit_offset(vc.kflag) / 8,
        size: c.size,
        members,
    })
}

/// Adds the value type `bpf_struct_ops_<name>` of the ops struct `ops_id` (named `name`)
/// to `b` (and `bpf_struct_ops_common_value`, `{ int refcnt; enum bpf_struct_ops_state
/// state; }`, if `b` has none), laid out as the kernel lays its values out: the header at
/// 0, the ops struct at 64, the size a multiple of 64. Returns the value type's id, or
/// `None` if `ops_id` is not a struct of `b`.
pub fn add_value_type(b: &mut BtfBuilder, ops_id: TypeId, name: &str) -> Option<TypeId> {
    let size = match &b.types().get(ops_id as usize)?.kind {
        TypeKind::Struct(c) => c.size,
        _ => return None,
    };
    // `add_string` deduplicates, so this is the name's offset if some type has it.
    let common_off = b.add_string(COMMON_VALUE_NAME);
    let existing = b
        .types()
        .iter()
        .position(|t| t.name_off == common_off && t.kind() == Kind::Struct);
    let common = match existing {
        Some(id) => id as TypeId,
        None => {
            let int = b.add_int("int", 4, structops_btf::INT_SIGNED);
            let state = b.add_enum(
                "bpf_struct_ops_state",
                4,
                false,
                &[
                    ("BPF_STRUCT_OPS_STATE_INIT", 0),
                    ("BPF_STRUCT_OPS_STATE_INUSE", 1),
                    ("BPF_STRUCT_OPS_STATE_TOBEFREE", 2),
                    ("BPF_STRUCT_OPS_STATE_READY", 3),
                ],
            );
            b.add_struct(
                COMMON_VALUE_NAME,
                8,
                &[("refcnt", int, 0), ("state", state, 32)],
            )
        }
    };
    let total = (DATA_ALIGN + size).next_multiple_of(DATA_ALIGN);
    Some(b.add_struct(
        &format!("{VALUE_PREFIX}{name}"),
        total,
        &[("common", common, 0), ("data", ops_id, DATA_ALIGN * 8)],
    ))
}

impl Runtime {
    /// Registers an ops type (`register_bpf_struct_ops`): `desc` is checked against the
    /// host BTF as `bpf_struct_ops_desc_init` checks it — `EINVAL` for a name too long, no
    /// such struct, more than 64 members, no valid value type `bpf_struct_ops_<name>`, a
    /// function member whose prototype has more than 12 arguments, a struct return, varargs
    /// or an argument wider than 16 bytes, or a `__nullable`/`__ref` mark on something that
    /// is not a pointer to a struct; `EOPNOTSUPP` for an anonymous or bitfield member or a
    /// return value wider than 8 bytes; `EINVAL` when `init` fails. `EEXIST` if a type of
    /// that name is registered, `EINVAL` without a host BTF.
    pub fn register_struct_ops(&self, desc: StructOpsDesc) -> Result<Arc<OpsType>, Errno> {
        let host = self.host_btf().ok_or(Errno::EINVAL)?;
        let host = host.object().clone();
        let mut types = self
            .struct_ops
            .types
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if types.iter().any(|t| t.name == desc.name) {
            return Err(Errno::EEXIST);
        }
        let ty = Arc::new(desc_init(&desc, &host)?);
        types.push(ty.clone());
        Ok(ty)
    }

    /// Unregisters the ops type `name` (the analog of unloading its module): no new maps
    /// can be created for it; existing maps, links and tables keep working. `ENOENT` if
    /// no such type is registered.
    pub fn unregister_struct_ops(&self, name: &str) -> Result<(), Errno> {
        let mut types = self
            .struct_ops
            .types
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let i = types
            .iter()
            .position(|t| t.name == name)
            .ok_or(Errno::ENOENT)?;
        types.remove(i);
        Ok(())
    }

    /// The registered ops types.
    pub fn struct_ops_types(&self) -> Vec<Arc<OpsType>> {
        self.struct_ops.types()
    }

    /// `bpf_struct_ops_find(btf_vmlinux, type_id)`: the registered ops type whose struct
    /// is `type_id` in the current host BTF. This is the hook `prog_load` uses for
    /// struct_ops programs (`attach_btf_id`), e.g. for [`OpsType::check_member`].
    pub fn struct_ops_find(&self, type_id: u32) -> Option<Arc<OpsType>> {
        let host = self.host_btf()?;
        self.struct_ops.find(host.object(), type_id)
    }

    /// `bpf_struct_ops_find_value(btf_vmlinux, value_id)`.
    pub fn struct_ops_find_value(&self, value_id: u32) -> Option<Arc<OpsType>> {
        let host = self.host_btf()?;
        self.struct_ops.find_value(host.object(), value_id)
    }
}

/// A registered ops type as the verifier sees it (`structops_verifier::StructOpsType`):
/// what `prog_load` hands the verifier for a struct_ops program whose `attach_btf_id` is
/// a registered type ([`Runtime::struct_ops_find`]).
#[derive(Clone, Debug)]
pub struct VerifierOps {
    ty: Arc<OpsType>,
    caps: crate::caps::Capabilities,
    host_helpers: Vec<crate::helpers::HelperProto>,
}

impl VerifierOps {
    /// The verifier's view of `ty` for a program loaded with `caps`.
    pub fn new(ty: Arc<OpsType>, caps: crate::caps::Capabilities) -> VerifierOps {
        VerifierOps {
            ty,
            caps,
            host_helpers: Vec::new(),
        }
    }

    /// With the host helpers registered for struct_ops programs: the prototypes an
    /// allowed helper id the runtime does not implement resolves to.
    pub fn with_host_helpers(mut self, helpers: Vec<crate::helpers::HelperProto>) -> VerifierOps {
        self.host_helpers = helpers;
        self
    }

    /// The host BTF struct helper `helper` wants in `ARG_PTR_TO_BTF_ID` argument `arg`
    /// ([`StructOps::helper_arg_btf_id`]).
    pub fn helper_arg_btf_id(&self, helper: i32, arg: usize) -> Option<u32> {
        self.ty
            .ops
            .helper_arg_btf_id(self.ty.btf.btf(), helper, arg)
    }

    /// The ops type.
    pub fn ops_type(&self) -> &Arc<OpsType> {
        &self.ty
    }
}

impl structops_verifier::StructOpsType for VerifierOps {
    fn name(&self) -> &str {
        &self.ty.name
    }

    fn member_supported(&self, moff: u32) -> bool {
        self.ty.member_supported(moff)
    }

    fn check_member(&self, member_idx: u32, _moff: u32, sleepable: bool) -> Result<(), i32> {
        self.ty.check_member(member_idx, sleepable).map_err(|e| e.0)
    }

    fn struct_write(
        &self,
        btf: &Btf,
        btf_id: u32,
        off: i32,
        size: u32,
    ) -> Option<Result<(), structops_verifier::HookError>> {
        self.ty
            .ops
            .struct_write(btf, btf_id, off, size)
            .map(|r| r.map_err(structops_verifier::HookError::eacces))
    }

    fn helper(&self, id: i32, member_idx: u32) -> Option<crate::helpers::HelperProto> {
        let member = self.ty.members.get(member_idx as usize)?;
        if !self.ty.ops.helper_allowed(id, member) {
            return None;
        }
        if let Some(p) =
            crate::helpers::func_proto(crate::prog::ProgType::STRUCT_OPS, id, self.caps)
        {
            return Some(*p);
        }
        if crate::helpers::builtin(id).is_some() {
            return None;
        }
        self.host_helpers.iter().find(|p| p.id == id).copied()
    }

    fn ctx_arg_btf_id(&self, btf_id: u32) -> u32 {
        self.ty.ops.ctx_arg_btf_id(self.ty.btf.btf(), btf_id)
    }

    /// The `__nullable` / `__ref` marks the host gave the member's arguments
    /// ([`StructOpsDesc::nullable`], [`StructOpsDesc::refcounted`]), for host BTFs
    /// without the kernel's stub functions.
    fn arg_marks(&self, member_idx: u32, arg: u32) -> (bool, bool) {
        self.ty
            .members
            .get(member_idx as usize)
            .and_then(|m| m.arg_info(arg))
            .map_or((false, false), |a| (a.nullable, a.refcounted))
    }
}
