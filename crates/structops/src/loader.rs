//! The libbpf-style loader façade: an ELF object in, maps created and programs loaded
//! in a [`Runtime`] out.
//!
//! [`ObjectLoader::open`] parses the object as libbpf's `bpf_object__open` does
//! ([`structops_obj::Object`]); [`ObjectLoader::load`] then follows `bpf_object_load`
//! step for step, with the runtime's host BTF in the role of vmlinux:
//!
//! 1. load the object's BTF like `BTF_LOAD` (as libbpf, an object whose BTF the runtime
//!    refuses still loads, without BTF: no func_info, line_info or map type ids);
//! 2. resolve externs (`__kconfig` from [`LoadOptions`], `__ksym` kfuncs and variables
//!    by name in the host BTF), bind struct_ops variables to their host ops types,
//!    apply CO-RE relocations against the host BTF;
//! 3. create every map the object defines (inner-map templates first), fill global data
//!    (`.data`, `.rodata`, `.bss`, `.kconfig`) and freeze `.rodata` and `.kconfig`
//!    (`bpf_object__populate_internal_map`);
//! 4. relocate and load each program the object marks for loading
//!    (`bpf_object_load_prog`), with the object's BTF, func_info and line_info;
//! 5. fill the initial slots of program arrays and maps of maps
//!    (`bpf_object__init_prog_arrays`, `init_map_in_map_slots`).
//!
//! Descriptors exist only while loading (the kernel face names objects by descriptor in
//! `inner_map_fd`, `prog_btf_fd`, map references and fd-map values); the
//! [`LoadedObject`] holds handles, and every descriptor is closed before `load` returns,
//! on success and on failure alike.
//!
//! struct_ops maps (`.struct_ops` / `.struct_ops.link` variables) are created in step 3
//! when the host has registered their ops type ([`Runtime::register_struct_ops`]; maps of
//! other types are left out, their programs still load bound to their member), with the
//! object's BTF as `btf_fd` and the host value type. As in libbpf, they are filled and
//! registered only by [`LoadedObject::attach_struct_ops`] (update, then `link_create` for
//! link maps), which returns a [`StructOpsLink`]; [`StructOpsLink::update_map`] swaps a
//! link to another map of the object (`bpf_link__update_map`). Before loading, the
//! variable's data can be changed through [`ObjectLoader::object_mut`]
//! (`struct_ops_mut`), like libbpf's shadow type.
//!
//! ```
//! use structops::loader::{LoadOptions, ObjectLoader};
//! use structops::{Runtime, TestRun};
//!
//! let rt = Runtime::default();
//! let bytes = include_bytes!("../../../bpf/maps.bpf.o");
//! let obj = ObjectLoader::open(bytes, "maps.bpf.o")?.load(&rt, &LoadOptions::default())?;
//! let progs: Vec<&str> = obj.progs().map(|(name, _)| name).collect();
//! assert_eq!(progs, ["tail_target", "sock_filter", "xdp_count", "tc_classify"]);
//!
//! // Run the XDP program once: its subprogram bump(2) counts in the array `counters`.
//! let xdp = obj.prog("xdp_count").expect("the object has xdp_count");
//! let mut run = TestRun::with_data(&[0u8; 64]);
//! rt.prog_test_run(xdp, &mut run)?;
//! assert_eq!(run.retval, 2); // XDP_PASS
//! let counters = obj.map("counters").expect("the object has counters");
//! let mut value = [0u8; 8];
//! rt.map_lookup_elem(counters, Some(&2u32.to_ne_bytes()), &mut value, 0)?;
//! assert_eq!(u64::from_ne_bytes(value), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;

use structops_btf::{Btf, BtfBuilder};
use structops_obj::core_relo::CoreTarget;
use structops_obj::{
    BtfKsyms, CoreEngine, ExternHost, KsymResolver, LinkedProgram, MapKind, Object, ParseOptions,
};
use thiserror::Error;

use crate::btf_obj::BtfHandle;
use crate::errno::Errno;
use crate::maps::{MapCreateAttr, MapHandle};
use crate::prog::{ProgHandle, ProgLoadAttr, ProgType};
use crate::runtime::Runtime;

/// `BPF_MAP_TYPE_STRUCT_OPS`.
const MAP_TYPE_STRUCT_OPS: u32 = 26;

