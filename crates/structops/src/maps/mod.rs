//! Maps: creation with the kernel's attribute checks, the syscall-side operations with
//! the kernel's errnos, and the program-side access functions the helpers build on.
//!
//! Types: `HASH`, `ARRAY` (incl. mmap-able global data), `PROG_ARRAY`, `PERCPU_HASH`,
//! `PERCPU_ARRAY`, `LRU_HASH`, `LRU_PERCPU_HASH`, `ARRAY_OF_MAPS`, `HASH_OF_MAPS`,
//! `SK_STORAGE`/`TASK_STORAGE` (host-object local storage), `QUEUE`, `STACK` and
//! `RINGBUF`. Other kernel map
//! types are refused with `EINVAL`, as a kernel built without them would.
//!
//! Memory safety of program-side pointers: array values never move or go away while the
//! map lives; hash elements, local-storage values and fd-array slots are freed through
//! `crossbeam-epoch`, so a pointer obtained under a [`Guard`] stays valid until the guard
//! is dropped (the runtime's `rcu_read_lock`, held around every program run).

pub(crate) mod area;
pub(crate) mod array;
pub(crate) mod fd_array;
pub(crate) mod hash;
pub(crate) mod jhash;
pub(crate) mod local_storage;
pub(crate) mod lru;
mod prog_iter;
pub(crate) mod queue_stack;
pub mod ringbuf;
pub(crate) mod seq_show;

use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use crossbeam_epoch::Guard;
use structops_btf::{Btf, Kind, Type, TypeId, TypeKind};

use self::array::{ArrayMap, PAGE_SIZE};
use self::fd_array::FdArray;
pub use self::fd_array::{Slot, TailCallTarget};
use self::hash::{ElemCharge, Flavor, HashTab, NewVal, NodeVal};
use self::local_storage::LocalStorageMap;
pub use self::local_storage::{BPF_LOCAL_STORAGE_GET_F_CREATE, HostObject};
use self::queue_stack::QueueStack;
pub use self::ringbuf::RingBuf;
use crate::btf_obj::BtfObject;
use crate::caps::Capabilities;
use crate::cpu::current_cpu;
use crate::errno::Errno;
use crate::fd::FdTable;
use crate::memcg::{Charge, MemCgroup};
use crate::object::{AccessMode, Handle, IdTable, KernelObject, ObjHeader, ObjKind};

/// `BPF_ANY`: create or update.
pub const BPF_ANY: u64 = 0;
/// `BPF_NOEXIST`: create only.
pub const BPF_NOEXIST: u64 = 1;
/// `BPF_EXIST`: update only.
pub const BPF_EXIST: u64 = 2;
/// `BPF_F_LOCK`: update or copy under the value's `bpf_spin_lock`.
pub const BPF_F_LOCK: u64 = 4;

/// `BPF_F_NO_PREALLOC`.
pub const BPF_F_NO_PREALLOC: u32 = 1 << 0;
/// `BPF_F_NO_COMMON_LRU`: one LRU per CPU.
pub const BPF_F_NO_COMMON_LRU: u32 = 1 << 1;
/// `BPF_F_NUMA_NODE`: `numa_node` is valid.
pub const BPF_F_NUMA_NODE: u32 = 1 << 2;
/// `BPF_F_RDONLY`: the returned handle is read-only from the syscall side.
pub const BPF_F_RDONLY: u32 = 1 << 3;
/// `BPF_F_WRONLY`: the returned handle is write-only from the syscall side.
pub const BPF_F_WRONLY: u32 = 1 << 4;
/// `BPF_F_STACK_BUILD_ID`.
pub const BPF_F_STACK_BUILD_ID: u32 = 1 << 5;
/// `BPF_F_ZERO_SEED`: hash seed 0 (needs `CAP_SYS_ADMIN`).
pub const BPF_F_ZERO_SEED: u32 = 1 << 6;
/// `BPF_F_RDONLY_PROG`: programs may only read.
pub const BPF_F_RDONLY_PROG: u32 = 1 << 7;
/// `BPF_F_WRONLY_PROG`: programs may only write.
pub const BPF_F_WRONLY_PROG: u32 = 1 << 8;
/// `BPF_F_CLONE`: clone local storage with its owner.
pub const BPF_F_CLONE: u32 = 1 << 9;
/// `BPF_F_MMAPABLE`: the array's values can be mapped.
pub const BPF_F_MMAPABLE: u32 = 1 << 10;
/// `BPF_F_PRESERVE_ELEMS`.
pub const BPF_F_PRESERVE_ELEMS: u32 = 1 << 11;
/// `BPF_F_INNER_MAP`: an inner-map template whose `max_entries` may differ.
pub const BPF_F_INNER_MAP: u32 = 1 << 12;
/// `BPF_F_TOKEN_FD`.
pub const BPF_F_TOKEN_FD: u32 = 1 << 16;

const BPF_F_ACCESS_MASK: u32 = BPF_F_RDONLY | BPF_F_RDONLY_PROG | BPF_F_WRONLY | BPF_F_WRONLY_PROG;
const ARRAY_CREATE_FLAG_MASK: u32 =
    BPF_F_NUMA_NODE | BPF_F_MMAPABLE | BPF_F_ACCESS_MASK | BPF_F_PRESERVE_ELEMS | BPF_F_INNER_MAP;
const HTAB_CREATE_FLAG_MASK: u32 =
    BPF_F_NO_PREALLOC | BPF_F_NO_COMMON_LRU | BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK | BPF_F_ZERO_SEED;
const LOCAL_STORAGE_CREATE_FLAG_MASK: u32 = BPF_F_NO_PREALLOC | BPF_F_CLONE;
const RINGBUF_CREATE_FLAG_MASK: u32 = BPF_F_NUMA_NODE;
const QUEUE_STACK_CREATE_FLAG_MASK: u32 = BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK;

/// `PCPU_MIN_UNIT_SIZE`: the largest per-CPU value.
const PCPU_MIN_UNIT_SIZE: u32 = 32 << 10;
/// `KMALLOC_MAX_SIZE` on x86-64.
const KMALLOC_MAX_SIZE: u64 = 4 << 20;
/// `sizeof(struct htab_elem)`.
const HTAB_ELEM_SIZE: u64 = 48;
/// `BPF_LOCAL_STORAGE_MAX_VALUE_SIZE`: `U16_MAX - sizeof(struct bpf_local_storage_elem)`.
const LOCAL_STORAGE_MAX_VALUE_SIZE: u32 = 0xffff - 128;
/// `NUMA_NO_NODE`.
const NUMA_NO_NODE: u32 = u32::MAX;

/// The map types (`enum bpf_map_type`) this runtime implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum MapType {
    /// `BPF_MAP_TYPE_HASH`.
    Hash = 1,
    /// `BPF_MAP_TYPE_ARRAY`.
    Array = 2,
    /// `BPF_MAP_TYPE_PROG_ARRAY`.
    ProgArray = 3,
    /// `BPF_MAP_TYPE_PERCPU_HASH`.
    PercpuHash = 5,
    /// `BPF_MAP_TYPE_PERCPU_ARRAY`.
    PercpuArray = 6,
    /// `BPF_MAP_TYPE_LRU_HASH`.
    LruHash = 9,
    /// `BPF_MAP_TYPE_LRU_PERCPU_HASH`.
    LruPercpuHash = 10,
    /// `BPF_MAP_TYPE_ARRAY_OF_MAPS`.
    ArrayOfMaps = 12,
    /// `BPF_MAP_TYPE_HASH_OF_MAPS`.
    HashOfMaps = 13,
    /// `BPF_MAP_TYPE_QUEUE`: keyless FIFO of values.
    Queue = 22,
    /// `BPF_MAP_TYPE_STACK`: keyless LIFO of values.
    Stack = 23,
    /// `BPF_MAP_TYPE_SK_STORAGE`: local storage keyed by a [`HostObject`].
    SkStorage = 24,
    /// `BPF_MAP_TYPE_STRUCT_OPS`: an ops table (see [`crate::struct_ops`]).
    StructOps = 26,
    /// `BPF_MAP_TYPE_RINGBUF`.
    Ringbuf = 27,
    /// `BPF_MAP_TYPE_TASK_STORAGE`: local storage keyed by a [`HostObject`].
    TaskStorage = 29,
}

