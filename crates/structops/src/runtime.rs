//! The runtime and its kernel face: the `bpf(2)` commands as methods.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use structops_btf::Btf;
use structops_vm::Engine;

use crate::btf_obj::{BtfHandle, BtfInfo, BtfObject};
use crate::caps::Capabilities;
use crate::errno::Errno;
use crate::fd::{FdObject, FdTable};
use crate::maps::{self, HostObject, Map, MapCreateAttr, MapHandle, MapInfo, MapMmap};
use crate::memcg::MemCgroup;
use crate::object::{AccessMode, Handle, ID_LIMIT, IdTable, ObjKind};
use crate::prog::{ProgInfo, ProgRegistry};

/// How the embedder sets up a [`Runtime`].
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Number of CPU slots of per-CPU maps (`num_possible_cpus()`); at least 1.
    pub ncpus: u32,
    /// The capabilities granted to callers of the kernel face.
    pub caps: Capabilities,
    /// `kernel.unprivileged_bpf_disabled`: without `CAP_BPF`, map creation is refused.
    pub unprivileged_bpf_disabled: bool,
    /// Number of NUMA nodes accepted in `numa_node` (`nr_node_ids`).
    pub numa_nodes: u32,
    /// The most memory one map may need at creation; larger maps fail with `ENOMEM`.
    /// The kernel has no per-map cap beyond the memcg (see [`RuntimeConfig::memory_limit`]);
    /// this one stops a single map from taking the whole budget. Default 1 GiB.
    pub map_memory_limit: u64,
    /// The most memory all of the runtime's maps and programs may hold together: the
    /// analog of the memory cgroup the kernel charges map and program memory to. Maps
    /// charge their storage at creation and, where they allocate per element
    /// (`BPF_F_NO_PREALLOC` hash maps, local storage), each element as it is added; a
    /// charge past the limit fails with `ENOMEM` (`map_create`, an update, a program's
    /// `bpf_map_update_elem`), and a program's `bpf_*_storage_get` with `F_CREATE` gets
    /// `NULL`. Programs charge what the kernel's `bpf_prog_alloc` does, their
    /// instructions (8 bytes each, after a 72-byte header) rounded up to whole pages,
    /// at `prog_load` (`ENOMEM`). Charges are returned when elements are deleted and
    /// maps and programs freed. Default 4 GiB. See `docs/limits.md`.
    pub memory_limit: u64,
    /// Most maps alive at once (objects whose last reference is gone do not count);
    /// `map_create` beyond it fails with `ENOSPC`, as the kernel's `bpf_map_alloc_id`
    /// fails when `idr_alloc_cyclic` finds its id space full. Default 65536.
    pub max_maps: usize,
    /// Most programs alive at once: `prog_load` beyond it fails with `ENOSPC`
    /// (`bpf_prog_alloc_id`). Default 65536.
    pub max_progs: usize,
    /// Most links alive at once: `link_create` beyond it fails with `ENOSPC`
    /// (`bpf_link_alloc_id`). Default 65536.
    pub max_links: usize,
    /// Most BTF objects alive at once (the host's included): `btf_load` beyond it
    /// fails with `ENOSPC` (`btf_alloc_id`). Default 65536.
    pub max_btfs: usize,
    /// Most descriptors the runtime's descriptor table may hold
    /// ([`Runtime::fd_install`], and the loader's descriptors): the analog of
    /// `RLIMIT_NOFILE`. Descriptors are numbered from 0 and stay below this; installing
    /// one more fails with `EMFILE`, the kernel's errno when `alloc_fd` reaches the
    /// limit. Each descriptor holds a reference to an object that is itself counted
    /// ([`RuntimeConfig::max_maps`], ...), but one object may be installed many times.
    /// Default 1,048,576, the kernel's default `fs.nr_open` (the largest
    /// `RLIMIT_NOFILE` it allows without raising that sysctl); at most `INT_MAX`.
    pub max_fds: u32,
    /// The most bytes of native entry-point code one struct_ops map may hold: the
    /// kernel's `MAX_TRAMP_IMAGE_PAGES` (8) trampoline pages of 4096 bytes per map. An
    /// update whose members need more fails with `E2BIG`, as the kernel's does when
    /// `bpf_struct_ops_prepare_trampoline` runs out of pages. Entry points that inline
    /// their program count as program code, not here. Default 32768.
    pub struct_ops_image_limit: u64,
    /// The most memory the native code of all programs and struct_ops entry points
    /// may occupy together, counted in whole pages (each is a mapping of its own): the
    /// kernel's `net.core.bpf_jit_limit`, which `bpf_jit_charge_modmem` checks for
    /// every JIT image and trampoline page. Past it, a program on the JIT fails to load
    /// with `ENOTSUPP` (the kernel's `bpf_prog_select_runtime` when the JIT gave up and
    /// `CONFIG_BPF_JIT_ALWAYS_ON`, as in Debian's kernels), and a struct_ops map
    /// update whose entry points do not fit fails with `EPERM` (the kernel's
    /// `bpf_struct_ops_image_alloc`). Unlike the kernel, which lets `CAP_BPF` callers
    /// past the limit, this bounds every caller: raise it to admit more. Programs on
    /// the interpreter take none. Default 528,482,304 bytes (504 MiB), the kernel's
    /// default on x86-64: half of the 1008 MiB module area, `bpf_jit_charge_init`.
    pub jit_memory_limit: u64,
    /// The most memory the verifier may keep in remembered states while it verifies one
    /// program; past it `prog_load` fails with `ENOMEM`. The kernel bounds verification
    /// only by work (1,000,000 processed instructions), which leaves room for gigabytes
    /// of states (a short loop that checkpoints often with a full stack); this bounds the
    /// memory itself. Default 1 GiB. See [`structops_verifier::Limits`].
    pub verifier_memory_limit: u64,
    /// The most bytes of verifier log one load may produce (with `log_level` 1 or 2);
    /// past it `prog_load` fails with `ENOSPC`, the kernel's errno for a log larger than
    /// the caller's buffer. A million-instruction load logs about 26 MB at level 1 and
    /// 55 MB at level 2 with an empty stack, far more with a full one. Default 128 MiB
    /// (the kernel accepts buffers up to 1 GiB).
    pub verifier_log_limit: u64,
    /// Test and development only: `prog_load` loads a program the verifier rejects
    /// instead of failing, as [`crate::prog::Verification::Unverified`] with the
    /// rejection, and `prog_test_run` runs it only in the interpreter's checked mode
    /// (which traps every memory access outside the regions the run grants). Off by
    /// default. Differential tests use it for programs the kernel accepts but this
    /// verifier cannot prove safe yet.
    pub run_unverified: bool,
    /// `CONFIG_HZ`: the tick rate behind `bpf_jiffies64`.
    pub hz: u32,
    /// The engine verified programs run on unless their load asks for another
    /// ([`crate::ProgLoadAttr::engine`]): the JIT by default where the host has one
    /// (x86-64), the interpreter otherwise. Checked runs always use the interpreter.
    pub engine: Engine,
    /// Seeds `bpf_get_prandom_u32`: with `Some`, the n-th run of a program that draws
    /// random numbers gets the same sequence in every runtime with this seed (for
    /// reproducible simulations and differential tests); `None` (the default) seeds
    /// from the system.
    pub prandom_seed: Option<u64>,
    /// Lets probes read any mapped address of the process, as the kernel's probes read
    /// any kernel address: probe loads (loads through pointers a program read out of a
    /// host struct, the kernel's `BPF_PROBE_MEM`) and `bpf_probe_read_kernel`. With
    /// `false` (the default) they read only host memory registered with
    /// [`crate::Runtime::register_probe_memory`] and map value areas, and give 0 (or
    /// `-EFAULT`) elsewhere. With `true`, an address outside those is read with
    /// `process_vm_readv(2)` on this process (one system call per read), so a NULL,
    /// freed or unmapped pointer still gives 0, but a program can read every byte the
    /// host has mapped, secrets included. Turn it on only for programs you trust as
    /// much as the host.
    pub probe_any_mapped: bool,
    /// Constant blinding in the JIT, as the kernel's `net.core.bpf_jit_harden` sysctl
    /// sets it: [`JitHarden::Off`] (the default, as the kernel's), for loaders without
    /// `CAP_SYS_ADMIN`, or for every program. See
    /// [`structops_vm::JitOptions::blind_constants`].
    pub jit_harden: JitHarden,
}