/// `KERNEL_VERSION(6, 18, 0)`: the Linux release whose BPF semantics the runtime
/// reproduces, and the default `LINUX_KERNEL_VERSION` of loaded objects.
pub const MIRRORED_KERNEL_VERSION: u32 = (6 << 16) | (18 << 8);

/// Why loading an object failed, and where.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The ELF object could not be parsed.
    #[error("{path}: {source}")]
    Parse {
        /// The object's name or path.
        path: String,
        /// What the parser found.
        #[source]
        source: Box<structops_obj::Error>,
    },
    /// Extern resolution, struct_ops binding, CO-RE or relocation failed.
    #[error("{path}: {source}")]
    Relocate {
        /// The object's name or path.
        path: String,
        /// What the loader found.
        #[source]
        source: Box<structops_obj::Error>,
    },
    /// `map_create` refused a map.
    #[error("{path}: map '{map}': create failed: {errno}")]
    MapCreate {
        /// The object's name or path.
        path: String,
        /// The map's name.
        map: String,
        /// The runtime's answer.
        errno: Errno,
    },
    /// Filling a map's initial contents failed.
    #[error("{path}: map '{map}': {what} failed: {errno}")]
    MapInit {
        /// The object's name or path.
        path: String,
        /// The map's name.
        map: String,
        /// The step (`"global data update"`, `"freeze"`, `"slot 3 update"`).
        what: String,
        /// The runtime's answer.
        errno: Errno,
    },
    /// `prog_load` refused a program.
    #[error("{path}: program '{prog}': load failed: {errno}{}", log_suffix(.log))]
    ProgLoad {
        /// The object's name or path.
        path: String,
        /// The program's name.
        prog: String,
        /// The runtime's answer.
        errno: Errno,
        /// The verifier log.
        log: String,
    },
    /// Filling or registering a struct_ops map failed (`attach_struct_ops`,
    /// `update_map`).
    #[error("struct_ops map '{map}': attach failed: {errno}")]
    Attach {
        /// The map's name.
        map: String,
        /// The runtime's answer.
        errno: Errno,
    },
    /// The runtime ran out of descriptors while loading.
    #[error("{path}: descriptor table: {errno}")]
    Descriptor {
        /// The object's name or path.
        path: String,
        /// The runtime's answer.
        errno: Errno,
    },
}

impl LoadError {
    /// The errno libbpf reports for the same failure (`bpf_object__open`,
    /// `bpf_object__load`, `bpf_map__attach_struct_ops`): the runtime's answer, or for
    /// parse and relocation errors the code libbpf 1.5 returns for that condition.
    pub fn errno(&self) -> Errno {
        match self {
            LoadError::Parse { source, .. } | LoadError::Relocate { source, .. } => {
                Errno(source.libbpf_errno())
            }
            LoadError::MapCreate { errno, .. }
            | LoadError::MapInit { errno, .. }
            | LoadError::ProgLoad { errno, .. }
            | LoadError::Attach { errno, .. }
            | LoadError::Descriptor { errno, .. } => *errno,
        }
    }
}

/// The verifier's error line: the last line of the log that is not a statistics line
/// (`processed N insns ...`, `verification time`, `stack depth`).
fn log_suffix(log: &str) -> String {
    let last = log.lines().rev().map(str::trim).find(|l| {
        !l.is_empty()
            && !l.starts_with("processed ")
            && !l.starts_with("verification time")
            && !l.starts_with("stack depth")
    });
    last.map(|l| format!(" ({l})")).unwrap_or_default()
}

/// Host facts for [`ObjectLoader::load`] beyond the runtime itself.
#[derive(Clone, Copy, Default)]
pub struct LoadOptions<'a> {
    /// Kconfig text for `__kconfig` externs (libbpf's `kconfig` open option).
    pub kconfig: Option<&'a str>,
    /// The "system" kernel configuration programs see; `None` is the runtime's own
    /// ([`Runtime::kconfig`]: `CONFIG_HZ` and the BPF options it implements).
    pub system_kconfig: Option<&'a str>,
    /// `LINUX_KERNEL_VERSION` as programs see it; `None` is
    /// [`MIRRORED_KERNEL_VERSION`], the kernel whose semantics the runtime reproduces.
    pub kernel_version: Option<u32>,
    /// `__ksym` resolution; by default names are looked up in the host BTF.
    pub ksyms: Option<&'a dyn KsymResolver>,
    /// A log for the programs' verification, kept in [`LoadedObject::log`].
    pub keep_logs: bool,
    /// `log_level` of each program's `BPF_PROG_LOAD` (1, 2, and 4 for the stats
    /// lines, as in the kernel).
    pub log_level: u32,
}