impl MapType {
    /// The type with raw value `raw`, if this runtime implements it.
    pub fn from_raw(raw: u32) -> Option<MapType> {
        Some(match raw {
            1 => MapType::Hash,
            2 => MapType::Array,
            3 => MapType::ProgArray,
            5 => MapType::PercpuHash,
            6 => MapType::PercpuArray,
            9 => MapType::LruHash,
            10 => MapType::LruPercpuHash,
            12 => MapType::ArrayOfMaps,
            13 => MapType::HashOfMaps,
            22 => MapType::Queue,
            23 => MapType::Stack,
            24 => MapType::SkStorage,
            26 => MapType::StructOps,
            27 => MapType::Ringbuf,
            29 => MapType::TaskStorage,
            _ => return None,
        })
    }

    /// The raw `bpf_map_type` value.
    pub fn raw(self) -> u32 {
        self as u32
    }

    /// Per-CPU values (`round_up(value_size, 8) * ncpus` from the syscall side).
    pub fn is_percpu(self) -> bool {
        matches!(
            self,
            MapType::PercpuHash | MapType::PercpuArray | MapType::LruPercpuHash
        )
    }

    /// Values are descriptors from the syscall side (`IS_FD_MAP`).
    pub fn is_fd_map(self) -> bool {
        matches!(
            self,
            MapType::ProgArray | MapType::ArrayOfMaps | MapType::HashOfMaps
        )
    }

    fn is_local_storage(self) -> bool {
        matches!(self, MapType::SkStorage | MapType::TaskStorage)
    }
}

/// The `BPF_MAP_CREATE` attributes, with the kernel's field names and meanings.
///
/// [`crate::Runtime::map_create`] checks them as the kernel's `map_create` does:
///
/// ```
/// use structops::maps::BPF_F_NO_PREALLOC;
/// use structops::{Errno, MapCreateAttr, MapType, Runtime, BPF_ANY};
///
/// let rt = Runtime::default();
/// let attr = MapCreateAttr::new(MapType::Array, 4, 8, 2).name("counters");
/// let map = rt.map_create(&attr)?;
/// assert_eq!(rt.map_info(&map).max_entries, 2);
/// // Array keys are indexes below max_entries.
/// rt.map_update_elem(&map, Some(&1u32.to_ne_bytes()), &5u64.to_ne_bytes(), BPF_ANY)?;
/// assert_eq!(
///     rt.map_update_elem(&map, Some(&2u32.to_ne_bytes()), &5u64.to_ne_bytes(), BPF_ANY),
///     Err(Errno::E2BIG)
/// );
///
/// // An array's key is always 4 bytes, and arrays are always preallocated.
/// assert_eq!(rt.map_create(&MapCreateAttr::new(MapType::Array, 8, 8, 2)).err(), Some(Errno::EINVAL));
/// let attr = MapCreateAttr::new(MapType::Array, 4, 8, 2).flags(BPF_F_NO_PREALLOC);
/// assert_eq!(rt.map_create(&attr).err(), Some(Errno::EINVAL));
/// # Ok::<(), Errno>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapCreateAttr {
    /// `map_type` (raw, so that unknown types can be requested and refused).
    pub map_type: u32,
    /// `key_size`.
    pub key_size: u32,
    /// `value_size`.
    pub value_size: u32,
    /// `max_entries`.
    pub max_entries: u32,
    /// `map_flags` (`BPF_F_*`).
    pub map_flags: u32,
    /// `inner_map_fd`: a descriptor from [`crate::Runtime::fd_install`].
    pub inner_map_fd: u32,
    /// `numa_node` (used with `BPF_F_NUMA_NODE`).
    pub numa_node: u32,
    /// `map_name`: up to 15 of `[A-Za-z0-9_.]` (Latin-1 letters too), NUL-terminated.
    pub map_name: [u8; 16],
    /// `map_ifindex`: offload device (none exist here).
    pub map_ifindex: u32,
    /// `btf_fd`: a BTF descriptor from [`crate::Runtime::fd_install`].
    pub btf_fd: u32,
    /// `btf_key_type_id`.
    pub btf_key_type_id: u32,
    /// `btf_value_type_id`.
    pub btf_value_type_id: u32,
    /// `btf_vmlinux_value_type_id` (struct_ops maps).
    pub btf_vmlinux_value_type_id: u32,
    /// `map_extra`.
    pub map_extra: u64,
    /// `map_token_fd` (used with `BPF_F_TOKEN_FD`; tokens do not exist here).
    pub map_token_fd: i32,
    /// `value_type_btf_obj_fd` (struct_ops maps with `BPF_F_VTYPE_BTF_OBJ_FD`).
    pub value_type_btf_obj_fd: i32,
}

impl MapCreateAttr {
    /// Attributes for a map of type `ty` with the given sizes.
    pub fn new(ty: MapType, key_size: u32, value_size: u32, max_entries: u32) -> MapCreateAttr {
        MapCreateAttr {
            map_type: ty.raw(),
            key_size,
            value_size,
            max_entries,
            ..MapCreateAttr::default()
        }
    }

    /// Sets `map_flags`.
    pub fn flags(mut self, flags: u32) -> MapCreateAttr {
        self.map_flags = flags;
        self
    }

    /// Sets `map_name` from `name` (truncated to 15 bytes).
    pub fn name(mut self, name: &str) -> MapCreateAttr {
        self.map_name = [0; 16];
        for (d, s) in self.map_name.iter_mut().zip(name.bytes().take(15)) {
            *d = s;
        }
        self
    }
}

/// The useful subset of `struct bpf_map_info`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapInfo {
    /// `type`.
    pub map_type: u32,
    /// `id`.
    pub id: u32,
    /// `key_size`.
    pub key_size: u32,
    /// `value_size`.
    pub value_size: u32,
    /// `max_entries` (as the map holds it: per-CPU LRU maps round it).
    pub max_entries: u32,
    /// `map_flags`, without the handle-only `BPF_F_RDONLY`/`BPF_F_WRONLY`.
    pub map_flags: u32,
    /// `name`.
    pub name: String,
    /// `btf_id` (0 without BTF).
    pub btf_id: u32,
    /// `btf_key_type_id`.
    pub btf_key_type_id: u32,
    /// `btf_value_type_id`.
    pub btf_value_type_id: u32,
    /// `btf_vmlinux_value_type_id`.
    pub btf_vmlinux_value_type_id: u32,
    /// `map_extra`.
    pub map_extra: u64,
}

/// What a map-in-map was created from (`bpf_map_meta_alloc`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct InnerMeta {
    pub(crate) map_type: MapType,
    pub(crate) key_size: u32,
    pub(crate) value_size: u32,
    pub(crate) map_flags: u32,
    pub(crate) max_entries: u32,
}

impl InnerMeta {
    /// `map_meta_equal` of the template's type.
    fn equal(&self, m: &Map) -> bool {
        let base = self.map_type == m.map_type
            && self.key_size == m.key_size
            && self.value_size == m.value_size
            && self.map_flags == m.map_flags;
        if self.map_type == MapType::Array {
            base && (self.map_flags & BPF_F_INNER_MAP != 0 || self.max_entries == m.max_entries)
        } else {
            base
        }
    }
}

enum MapImpl {
    Array(ArrayMap),
    FdArray(FdArray),
    Hash(HashTab),
    Ringbuf(RingBuf),
    QueueStack(QueueStack),
    Storage(LocalStorageMap),
    StructOps(Box<crate::struct_ops::map::StructOpsMap>),
}

/// A map.
pub struct Map {
    header: ObjHeader,
    map_type: MapType,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    map_extra: u64,
    name: String,
    btf: Option<Arc<BtfObject>>,
    btf_key_type_id: u32,
    btf_value_type_id: u32,
    btf_vmlinux_value_type_id: u32,
    ncpus: u32,
    frozen: AtomicBool,
    freeze_lock: Mutex<()>,
    writecnt: AtomicU64,
    inner_meta: Option<InnerMeta>,
    /// The first program that used this `PROG_ARRAY` (`map->owner`).
    prog_owner: Mutex<Option<crate::prog::ProgArrayOwner>>,
    imp: MapImpl,
    /// What the map charged to its runtime's memory account at creation, returned
    /// when the map is freed.
    _charge: Charge,
}

