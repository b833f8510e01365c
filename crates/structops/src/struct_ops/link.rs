//! struct_ops links: `BPF_LINK_CREATE` with `BPF_STRUCT_OPS`, `BPF_LINK_UPDATE` of the
//! map, `BPF_LINK_DETACH`, link info and release on the last handle, as
//! `bpf_struct_ops_link_create` and `bpf_struct_ops_map_lops` do.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::errno::Errno;
use crate::maps::Map;
use crate::object::{AccessMode, Handle, KernelObject, ObjHeader, ObjKind};
use crate::runtime::Runtime;

/// `BPF_STRUCT_OPS` (`enum bpf_attach_type`).
pub const BPF_STRUCT_OPS: u32 = 44;
/// `BPF_LINK_TYPE_STRUCT_OPS` (`enum bpf_link_type`).
pub const BPF_LINK_TYPE_STRUCT_OPS: u32 = 9;
/// `BPF_F_REPLACE`.
pub const BPF_F_REPLACE: u32 = 1 << 2;

/// The `BPF_LINK_CREATE` attributes (`attr.link_create`) this runtime uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkCreateAttr {
    /// `prog_fd`, or for `BPF_STRUCT_OPS` `map_fd` (a union in the kernel).
    pub map_fd: u32,
    /// `target_fd` (ignored for struct_ops).
    pub target_fd: u32,
    /// `attach_type`.
    pub attach_type: u32,
    /// `flags` (ignored for struct_ops, as by the kernel).
    pub flags: u32,
}

impl LinkCreateAttr {
    /// A struct_ops link for the map behind descriptor `map_fd`.
    pub fn struct_ops(map_fd: u32) -> LinkCreateAttr {
        LinkCreateAttr {
            map_fd,
            attach_type: BPF_STRUCT_OPS,
            ..LinkCreateAttr::default()
        }
    }
}

/// The `BPF_LINK_UPDATE` attributes (`attr.link_update`) for map links.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkUpdateAttr {
    /// `new_map_fd`.
    pub new_map_fd: u32,
    /// `flags` (`BPF_F_REPLACE`).
    pub flags: u32,
    /// `old_map_fd` (only with `BPF_F_REPLACE`).
    pub old_map_fd: u32,
}

/// `struct bpf_link_info` for struct_ops links.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    /// `type` (`BPF_LINK_TYPE_STRUCT_OPS`).
    pub link_type: u32,
    /// `id`.
    pub id: u32,
    /// `prog_id` (0: struct_ops map links have no program).
    pub prog_id: u32,
    /// `struct_ops.map_id` (0 once detached).
    pub map_id: u32,
}

/// A link (`struct bpf_struct_ops_link`).
pub struct Link {
    header: ObjHeader,
    /// The registered map (`st_link->map`); `None` once detached.
    map: Mutex<Option<Arc<Map>>>,
    hup: Condvar,
}

/// A user reference to a link (the analog of a link fd).
pub type LinkHandle = Handle<Link>;

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("id", &self.id())
            .field("map_id", &self.map_id())
            .finish()
    }
}

impl KernelObject for Link {
    const KIND: ObjKind = ObjKind::Link;
    fn header(&self) -> &ObjHeader {
        &self.header
    }

    /// The last handle is gone: `bpf_struct_ops_map_link_dealloc` (unregister and put the
    /// map if still attached).
    fn release_uref(&self) {
        let map = self.lock().take();
        if let Some(m) = map {
            unreg_and_put(&m, self);
        }
        self.hup.notify_all();
    }
}

fn unreg_and_put(map: &Arc<Map>, link: &Link) {
    if let Some(st) = map.struct_ops() {
        if let Some(t) = st.table() {
            st.ops_type().ops().unreg(&t, Some(link));
        }
        st.refs_handle().fetch_sub(1, Ordering::AcqRel);
    }
}

impl Link {
    fn lock(&self) -> MutexGuard<'_, Option<Arc<Map>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The link's id.
    pub fn id(&self) -> u32 {
        self.header.id()
    }

    /// The id of the map it registers, 0 once detached.
    pub fn map_id(&self) -> u32 {
        self.lock().as_ref().map_or(0, |m| m.id())
    }

    /// `bpf_link_info` (`bpf_struct_ops_map_link_fill_link_info`).
    pub fn info(&self) -> LinkInfo {
        LinkInfo {
            link_type: BPF_LINK_TYPE_STRUCT_OPS,
            id: self.id(),
            prog_id: 0,
            map_id: self.map_id(),
        }
    }

    /// `poll`: has the link been detached (`EPOLLHUP`)?
    pub fn is_hung_up(&self) -> bool {
        self.lock().is_none()
    }

    /// Waits up to `timeout` for the link to be detached; returns whether it is.
    pub fn wait_hangup(&self, timeout: Duration) -> bool {
        let g = self.lock();
        let (g, _) = self
            .hup
            .wait_timeout_while(g, timeout, |m| m.is_some())
            .unwrap_or_else(|p| p.into_inner());
        g.is_none()
    }
}