impl std::fmt::Debug for LoadOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadOptions")
            .field("kconfig", &self.kconfig.is_some())
            .field("kernel_version", &self.kernel_version)
            .field("keep_logs", &self.keep_logs)
            .finish_non_exhaustive()
    }
}

/// An opened object, ready to be adjusted (autoload, autocreate, `max_entries`) and
/// loaded.
#[derive(Debug)]
pub struct ObjectLoader {
    path: String,
    obj: Object,
}

impl ObjectLoader {
    /// Parses `bytes`; `path` names the object in errors and gives its name (the
    /// prefix of internal map names) as libbpf derives it from a path.
    ///
    /// # Errors
    ///
    /// [`LoadError::Parse`] for anything the object parser refuses.
    pub fn open(bytes: &[u8], path: &str) -> Result<ObjectLoader, LoadError> {
        let obj = Object::parse_with(bytes, &ParseOptions::for_path(path)).map_err(|e| {
            LoadError::Parse {
                path: path.to_string(),
                source: Box::new(e),
            }
        })?;
        Ok(ObjectLoader {
            path: path.to_string(),
            obj,
        })
    }

    /// The parsed object.
    pub fn object(&self) -> &Object {
        &self.obj
    }

    /// The parsed object, for adjustments before loading.
    pub fn object_mut(&mut self) -> &mut Object {
        &mut self.obj
    }

    /// Loads only the named programs (and whatever they need): every other program's
    /// autoload is cleared; a named struct_ops program gets its struct_ops maps
    /// bound so that it can be loaded. Names the object lacks are ignored here and
    /// found missing by the caller in [`LoadedObject::prog`].
    pub fn select_programs(&mut self, names: &[&str]) {
        let wanted: Vec<usize> = names
            .iter()
            .filter_map(|n| self.obj.program_index(n))
            .collect();
        for (i, p) in self.obj.programs_mut().iter_mut().enumerate() {
            if !p.is_subprog() {
                p.set_autoload(wanted.contains(&i));
            }
        }
        for map in self.obj.maps_mut() {
            let uses = map
                .struct_ops()
                .is_some_and(|st| st.programs().iter().flatten().any(|p| wanted.contains(p)));
            if uses {
                map.set_autocreate(true);
            }
        }
    }