/// When the JIT blinds a program's constants (`net.core.bpf_jit_harden`: 0, 1, 2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum JitHarden {
    /// Never (`0`).
    #[default]
    Off,
    /// For programs loaded without `CAP_SYS_ADMIN` (`1`).
    Unprivileged,
    /// For every program (`2`).
    All,
}

/// The JIT where this host can run its code, else the interpreter.
fn default_engine() -> Engine {
    if structops_vm::Target::host().is_some() {
        Engine::Jit
    } else {
        Engine::Interp
    }
}

/// The default bound on objects of each kind ([`RuntimeConfig::max_maps`], ...).
const DEFAULT_MAX_OBJECTS: usize = 1 << 16;

/// The default [`RuntimeConfig::jit_memory_limit`]: the kernel's `bpf_jit_limit` on
/// x86-64 (with KASLR's 1 GiB kernel image): half the module area from
/// `0xffffffffc0000000` to `MODULES_END` (`0xffffffffff000000`), in whole pages, as
/// `bpf_jit_charge_init` derives it.
const DEFAULT_JIT_MEMORY_LIMIT: u64 = (0xffff_ffff_ff00_0000u64 - 0xffff_ffff_c000_0000) / 2;

/// The default [`RuntimeConfig::max_fds`]: the kernel's default `sysctl_nr_open`
/// (`fs/file.c`), 1024 × 1024.
pub(crate) const DEFAULT_MAX_FDS: u32 = 1 << 20;

