//! `BPF_MAP_TYPE_STRUCT_OPS`: creation (`bpf_struct_ops_map_alloc_check`/`_alloc`), the
//! syscall-side update, lookup, delete and `get_next_key`, function by function as in
//! `kernel/bpf/bpf_struct_ops.c`.
//!
//! The map's one value has two faces, as in the kernel: `uvalue`, what user space wrote
//! with program ids in place of descriptors (what lookups return), and the [`OpsTable`]
//! (`kvalue.data`), built by a successful update. `state` is the kernel's
//! `kvalue.common.state`, published with release stores and read with acquire loads;
//! `refs` counts the map's internal references (registration, links,
//! `bpf_struct_ops_get`), which lookups report as `refcnt`.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use structops_btf::{Btf, TypeId};

use super::{
    BPF_F_LINK, BPF_F_VTYPE_BTF_OBJ_FD, MODULE_OWNER, MemberImpl, MemberKind, OpsTable, OpsType,
    State,
};
use crate::btf_obj::BtfObject;
use crate::errno::Errno;
use crate::fd::FdTable;
use crate::maps::{Map, MapCreateAttr};
use crate::memcg::Charge;
use crate::prog::{AttachType, ProgType};

/// `bpf_struct_ops_map_alloc_check`.
pub(crate) fn alloc_check(a: &MapCreateAttr) -> Result<(), Errno> {
    if a.key_size != 4
        || a.max_entries != 1
        || a.map_flags & !(BPF_F_LINK | BPF_F_VTYPE_BTF_OBJ_FD) != 0
        || a.btf_vmlinux_value_type_id == 0
    {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// `bpf_struct_ops_map_alloc`: the value type must belong to a registered ops type of the
/// host BTF (`ENOTSUPP` otherwise, or without a host BTF), and `value_size` must be its
/// size (`EINVAL`). Module BTFs do not exist here, so `BPF_F_VTYPE_BTF_OBJ_FD` fails as
/// the kernel fails it for a BTF that is not a module's.
pub(crate) fn alloc(
    a: &MapCreateAttr,
    fds: &FdTable,
    registry: &super::Registry,
    host: Option<Arc<BtfObject>>,
) -> Result<StructOpsMap, Errno> {
    if a.map_flags & BPF_F_VTYPE_BTF_OBJ_FD != 0 {
        let fd = u32::try_from(a.value_type_btf_obj_fd).map_err(|_| Errno::EBADF)?;
        fds.btf(fd)?;
        return Err(Errno::EINVAL);
    }
    let host = host.ok_or(Errno::ENOTSUPP)?;
    let ty = registry
        .find_value(&host, a.btf_vmlinux_value_type_id)
        .ok_or(Errno::ENOTSUPP)?;
    if a.value_size != ty.value_size {
        return Err(Errno::EINVAL);
    }
    Ok(StructOpsMap {
        link_map: a.map_flags & BPF_F_LINK != 0,
        state: AtomicU32::new(State::Init as u32),
        refs: Arc::new(AtomicI64::new(0)),
        inner: Mutex::new(Inner {
            uvalue: vec![0; ty.value_size as usize],
            table: None,
            self_ref: None,
        }),
        ty,
        progs: registry.progs.clone(),
    })
}

/// What the map's lock (`st_map->lock`) protects.
struct Inner {
    /// The user's view of the value (`st_map->uvalue`).
    uvalue: Vec<u8>,
    /// The table of the last successful update (`kvalue.data`).
    table: Option<Arc<OpsTable>>,
    /// The reference `reg` took (`bpf_map_inc` after a successful non-link update),
    /// released by delete.
    self_ref: Option<Arc<Map>>,
}

/// The struct_ops part of a [`Map`].
pub struct StructOpsMap {
    ty: Arc<OpsType>,
    /// For the members' native entry points.
    progs: Arc<crate::prog::ProgRegistry>,
    link_map: bool,
    state: AtomicU32,
    refs: Arc<AtomicI64>,
    inner: Mutex<Inner>,
}

impl fmt::Debug for StructOpsMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StructOpsMap")
            .field("type", &self.ty.name())
            .field("link", &self.link_map)
            .field("state", &self.state())
            .field("refs", &self.refs())
            .finish()
    }
}

/// A counted reference on a struct_ops map: `bpf_struct_ops_get` made it, dropping it is
/// `bpf_struct_ops_put`.
pub struct OpsRef {
    map: Arc<Map>,
    refs: Arc<AtomicI64>,
}