    /// Loads the object into `rt` (see the module docs for the steps).
    ///
    /// # Errors
    ///
    /// The first step that failed; everything created before it is released.
    pub fn load(mut self, rt: &Runtime, opts: &LoadOptions<'_>) -> Result<LoadedObject, LoadError> {
        let mut fds = FdGuard {
            rt,
            fds: Vec::new(),
        };
        let path = self.path.clone();
        let host_btf = rt.host_btf();
        let empty;
        let target: &Btf = match &host_btf {
            Some(h) => h.object().btf(),
            None => {
                empty = BtfBuilder::new().build();
                &empty
            }
        };

        // 1. The object's BTF, as BTF_LOAD.
        let btf = self.obj.btf().and_then(|b| rt.btf_load(&b.encode()).ok());
        let btf_fd = match &btf {
            Some(b) => Some(fds.install(&path, b.clone())?),
            None => None,
        };

        // 2. Externs, struct_ops binding, CO-RE.
        let own_kconfig = rt.kconfig();
        let btf_ksyms = BtfKsyms { btf: target };
        let ksyms: &dyn KsymResolver = opts.ksyms.unwrap_or(&btf_ksyms);
        let externs = ExternHost {
            kernel_version: opts.kernel_version.unwrap_or(MIRRORED_KERNEL_VERSION),
            has_bpf_cookie: true,
            has_syscall_wrapper: true,
            extra_kconfig: opts.kconfig,
            system_kconfig: Some(opts.system_kconfig.unwrap_or(&own_kconfig)),
            ksyms,
        };
        let relocate_err = |e| LoadError::Relocate {
            path: path.clone(),
            source: Box::new(e),
        };
        self.obj.resolve_externs(&externs).map_err(relocate_err)?;
        self.obj.init_struct_ops(target).map_err(relocate_err)?;
        // The host BTF's flavor index is built once per runtime, not per load.
        let core_target = match &host_btf {
            Some(h) => CoreTarget::with_index(target, h.object().core_index()),
            None => CoreTarget::new(target),
        };
        let core = CoreEngine::new(&core_target);
        self.obj.relocate_core_with(&core).map_err(relocate_err)?;

        // 3. Maps.
        let mut maps: Vec<Option<(MapHandle, u32)>> = Vec::with_capacity(self.obj.maps().len());
        for m in self.obj.maps() {
            if m.autocreate() && m.map_type().0 == MAP_TYPE_STRUCT_OPS {
                let created = match btf_fd {
                    Some(fd) => self.create_struct_ops_map(rt, m, fd)?,
                    None => None,
                };
                match created {
                    Some(handle) => {
                        let fd = fds.install(&path, handle.clone())?;
                        maps.push(Some((handle, fd)));
                    }
                    None => maps.push(None),
                }
                continue;
            }
            if !m.autocreate() || m.map_type().0 == MAP_TYPE_STRUCT_OPS {
                maps.push(None);
                continue;
            }
            let handle = self.create_map(rt, &mut fds, m, btf_fd)?;
            let fd = fds.install(&path, handle.clone())?;
            maps.push(Some((handle, fd)));
        }
        for (m, slot) in self.obj.maps().iter().zip(&maps) {
            let Some((handle, _)) = slot else { continue };
            if m.kind().is_internal() {
                init_global_data(rt, &path, m, handle)?;
            }
        }

        // 4. Programs.
        let map_fd = |idx: usize| {
            maps.get(idx)
                .and_then(Option::as_ref)
                .map_or(-1, |(_, fd)| *fd as i32)
        };
        let linked = self.obj.relocate(&map_fd).map_err(relocate_err)?;
        for l in &linked {
            self.obj.check_loadable(l.program).map_err(relocate_err)?;
        }
        let mut progs: BTreeMap<usize, ProgHandle> = BTreeMap::new();
        let mut logs = BTreeMap::new();
        for l in &linked {
            let mut log = String::new();
            let mut attr = self.prog_attr(l, btf_fd);
            attr.log_level = opts.log_level;
            let name = l.name.clone();
            match rt.prog_load_with_log(&attr, &mut log) {
                Ok(h) => {
                    progs.insert(l.program, h);
                }
                Err(errno) => {
                    return Err(LoadError::ProgLoad {
                        path,
                        prog: name,
                        errno,
                        log,
                    });
                }
            }
            if opts.keep_logs {
                logs.insert(name, log);
            }
        }

        // 5. Initial slots of fd maps.
        for (m, slot) in self.obj.maps().iter().zip(&maps) {
            let Some((handle, _)) = slot else { continue };
            for (i, init) in m.init_slots().iter().enumerate() {
                let Some(init) = init else { continue };
                let value = match *init {
                    structops_obj::Slot::Map(idx) => map_fd(idx),
                    structops_obj::Slot::Program(idx) => match progs.get(&idx) {
                        Some(p) => fds.install(&path, p.clone())? as i32,
                        None => continue,
                    },
                };
                if value < 0 {
                    continue;
                }
                let key = (i as u32).to_ne_bytes();
                rt.map_update_elem(handle, Some(&key), &value.to_ne_bytes(), 0)
                    .map_err(|errno| LoadError::MapInit {
                        path: path.clone(),
                        map: m.name().to_string(),
                        what: format!("slot {i} update"),
                        errno,
                    })?;
            }
        }

        let map_out = self
            .obj
            .maps()
            .iter()
            .zip(maps)
            .filter_map(|(m, h)| h.map(|(h, _)| (m.name().to_string(), h)))
            .collect();
        let prog_out = progs
            .into_iter()
            .filter_map(|(i, h)| {
                self.obj
                    .programs()
                    .get(i)
                    .map(|p| (p.name().to_string(), h))
            })
            .collect();
        Ok(LoadedObject {
            name: self.obj.name().to_string(),
            object: self.obj,
            btf,
            maps: map_out,
            progs: prog_out,
            logs,
        })
    }

