//! The structops runtime: an in-process `bpf(2)` with the kernel's struct_ops.
//!
//! [`Runtime`] is the kernel face of the design: objects (maps, BTF, programs, links;
//! the [`object`] machinery) with u32 ids allocated like the kernel's
//! `idr_alloc_cyclic`, refcounted [`Handle`]s in place of file descriptors,
//! `get_next_id`/`get_*_fd_by_id`/`obj_get_info`, and commands that return the kernel's
//! [`Errno`] for the same request. Privileged commands check the [`Capabilities`] the
//! embedder granted, where the kernel checks `CAP_*`. [`Runtime::prog_load`] verifies
//! every program ([`prog`]); [`Runtime::prog_test_run`] runs one ([`test_run`]).
//!
//! The Rust face sits on top: [`loader::ObjectLoader`] loads clang-built objects as
//! libbpf does, and [`struct_ops`] lets a host declare an ops type, receive the tables
//! programs implement ([`OpsTable`], kept in an [`OpsSlot`]) and call them natively
//! (see [`loader::LoadedObject::attach_struct_ops`] for a complete host).
//!
//! Maps follow the kernel's semantics type by type (see [`maps`]): creation attributes,
//! update flags, lookups, deletes, `get_next_key`, freeze, read-only and write-only
//! handles, per-CPU values over a configurable number of CPU slots, ring buffers with a
//! host-side consumer, program arrays, maps of maps, and local storage attached to
//! [`HostObject`]s. The program side (what helpers call) is a set of `&self` methods on
//! [`Map`] that are safe to call from many threads at once; pointers they return stay
//! valid while the caller holds an epoch [`Guard`] (see [`read_lock`]).
//!
//! ```
//! use structops::{Errno, MapCreateAttr, MapType, Runtime, BPF_ANY, BPF_NOEXIST};
//!
//! let rt = Runtime::default();
//! let map = rt.map_create(&MapCreateAttr::new(MapType::Hash, 4, 8, 16).name("counts"))?;
//! rt.map_update_elem(&map, Some(&7u32.to_ne_bytes()), &42u64.to_ne_bytes(), BPF_ANY)?;
//! assert_eq!(
//!     rt.map_update_elem(&map, Some(&7u32.to_ne_bytes()), &0u64.to_ne_bytes(), BPF_NOEXIST),
//!     Err(Errno::EEXIST)
//! );
//!
//! // The syscall side copies values out...
//! let mut v = [0u8; 8];
//! rt.map_lookup_elem(&map, Some(&7u32.to_ne_bytes()), &mut v, 0)?;
//! assert_eq!(u64::from_ne_bytes(v), 42);
//!
//! // ...programs get a pointer, valid while their read section lasts.
//! let guard = structops::read_lock();
//! let p = map.lookup_ptr(&7u32.to_ne_bytes(), &guard).expect("present");
//! // SAFETY: an 8-byte value, alive while `guard` is held.
//! assert_eq!(unsafe { p.cast::<u64>().read() }, 42);
//!
//! assert_eq!(rt.map_info(&map).name, "counts");
//! assert_eq!(rt.map_get_fd_by_id(map.id(), 0)?.id(), map.id());
//! # Ok::<(), Errno>(())
//! ```

mod btf_obj;
mod caps;
pub mod cpu;
pub mod ctx;
mod errno;
pub mod exec;
mod fd;
pub mod helpers;
pub mod kfunc;
pub mod loader;
pub mod maps;
mod memcg;
pub mod object;
pub mod prog;
mod runtime;
pub mod struct_ops;
pub mod test_run;
mod verify;

pub use btf_obj::{BtfHandle, BtfInfo, BtfObject};
pub use caps::Capabilities;
pub use crossbeam_epoch::Guard;
pub use errno::Errno;
pub use fd::FdObject;
pub use kfunc::{Kfunc, KfuncFlags};
pub use maps::{
    BPF_ANY, BPF_EXIST, BPF_F_LOCK, BPF_NOEXIST, HostObject, Map, MapCreateAttr, MapHandle,
    MapInfo, MapMmap, MapType, RingBuf, Slot, TailCallTarget,
};
pub use object::{AccessMode, Handle, ObjKind};
pub use prog::{
    AttachType, Callee, Clock, ClockKind, HelperCall, HelperTrace, Prog, ProgHandle, ProgInfo,
    ProgLoadAttr, ProgType, StorageOwner, Verification, VerifiedProgram,
};
pub use runtime::{JitHarden, ObjInfo, Runtime, RuntimeConfig};
pub use struct_ops::{
    Link, LinkCreateAttr, LinkHandle, LinkInfo, LinkUpdateAttr, OpsSlot, OpsStruct, OpsTable,
    OpsType, StructOps, StructOpsDesc,
};
pub use structops_vm::{Access, Engine, JitProgram, Region};
pub use test_run::{RunFault, RunMode, TestRun};

/// Enters a read section (the runtime's `rcu_read_lock`): while the returned guard
/// lives, values and objects that programs were handed are not freed. Run every program
/// invocation under one.
pub fn read_lock() -> Guard {
    crossbeam_epoch::pin()
}