/// A user reference to a map (the analog of a map fd).
pub type MapHandle = Handle<Map>;

impl fmt::Debug for Map {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("id", &self.id())
            .field("type", &self.map_type)
            .field("name", &self.name)
            .field("key_size", &self.key_size)
            .field("value_size", &self.value_size)
            .field("max_entries", &self.max_entries)
            .field("map_flags", &self.map_flags)
            .finish()
    }
}

impl KernelObject for Map {
    const KIND: ObjKind = ObjKind::Map;
    fn header(&self) -> &ObjHeader {
        &self.header
    }

    /// A `PROG_ARRAY` drops its programs when the last user reference goes
    /// (`prog_array_map_clear`), which breaks reference cycles through tail calls.
    fn release_uref(&self) {
        if self.map_type == MapType::ProgArray
            && let MapImpl::FdArray(a) = &self.imp
        {
            a.clear(&crossbeam_epoch::pin());
        }
    }
}

/// What [`create`] needs from the runtime.
pub(crate) struct CreateCtx<'a> {
    pub(crate) caps: Capabilities,
    pub(crate) unprivileged_bpf_disabled: bool,
    pub(crate) ncpus: u32,
    pub(crate) numa_nodes: u32,
    pub(crate) memory_limit: u64,
    /// The runtime's map memory account ([`crate::RuntimeConfig::memory_limit`]).
    pub(crate) memcg: &'a Arc<MemCgroup>,
    pub(crate) fds: &'a FdTable,
    pub(crate) table: &'a Arc<IdTable<Map>>,
    pub(crate) struct_ops: &'a crate::struct_ops::Registry,
    pub(crate) host_btf: Option<Arc<BtfObject>>,
}

/// The kernel's `isalnum` (Latin-1 `lib/ctype.c`), `_` and `.`: the characters
/// `bpf_obj_name_cpy` accepts.
fn name_char_ok(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || (c >= 0xc0 && c != 0xd7 && c != 0xf7)
}

/// `bpf_obj_name_cpy`: `EINVAL` for a bad character or no NUL in 16 bytes.
pub(crate) fn obj_name(raw: &[u8; 16]) -> Result<String, Errno> {
    let end = raw.iter().position(|&b| b == 0).ok_or(Errno::EINVAL)?;
    let name = raw.get(..end).unwrap_or(&[]);
    if !name.iter().all(|&c| name_char_ok(c)) {
        return Err(Errno::EINVAL);
    }
    Ok(name.iter().map(|&c| char::from(c)).collect())
}

/// `btf_type_id_size`: the sized type `id` resolves to and its size, or `None`.
fn type_id_size(btf: &Btf, id: TypeId) -> Option<(&Type, u32)> {
    let sized = |t: &Type, id: TypeId| -> Option<u32> {
        match &t.kind {
            TypeKind::Int { size, .. } | TypeKind::Float { size } => Some(*size),
            TypeKind::Struct(c) | TypeKind::Union(c) => Some(c.size),
            TypeKind::Enum(e) | TypeKind::Enum64(e) => Some(e.size),
            TypeKind::Datasec { size, .. } => Some(*size),
            TypeKind::Array { .. } => btf.size_of(id).ok(),
            TypeKind::Ptr { .. } => Some(8),
            _ => None,
        }
    };
    let t = btf.ty(id).ok()?;
    if matches!(
        t.kind(),
        Kind::Void | Kind::Fwd | Kind::Func | Kind::FuncProto | Kind::DeclTag
    ) {
        return None;
    }
    if let Some(s) = sized(t, id) {
        return Some((t, s));
    }
    // Modifiers, typedefs and variables: the type they resolve to.
    let mut rid = id;
    for _ in 0..=32 {
        let rt = btf.ty(rid).ok()?;
        match rt.kind() {
            Kind::Typedef
            | Kind::Volatile
            | Kind::Const
            | Kind::Restrict
            | Kind::TypeTag
            | Kind::Var => rid = rt.target()?,
            _ => {
                if matches!(
                    rt.kind(),
                    Kind::Void | Kind::Fwd | Kind::Func | Kind::FuncProto | Kind::DeclTag
                ) {
                    return None;
                }
                return sized(rt, rid).map(|s| (rt, s));
            }
        }
    }
    None
}

fn is_u32_int(t: &Type) -> bool {
    matches!(
        t.kind,
        TypeKind::Int {
            bits: 32,
            offset: 0,
            ..
        }
    )
}

/// `map_check_btf` (without the special-field records: no value here holds a
/// `bpf_spin_lock`, timer or kptr).
fn check_btf(
    ty: MapType,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    btf: &Btf,
    key_id: u32,
    value_id: u32,
) -> Result<(), Errno> {
    let has_check = !matches!(
        ty,
        MapType::ProgArray | MapType::Ringbuf | MapType::Queue | MapType::Stack
    );
    let key = if key_id != 0 {
        let (t, size) = type_id_size(btf, key_id).ok_or(Errno::EINVAL)?;
        if size != key_size {
            return Err(Errno::EINVAL);
        }
        Some(t)
    } else {
        if !has_check {
            return Err(Errno::EINVAL);
        }
        None
    };
    let (value, size) = type_id_size(btf, value_id).ok_or(Errno::EINVAL)?;
    if size != value_size {
        return Err(Errno::EINVAL);
    }
    match ty {
        MapType::Array | MapType::PercpuArray => match key {
            None => {
                if ty != MapType::Array || max_entries != 1 || value.kind() != Kind::Datasec {
                    return Err(Errno::EINVAL);
                }
            }
            Some(k) => {
                if !is_u32_int(k) {
                    return Err(Errno::EINVAL);
                }
            }
        },
        MapType::Hash | MapType::PercpuHash | MapType::LruHash | MapType::LruPercpuHash => {
            if key.is_none() {
                return Err(Errno::EINVAL);
            }
        }
        MapType::ArrayOfMaps | MapType::HashOfMaps => return Err(Errno::ENOTSUPP),
        MapType::SkStorage | MapType::TaskStorage => {
            if !key.is_some_and(is_u32_int) {
                return Err(Errno::EINVAL);
            }
        }
        MapType::ProgArray
        | MapType::Ringbuf
        | MapType::StructOps
        | MapType::Queue
        | MapType::Stack => {}
    }
    Ok(())
}

fn array_alloc_check(a: &MapCreateAttr, ty: MapType) -> Result<(), Errno> {
    let percpu = ty == MapType::PercpuArray;
    let numa = a.map_flags & BPF_F_NUMA_NODE != 0;
    if a.max_entries == 0
        || a.key_size != 4
        || a.value_size == 0
        || a.map_flags & !ARRAY_CREATE_FLAG_MASK != 0
        || a.map_flags & (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG)
            == BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG
        || (percpu && numa)
    {
        return Err(Errno::EINVAL);
    }
    if ty != MapType::Array && a.map_flags & (BPF_F_MMAPABLE | BPF_F_INNER_MAP) != 0 {
        return Err(Errno::EINVAL);
    }
    if a.map_flags & BPF_F_PRESERVE_ELEMS != 0 {
        return Err(Errno::EINVAL);
    }
    if a.value_size > i32::MAX as u32 {
        return Err(Errno::E2BIG);
    }
    if percpu && a.value_size.next_multiple_of(8) > PCPU_MIN_UNIT_SIZE {
        return Err(Errno::E2BIG);
    }
    Ok(())
}