    /// `bpf_object__create_map` for one map.
    fn create_map(
        &self,
        rt: &Runtime,
        fds: &mut FdGuard<'_>,
        m: &structops_obj::Map,
        btf_fd: Option<u32>,
    ) -> Result<MapHandle, LoadError> {
        let mut attr = MapCreateAttr {
            map_type: m.map_type().0,
            key_size: m.key_size(),
            value_size: m.value_size(),
            max_entries: m.max_entries(),
            map_flags: m.map_flags(),
            numa_node: m.numa_node(),
            map_extra: m.map_extra(),
            ..MapCreateAttr::default()
        }
        .name(m.kernel_name());
        if let Some(fd) = btf_fd
            && m.btf_value_type_id() != 0
        {
            attr.btf_fd = fd;
            attr.btf_key_type_id = m.btf_key_type_id();
            attr.btf_value_type_id = m.btf_value_type_id();
        }
        // Inner-map template of a map of maps (`bpf_map__set_inner_map_fd`).
        let mut inner_fd = None;
        if let Some(inner) = m.inner_map() {
            let h = self.create_map(rt, fds, inner, btf_fd)?;
            let fd = fds.install(&self.path, h)?;
            attr.inner_map_fd = fd;
            inner_fd = Some(fd);
        }
        let created = rt.map_create(&attr);
        // libbpf retries without BTF when the kernel refuses the BTF ids.
        let created = match created {
            Err(_) if attr.btf_value_type_id != 0 => {
                attr.btf_fd = 0;
                attr.btf_key_type_id = 0;
                attr.btf_value_type_id = 0;
                rt.map_create(&attr)
            }
            other => other,
        };
        if let Some(fd) = inner_fd {
            fds.close(fd);
        }
        created.map_err(|errno| LoadError::MapCreate {
            path: self.path.clone(),
            map: m.name().to_string(),
            errno,
        })
    }

    /// `bpf_object__create_map` for a struct_ops map whose host type is registered
    /// (`None` when it is not).
    fn create_struct_ops_map(
        &self,
        rt: &Runtime,
        m: &structops_obj::Map,
        btf_fd: u32,
    ) -> Result<Option<MapHandle>, LoadError> {
        let vid = m.btf_vmlinux_value_type_id();
        if vid == 0 || rt.struct_ops_find_value(vid).is_none() {
            return Ok(None);
        }
        let attr = MapCreateAttr {
            map_type: MAP_TYPE_STRUCT_OPS,
            key_size: 4,
            value_size: m.value_size(),
            max_entries: 1,
            map_flags: m.map_flags(),
            btf_fd,
            btf_vmlinux_value_type_id: vid,
            ..MapCreateAttr::default()
        }
        .name(m.kernel_name());
        rt.map_create(&attr)
            .map(Some)
            .map_err(|errno| LoadError::MapCreate {
                path: self.path.clone(),
                map: m.name().to_string(),
                errno,
            })
    }

    /// The `BPF_PROG_LOAD` attributes of one relocated program.
    fn prog_attr(&self, l: &LinkedProgram, btf_fd: Option<u32>) -> ProgLoadAttr {
        let p = self.obj.programs().get(l.program);
        let ty = p.map_or(ProgType::UNSPEC, |p| p.prog_type());
        let mut attr = ProgLoadAttr::new(ty, l.insns.clone(), self.obj.license()).name(&l.name);
        attr.kern_version = self.obj.kern_version().unwrap_or(0);
        if let Some(p) = p {
            attr = attr
                .expected_attach_type(p.expected_attach_type())
                .flags(p.prog_flags());
            attr.attach_btf_id = p.attach_btf_id();
            if ty == ProgType::STRUCT_OPS {
                // The member index libbpf puts in expected_attach_type.
                attr.expected_attach_type = p.expected_attach_type().0;
            }
        }
        if let Some(fd) = btf_fd {
            if let Some(fi) = &l.func_info {
                attr = attr.func_info(fd, fi);
            }
            if let Some(li) = &l.line_info {
                attr = attr.line_info(fd, li);
            }
        }
        attr
    }
}

/// Writes a global-data map's initial value and freezes read-only sections
/// (`bpf_object__populate_internal_map`).
fn init_global_data(
    rt: &Runtime,
    path: &str,
    m: &structops_obj::Map,
    handle: &MapHandle,
) -> Result<(), LoadError> {
    let err = |what: &str, errno| LoadError::MapInit {
        path: path.to_string(),
        map: m.name().to_string(),
        what: what.to_string(),
        errno,
    };
    let mut value = m.initial_value().to_vec();
    value.resize(m.value_size() as usize, 0);
    rt.map_update_elem(handle, Some(&0u32.to_ne_bytes()), &value, 0)
        .map_err(|e| err("global data update", e))?;
    if matches!(m.kind(), MapKind::Rodata | MapKind::Kconfig) {
        rt.map_freeze(handle).map_err(|e| err("freeze", e))?;
    }
    Ok(())
}