impl OpsRef {
    pub(crate) fn new(map: Arc<Map>, refs: Arc<AtomicI64>) -> Option<OpsRef> {
        refs.fetch_add(1, Ordering::AcqRel);
        Some(OpsRef { map, refs })
    }

    /// The map.
    pub fn map(&self) -> &Arc<Map> {
        &self.map
    }
}

impl fmt::Debug for OpsRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpsRef")
            .field("map", &self.map.id())
            .finish()
    }
}

impl Drop for OpsRef {
    fn drop(&mut self) {
        self.refs.fetch_sub(1, Ordering::AcqRel);
    }
}

fn read_u32(b: &[u8], off: usize) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = b.get(off..off + 4) {
        w.copy_from_slice(s);
    }
    u32::from_ne_bytes(w)
}

fn read_u64(b: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(s) = b.get(off..off + 8) {
        w.copy_from_slice(s);
    }
    u64::from_ne_bytes(w)
}

fn all_zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

/// `check_zero_holes`: the bytes of `data` between the members of struct `id` and after
/// the last one must be zero.
fn check_zero_holes(btf: &Btf, id: TypeId, data: &[u8]) -> Result<(), Errno> {
    let t = btf.ty(id).map_err(|_| Errno::EINVAL)?;
    let c = t.composite().ok_or(Errno::EINVAL)?;
    let mut prev_end = 0usize;
    for m in &c.members {
        let off = (m.bit_offset(c.kflag) / 8) as usize;
        if off > prev_end && !all_zero(data.get(prev_end..off).unwrap_or(&[])) {
            return Err(Errno::EINVAL);
        }
        let size = btf.size_of(m.ty).map_err(|_| Errno::EINVAL)? as usize;
        prev_end = off + size;
    }
    let size = c.size as usize;
    if size > prev_end && !all_zero(data.get(prev_end..size).unwrap_or(&[])) {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

impl StructOpsMap {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every mutation under this lock leaves `Inner` consistent before any callback
        // that could panic runs, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The ops type.
    pub fn ops_type(&self) -> &Arc<OpsType> {
        &self.ty
    }

    /// Was the map created with `BPF_F_LINK`?
    pub fn is_link_map(&self) -> bool {
        self.link_map
    }

    /// `bpf_struct_ops_map_seq_show_elem`: the value a syscall lookup returns (program
    /// ids in the function members, state and refcnt), printed through the ops type's
    /// `bpf_struct_ops_<name>` BTF type in the kernel's compact format, with the newline
    /// the kernel adds: what `cat` of the map pinned in bpffs shows after its two
    /// warning lines.
    pub fn seq_show(&self) -> String {
        let mut v = vec![0u8; self.ty.value_size() as usize];
        if self.sys_lookup(&0u32.to_ne_bytes(), &mut v).is_err() {
            return String::new();
        }
        let mut s = crate::maps::seq_show::seq_show(self.ty.btf().btf(), self.ty.value_id(), &v)
            .unwrap_or_default();
        s.push('\n');
        s
    }

    /// The state (acquire load).
    pub fn state(&self) -> State {
        State::from_raw(self.state.load(Ordering::Acquire))
    }

    /// The internal references (what lookups report as `refcnt`).
    pub fn refs(&self) -> i64 {
        self.refs.load(Ordering::Acquire)
    }

    pub(crate) fn refs_handle(&self) -> &Arc<AtomicI64> {
        &self.refs
    }

    /// The table of the last successful update, if any.
    pub fn table(&self) -> Option<Arc<OpsTable>> {
        self.lock().table.clone()
    }

    /// `bpf_struct_ops_map_sys_lookup_elem`: zeros while INIT; else the user value with
    /// program ids, the state and the internal reference count.
    pub(crate) fn sys_lookup(&self, key: &[u8], out: &mut [u8]) -> Result<(), Errno> {
        if read_u32(key, 0) != 0 {
            return Err(Errno::ENOENT);
        }
        let state = self.state.load(Ordering::Acquire);
        if state == State::Init as u32 {
            out.fill(0);
            return Ok(());
        }
        let inner = self.lock();
        let n = out.len().min(inner.uvalue.len());
        out[..n].copy_from_slice(&inner.uvalue[..n]);
        drop(inner);
        let refcnt = self.refs().max(0) as u32;
        if let Some(w) = out.get_mut(0..4) {
            w.copy_from_slice(&refcnt.to_ne_bytes());
        }
        if let Some(w) = out.get_mut(4..8) {
            w.copy_from_slice(&state.to_ne_bytes());
        }
        Ok(())
    }

    /// `bpf_struct_ops_map_get_next_key`.
    pub(crate) fn get_next_key(key: Option<&[u8]>, next: &mut [u8]) -> Result<(), Errno> {
        if key.is_some_and(|k| read_u32(k, 0) == 0) {
            return Err(Errno::ENOENT);
        }
        next.get_mut(..4)
            .ok_or(Errno::EFAULT)?
            .copy_from_slice(&0u32.to_ne_bytes());
        Ok(())
    }

    /// `bpf_struct_ops_map_update_elem`.
    pub(crate) fn update(
        &self,
        map: &Arc<Map>,
        fds: &FdTable,
        key: &[u8],
        value: &[u8],
        flags: u64,
    ) -> Result<(), Errno> {
        if flags != 0 {
            return Err(Errno::EINVAL);
        }
        if read_u32(key, 0) != 0 {
            return Err(Errno::E2BIG);
        }
        let ty = &self.ty;
        let btf = ty.btf().btf().clone();
        check_zero_holes(&btf, ty.value_id(), value)?;
        let data_off = ty.data_offset() as usize;
        let data_end = data_off + ty.size() as usize;
        let udata_in = value.get(data_off..data_end).ok_or(Errno::EINVAL)?;
        check_zero_holes(&btf, ty.type_id(), udata_in)?;
        if read_u32(value, 0) != 0 || read_u32(value, 4) != 0 {
            return Err(Errno::EINVAL);
        }
        let mut inner = self.lock();
        if self.state.load(Ordering::Acquire) != State::Init as u32 {
            return Err(Errno::EBUSY);
        }
        let mut uvalue = value.to_vec();
        let mut kdata = vec![0u64; (ty.size() as usize).div_ceil(8)];
        let mut impls: Vec<Option<MemberImpl>> = Vec::with_capacity(ty.members().len());
        let built = self.fill(fds, &mut uvalue, &mut kdata, &mut impls);
        let table = match built {
            Ok(true) => Arc::new(OpsTable {
                ty: ty.clone(),
                map: Arc::downgrade(map),
                map_id: map.id(),
                refs: self.refs.clone(),
                kdata: kdata.into_boxed_slice(),
                members: impls.into_boxed_slice(),
            }),
            // The kernel leaves through its reset path with `err` still 0 when the owner
            // member is set: nothing is registered, yet the update "succeeds".
            Ok(false) => return Ok(()),
            Err(e) => return Err(e),
        };
        ty.ops().validate(&table)?;
        if self.link_map {
            inner.uvalue = uvalue;
            inner.table = Some(table);
            self.state.store(State::Ready as u32, Ordering::Release);
            return Ok(());
        }
        ty.ops().reg(&table, None)?;
        self.refs.fetch_add(1, Ordering::AcqRel);
        inner.uvalue = uvalue;
        inner.table = Some(table);
        inner.self_ref = Some(map.clone());
        self.state.store(State::InUse as u32, Ordering::Release);
        Ok(())
    }

    /// The member loop of the update: fills `kdata`, writes program ids into `uvalue`
    /// and collects the implementations. `Ok(false)` is the kernel's silent reset (owner
    /// member set). On any error the caller drops what was collected: nothing leaks.
    fn fill(
        &self,
        fds: &FdTable,
        uvalue: &mut [u8],
        kdata: &mut [u64],
        impls: &mut Vec<Option<MemberImpl>>,
    ) -> Result<bool, Errno> {
        let ty = &self.ty;
        let data_off = ty.data_offset() as usize;
        let size = ty.size() as usize;
        // A byte view of `kdata` for `init_member`, copied back at the end.
        let mut kbytes = vec![0u8; size];
        // Entry-point code so far, against the map's image budget (the kernel's
        // `MAX_TRAMP_IMAGE_PAGES` trampoline pages).
        let mut image = 0u64;
        for m in ty.members() {
            let moff = m.offset as usize;
            let udata = uvalue.get(data_off..data_off + size).ok_or(Errno::EINVAL)?;
            if m.kind == MemberKind::Module {
                if read_u64(udata, moff) != 0 {
                    return Ok(false);
                }
                if let Some(w) = kbytes.get_mut(moff..moff + 8) {
                    w.copy_from_slice(&MODULE_OWNER.to_ne_bytes());
                }
                impls.push(None);
                continue;
            }
            if ty.ops().init_member(m, &mut kbytes, udata)? {
                impls.push(None);
                continue;
            }
            let MemberKind::Func {
                supported,
                model,
                proto,
                ..
            } = &m.kind
            else {
                let end = moff + m.size as usize;
                if !all_zero(udata.get(moff..end).ok_or(Errno::EINVAL)?) {
                    return Err(Errno::EINVAL);
                }
                impls.push(None);
                continue;
            };
            let fd = read_u64(udata, moff) as u32 as i32;
            if fd == 0 {
                impls.push(None);
                continue;
            }
            let prog = u32::try_from(fd)
                .map_err(|_| Errno::EBADF)
                .and_then(|fd| fds.prog(fd))?;
            let same_btf = prog.attach_btf().is_some_and(|b| Arc::ptr_eq(b, ty.btf()));
            if prog.prog_type() != ProgType::STRUCT_OPS
                || prog.attach_btf_id() != ty.type_id()
                || prog.expected_attach_type() != AttachType(m.index)
                || !same_btf
            {
                return Err(Errno::EINVAL);
            }
            let (true, Some(model)) = (*supported, model) else {
                // Unreachable through prog_load, which refuses unsupported members.
                return Err(Errno::EINVAL);
            };
            let id = u64::from(prog.id());
            if let Some(w) = uvalue.get_mut(data_off + moff..data_off + moff + 8) {
                w.copy_from_slice(&id.to_ne_bytes());
            }
            let entry = super::member_entry(&self.progs, ty.btf().btf(), *proto, &prog);
            // An inline entry point is the program's own JIT image (bounded with the
            // program, as the kernel's program images are apart from the trampolines).
            if let Some(e) = entry.as_ref().filter(|e| !e.is_inline()) {
                image = image.saturating_add(e.machine_code().len() as u64);
                if image > self.progs.struct_ops_image_limit {
                    // `bpf_struct_ops_prepare_trampoline` with no page left to allocate.
                    return Err(Errno::E2BIG);
                }
            }
            // Every entry point's pages count against the runtime's JIT memory, as the
            // kernel's `bpf_struct_ops_image_alloc` charges each trampoline page
            // (`bpf_jit_charge_modmem`, `EPERM` past `bpf_jit_limit`).
            let jit_mem = match &entry {
                Some(e) => Some(
                    Charge::new(&self.progs.jit_memory, e.mapped_size() as u64)
                        .map_err(|_| Errno::EPERM)?,
                ),
                None => None,
            };
            // kdata's function pointer is the member's native function, as the kernel
            // puts the trampoline there (0 when the member has no native form).
            if let (Some(e), Some(w)) = (&entry, kbytes.get_mut(moff..moff + 8)) {
                w.copy_from_slice(&(e.as_ptr().expose_provenance() as u64).to_ne_bytes());
            }
            impls.push(Some(MemberImpl {
                nargs: usize::from(model.nr_args),
                prog,
                entry,
                jit_mem,
            }));
        }
        for (i, w) in kdata.iter_mut().enumerate() {
            let mut b = [0u8; 8];
            for (j, d) in b.iter_mut().enumerate() {
                *d = kbytes.get(i * 8 + j).copied().unwrap_or(0);
            }
            *w = u64::from_ne_bytes(b);
        }
        Ok(true)
    }

    /// `bpf_struct_ops_map_delete_elem` (the kernel does not look at the key).
    pub(crate) fn delete(&self) -> Result<(), Errno> {
        if self.link_map {
            return Err(Errno::EOPNOTSUPP);
        }
        match self.state.compare_exchange(
            State::InUse as u32,
            State::ToBeFree as u32,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => {
                let (table, self_ref) = {
                    let mut inner = self.lock();
                    (inner.table.clone(), inner.self_ref.take())
                };
                if let Some(t) = &table {
                    self.ty.ops().unreg(t, None);
                }
                self.refs.fetch_sub(1, Ordering::AcqRel);
                drop(table);
                // The map may go now (the kernel's `bpf_map_put`).
                drop(self_ref);
                Ok(())
            }
            Err(s) if s == State::ToBeFree as u32 => Err(Errno::EINPROGRESS),
            Err(_) => Err(Errno::ENOENT),
        }
    }

    /// `bpf_struct_ops_valid_to_reg`: a link map in READY.
    pub(crate) fn valid_to_reg(&self) -> bool {
        self.link_map && self.state() == State::Ready
    }
}