fn htab_alloc_check(a: &MapCreateAttr, ty: MapType, caps: Capabilities) -> Result<(), Errno> {
    let percpu = matches!(ty, MapType::PercpuHash | MapType::LruPercpuHash);
    let lru = matches!(ty, MapType::LruHash | MapType::LruPercpuHash);
    let percpu_lru = a.map_flags & BPF_F_NO_COMMON_LRU != 0;
    let prealloc = a.map_flags & BPF_F_NO_PREALLOC == 0;
    let numa = a.map_flags & BPF_F_NUMA_NODE != 0;
    if a.map_flags & BPF_F_ZERO_SEED != 0 && !caps.sys_admin() {
        return Err(Errno::EPERM);
    }
    if a.map_flags & !HTAB_CREATE_FLAG_MASK != 0
        || a.map_flags & (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG)
            == BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG
    {
        return Err(Errno::EINVAL);
    }
    if !lru && percpu_lru {
        return Err(Errno::EINVAL);
    }
    if lru && !prealloc {
        return Err(Errno::ENOTSUPP);
    }
    if numa && (percpu || percpu_lru) {
        return Err(Errno::EINVAL);
    }
    if a.max_entries == 0 || a.key_size == 0 || a.value_size == 0 {
        return Err(Errno::EINVAL);
    }
    if u64::from(a.key_size) + u64::from(a.value_size) >= KMALLOC_MAX_SIZE - HTAB_ELEM_SIZE {
        return Err(Errno::E2BIG);
    }
    if percpu && a.value_size.next_multiple_of(8) > PCPU_MIN_UNIT_SIZE {
        return Err(Errno::E2BIG);
    }
    Ok(())
}

/// `queue_stack_map_alloc_check`.
fn queue_stack_alloc_check(a: &MapCreateAttr) -> Result<(), Errno> {
    if a.max_entries == 0
        || a.key_size != 0
        || a.value_size == 0
        || a.map_flags & !QUEUE_STACK_CREATE_FLAG_MASK != 0
        || a.map_flags & (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG)
            == BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG
    {
        return Err(Errno::EINVAL);
    }
    if u64::from(a.value_size) > KMALLOC_MAX_SIZE {
        return Err(Errno::E2BIG);
    }
    if a.max_entries >= u32::MAX / a.value_size {
        return Err(Errno::E2BIG);
    }
    Ok(())
}

fn storage_alloc_check(a: &MapCreateAttr) -> Result<(), Errno> {
    if a.map_flags & !LOCAL_STORAGE_CREATE_FLAG_MASK != 0
        || a.map_flags & BPF_F_NO_PREALLOC == 0
        || a.max_entries != 0
        || a.key_size != 4
        || a.value_size == 0
        || a.btf_key_type_id == 0
        || a.btf_value_type_id == 0
    {
        return Err(Errno::EINVAL);
    }
    if a.value_size > LOCAL_STORAGE_MAX_VALUE_SIZE {
        return Err(Errno::E2BIG);
    }
    Ok(())
}

/// The type's `map_alloc_check` (those that have one).
fn alloc_check(a: &MapCreateAttr, ty: MapType, caps: Capabilities) -> Result<(), Errno> {
    match ty {
        MapType::Array | MapType::PercpuArray => array_alloc_check(a, ty),
        MapType::ProgArray | MapType::ArrayOfMaps => {
            if a.value_size != 4 || a.map_flags & (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG) != 0 {
                return Err(Errno::EINVAL);
            }
            array_alloc_check(a, ty)
        }
        MapType::Hash | MapType::PercpuHash | MapType::LruHash | MapType::LruPercpuHash => {
            htab_alloc_check(a, ty, caps)
        }
        MapType::HashOfMaps => {
            if a.value_size != 4 {
                return Err(Errno::EINVAL);
            }
            htab_alloc_check(a, ty, caps)
        }
        MapType::SkStorage | MapType::TaskStorage => storage_alloc_check(a),
        MapType::Ringbuf => Ok(()),
        MapType::Queue | MapType::Stack => queue_stack_alloc_check(a),
        MapType::StructOps => crate::struct_ops::map::alloc_check(a),
    }
}

/// `bpf_map_meta_alloc(inner_map_fd)`.
fn inner_meta(fds: &FdTable, fd: u32) -> Result<InnerMeta, Errno> {
    let inner = fds.map(fd)?;
    if inner.inner_meta.is_some() {
        return Err(Errno::EINVAL);
    }
    if inner.map_type == MapType::ProgArray {
        return Err(Errno::ENOTSUPP);
    }
    Ok(InnerMeta {
        map_type: inner.map_type,
        key_size: inner.key_size,
        value_size: inner.value_size,
        map_flags: inner.map_flags,
        max_entries: inner.max_entries,
    })
}

fn random_seed() -> u32 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0x5eed);
    h.finish() as u32
}

/// What [`alloc`] gives: the storage, the effective `max_entries`, the inner-map
/// template and the memory charged for the storage.
type Alloc = (MapImpl, u32, Option<InnerMeta>, Charge);

/// `map_alloc` for `ty`: the storage and the effective `max_entries`. The memory is
/// charged before it is allocated: `ENOMEM` if the map alone needs more than
/// [`crate::RuntimeConfig::map_memory_limit`], or if the runtime's maps would hold more
/// than [`crate::RuntimeConfig::memory_limit`].
fn alloc(a: &MapCreateAttr, ty: MapType, ctx: &CreateCtx<'_>) -> Result<Alloc, Errno> {
    let ncpus = ctx.ncpus.max(1);
    let limit = ctx.memory_limit;
    let over = |bytes: u64| -> Result<Charge, Errno> {
        if bytes > limit {
            return Err(Errno::ENOMEM);
        }
        Charge::new(ctx.memcg, bytes)
    };
    match ty {
        MapType::Array | MapType::PercpuArray | MapType::ProgArray | MapType::ArrayOfMaps => {
            let meta = if ty == MapType::ArrayOfMaps {
                Some(inner_meta(ctx.fds, a.inner_map_fd)?)
            } else {
                None
            };
            // Without CAP_PERFMON the kernel rounds the array to a power of two for
            // Spectre v1 masking, which overflows past 2^31 entries.
            if !ctx.caps.perfmon() && a.max_entries > 1 << 31 {
                return Err(Errno::E2BIG);
            }
            let elem = u64::from(a.value_size.next_multiple_of(8));
            let copies = if ty == MapType::PercpuArray {
                u64::from(ncpus)
            } else {
                1
            };
            let charge = over(u64::from(a.max_entries) * elem * copies)?;
            let imp = match ty {
                MapType::Array | MapType::PercpuArray => MapImpl::Array(ArrayMap::new(
                    a.value_size,
                    a.max_entries,
                    ty == MapType::PercpuArray,
                    a.map_flags & BPF_F_MMAPABLE != 0,
                    ncpus,
                )?),
                _ => MapImpl::FdArray(FdArray::new(a.max_entries)),
            };
            Ok((imp, a.max_entries, meta, charge))
        }
        MapType::Hash
        | MapType::PercpuHash
        | MapType::LruHash
        | MapType::LruPercpuHash
        | MapType::HashOfMaps => {
            let meta = if ty == MapType::HashOfMaps {
                Some(inner_meta(ctx.fds, a.inner_map_fd)?)
            } else {
                None
            };
            let percpu_lru = a.map_flags & BPF_F_NO_COMMON_LRU != 0;
            let mut max = a.max_entries;
            if percpu_lru {
                max = a.max_entries.checked_next_multiple_of(ncpus).unwrap_or(0);
                if max < a.max_entries {
                    max = a.max_entries / ncpus * ncpus;
                }
            }
            if max > 1 << 31 {
                return Err(Errno::E2BIG);
            }
            let n_buckets = u64::from(max.max(1).next_power_of_two());
            let prealloc = a.map_flags & BPF_F_NO_PREALLOC == 0;
            let percpu = ty.is_percpu();
            let elem = HTAB_ELEM_SIZE
                + u64::from(a.key_size.next_multiple_of(8))
                + if percpu {
                    8
                } else {
                    u64::from(a.value_size.next_multiple_of(8))
                };
            let mut bytes = n_buckets * 16;
            if prealloc {
                bytes += u64::from(max) * elem;
                if percpu {
                    bytes += u64::from(max)
                        * u64::from(a.value_size.next_multiple_of(8))
                        * u64::from(ncpus);
                }
            }
            let charge = over(bytes)?;
            // Without preallocation each element is charged as it is added
            // (`alloc_htab_elem` allocates it from the map's memcg).
            let per_elem = if prealloc {
                None
            } else {
                let value = if percpu {
                    8 + u64::from(a.value_size.next_multiple_of(8)) * u64::from(ncpus)
                } else {
                    0
                };
                Some(Box::new(ElemCharge {
                    cg: ctx.memcg.clone(),
                    bytes: elem + value,
                }))
            };
            let flavor = match ty {
                MapType::Hash => Flavor::Plain,
                MapType::PercpuHash => Flavor::Percpu,
                MapType::LruHash => Flavor::Lru,
                MapType::LruPercpuHash => Flavor::LruPercpu,
                _ => Flavor::OfMaps,
            };
            let seed = if a.map_flags & BPF_F_ZERO_SEED != 0 {
                0
            } else {
                random_seed()
            };
            let h = HashTab::new(flavor, a.value_size, max, seed, ncpus, percpu_lru, per_elem);
            Ok((MapImpl::Hash(h), max, meta, charge))
        }
        MapType::Ringbuf => {
            if a.map_flags & !RINGBUF_CREATE_FLAG_MASK != 0 {
                return Err(Errno::EINVAL);
            }
            if a.key_size != 0
                || a.value_size != 0
                || !a.max_entries.is_power_of_two()
                || !(a.max_entries as usize).is_multiple_of(PAGE_SIZE)
            {
                return Err(Errno::EINVAL);
            }
            // The data pages twice (the wrap-around view) and the metadata page, as
            // `RingBuf::new` allocates them.
            let charge = over(2 * u64::from(a.max_entries) + PAGE_SIZE as u64)?;
            Ok((
                MapImpl::Ringbuf(RingBuf::new(a.max_entries)?),
                a.max_entries,
                None,
                charge,
            ))
        }
        MapType::Queue | MapType::Stack => {
            let charge = over((u64::from(a.max_entries) + 1) * u64::from(a.value_size))?;
            Ok((
                MapImpl::QueueStack(QueueStack::new(
                    ty == MapType::Stack,
                    a.value_size,
                    a.max_entries,
                )),
                a.max_entries,
                None,
                charge,
            ))
        }
        // Values are charged one by one as owners get them.
        MapType::SkStorage | MapType::TaskStorage => Ok((
            MapImpl::Storage(LocalStorageMap::new(a.value_size, ctx.memcg.clone())),
            0,
            None,
            over(0)?,
        )),
        MapType::StructOps => {
            let m =
                crate::struct_ops::map::alloc(a, ctx.fds, ctx.struct_ops, ctx.host_btf.clone())?;
            // `uvalue` and `kvalue` (`bpf_struct_ops_map_alloc`); the members' entry
            // points are bounded apart ([`crate::RuntimeConfig::struct_ops_image_limit`]).
            let charge = over(2 * u64::from(a.value_size))?;
            Ok((MapImpl::StructOps(Box::new(m)), 1, None, charge))
        }
    }
}