/// Descriptors opened while loading, all closed when loading ends.
struct FdGuard<'r> {
    rt: &'r Runtime,
    fds: Vec<u32>,
}

impl FdGuard<'_> {
    fn install(
        &mut self,
        path: &str,
        obj: impl Into<crate::fd::FdObject>,
    ) -> Result<u32, LoadError> {
        let fd = self
            .rt
            .fd_install(obj)
            .map_err(|errno| LoadError::Descriptor {
                path: path.to_string(),
                errno,
            })?;
        self.fds.push(fd);
        Ok(fd)
    }

    fn close(&mut self, fd: u32) {
        if let Some(pos) = self.fds.iter().position(|&f| f == fd) {
            self.fds.swap_remove(pos);
            let _ = self.rt.fd_close(fd);
        }
    }
}

impl Drop for FdGuard<'_> {
    fn drop(&mut self) {
        for fd in self.fds.drain(..) {
            let _ = self.rt.fd_close(fd);
        }
    }
}

/// An object loaded into a runtime: its maps and programs by name.
#[derive(Debug)]
pub struct LoadedObject {
    name: String,
    object: Object,
    btf: Option<BtfHandle>,
    maps: Vec<(String, MapHandle)>,
    progs: Vec<(String, ProgHandle)>,
    logs: BTreeMap<String, String>,
}

impl LoadedObject {
    /// The object's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The object as loaded (after relocation).
    pub fn object(&self) -> &Object {
        &self.object
    }

    /// The object's BTF in the runtime, when it was loaded.
    pub fn btf(&self) -> Option<&BtfHandle> {
        self.btf.as_ref()
    }

    /// The created maps, in the object's order, by libbpf name (`.rodata` maps as
    /// `obj.rodata`).
    pub fn maps(&self) -> impl Iterator<Item = (&str, &MapHandle)> {
        self.maps.iter().map(|(n, h)| (n.as_str(), h))
    }

    /// A created map by name.
    pub fn map(&self, name: &str) -> Option<&MapHandle> {
        self.maps.iter().find(|(n, _)| n == name).map(|(_, h)| h)
    }

    /// The loaded programs, in the object's order.
    pub fn progs(&self) -> impl Iterator<Item = (&str, &ProgHandle)> {
        self.progs.iter().map(|(n, h)| (n.as_str(), h))
    }

    /// A loaded program by name.
    pub fn prog(&self, name: &str) -> Option<&ProgHandle> {
        self.progs.iter().find(|(n, _)| n == name).map(|(_, h)| h)
    }

    /// The verifier log of a program, when [`LoadOptions::keep_logs`] was set.
    pub fn log(&self, prog: &str) -> Option<&str> {
        self.logs.get(prog).map(String::as_str)
    }

    /// Writes the struct_ops map `name`'s value (`kern_vdata` with the programs'
    /// descriptors, `bpf_map_prepare_vdata`) with `BPF_MAP_UPDATE_ELEM`.
    fn update_struct_ops(&self, rt: &Runtime, name: &str) -> Result<MapHandle, LoadError> {
        let map_err = |errno| LoadError::Attach {
            map: name.to_string(),
            errno,
        };
        let handle = self.map(name).ok_or(map_err(Errno::ENOENT))?;
        let st = self
            .object
            .maps()
            .iter()
            .find(|m| m.name() == name)
            .and_then(|m| m.struct_ops())
            .ok_or(map_err(Errno::EINVAL))?;
        let mut fds = FdGuard {
            rt,
            fds: Vec::new(),
        };
        let mut prog_fds = BTreeMap::new();
        for p in st.declared_programs().iter().flatten() {
            let Some(h) = self
                .object
                .programs()
                .get(*p)
                .and_then(|pr| self.prog(pr.name()))
            else {
                continue;
            };
            let mut fd = fds.install(&self.name, h.clone())?;
            if fd == 0 {
                // Descriptor 0 in a function member means "no program" (it is never a
                // program in the kernel, where it is stdin): take another one, keeping
                // 0 busy until the update is done.
                fd = fds.install(&self.name, h.clone())?;
            }
            prog_fds.insert(*p, fd);
        }
        let value = st
            .kern_value(&|p| prog_fds.get(&p).map_or(0, |&fd| i64::from(fd)))
            .ok_or(map_err(Errno::EINVAL))?;
        rt.map_update_elem(handle, Some(&0u32.to_ne_bytes()), &value, 0)
            .map_err(map_err)?;
        Ok(handle.clone())
    }

