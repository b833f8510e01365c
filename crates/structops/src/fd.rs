//! The runtime's descriptor table: small integers naming handles, for the attributes and
//! values that the kernel face takes as file descriptors (`btf_fd`, `inner_map_fd`, the
//! values of `ARRAY_OF_MAPS`/`HASH_OF_MAPS`/`PROG_ARRAY`, the keys of local storage).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::btf_obj::{BtfHandle, BtfObject};
use crate::errno::Errno;
use crate::maps::{HostObject, Map, MapHandle};
use crate::prog::ProgHandle;

/// What a descriptor names.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum FdObject {
    /// A map.
    Map(MapHandle),
    /// A BTF object.
    Btf(BtfHandle),
    /// A program.
    Prog(ProgHandle),
    /// A link.
    Link(crate::struct_ops::LinkHandle),
    /// A host object (the key of local-storage maps, as a socket fd is for
    /// `SK_STORAGE`).
    Host(HostObject),
}

impl From<MapHandle> for FdObject {
    fn from(h: MapHandle) -> FdObject {
        FdObject::Map(h)
    }
}

impl From<BtfHandle> for FdObject {
    fn from(h: BtfHandle) -> FdObject {
        FdObject::Btf(h)
    }
}

impl From<ProgHandle> for FdObject {
    fn from(h: ProgHandle) -> FdObject {
        FdObject::Prog(h)
    }
}

impl From<crate::struct_ops::LinkHandle> for FdObject {
    fn from(h: crate::struct_ops::LinkHandle) -> FdObject {
        FdObject::Link(h)
    }
}

impl From<HostObject> for FdObject {
    fn from(h: HostObject) -> FdObject {
        FdObject::Host(h)
    }
}

/// A descriptor table. Descriptors are allocated lowest-free first, from 0, and are
/// below the table's limit ([`crate::RuntimeConfig::max_fds`]).
#[derive(Debug)]
pub(crate) struct FdTable {
    fds: Mutex<BTreeMap<u32, FdObject>>,
    /// Descriptors are below this (`RLIMIT_NOFILE`), at most `INT_MAX`.
    limit: u32,
}

impl Default for FdTable {
    fn default() -> FdTable {
        FdTable::with_limit(crate::runtime::DEFAULT_MAX_FDS)
    }
}

impl FdTable {
    /// A table whose descriptors are below `limit` (clamped to `INT_MAX`, the largest
    /// descriptor count the kernel's `sysctl_nr_open` admits).
    pub(crate) fn with_limit(limit: u32) -> FdTable {
        FdTable {
            fds: Mutex::new(BTreeMap::new()),
            limit: limit.min(i32::MAX as u32),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u32, FdObject>> {
        self.fds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Installs `obj` at the lowest free descriptor (`alloc_fd`): `EMFILE` when that
    /// is not below the limit, as the kernel's when it reaches `RLIMIT_NOFILE`.
    pub(crate) fn install(&self, obj: FdObject) -> Result<u32, Errno> {
        let mut t = self.lock();
        let mut fd = 0u32;
        for &k in t.keys() {
            if k != fd {
                break;
            }
            fd = fd.checked_add(1).ok_or(Errno::EMFILE)?;
        }
        if fd >= self.limit {
            return Err(Errno::EMFILE);
        }
        t.insert(fd, obj);
        Ok(fd)
    }

    pub(crate) fn close(&self, fd: u32) -> Result<FdObject, Errno> {
        self.lock().remove(&fd).ok_or(Errno::EBADF)
    }

    pub(crate) fn get(&self, fd: u32) -> Result<FdObject, Errno> {
        self.lock().get(&fd).cloned().ok_or(Errno::EBADF)
    }

    /// The map named by `fd` (`__bpf_map_get`): `EBADF` if unused, `EINVAL` if not a map.
    pub(crate) fn map(&self, fd: u32) -> Result<Arc<Map>, Errno> {
        match self.lock().get(&fd) {
            None => Err(Errno::EBADF),
            Some(FdObject::Map(h)) => Ok(h.object().clone()),
            Some(_) => Err(Errno::EINVAL),
        }
    }

    /// The BTF object named by `fd` (`btf_get_by_fd`).
    pub(crate) fn btf(&self, fd: u32) -> Result<Arc<BtfObject>, Errno> {
        match self.lock().get(&fd) {
            None => Err(Errno::EBADF),
            Some(FdObject::Btf(h)) => Ok(h.object().clone()),
            Some(_) => Err(Errno::EINVAL),
        }
    }

    /// The program named by `fd` (`bpf_prog_get`): `EBADF` if unused, `EINVAL` if not a
    /// program.
    pub(crate) fn prog(&self, fd: u32) -> Result<Arc<crate::prog::Prog>, Errno> {
        match self.lock().get(&fd) {
            None => Err(Errno::EBADF),
            Some(FdObject::Prog(h)) => Ok(h.object().clone()),
            Some(_) => Err(Errno::EINVAL),
        }
    }

    /// The program named by `fd`, for a `PROG_ARRAY` slot (`prog_fd_array_get_ptr`):
    /// `EBADF` if unused, `EINVAL` if not a program, an extension program, or one the
    /// array's owner is incompatible with.
    pub(crate) fn prog_for_array(
        &self,
        fd: u32,
        map: &Map,
    ) -> Result<Arc<dyn crate::maps::TailCallTarget>, Errno> {
        let prog = match self.lock().get(&fd) {
            None => return Err(Errno::EBADF),
            Some(FdObject::Prog(h)) => h.object().clone(),
            Some(_) => return Err(Errno::EINVAL),
        };
        if prog.prog_type() == crate::prog::ProgType::EXT
            || !crate::prog::prog_map_compatible(map, &prog)
        {
            return Err(Errno::EINVAL);
        }
        Ok(prog)
    }

    /// The host object named by `fd` (`sockfd_lookup`): `ENOTSOCK` for other objects.
    pub(crate) fn host(&self, fd: u32) -> Result<HostObject, Errno> {
        match self.lock().get(&fd) {
            None => Err(Errno::EBADF),
            Some(FdObject::Host(h)) => Ok(h.clone()),
            Some(_) => Err(Errno::ENOTSOCK),
        }
    }
}