impl Default for RuntimeConfig {
    /// As many CPU slots as the machine has threads, every capability (a host usually
    /// trusts itself; grant less for untrusted callers), one NUMA node, 1 GiB per map
    /// and 4 GiB for all maps and programs, 65536 objects of each kind, 1,048,576
    /// descriptors, 504 MiB of JIT code.
    fn default() -> RuntimeConfig {
        RuntimeConfig {
            ncpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            caps: Capabilities::ALL,
            unprivileged_bpf_disabled: true,
            numa_nodes: 1,
            map_memory_limit: 1 << 30,
            memory_limit: 4 << 30,
            max_maps: DEFAULT_MAX_OBJECTS,
            max_progs: DEFAULT_MAX_OBJECTS,
            max_links: DEFAULT_MAX_OBJECTS,
            max_btfs: DEFAULT_MAX_OBJECTS,
            max_fds: DEFAULT_MAX_FDS,
            struct_ops_image_limit: 8 * 4096,
            jit_memory_limit: DEFAULT_JIT_MEMORY_LIMIT,
            verifier_memory_limit: 1 << 30,
            verifier_log_limit: 128 << 20,
            run_unverified: false,
            hz: 250,
            engine: default_engine(),
            prandom_seed: None,
            probe_any_mapped: false,
            jit_harden: JitHarden::Off,
        }
    }
}

/// `BPF_OBJ_GET_INFO_BY_FD` results.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ObjInfo {
    /// `struct bpf_map_info`.
    Map(MapInfo),
    /// `struct bpf_btf_info`.
    Btf(BtfInfo),
    /// `struct bpf_prog_info`.
    Prog(ProgInfo),
    /// `struct bpf_link_info`.
    Link(crate::struct_ops::LinkInfo),
}