    /// `bpf_map__attach_struct_ops`: fills the struct_ops map `name` (its programs'
    /// descriptors in the function members) and registers it — by the update itself for
    /// a `.struct_ops` map, by `link_create` for a `.struct_ops.link` map.
    ///
    /// # Errors
    ///
    /// [`LoadError::Attach`] with the errno of the update or the link creation (`ENOENT`
    /// if the object has no such created map).
    ///
    /// # Example
    ///
    /// A host that declares the ops type `cache_ops` in Rust and calls the eviction
    /// policies of `bpf/cache_policy.bpf.c` through it (`docs/HOSTS.md` builds a whole
    /// cache around the same type).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use structops::loader::{LoadOptions, ObjectLoader};
    /// use structops::struct_ops::{MemberInfo, add_value_type};
    /// use structops::{Errno, Link, OpsSlot, OpsStruct, OpsTable, Runtime, StructOps, StructOpsDesc};
    /// use structops_btf::host::{BtfTypes, CChar};
    /// use structops_btf_derive::Btf;
    ///
    /// // The ops type and the structs its members take, as the programs see them.
    /// #[derive(Btf)]
    /// #[repr(C)]
    /// #[btf(name = "cache_entry")]
    /// struct CacheEntry { key: u64, hits: u64, size: u32, slot: u32 }
    ///
    /// #[derive(Btf)]
    /// #[repr(C)]
    /// #[btf(name = "cache_ctx")]
    /// struct CacheCtx { requests: u64, capacity: u32, used: u32 }
    ///
    /// #[derive(Btf)]
    /// #[repr(C)]
    /// #[btf(name = "cache_ops")]
    /// struct CacheOps {
    ///     admit: Option<unsafe extern "C" fn(e: *mut CacheEntry) -> i32>,
    ///     access: Option<unsafe extern "C" fn(e: *mut CacheEntry)>,
    ///     evict: Option<unsafe extern "C" fn(ctx: *mut CacheCtx) -> u32>,
    ///     name: [CChar; 16],
    /// }
    ///
    /// // SAFETY: the host BTF's `cache_ops` is derived from this very type.
    /// unsafe impl OpsStruct for CacheOps {
    ///     const NAME: &'static str = "cache_ops";
    /// }
    ///
    /// // The host's callbacks: copy the `name` data member, keep the registered table.
    /// #[derive(Default)]
    /// struct Host {
    ///     current: OpsSlot,
    /// }
    ///
    /// impl StructOps for Host {
    ///     fn init_member(&self, m: &MemberInfo, kdata: &mut [u8], udata: &[u8]) -> Result<bool, Errno> {
    ///         if m.name != "name" {
    ///             return Ok(false); // function members take their programs
    ///         }
    ///         let at = m.offset as usize..(m.offset + m.size) as usize;
    ///         match (kdata.get_mut(at.clone()), udata.get(at)) {
    ///             (Some(dst), Some(src)) => dst.copy_from_slice(src),
    ///             _ => return Err(Errno::EINVAL),
    ///         }
    ///         Ok(true)
    ///     }
    ///     fn reg(&self, table: &Arc<OpsTable>, _: Option<&Link>) -> Result<(), Errno> {
    ///         self.current.store(Some(table.clone()));
    ///         Ok(())
    ///     }
    ///     fn unreg(&self, table: &Arc<OpsTable>, _: Option<&Link>) {
    ///         self.current.clear_if(table);
    ///     }
    /// }
    ///
    /// // The host BTF (with the value type `bpf_struct_ops_cache_ops`, as vmlinux has
    /// // one per ops type), then the ops type itself.
    /// let rt = Runtime::default();
    /// let mut types = BtfTypes::new();
    /// let ops = types.id_of::<CacheOps>();
    /// let mut btf = types.into_builder();
    /// add_value_type(&mut btf, ops, "cache_ops").expect("cache_ops is a struct");
    /// rt.register_host_btf(btf.build())?;
    /// let host = Arc::new(Host::default());
    /// rt.register_struct_ops(StructOpsDesc::new("cache_ops", host.clone()))?;
    ///
    /// let bytes = include_bytes!("../../../bpf/cache_policy.bpf.o");
    /// let obj = ObjectLoader::open(bytes, "cache_policy.bpf.o")?.load(&rt, &LoadOptions::default())?;
    /// let link = obj.attach_struct_ops(&rt, "lru")?;
    ///
    /// // `reg` handed the host the table; it calls the programs through plain pointers.
    /// let guard = structops::read_lock();
    /// let lru = host.current.load(&guard).and_then(|t| t.ops::<CacheOps>()).expect("lru");
    /// let (admit, access, evict) = (lru.admit.unwrap(), lru.access.unwrap(), lru.evict.unwrap());
    /// let mut big = CacheEntry { key: 9, hits: 0, size: 1 << 20, slot: u32::MAX };
    /// // SAFETY: each member gets a valid struct of the type its prototype names.
    /// assert_eq!(unsafe { admit(&mut big) }, -7); // -E2BIG: above the policy's max_size
    /// for slot in 0..3 {
    ///     let mut e = CacheEntry { key: 10 + u64::from(slot), hits: 0, size: 64, slot };
    ///     // SAFETY: as above.
    ///     unsafe { access(&mut e) };
    /// }
    /// let mut ctx = CacheCtx { requests: 3, capacity: 3, used: 3 };
    /// // SAFETY: as above.
    /// assert_eq!(unsafe { evict(&mut ctx) }, 0); // slot 0 was used least recently
    /// drop(guard);
    ///
    /// // Detaching unregisters: the host's `unreg` empties its slot.
    /// link.detach(&rt)?;
    /// assert!(host.current.load(&structops::read_lock()).is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn attach_struct_ops(&self, rt: &Runtime, name: &str) -> Result<StructOpsLink, LoadError> {
        let handle = self.update_struct_ops(rt, name)?;
        let is_link = handle.struct_ops().is_some_and(|s| s.is_link_map());
        if !is_link {
            return Ok(StructOpsLink::Map(handle));
        }
        let fd = rt
            .fd_install(handle.clone())
            .map_err(|errno| LoadError::Attach {
                map: name.to_string(),
                errno,
            })?;
        let link = rt.link_create(&crate::struct_ops::LinkCreateAttr::struct_ops(fd));
        let _ = rt.fd_close(fd);
        link.map(StructOpsLink::Link)
            .map_err(|errno| LoadError::Attach {
                map: name.to_string(),
                errno,
            })
    }
}