/// `map_create`: every check in the kernel's order, then registration under a new id.
pub(crate) fn create(ctx: &CreateCtx<'_>, attr: &MapCreateAttr) -> Result<Arc<Map>, Errno> {
    let mut a = attr.clone();
    let token = a.map_flags & BPF_F_TOKEN_FD != 0;
    a.map_flags &= !BPF_F_TOKEN_FD;
    if a.btf_vmlinux_value_type_id != 0 {
        // Only struct_ops maps take a vmlinux value type, and no other BTF types.
        if a.map_type != MapType::StructOps.raw()
            || a.btf_key_type_id != 0
            || a.btf_value_type_id != 0
        {
            return Err(Errno::EINVAL);
        }
    } else if a.btf_key_type_id != 0 && a.btf_value_type_id == 0 {
        return Err(Errno::EINVAL);
    }
    if a.map_extra != 0 {
        return Err(Errno::EINVAL);
    }
    AccessMode::from_flags(a.map_flags)?;
    if a.map_flags & BPF_F_NUMA_NODE != 0 && a.numa_node >= ctx.numa_nodes {
        return Err(Errno::EINVAL);
    }
    let ty = MapType::from_raw(a.map_type).ok_or(Errno::EINVAL)?;
    alloc_check(&a, ty, ctx.caps)?;
    if token {
        // No tokens exist here: a descriptor that names something else is `EINVAL`,
        // an unused one `EBADF` (`bpf_token_get_from_fd`).
        let fd = u32::try_from(a.map_token_fd).map_err(|_| Errno::EBADF)?;
        ctx.fds.get(fd)?;
        return Err(Errno::EINVAL);
    }
    if ctx.unprivileged_bpf_disabled && !ctx.caps.bpf() {
        return Err(Errno::EPERM);
    }
    let privileged = ty.is_local_storage()
        || matches!(
            ty,
            MapType::LruHash
                | MapType::LruPercpuHash
                | MapType::StructOps
                | MapType::Queue
                | MapType::Stack
        );
    if privileged && !ctx.caps.bpf() {
        return Err(Errno::EPERM);
    }
    if a.map_ifindex != 0 {
        // Offload (`bpf_map_offload_map_alloc`): no offload devices exist here.
        return Err(if ctx.caps.sys_admin() {
            Errno::EINVAL
        } else {
            Errno::EPERM
        });
    }
    let (imp, max_entries, inner_meta, charge) = alloc(&a, ty, ctx)?;
    let name = obj_name(&a.map_name)?;
    let mut btf = None;
    // Even a map whose value is a host struct (struct_ops) needs the object's BTF.
    if a.btf_key_type_id != 0 || a.btf_value_type_id != 0 || a.btf_vmlinux_value_type_id != 0 {
        let b = ctx.fds.btf(a.btf_fd)?;
        if b.is_kernel() {
            return Err(Errno::EACCES);
        }
        if a.btf_value_type_id != 0 {
            check_btf(
                ty,
                a.key_size,
                a.value_size,
                max_entries,
                b.btf(),
                a.btf_key_type_id,
                a.btf_value_type_id,
            )?;
        }
        btf = Some(b);
    }
    let numa = a.map_flags & BPF_F_NUMA_NODE != 0;
    let _numa_node = if numa { a.numa_node } else { NUMA_NO_NODE };
    ctx.table.register(|header| Map {
        header,
        map_type: ty,
        key_size: a.key_size,
        value_size: a.value_size,
        max_entries,
        map_flags: a.map_flags & !(BPF_F_RDONLY | BPF_F_WRONLY),
        map_extra: a.map_extra,
        name,
        btf_key_type_id: if btf.is_some() { a.btf_key_type_id } else { 0 },
        btf_value_type_id: if btf.is_some() {
            a.btf_value_type_id
        } else {
            0
        },
        btf_vmlinux_value_type_id: a.btf_vmlinux_value_type_id,
        btf,
        ncpus: ctx.ncpus.max(1),
        frozen: AtomicBool::new(false),
        freeze_lock: Mutex::new(()),
        writecnt: AtomicU64::new(0),
        inner_meta,
        prog_owner: Mutex::new(None),
        imp,
        _charge: charge,
    })
}

/// Counts an in-flight syscall-side write (`bpf_map_write_active_inc`), so that a
/// concurrent freeze fails with `EBUSY`.
struct WriteActive<'a>(&'a AtomicU64);

impl<'a> WriteActive<'a> {
    fn new(c: &'a AtomicU64) -> WriteActive<'a> {
        c.fetch_add(1, Ordering::AcqRel);
        WriteActive(c)
    }
}

impl Drop for WriteActive<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn read_u32(key: &[u8]) -> u32 {
    let mut b = [0u8; 4];
    for (d, s) in b.iter_mut().zip(key) {
        *d = *s;
    }
    u32::from_ne_bytes(b)
}

fn put(out: &mut [u8], src: &[u8]) -> Result<(), Errno> {
    out.get_mut(..src.len())
        .ok_or(Errno::EFAULT)?
        .copy_from_slice(src);
    Ok(())
}

impl Map {
    /// The map's id.
    pub fn id(&self) -> u32 {
        self.header.id()
    }

    /// The inner-map template of a map of maps (`inner_map_meta`).
    pub(crate) fn inner_template(&self) -> Option<&InnerMeta> {
        self.inner_meta.as_ref()
    }