/// An in-process `bpf(2)`: the object tables, the descriptor table and the commands.
///
/// `Send + Sync`; every command takes `&self` and may run concurrently with any other.
///
/// ```
/// use structops::{Capabilities, Errno, MapCreateAttr, MapType, ObjKind, Runtime, RuntimeConfig};
///
/// let rt = Runtime::new(RuntimeConfig { ncpus: 4, ..RuntimeConfig::default() });
/// let attr = MapCreateAttr::new(MapType::PercpuArray, 4, 8, 1);
/// let map = rt.map_create(&attr)?;
/// // Objects get kernel-style ids: the first id after 0 is this map's.
/// assert_eq!(rt.get_next_id(ObjKind::Map, 0), Ok(map.id()));
/// // A per-CPU value is one slot per CPU, each rounded up to 8 bytes.
/// let mut all_cpus = [0u8; 4 * 8];
/// rt.map_lookup_elem(&map, Some(&0u32.to_ne_bytes()), &mut all_cpus, 0)?;
///
/// // Privileged commands check the capabilities the embedder grants.
/// rt.set_caps(Capabilities::NONE);
/// assert_eq!(rt.map_create(&attr).err(), Some(Errno::EPERM));
/// # Ok::<(), Errno>(())
/// ```
#[derive(Debug)]
pub struct Runtime {
    ncpus: u32,
    caps: AtomicU32,
    pub(crate) unprivileged_bpf_disabled: bool,
    numa_nodes: u32,
    map_memory_limit: u64,
    pub(crate) memcg: Arc<MemCgroup>,
    maps: Arc<IdTable<Map>>,
    /// Shared with what outlives a call into the runtime: native entry points of
    /// struct_ops members run programs with it.
    pub(crate) progs: Arc<ProgRegistry>,
    btfs: Arc<IdTable<BtfObject>>,
    pub(crate) fds: FdTable,
    host_btf: Mutex<Option<BtfHandle>>,
    pub(crate) struct_ops: crate::struct_ops::Registry,
}

impl Default for Runtime {
    fn default() -> Runtime {
        Runtime::new(RuntimeConfig::default())
    }
}

fn caps_bits(c: Capabilities) -> u32 {
    [
        Capabilities::BPF,
        Capabilities::PERFMON,
        Capabilities::NET_ADMIN,
        Capabilities::SYS_ADMIN,
    ]
    .iter()
    .enumerate()
    .filter(|(_, x)| c.contains(**x))
    .fold(0, |acc, (i, _)| acc | 1 << i)
}

fn caps_from_bits(b: u32) -> Capabilities {
    [
        Capabilities::BPF,
        Capabilities::PERFMON,
        Capabilities::NET_ADMIN,
        Capabilities::SYS_ADMIN,
    ]
    .iter()
    .enumerate()
    .filter(|(i, _)| b & (1 << i) != 0)
    .fold(Capabilities::NONE, |acc, (_, x)| acc | *x)
}

impl Runtime {
    /// A runtime with no objects.
    pub fn new(config: RuntimeConfig) -> Runtime {
        let progs = Arc::new(ProgRegistry::new(&config));
        Runtime {
            ncpus: config.ncpus.max(1),
            caps: AtomicU32::new(caps_bits(config.caps)),
            unprivileged_bpf_disabled: config.unprivileged_bpf_disabled,
            numa_nodes: config.numa_nodes.max(1),
            map_memory_limit: config.map_memory_limit,
            memcg: MemCgroup::new(config.memory_limit),
            maps: IdTable::with_limit(config.max_maps),
            progs: progs.clone(),
            btfs: IdTable::with_limit(config.max_btfs),
            fds: FdTable::with_limit(config.max_fds),
            host_btf: Mutex::new(None),
            struct_ops: crate::struct_ops::Registry::new(progs, config.max_links),
        }
    }

    /// The capabilities callers have now.
    pub fn caps(&self) -> Capabilities {
        caps_from_bits(self.caps.load(Ordering::Acquire))
    }

    /// Changes the capabilities callers have (affects later commands).
    pub fn set_caps(&self, caps: Capabilities) {
        self.caps.store(caps_bits(caps), Ordering::Release);
    }

    /// Number of CPU slots of per-CPU maps.
    pub fn ncpus(&self) -> u32 {
        self.ncpus
    }

    /// Bytes the runtime's maps and programs have charged against
    /// [`RuntimeConfig::memory_limit`] (the memcg's `memory.current` for BPF objects).
    pub fn memory_charged(&self) -> u64 {
        self.memcg.used()
    }