/// What [`LoadedObject::attach_struct_ops`] returns: libbpf's struct_ops `bpf_link`.
#[derive(Debug)]
pub enum StructOpsLink {
    /// A `.struct_ops` map registered by its update (libbpf's link without a kernel link:
    /// destroying it deletes the map's element).
    Map(MapHandle),
    /// A `.struct_ops.link` map registered through a struct_ops link.
    Link(crate::struct_ops::LinkHandle),
}

impl StructOpsLink {
    /// `bpf_link__update_map`: fills `obj`'s struct_ops map `name` (an `EBUSY` from an
    /// already filled map is fine) and moves the link to it. `EINVAL` for a
    /// `.struct_ops` registration, which has no kernel link.
    pub fn update_map(
        &self,
        rt: &Runtime,
        obj: &LoadedObject,
        name: &str,
    ) -> Result<(), LoadError> {
        let err = |errno| LoadError::Attach {
            map: name.to_string(),
            errno,
        };
        let StructOpsLink::Link(link) = self else {
            return Err(err(Errno::EINVAL));
        };
        let handle = match obj.update_struct_ops(rt, name) {
            Ok(h) => h,
            Err(LoadError::Attach {
                errno: Errno::EBUSY,
                ..
            }) => obj.map(name).cloned().ok_or(err(Errno::ENOENT))?,
            Err(e) => return Err(e),
        };
        let fd = rt.fd_install(handle).map_err(err)?;
        let r = rt.link_update(
            link,
            &crate::struct_ops::LinkUpdateAttr {
                new_map_fd: fd,
                ..Default::default()
            },
        );
        let _ = rt.fd_close(fd);
        r.map_err(err)
    }

    /// `bpf_link__destroy` / `bpf_link__detach`: detaches a link, deletes a
    /// `.struct_ops` map's element (unregistering it).
    pub fn detach(&self, rt: &Runtime) -> Result<(), Errno> {
        match self {
            StructOpsLink::Map(m) => rt.map_delete_elem(m, Some(&0u32.to_ne_bytes())),
            StructOpsLink::Link(l) => rt.link_detach(l),
        }
    }
}