    /// The map's type.
    pub fn map_type(&self) -> MapType {
        self.map_type
    }

    /// `key_size`.
    pub fn key_size(&self) -> u32 {
        self.key_size
    }

    /// `value_size`.
    pub fn value_size(&self) -> u32 {
        self.value_size
    }

    /// `max_entries`.
    pub fn max_entries(&self) -> u32 {
        self.max_entries
    }

    /// `map_flags` (without `BPF_F_RDONLY`/`BPF_F_WRONLY`).
    pub fn map_flags(&self) -> u32 {
        self.map_flags
    }

    /// The map's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The map's BTF object, if it was created with one.
    pub fn btf(&self) -> Option<&Arc<BtfObject>> {
        self.btf.as_ref()
    }

    /// Is the map frozen (no more syscall-side writes)?
    pub fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::Acquire)
    }

    /// Number of CPU slots of per-CPU values.
    pub fn ncpus(&self) -> u32 {
        self.ncpus
    }

    /// The owner record of a `PROG_ARRAY` (`map->owner`), for the program subsystem.
    pub(crate) fn prog_owner(&self) -> &Mutex<Option<crate::prog::ProgArrayOwner>> {
        &self.prog_owner
    }

    /// `BPF_OBJ_GET_INFO_BY_FD` on a map.
    pub fn info(&self) -> MapInfo {
        MapInfo {
            map_type: self.map_type.raw(),
            id: self.id(),
            key_size: self.key_size,
            value_size: self.value_size,
            max_entries: self.max_entries,
            map_flags: self.map_flags,
            name: self.name.clone(),
            btf_id: self.btf.as_ref().map_or(0, |b| b.id()),
            btf_key_type_id: self.btf_key_type_id,
            btf_value_type_id: self.btf_value_type_id,
            btf_vmlinux_value_type_id: self.btf_vmlinux_value_type_id,
            map_extra: self.map_extra,
        }
    }

    /// The value size the syscall side exchanges (`bpf_map_value_size`): per-CPU maps
    /// `round_up(value_size, 8) * ncpus`, descriptor maps 4.
    pub fn sys_value_size(&self) -> usize {
        if self.map_type.is_percpu() {
            self.value_size.next_multiple_of(8) as usize * self.ncpus as usize
        } else if self.map_type.is_fd_map() {
            4
        } else {
            self.value_size as usize
        }
    }

    /// The key as the kernel copies it from user space (`__bpf_copy_key`): `EFAULT` for
    /// a missing or short key, `EINVAL` for a key given to a keyless map.
    fn sys_key<'k>(&self, key: Option<&'k [u8]>) -> Result<Option<&'k [u8]>, Errno> {
        let ks = self.key_size as usize;
        match key {
            None if ks == 0 => Ok(None),
            None => Err(Errno::EFAULT),
            Some(_) if ks == 0 => Err(Errno::EINVAL),
            Some(k) => k.get(..ks).map(Some).ok_or(Errno::EFAULT),
        }
    }

    /// The syscall-side write permission (`map_get_sys_perms`: frozen maps are
    /// read-only whatever the handle).
    fn can_sys_write(&self, mode: AccessMode) -> bool {
        mode.can_write() && !self.is_frozen()
    }

    /// `BPF_MAP_LOOKUP_ELEM`.
    pub(crate) fn sys_lookup(
        &self,
        mode: AccessMode,
        fds: &FdTable,
        key: Option<&[u8]>,
        value: &mut [u8],
        flags: u64,
    ) -> Result<(), Errno> {
        if flags & !BPF_F_LOCK != 0 {
            return Err(Errno::EINVAL);
        }
        if !mode.can_read() {
            return Err(Errno::EPERM);
        }
        if flags & BPF_F_LOCK != 0 {
            return Err(Errno::EINVAL);
        }
        let key = self.sys_key(key)?;
        let vsize = self.sys_value_size();
        let k = key.unwrap_or(&[]);
        let guard = crossbeam_epoch::pin();
        let mut buf = vec![0u8; vsize];
        match &self.imp {
            MapImpl::Array(a) => a.copy_value(read_u32(k), &mut buf)?,
            MapImpl::FdArray(a) => {
                let s = a.get(read_u32(k), &guard).ok_or(Errno::ENOENT)?;
                buf.copy_from_slice(&s.id().to_ne_bytes());
            }
            MapImpl::Hash(h) => {
                let n = h.lookup(k, &guard).ok_or(Errno::ENOENT)?;
                match n.val() {
                    NodeVal::Map(m) => buf.copy_from_slice(&m.id().to_ne_bytes()),
                    NodeVal::Words(_) => h.copy_value(n, &mut buf),
                }
            }
            MapImpl::Ringbuf(_) => return Err(Errno::ENOTSUPP),
            // Peek.
            MapImpl::QueueStack(q) => q.get(&mut buf, false)?,
            MapImpl::Storage(s) => {
                let owner = fds.host(read_u32(k))?;
                s.lookup(&owner, &mut buf)?;
            }
            MapImpl::StructOps(s) => s.sys_lookup(k, &mut buf)?,
        }
        put(value, &buf)
    }

    /// `BPF_MAP_UPDATE_ELEM`.
    pub(crate) fn sys_update(
        self: &Arc<Self>,
        mode: AccessMode,
        fds: &FdTable,
        key: Option<&[u8]>,
        value: &[u8],
        flags: u64,
    ) -> Result<(), Errno> {
        let _active = WriteActive::new(&self.writecnt);
        if !self.can_sys_write(mode) {
            return Err(Errno::EPERM);
        }
        if flags & BPF_F_LOCK != 0 {
            return Err(Errno::EINVAL);
        }
        let key = self.sys_key(key)?;
        let value = value.get(..self.sys_value_size()).ok_or(Errno::EFAULT)?;
        let k = key.unwrap_or(&[]);
        let guard = crossbeam_epoch::pin();
        match &self.imp {
            MapImpl::Array(a) => a.update(read_u32(k), value, flags, 0, true),
            MapImpl::FdArray(a) => {
                if flags != BPF_ANY {
                    return Err(Errno::EINVAL);
                }
                let index = read_u32(k);
                if index >= self.max_entries {
                    return Err(Errno::E2BIG);
                }
                let fd = read_u32(value);
                let slot = match self.map_type {
                    MapType::ArrayOfMaps => Slot::Map(self.resolve_inner(fds, fd)?),
                    _ => Slot::Prog(fds.prog_for_array(fd, self)?),
                };
                a.set(index, Some(slot), &guard)
            }
            MapImpl::Hash(h) => {
                let v = if self.map_type == MapType::HashOfMaps {
                    NewVal::Map(self.resolve_inner(fds, read_u32(value))?)
                } else {
                    NewVal::Sys(value)
                };
                h.update(k, v, flags, current_cpu(self.ncpus), &guard)
            }
            MapImpl::Ringbuf(_) => Err(Errno::ENOTSUPP),
            // Push (`bpf_map_update_value`).
            MapImpl::QueueStack(q) => q.push(value, flags),
            MapImpl::Storage(s) => {
                let owner = fds.host(read_u32(k))?;
                s.update(&owner, value, flags)
            }
            MapImpl::StructOps(s) => s.update(self, fds, k, value, flags),
        }
    }

    /// `bpf_map_fd_get_ptr`: the map named by `fd`, if it matches the inner template.
    fn resolve_inner(&self, fds: &FdTable, fd: u32) -> Result<Arc<Map>, Errno> {
        let inner = fds.map(fd)?;
        match &self.inner_meta {
            Some(meta) if meta.equal(&inner) => Ok(inner),
            _ => Err(Errno::EINVAL),
        }
    }

    /// `BPF_MAP_DELETE_ELEM`.
    pub(crate) fn sys_delete(
        self: &Arc<Self>,
        mode: AccessMode,
        fds: &FdTable,
        key: Option<&[u8]>,
    ) -> Result<(), Errno> {
        let _active = WriteActive::new(&self.writecnt);
        if !self.can_sys_write(mode) {
            return Err(Errno::EPERM);
        }
        let key = self.sys_key(key)?;
        let k = key.unwrap_or(&[]);
        let guard = crossbeam_epoch::pin();
        match &self.imp {
            MapImpl::Array(_) => Err(Errno::EINVAL),
            MapImpl::FdArray(a) => a.set(read_u32(k), None, &guard),
            MapImpl::Hash(h) => h.delete(k, &guard),
            MapImpl::Ringbuf(_) => Err(Errno::ENOTSUPP),
            // `queue_stack_map_delete_elem`.
            MapImpl::QueueStack(_) => Err(Errno::EINVAL),
            MapImpl::Storage(s) => s.delete(&fds.host(read_u32(k))?),
            MapImpl::StructOps(s) => s.delete(),
        }
    }

    /// `BPF_MAP_LOOKUP_AND_DELETE_ELEM` (`map_lookup_and_delete_elem`): pops a queue
    /// or stack; for the hash maps, copies the element's value and deletes it. Other
    /// types are `ENOTSUPP`.
    pub(crate) fn sys_lookup_and_delete(
        self: &Arc<Self>,
        mode: AccessMode,
        fds: &FdTable,
        key: Option<&[u8]>,
        value: &mut [u8],
        flags: u64,
    ) -> Result<(), Errno> {
        if flags & !BPF_F_LOCK != 0 {
            return Err(Errno::EINVAL);
        }
        let _active = WriteActive::new(&self.writecnt);
        if !mode.can_read() || !self.can_sys_write(mode) {
            return Err(Errno::EPERM);
        }
        let queue = matches!(self.imp, MapImpl::QueueStack(_));
        if flags != 0 && queue {
            return Err(Errno::EINVAL);
        }
        // No value here holds a `bpf_spin_lock`.
        if flags & BPF_F_LOCK != 0 {
            return Err(Errno::EINVAL);
        }
        let key = self.sys_key(key)?;
        let mut buf = vec![0u8; self.sys_value_size()];
        match &self.imp {
            MapImpl::QueueStack(q) => q.get(&mut buf, true)?,
            MapImpl::Hash(_)
                if matches!(
                    self.map_type,
                    MapType::Hash | MapType::PercpuHash | MapType::LruHash | MapType::LruPercpuHash
                ) =>
            {
                self.sys_lookup(mode, fds, key, &mut buf, 0)?;
                self.sys_delete(mode, fds, key)?;
            }
            _ => return Err(Errno::ENOTSUPP),
        }
        put(value, &buf)
    }

    /// `BPF_MAP_GET_NEXT_KEY`.
    pub(crate) fn sys_get_next_key(
        &self,
        mode: AccessMode,
        key: Option<&[u8]>,
        next_key: &mut [u8],
    ) -> Result<(), Errno> {
        if !mode.can_read() {
            return Err(Errno::EPERM);
        }
        let key = match key {
            Some(k) => self.sys_key(Some(k))?,
            None => None,
        };
        let guard = crossbeam_epoch::pin();
        let mut buf = vec![0u8; self.key_size as usize];
        match &self.imp {
            MapImpl::Array(_) | MapImpl::FdArray(_) => {
                let n = ArrayMap::get_next_key(self.max_entries, key.map(read_u32))?;
                buf.copy_from_slice(&n.to_ne_bytes());
            }
            MapImpl::Hash(h) => h.get_next_key(key, &mut buf, &guard)?,
            MapImpl::StructOps(_) => {
                crate::struct_ops::map::StructOpsMap::get_next_key(key, &mut buf)?
            }
            MapImpl::Ringbuf(_) | MapImpl::Storage(_) => return Err(Errno::ENOTSUPP),
            // `queue_stack_map_get_next_key`.
            MapImpl::QueueStack(_) => return Err(Errno::EINVAL),
        }
        put(next_key, &buf)
    }

    /// `BPF_MAP_FREEZE`.
    pub(crate) fn sys_freeze(&self, mode: AccessMode) -> Result<(), Errno> {
        if self.map_type == MapType::StructOps {
            return Err(Errno::ENOTSUPP);
        }
        if !self.can_sys_write(mode) {
            return Err(Errno::EPERM);
        }
        let _g = self.freeze_lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.writecnt.load(Ordering::Acquire) != 0 || self.is_frozen() {
            return Err(Errno::EBUSY);
        }
        self.frozen.store(true, Ordering::Release);
        Ok(())
    }

    /// `bpf_map_mmap` for an `ARRAY` created with `BPF_F_MMAPABLE`.
    pub(crate) fn mmap(
        self: &Arc<Self>,
        mode: AccessMode,
        writable: bool,
    ) -> Result<MapMmap, Errno> {
        let MapImpl::Array(a) = &self.imp else {
            return Err(Errno::ENOTSUPP);
        };
        if self.map_type != MapType::Array {
            return Err(Errno::ENOTSUPP);
        }
        if !mode.can_read() || (writable && !mode.can_write()) {
            return Err(Errno::EACCES);
        }
        let _g = self.freeze_lock.lock().unwrap_or_else(|p| p.into_inner());
        if writable {
            if self.is_frozen() {
                return Err(Errno::EPERM);
            }
            if self.map_flags & BPF_F_RDONLY_PROG != 0 {
                return Err(Errno::EACCES);
            }
        }
        if self.map_flags & BPF_F_MMAPABLE == 0 {
            return Err(Errno::EINVAL);
        }
        if writable {
            self.writecnt.fetch_add(1, Ordering::AcqRel);
        }
        Ok(MapMmap {
            map: self.clone(),
            ptr: a.base(),
            len: a.area_len(),
            writable,
        })
    }

    // ---------------------------------------------------------------------------------
    // The program side: what helpers call, concurrently from many threads.

    /// The calling CPU slot, for per-CPU maps only (others never need it).
    fn prog_cpu(&self) -> u32 {
        if self.map_type.is_percpu() {
            current_cpu(self.ncpus)
        } else {
            0
        }
    }

    /// `bpf_map_lookup_elem` from a program: the value's address for the calling CPU
    /// (`ARRAY`, `PERCPU_ARRAY`, the hash maps; marks LRU elements referenced), or for
    /// map-in-maps the inner [`Map`]'s address. `None` if absent, or for map types
    /// programs cannot look up directly (`PROG_ARRAY`, `RINGBUF`, local storage).
    ///
    /// The address stays valid while `guard` is held (array values: while the map
    /// lives). `key` must hold at least `key_size` bytes.
    pub fn lookup_ptr(&self, key: &[u8], guard: &Guard) -> Option<NonNull<u8>> {
        let k = key.get(..self.key_size as usize)?;
        let p = match &self.imp {
            MapImpl::Array(a) => a.elem_ptr(read_u32(k), self.prog_cpu())?,
            MapImpl::FdArray(a) => match a.get(read_u32(k), guard)? {
                Slot::Map(m) => Arc::as_ptr(m) as *mut u8,
                Slot::Prog(_) => return None,
            },
            MapImpl::Hash(h) => {
                let n = h.lookup_prog(k, guard)?;
                h.value_ptr(n, self.prog_cpu())
            }
            MapImpl::Ringbuf(_)
            | MapImpl::QueueStack(_)
            | MapImpl::Storage(_)
            | MapImpl::StructOps(_) => return None,
        };
        NonNull::new(p)
    }

    /// The inner map of a map-in-map element, valid while `guard` is held.
    pub fn inner_map<'g>(&'g self, key: &[u8], guard: &'g Guard) -> Option<&'g Map> {
        let k = key.get(..self.key_size as usize)?;
        match &self.imp {
            MapImpl::FdArray(a) => match a.get(read_u32(k), guard)? {
                Slot::Map(m) => Some(&**m),
                Slot::Prog(_) => None,
            },
            MapImpl::Hash(h) => match h.lookup(k, guard)?.val() {
                NodeVal::Map(m) => Some(&**m),
                NodeVal::Words(_) => None,
            },
            _ => None,
        }
    }

    /// `bpf_map_update_elem` from a program: per-CPU maps write the calling CPU's copy.
    /// Descriptor maps, ring buffers and local storage cannot be updated this way
    /// (`ENOTSUPP`; the verifier refuses such calls).
    pub fn update_from_prog(
        &self,
        key: &[u8],
        value: &[u8],
        flags: u64,
        guard: &Guard,
    ) -> Result<(), Errno> {
        let k = key.get(..self.key_size as usize).ok_or(Errno::EFAULT)?;
        let v = value.get(..self.value_size as usize).ok_or(Errno::EFAULT)?;
        let cpu = current_cpu(self.ncpus);
        match &self.imp {
            MapImpl::Array(a) => a.update(read_u32(k), v, flags, cpu, false),
            MapImpl::Hash(_) if self.map_type == MapType::HashOfMaps => Err(Errno::ENOTSUPP),
            MapImpl::Hash(h) => h.update(k, NewVal::Prog(v, cpu), flags, cpu, guard),
            _ => Err(Errno::ENOTSUPP),
        }
    }

    /// `bpf_map_delete_elem` from a program.
    pub fn delete_from_prog(&self, key: &[u8], guard: &Guard) -> Result<(), Errno> {
        let k = key.get(..self.key_size as usize).ok_or(Errno::EFAULT)?;
        match &self.imp {
            MapImpl::Array(_) => Err(Errno::EINVAL),
            MapImpl::Hash(h) => h.delete(k, guard),
            MapImpl::FdArray(a) if self.map_type == MapType::ArrayOfMaps => {
                a.set(read_u32(k), None, guard)
            }
            _ => Err(Errno::ENOTSUPP),
        }
    }

    /// `bpf_map_push_elem` from a program: `value` holds `value_size` bytes. `EINVAL` for
    /// maps that are not queues or stacks (the verifier refuses such calls).
    pub fn push_from_prog(&self, value: &[u8], flags: u64) -> Result<(), Errno> {
        match &self.imp {
            MapImpl::QueueStack(q) => q.push(value, flags),
            _ => Err(Errno::EINVAL),
        }
    }

    /// `bpf_map_pop_elem` (`delete`) or `bpf_map_peek_elem` from a program: the next
    /// value into `out` (zeroed and `ENOENT` when empty). `EINVAL` for other maps.
    pub fn pop_from_prog(&self, out: &mut [u8], delete: bool) -> Result<(), Errno> {
        match &self.imp {
            MapImpl::QueueStack(q) => q.get(out, delete),
            _ => Err(Errno::EINVAL),
        }
    }

    /// Number of values a queue or stack holds (0 for other types).
    pub fn queue_len(&self) -> usize {
        match &self.imp {
            MapImpl::QueueStack(q) => q.len(),
            _ => 0,
        }
    }

    /// The program in `PROG_ARRAY` slot `index` (the tail-call lookup), valid while
    /// `guard` is held.
    pub fn tail_call_target<'g>(
        &'g self,
        index: u32,
        guard: &'g Guard,
    ) -> Option<&'g Arc<dyn TailCallTarget>> {
        match &self.imp {
            MapImpl::FdArray(a) => match a.get(index, guard)? {
                Slot::Prog(p) => Some(p),
                Slot::Map(_) => None,
            },
            _ => None,
        }
    }

    /// Stores (or with `None` clears) a program in `PROG_ARRAY` slot `index`, for the
    /// program subsystem's `BPF_MAP_UPDATE_ELEM` with a program descriptor. `E2BIG` past
    /// the end, `ENOENT` when clearing an empty slot, `EINVAL` for other map types.
    pub fn prog_array_update(
        &self,
        index: u32,
        prog: Option<Arc<dyn TailCallTarget>>,
    ) -> Result<(), Errno> {
        match (&self.imp, self.map_type) {
            (MapImpl::FdArray(a), MapType::ProgArray) => {
                a.set(index, prog.map(Slot::Prog), &crossbeam_epoch::pin())
            }
            _ => Err(Errno::EINVAL),
        }
    }

    /// The struct_ops part of a `STRUCT_OPS` map.
    pub fn struct_ops(&self) -> Option<&crate::struct_ops::map::StructOpsMap> {
        match &self.imp {
            MapImpl::StructOps(s) => Some(s),
            _ => None,
        }
    }

    /// The ring buffer of a `RINGBUF` map (producer and consumer sides).
    pub fn ringbuf(&self) -> Option<&RingBuf> {
        match &self.imp {
            MapImpl::Ringbuf(r) => Some(r),
            _ => None,
        }
    }

    /// `bpf_sk_storage_get`/`bpf_task_storage_get`: `owner`'s value in this local-storage
    /// map, created from `init` (or zeroed) with `BPF_LOCAL_STORAGE_GET_F_CREATE`. Valid
    /// while `guard` is held.
    pub fn storage_get(
        &self,
        owner: &HostObject,
        init: Option<&[u8]>,
        flags: u64,
        guard: &Guard,
    ) -> Option<NonNull<u8>> {
        match &self.imp {
            MapImpl::Storage(s) => NonNull::new(s.get_ptr(owner, init, flags, guard)?),
            _ => None,
        }
    }

    /// `bpf_sk_storage_delete`: `ENOENT` if `owner` has no value here, `EINVAL` for
    /// other map types.
    pub fn storage_delete(&self, owner: &HostObject) -> Result<(), Errno> {
        match &self.imp {
            MapImpl::Storage(s) => s.delete(owner),
            _ => Err(Errno::EINVAL),
        }
    }

    /// Number of owners with a value in a local-storage map (0 for other types).
    pub fn storage_len(&self) -> usize {
        match &self.imp {
            MapImpl::Storage(s) => s.len(),
            _ => 0,
        }
    }

    /// `map_direct_value_addr`: the address of byte `off` of the single value of an
    /// `ARRAY` with one entry (global data, for `BPF_PSEUDO_MAP_VALUE` loads). `ENOTSUPP`
    /// for other maps, `EINVAL` for an offset past the value.
    pub fn direct_value_addr(&self, off: u32) -> Result<NonNull<u8>, Errno> {
        match &self.imp {
            MapImpl::Array(a) if self.map_type == MapType::Array && self.max_entries == 1 => {
                if off >= self.value_size {
                    return Err(Errno::EINVAL);
                }
                // SAFETY: `off < value_size <= elem_size`, inside the value area.
                NonNull::new(unsafe { a.base().add(off as usize) }).ok_or(Errno::EINVAL)
            }
            _ => Err(Errno::ENOTSUPP),
        }
    }

    /// For arrays: the stable address of element 0 and the distance between elements
    /// (`elem_size`), which a JIT can use to inline lookups (`array_map_gen_lookup`).
    pub fn array_layout(&self) -> Option<(NonNull<u8>, u32)> {
        match &self.imp {
            MapImpl::Array(a) if self.map_type == MapType::Array => {
                NonNull::new(a.base()).map(|p| (p, a.elem_size()))
            }
            _ => None,
        }
    }

    /// The number of elements of a hash map (counted; for diagnostics and tests).
    pub fn hash_len(&self) -> usize {
        match &self.imp {
            MapImpl::Hash(h) => {
                let guard = crossbeam_epoch::pin();
                let mut n = 0;
                h.for_each(&guard, |_| {
                    n += 1;
                    true
                });
                n
            }
            _ => 0,
        }
    }
}

/// A mapping of an mmap-able array's values (`mmap` on the map fd): the value memory at
/// a stable address for as long as this lives. A writable mapping blocks `freeze`.
pub struct MapMmap {
    map: Arc<Map>,
    ptr: *mut u8,
    len: usize,
    writable: bool,
}

// SAFETY: the pointer is into the map's value area, which `map` keeps alive; the area is
// shared memory by design (programs and the host access it concurrently).
unsafe impl Send for MapMmap {}
// SAFETY: as above.
unsafe impl Sync for MapMmap {}

impl MapMmap {
    /// The first byte (element 0), page aligned.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// Length in bytes (page rounded).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Is the mapping empty (never: arrays have at least one element)?
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Was it mapped writable?
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// The mapped map.
    pub fn map(&self) -> &Arc<Map> {
        &self.map
    }
}

impl fmt::Debug for MapMmap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapMmap")
            .field("map", &self.map.id())
            .field("len", &self.len)
            .field("writable", &self.writable)
            .finish()
    }
}

impl Drop for MapMmap {
    fn drop(&mut self) {
        if self.writable {
            self.map.writecnt.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