    /// Bytes of native code (programs on the JIT and struct_ops entry points, in whole
    /// pages) charged against [`RuntimeConfig::jit_memory_limit`]: the kernel's
    /// `bpf_jit_current`.
    pub fn jit_memory_charged(&self) -> u64 {
        self.progs.jit_memory.used()
    }

    /// The number of objects of `kind` alive or being freed: what counts against
    /// [`RuntimeConfig::max_maps`] and its siblings.
    pub fn object_count(&self, kind: ObjKind) -> usize {
        match kind {
            ObjKind::Map => self.maps.len(),
            ObjKind::Btf => self.btfs.len(),
            ObjKind::Prog => self.progs.table.len(),
            ObjKind::Link => self.struct_ops.links.len(),
        }
    }

    /// The kernel configuration this runtime presents to `__kconfig` externs, in
    /// Kconfig's `.config` syntax: `CONFIG_HZ` (the `jiffies64` rate) and the BPF
    /// options whose features it implements.
    pub fn kconfig(&self) -> String {
        format!(
            "CONFIG_HZ={}\nCONFIG_BPF=y\nCONFIG_BPF_SYSCALL=y\nCONFIG_BPF_JIT=y\n\
             CONFIG_BPF_EVENTS=y\nCONFIG_DEBUG_INFO_BTF=y\n",
            self.progs.hz
        )
    }

    // ---------------------------------------------------------------------------------
    // BTF

    /// Registers the host's BTF, the runtime's "vmlinux": a BTF object with
    /// `kernel_btf` set and the name `"vmlinux"`, alive as long as the runtime. Maps
    /// cannot use it as their BTF (`EACCES`), as in the kernel. Replaces a previously
    /// registered host BTF (objects that hold the old one keep it).
    pub fn register_host_btf(&self, btf: Btf) -> Result<BtfHandle, Errno> {
        let raw = btf.encode().into_boxed_slice();
        let obj = self.btfs.register(|header| {
            BtfObject::new(header, Arc::new(btf), raw, "vmlinux".into(), true)
        })?;
        let h = Handle::new(obj, AccessMode::ReadWrite);
        self.progs
            .kfuncs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .bind_builtins(h.btf());
        *self.host_btf.lock().unwrap_or_else(|p| p.into_inner()) = Some(h.clone());
        Ok(h)
    }