impl Runtime {
    /// `BPF_LINK_CREATE`. Only `BPF_STRUCT_OPS` links exist here (other attach types are
    /// `EINVAL`). The map must be a struct_ops link map in READY (`EINVAL`); `reg(kdata,
    /// link)` decides, and its error is returned.
    pub fn link_create(&self, attr: &LinkCreateAttr) -> Result<LinkHandle, Errno> {
        if attr.attach_type != BPF_STRUCT_OPS {
            return Err(Errno::EINVAL);
        }
        let map = self.fds.map(attr.map_fd)?;
        let Some(st) = map.struct_ops().filter(|s| s.valid_to_reg()) else {
            return Err(Errno::EINVAL);
        };
        let link = self.struct_ops.links.register(|header| Link {
            header,
            map: Mutex::new(None),
            hup: Condvar::new(),
        })?;
        let _g = self
            .struct_ops
            .update_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let table = st.table().ok_or(Errno::EINVAL)?;
        st.ops_type().ops().reg(&table, Some(&link))?;
        st.refs_handle().fetch_add(1, Ordering::AcqRel);
        *link.lock() = Some(map.clone());
        Ok(Handle::new(link, AccessMode::ReadWrite))
    }

    /// `BPF_LINK_UPDATE` of a struct_ops link to the map `new_map_fd`
    /// (`bpf_struct_ops_map_link_update`): `EINVAL` for flags other than
    /// `BPF_F_REPLACE`, an `old_map_fd` without it, a new map that is not a READY link
    /// map or is of another ops type; `EOPNOTSUPP` if the type has no `update`;
    /// `ENOLINK` after a detach; `EPERM` if `BPF_F_REPLACE` names another map than the
    /// link's; else `update(new, old, link)` decides. Atomic for callers: the host
    /// switches tables in `update`, and every call runs on one table.
    pub fn link_update(&self, link: &LinkHandle, attr: &LinkUpdateAttr) -> Result<(), Errno> {
        if attr.flags & !BPF_F_REPLACE != 0 {
            return Err(Errno::EINVAL);
        }
        let new_map = self.fds.map(attr.new_map_fd)?;
        let old_expected = if attr.flags & BPF_F_REPLACE != 0 {
            Some(self.fds.map(attr.old_map_fd)?)
        } else if attr.old_map_fd != 0 {
            return Err(Errno::EINVAL);
        } else {
            None
        };
        let Some(st) = new_map.struct_ops().filter(|s| s.valid_to_reg()) else {
            return Err(Errno::EINVAL);
        };
        if !st.ops_type().ops().has_update() {
            return Err(Errno::EOPNOTSUPP);
        }
        let _g = self
            .struct_ops
            .update_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let old_map = link.lock().clone().ok_or(Errno::ENOLINK)?;
        if old_expected.is_some_and(|e| !Arc::ptr_eq(&e, &old_map)) {
            return Err(Errno::EPERM);
        }
        let old_st = old_map.struct_ops().ok_or(Errno::EINVAL)?;
        if !Arc::ptr_eq(old_st.ops_type(), st.ops_type()) {
            return Err(Errno::EINVAL);
        }
        let (Some(new_t), Some(old_t)) = (st.table(), old_st.table()) else {
            return Err(Errno::EINVAL);
        };
        st.ops_type().ops().update(&new_t, &old_t, link)?;
        st.refs_handle().fetch_add(1, Ordering::AcqRel);
        *link.lock() = Some(new_map);
        old_st.refs_handle().fetch_sub(1, Ordering::AcqRel);
        drop(old_map);
        Ok(())
    }

    /// `BPF_LINK_DETACH` (`bpf_struct_ops_map_link_detach`): unregisters and releases the
    /// map; a detached link stays (info shows map id 0, updates fail with `ENOLINK`).
    /// Detaching twice is fine. Wakes [`Link::wait_hangup`] waiters.
    pub fn link_detach(&self, link: &LinkHandle) -> Result<(), Errno> {
        let g = self
            .struct_ops
            .update_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let map = link.lock().clone();
        if let Some(m) = map {
            unreg_and_put(&m, link);
            *link.lock() = None;
        }
        drop(g);
        link.hup.notify_all();
        Ok(())
    }

    /// `BPF_LINK_GET_FD_BY_ID`: `EPERM` without `CAP_SYS_ADMIN`, `ENOENT` for no such
    /// link.
    pub fn link_get_fd_by_id(&self, id: u32) -> Result<LinkHandle, Errno> {
        if !self.caps().sys_admin() {
            return Err(Errno::EPERM);
        }
        Ok(Handle::new(
            self.struct_ops.links.get(id)?,
            AccessMode::ReadWrite,
        ))
    }

    /// `BPF_OBJ_GET_INFO_BY_FD` on a link.
    pub fn link_info(&self, link: &LinkHandle) -> LinkInfo {
        link.info()
    }
}