    /// The host BTF, if registered.
    pub fn host_btf(&self) -> Option<BtfHandle> {
        self.host_btf
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `BPF_BTF_LOAD`: validates `data` exactly as the kernel does
    /// ([`Btf::parse_for_load`]). `EPERM` without `CAP_BPF`.
    pub fn btf_load(&self, data: &[u8]) -> Result<BtfHandle, Errno> {
        if !self.caps().bpf() {
            return Err(Errno::EPERM);
        }
        let btf = Btf::parse_for_load(data).map_err(|e| Errno::from(e.errno))?;
        self.publish_btf(btf, data)
    }

    /// [`Runtime::btf_load`] with the kernel's level-1 verifier log appended to `log`.
    pub fn btf_load_with_log(&self, data: &[u8], log: &mut String) -> Result<BtfHandle, Errno> {
        if !self.caps().bpf() {
            return Err(Errno::EPERM);
        }
        let btf = Btf::parse_for_load_with_log(data, log).map_err(|e| Errno::from(e.errno))?;
        self.publish_btf(btf, data)
    }

    fn publish_btf(&self, btf: Btf, data: &[u8]) -> Result<BtfHandle, Errno> {
        let obj = self.btfs.register(|header| {
            BtfObject::new(header, Arc::new(btf), data.into(), String::new(), false)
        })?;
        Ok(Handle::new(obj, AccessMode::ReadWrite))
    }

    // ---------------------------------------------------------------------------------
    // Descriptors and host objects

    /// Gives `obj` a descriptor (the lowest free number), for attributes and values
    /// that name objects by descriptor (`btf_fd`, `inner_map_fd`, map-in-map values,
    /// local-storage keys). The table holds a user reference until [`Runtime::fd_close`].
    ///
    /// # Errors
    ///
    /// `EMFILE` when every descriptor below [`RuntimeConfig::max_fds`] is taken.
    pub fn fd_install(&self, obj: impl Into<FdObject>) -> Result<u32, Errno> {
        self.fds.install(obj.into())
    }

    /// Closes a descriptor (`EBADF` if unused).
    pub fn fd_close(&self, fd: u32) -> Result<(), Errno> {
        self.fds.close(fd).map(drop)
    }

    /// What a descriptor names (`EBADF` if unused).
    pub fn fd_get(&self, fd: u32) -> Result<FdObject, Errno> {
        self.fds.get(fd)
    }

    /// A new host object, the owner of local-storage values.
    pub fn host_object_new(&self) -> HostObject {
        HostObject::new()
    }

    // ---------------------------------------------------------------------------------
    // Maps

    /// `BPF_MAP_CREATE`: the kernel's checks and errnos for every attribute (see
    /// [`maps`]); the handle's access mode comes from `BPF_F_RDONLY`/`BPF_F_WRONLY`.
    pub fn map_create(&self, attr: &MapCreateAttr) -> Result<MapHandle, Errno> {
        let ctx = maps::CreateCtx {
            caps: self.caps(),
            unprivileged_bpf_disabled: self.unprivileged_bpf_disabled,
            ncpus: self.ncpus,
            numa_nodes: self.numa_nodes,
            memory_limit: self.map_memory_limit,
            memcg: &self.memcg,
            fds: &self.fds,
            table: &self.maps,
            struct_ops: &self.struct_ops,
            host_btf: self.host_btf().map(|h| h.object().clone()),
        };
        let map = maps::create(&ctx, attr)?;
        let mode = AccessMode::from_flags(attr.map_flags)?;
        Ok(Handle::new(map, mode))
    }

    /// `BPF_MAP_LOOKUP_ELEM`: copies the value (all CPUs for per-CPU maps; the element's
    /// id for descriptor maps) into `value`. `key` is `None` for a NULL key pointer.
    pub fn map_lookup_elem(
        &self,
        map: &MapHandle,
        key: Option<&[u8]>,
        value: &mut [u8],
        flags: u64,
    ) -> Result<(), Errno> {
        map.sys_lookup(map.mode(), &self.fds, key, value, flags)
    }

    /// `BPF_MAP_UPDATE_ELEM` with `BPF_ANY`/`BPF_NOEXIST`/`BPF_EXIST` (`BPF_F_LOCK` is
    /// refused: no value here holds a `bpf_spin_lock`).
    pub fn map_update_elem(
        &self,
        map: &MapHandle,
        key: Option<&[u8]>,
        value: &[u8],
        flags: u64,
    ) -> Result<(), Errno> {
        map.object()
            .sys_update(map.mode(), &self.fds, key, value, flags)
    }

    /// `BPF_MAP_DELETE_ELEM`.
    pub fn map_delete_elem(&self, map: &MapHandle, key: Option<&[u8]>) -> Result<(), Errno> {
        map.object().sys_delete(map.mode(), &self.fds, key)
    }

    /// `BPF_MAP_LOOKUP_AND_DELETE_ELEM`: pops the next value of a queue or stack (`key`
    /// `None`, `flags` 0), or copies a hash map element's value into `value` and deletes
    /// it. Needs a handle that may read and write; `ENOTSUPP` for other map types.
    pub fn map_lookup_and_delete_elem(
        &self,
        map: &MapHandle,
        key: Option<&[u8]>,
        value: &mut [u8],
        flags: u64,
    ) -> Result<(), Errno> {
        map.object()
            .sys_lookup_and_delete(map.mode(), &self.fds, key, value, flags)
    }

    /// `BPF_MAP_GET_NEXT_KEY`: `key` `None` (or absent) gives the first key; `ENOENT`
    /// after the last.
    pub fn map_get_next_key(
        &self,
        map: &MapHandle,
        key: Option<&[u8]>,
        next_key: &mut [u8],
    ) -> Result<(), Errno> {
        map.sys_get_next_key(map.mode(), key, next_key)
    }

    /// `BPF_MAP_FREEZE`: no more syscall-side writes (programs still write).
    pub fn map_freeze(&self, map: &MapHandle) -> Result<(), Errno> {
        map.sys_freeze(map.mode())
    }

    /// `mmap` of an `ARRAY` created with `BPF_F_MMAPABLE`.
    pub fn map_mmap(&self, map: &MapHandle, writable: bool) -> Result<MapMmap, Errno> {
        map.object().mmap(map.mode(), writable)
    }

    /// `BPF_MAP_GET_FD_BY_ID`: a new handle with `open_flags` (`BPF_F_RDONLY` /
    /// `BPF_F_WRONLY`). `EPERM` without `CAP_SYS_ADMIN`, `ENOENT` for no such map.
    pub fn map_get_fd_by_id(&self, id: u32, open_flags: u32) -> Result<MapHandle, Errno> {
        if open_flags & !(maps::BPF_F_RDONLY | maps::BPF_F_WRONLY) != 0 {
            return Err(Errno::EINVAL);
        }
        if !self.caps().sys_admin() {
            return Err(Errno::EPERM);
        }
        let mode = AccessMode::from_flags(open_flags)?;
        Ok(Handle::new(self.maps.get(id)?, mode))
    }

    /// `BPF_BTF_GET_FD_BY_ID`.
    pub fn btf_get_fd_by_id(&self, id: u32) -> Result<BtfHandle, Errno> {
        if !self.caps().sys_admin() {
            return Err(Errno::EPERM);
        }
        Ok(Handle::new(self.btfs.get(id)?, AccessMode::ReadWrite))
    }

    /// `BPF_*_GET_NEXT_ID`: the first id of `kind` greater than `start_id`. `EINVAL`
    /// for `start_id >= INT_MAX`, `EPERM` without `CAP_SYS_ADMIN`, `ENOENT` past the
    /// last.
    pub fn get_next_id(&self, kind: ObjKind, start_id: u32) -> Result<u32, Errno> {
        if start_id >= ID_LIMIT {
            return Err(Errno::EINVAL);
        }
        if !self.caps().sys_admin() {
            return Err(Errno::EPERM);
        }
        match kind {
            ObjKind::Map => self.maps.next_id(start_id),
            ObjKind::Btf => self.btfs.next_id(start_id),
            ObjKind::Prog => self.progs.table.next_id(start_id),
            ObjKind::Link => self.struct_ops.links.next_id(start_id),
        }
    }

    /// `BPF_OBJ_GET_INFO_BY_FD` on a map.
    pub fn map_info(&self, map: &MapHandle) -> MapInfo {
        map.info()
    }

    /// `BPF_OBJ_GET_INFO_BY_FD` on a BTF object.
    pub fn btf_info(&self, btf: &BtfHandle) -> BtfInfo {
        btf.info()
    }

    /// `BPF_OBJ_GET_INFO_BY_FD` on a descriptor: `EBADF` if unused, `EINVAL` for host
    /// objects (not BPF objects).
    pub fn obj_get_info(&self, fd: u32) -> Result<ObjInfo, Errno> {
        match self.fds.get(fd)? {
            FdObject::Map(m) => Ok(ObjInfo::Map(m.info())),
            FdObject::Btf(b) => Ok(ObjInfo::Btf(b.info())),
            FdObject::Prog(p) => Ok(ObjInfo::Prog(p.info())),
            FdObject::Link(l) => Ok(ObjInfo::Link(l.info())),
            FdObject::Host(_) => Err(Errno::EINVAL),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn runtime_is_send_sync_and_caps_round_trip() {
        assert_send_sync::<Runtime>();
        assert_send_sync::<MapHandle>();
        let rt = Runtime::default();
        assert_eq!(rt.caps(), Capabilities::ALL);
        rt.set_caps(Capabilities::BPF | Capabilities::NET_ADMIN);
        assert_eq!(rt.caps(), Capabilities::BPF | Capabilities::NET_ADMIN);
    }
}
