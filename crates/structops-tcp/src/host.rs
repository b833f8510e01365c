//! The TCP host: a [`Runtime`] with the TCP host BTF, `tcp_congestion_ops` registered
//! with the kernel's rules (`net/ipv4/bpf_tcp_ca.c`) and a congestion-control registry
//! with `tcp_cong.c`'s semantics, the kfuncs and helpers congestion-control programs
//! call, and [`Socket`]s that call their congestion control at the kernel's hook points.
//!
//! # The registry
//!
//! Like the kernel's `tcp_cong_list`, the registry holds every congestion control by
//! name: the built-in ones ([`crate::cc::builtins`]: `reno`, `cubic`, `dctcp`, `bbr`)
//! from the start, and each struct_ops map once registered (by its update, or by
//! `link_create` for a `.struct_ops.link` map). Registration validates the table
//! (`ssthresh`, `undo_cwnd`, and `cong_avoid` or `cong_control`: `EINVAL`) and refuses a
//! name already registered (`EEXIST`); a link update replaces a registered table by one
//! with the same name (`EINVAL` otherwise), as `tcp_update_congestion_control` does.
//!
//! # Sockets and hot swap
//!
//! A [`Socket`] runs one congestion control, chosen by name
//! ([`TcpHost::set_congestion_control`], the kernel's `TCP_CONGESTION` socket option). It
//! holds the table it runs (the kernel's module reference), so a table unregistered while
//! sockets use it stays alive until they switch away. One host choice differs from
//! Linux, where an established socket keeps the table it started with: when a link
//! update replaces the table a socket runs, the socket switches to the new table at its
//! next hook call, re-initialising as `tcp_reinit_congestion_control` does (`release` of
//! the old table, `icsk_ca_priv` zeroed, `init` of the new one). That is what makes a
//! live swap visible in a simulation.
//!
//! # Socket storage
//!
//! Each socket owns a [`HostObject`], the owner of its values in `SK_STORAGE` maps
//! (`bpf_sk_storage_get`/`_delete`, the runtime's helpers). The host keeps its live
//! sockets by address and gives the runtime a hook that finds the owner of the socket a
//! program passed ([`Runtime::set_storage_owner`]); a dropped socket leaves the table
//! and releases its values (`bpf_sk_storage_free`).

use std::collections::{BTreeSet, HashMap};
use std::ffi::c_int;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use structops::loader::{LoadError, LoadOptions, LoadedObject, ObjectLoader, StructOpsLink};
use structops::struct_ops::MemberInfo;
use structops::struct_ops::tcp_ca::{self, TcpCaRules};
use structops::{
    Engine, Errno, HostObject, Link, OpsTable, OpsType, Runtime, RuntimeConfig, StructOps,
};
use structops_btf::Btf;
use thiserror::Error;

use crate::clock;
use crate::types::{
    AckSample, RateSample, Sock, TCP_CONG_NEEDS_ECN, TcpCaEvent, TcpCaState, TcpCongestionOps,
    TcpSock,
};

/// How to build a [`TcpHost`].
#[derive(Clone, Copy, Debug)]
pub struct HostConfig {
    /// The engine verified programs run on.
    pub engine: Engine,
    /// `CONFIG_HZ`: the tick rate of `jiffies` (native code and `bpf_jiffies64`).
    pub hz: u32,
}

impl Default for HostConfig {
    fn default() -> HostConfig {
        HostConfig {
            engine: Engine::default(),
            hz: clock::DEFAULT_HZ,
        }
    }
}

/// Why the host could not do something.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HostError {
    /// Setting up the runtime failed at `step`.
    #[error("setting up the TCP host: {step}: {errno}")]
    Setup {
        /// What was being done.
        step: String,
        /// The runtime's errno.
        errno: Errno,
    },
    /// Opening, loading or attaching an object failed.
    #[error("{path}: {source}")]
    Load {
        /// The object.
        path: String,
        /// What the loader said.
        #[source]
        source: LoadError,
    },
    /// The object has no struct_ops map of that name (or none at all).
    #[error("{path}: no struct_ops map{}", .map.as_deref().map(|m| format!(" named {m}")).unwrap_or_default())]
    NoStructOps {
        /// The object.
        path: String,
        /// The map asked for.
        map: Option<String>,
    },
    /// The map is not a `.struct_ops.link` map, so it cannot be updated in place.
    #[error("{what}: hot swap needs a .struct_ops.link map: {errno}")]
    NotALink {
        /// The registration.
        what: String,
        /// `EINVAL`.
        errno: Errno,
    },
}

/// A congestion control a socket can run: a table and what keeps it alive.
#[derive(Clone)]
struct Cc {
    name: String,
    ops: *const TcpCongestionOps,
    /// The struct_ops table the ops live in (`None` for built-in ones, whose tables are
    /// statics).
    table: Option<Arc<OpsTable>>,
}

// SAFETY: `ops` points to an immutable table: a static or the `kdata` of `table`, which
// the `Arc` keeps alive and never changes.
unsafe impl Send for Cc {}
// SAFETY: as above.
unsafe impl Sync for Cc {}

impl fmt::Debug for Cc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cc")
            .field("name", &self.name)
            .field("bpf", &self.table.is_some())
            .finish()
    }
}

impl Cc {
    fn builtin(ops: &'static TcpCongestionOps) -> Cc {
        Cc {
            name: ops.name().to_string(),
            ops,
            table: None,
        }
    }

    fn ops(&self) -> &TcpCongestionOps {
        // SAFETY: see the `Send` impl: the table outlives `self`.
        unsafe { &*self.ops }
    }

    fn same(&self, other: &Cc) -> bool {
        std::ptr::eq(self.ops, other.ops)
    }
}

/// What the host's callbacks share.
struct Shared {
    rules: TcpCaRules,
    /// `tcp_cong_list`.
    registry: Mutex<Vec<Cc>>,
    /// Bumped on every registry change, so sockets notice updates cheaply.
    generation: AtomicU64,
    /// The live sockets by address, with the owner of their storage: what
    /// `bpf_sk_storage_get`/`_delete` look a socket pointer up in (an address that is
    /// no live socket finds nothing and is never dereferenced).
    sockets: Mutex<HashMap<u64, HostObject>>,
}

impl Shared {
    fn registry(&self) -> MutexGuard<'_, Vec<Cc>> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn find(&self, name: &str) -> Option<Cc> {
        self.registry().iter().find(|c| c.name == name).cloned()
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn sockets(&self) -> MutexGuard<'_, HashMap<u64, HostObject>> {
        self.sockets.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The struct_ops callbacks of `tcp_congestion_ops` with a registry behind them.
struct TcpCaHost {
    shared: Arc<Shared>,
}

impl TcpCaHost {
    fn cc_of(&self, table: &Arc<OpsTable>) -> Result<Cc, Errno> {
        let ops = table.ops::<TcpCongestionOps>().ok_or(Errno::EINVAL)?;
        Ok(Cc {
            name: self.shared.rules.name_of(table.kdata()),
            ops,
            table: Some(table.clone()),
        })
    }
}

impl StructOps for TcpCaHost {
    fn init(&self, btf: &Btf) -> Result<(), Errno> {
        if TcpCaRules::new(btf)? != self.shared.rules {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }

    fn init_member(
        &self,
        member: &MemberInfo,
        kdata: &mut [u8],
        udata: &[u8],
    ) -> Result<bool, Errno> {
        self.shared.rules.init_member(member, kdata, udata)
    }

    fn validate(&self, table: &OpsTable) -> Result<(), Errno> {
        tcp_ca::validate(table)
    }

    /// `tcp_register_congestion_control`.
    fn reg(&self, table: &Arc<OpsTable>, _: Option<&Link>) -> Result<(), Errno> {
        tcp_ca::validate(table)?;
        let cc = self.cc_of(table)?;
        let mut reg = self.shared.registry();
        if reg.iter().any(|c| c.name == cc.name) {
            return Err(Errno::EEXIST);
        }
        reg.push(cc);
        drop(reg);
        self.shared.bump();
        Ok(())
    }

    /// `tcp_unregister_congestion_control`.
    fn unreg(&self, table: &Arc<OpsTable>, _: Option<&Link>) {
        let ptr = table.kdata_ptr().cast::<TcpCongestionOps>();
        self.shared.registry().retain(|c| !std::ptr::eq(c.ops, ptr));
        self.shared.bump();
    }

    fn has_update(&self) -> bool {
        true
    }

    /// `tcp_update_congestion_control`: the new table must have the old one's name, and
    /// the old one must be what is registered under it.
    fn update(&self, new: &Arc<OpsTable>, old: &Arc<OpsTable>, _: &Link) -> Result<(), Errno> {
        tcp_ca::validate(new)?;
        let new_cc = self.cc_of(new)?;
        let old_ptr = old.kdata_ptr().cast::<TcpCongestionOps>();
        let old_name = self.shared.rules.name_of(old.kdata());
        let mut reg = self.shared.registry();
        let Some(i) = reg.iter().position(|c| c.name == old_name) else {
            return Err(Errno::EINVAL);
        };
        if new_cc.name != old_name || !std::ptr::eq(reg[i].ops, old_ptr) {
            return Err(Errno::EINVAL);
        }
        // The kernel adds the new one at the tail before removing the old one.
        reg.remove(i);
        reg.push(new_cc);
        drop(reg);
        self.shared.bump();
        Ok(())
    }

    fn helper_allowed(&self, helper_id: i32, member: &MemberInfo) -> bool {
        self.shared.rules.helper_allowed(helper_id, member)
    }

    fn helper_arg_btf_id(&self, _: &Btf, helper_id: i32, arg: usize) -> Option<u32> {
        self.shared.rules.helper_arg_btf_id(helper_id, arg)
    }

    fn ctx_arg_btf_id(&self, _: &Btf, btf_id: u32) -> u32 {
        self.shared.rules.ctx_arg_btf_id(btf_id)
    }

    fn struct_write(
        &self,
        _: &Btf,
        btf_id: u32,
        off: i32,
        size: u32,
    ) -> Option<Result<(), String>> {
        Some(self.shared.rules.struct_write(btf_id, off, size))
    }
}

/// The TCP host: a runtime set up for congestion-control programs, and its registry.
pub struct TcpHost {
    rt: Arc<Runtime>,
    shared: Arc<Shared>,
    ops_type: Arc<OpsType>,
    hz: u32,
}

impl fmt::Debug for TcpHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpHost")
            .field("available", &self.available())
            .field("hz", &self.hz)
            .finish_non_exhaustive()
    }
}

/// A congestion control registered from an object ([`TcpHost::load_object`]): keeps the
/// object loaded and its registration alive; dropping it unregisters (detaches the link,
/// or deletes the map's element).
pub struct LoadedCc {
    /// The congestion control's name (`.name` of the map's table).
    pub name: String,
    /// The struct_ops map.
    pub map: String,
    /// The object's path.
    pub path: String,
    obj: LoadedObject,
    link: StructOpsLink,
    /// Objects swapped in by [`TcpHost::update`], kept loaded while the link uses them.
    swapped: Vec<LoadedObject>,
    rt: Arc<Runtime>,
}

impl fmt::Debug for LoadedCc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedCc")
            .field("name", &self.name)
            .field("map", &self.map)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl LoadedCc {
    /// The loaded object.
    pub fn object(&self) -> &LoadedObject {
        &self.obj
    }

    /// The object whose map the registration uses now: the last one swapped in by
    /// [`TcpHost::update`], or the original.
    pub fn current_object(&self) -> &LoadedObject {
        self.swapped.last().unwrap_or(&self.obj)
    }
}

impl Drop for LoadedCc {
    fn drop(&mut self) {
        let _ = self.link.detach(&self.rt);
    }
}

/// An object whose struct_ops maps were all attached ([`TcpHost::attach_all`]): each
/// map's result, and the registrations that succeeded, undone (in reverse order) when
/// this is dropped.
pub struct AttachedObject {
    obj: LoadedObject,
    maps: Vec<(String, Result<StructOpsLink, Errno>)>,
    rt: Arc<Runtime>,
}

impl fmt::Debug for AttachedObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachedObject")
            .field("maps", &self.results())
            .finish_non_exhaustive()
    }
}

impl AttachedObject {
    /// The loaded object.
    pub fn object(&self) -> &LoadedObject {
        &self.obj
    }

    /// Each struct_ops map in object order, with its attach's result.
    pub fn results(&self) -> Vec<(&str, Result<(), Errno>)> {
        self.maps
            .iter()
            .map(|(n, r)| (n.as_str(), r.as_ref().map(drop).map_err(|e| *e)))
            .collect()
    }
}

impl Drop for AttachedObject {
    fn drop(&mut self) {
        for (_, r) in self.maps.iter().rev() {
            if let Ok(link) = r {
                let _ = link.detach(&self.rt);
            }
        }
    }
}

impl TcpHost {
    /// A runtime with the TCP host BTF, `tcp_congestion_ops`, the kfuncs and helpers,
    /// the simulated clock and the built-in congestion controls.
    ///
    /// # Errors
    ///
    /// [`HostError::Setup`] naming the step the runtime refused.
    pub fn new(config: HostConfig) -> Result<TcpHost, HostError> {
        let hz = if config.hz == 0 {
            clock::DEFAULT_HZ
        } else {
            config.hz
        };
        let rt = Arc::new(Runtime::new(RuntimeConfig {
            engine: config.engine,
            hz,
            ncpus: 1,
            ..RuntimeConfig::default()
        }));
        let setup = |step: &str| {
            let step = step.to_string();
            move |errno| HostError::Setup { step, errno }
        };
        let btf = crate::btf::host_btf();
        let rules = TcpCaRules::new(&btf).map_err(setup("the host BTF's TCP types"))?;
        let desc_btf = btf.clone();
        rt.register_host_btf(btf)
            .map_err(setup("registering the host BTF"))?;
        let shared = Arc::new(Shared {
            rules,
            registry: Mutex::new(crate::cc::builtins().into_iter().map(Cc::builtin).collect()),
            generation: AtomicU64::new(0),
            sockets: Mutex::new(HashMap::new()),
        });
        let ops = Arc::new(TcpCaHost {
            shared: shared.clone(),
        });
        let desc = tcp_ca::desc(&desc_btf, ops).map_err(setup("describing tcp_congestion_ops"))?;
        let ops_type = rt
            .register_struct_ops(desc)
            .map_err(setup("registering tcp_congestion_ops"))?;
        crate::kfuncs::register(&rt).map_err(|(name, errno)| HostError::Setup {
            step: format!("registering kfunc {name}"),
            errno,
        })?;
        crate::helpers::register(&rt).map_err(|(name, errno)| HostError::Setup {
            step: format!("registering helper {name}"),
            errno,
        })?;
        rt.set_clock(Some(Arc::new(|_| clock::ktime_ns())));
        // Socket storage: the owner of the socket at the address a program passed
        // (`bpf_sk_storage_get`/`_delete`), if it is a live socket of this host.
        let owners = Arc::downgrade(&shared);
        rt.set_storage_owner(Some(Arc::new(move |addr| {
            owners.upgrade()?.sockets().get(&addr).cloned()
        })));
        clock::set_hz(hz);
        Ok(TcpHost {
            rt,
            shared,
            ops_type,
            hz,
        })
    }

    /// The runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.rt
    }

    /// The runtime, shared (what a control socket serves:
    /// `structops_control::Serve::serve`).
    pub fn runtime_arc(&self) -> &Arc<Runtime> {
        &self.rt
    }

    /// The registered `tcp_congestion_ops` type.
    pub fn ops_type(&self) -> &Arc<OpsType> {
        &self.ops_type
    }

    /// `CONFIG_HZ`.
    pub fn hz(&self) -> u32 {
        self.hz
    }

    /// Prepares the calling thread to run this host's sockets (a simulation does this on
    /// the thread it runs on): the clock's `CONFIG_HZ`, and — unless the thread has one —
    /// a send-ACK hook ([`crate::cc::hooks`]) that queues each requested ACK on its
    /// [`Socket`] ([`Socket::take_send_acks`]).
    pub fn enter(&self) {
        clock::set_hz(self.hz);
        let prev = crate::cc::hooks::set_send_ack(Some(queue_send_ack));
        if prev.is_some() {
            crate::cc::hooks::set_send_ack(prev);
        }
    }

    /// The registered congestion controls, in registration order
    /// (`tcp_available_congestion_control`).
    pub fn available(&self) -> Vec<String> {
        self.shared
            .registry()
            .iter()
            .map(|c| c.name.clone())
            .collect()
    }

    /// Opens and loads `bytes` (an object named `path`) and attaches its struct_ops map
    /// `map` (`None`: the only struct_ops map it has), registering the congestion
    /// control. Programs are loaded as libbpf loads them; `CONFIG_HZ` is this host's.
    ///
    /// # Errors
    ///
    /// [`HostError::Load`] with the loader's error (a load's or an attach's errno);
    /// [`HostError::NoStructOps`] if there is no such map, or several and `map` is `None`.
    ///
    /// # Example
    ///
    /// The project's BPF CUBIC (`bpf/cubic.bpf.c`, registered as `so_cubic`) against the
    /// host's native CUBIC, in slow start:
    ///
    /// ```
    /// use structops_tcp::{HostConfig, TcpHost};
    ///
    /// let host = TcpHost::new(HostConfig::default())?;
    /// host.enter();
    /// let cc = host.load_object(include_bytes!("../../../bpf/cubic.bpf.o"), "cubic.bpf.o", None)?;
    /// assert_eq!(cc.name, "so_cubic");
    /// assert!(host.available().iter().any(|name| name == "so_cubic"));
    ///
    /// let mut bpf = host.socket();
    /// let mut native = host.socket();
    /// for (sock, name) in [(&mut bpf, "so_cubic"), (&mut native, "cubic")] {
    ///     sock.snd_cwnd = 10;
    ///     sock.snd_ssthresh = u32::MAX >> 1; // TCP_INFINITE_SSTHRESH
    ///     sock.max_packets_out = 10;
    ///     host.set_congestion_control(sock, name)?;
    /// }
    /// for ack in 0..20 {
    ///     structops_tcp::clock::set_now_ns(u64::from(ack) * 1_000_000);
    ///     bpf.ca_cong_avoid(ack, 2);
    ///     native.ca_cong_avoid(ack, 2);
    /// }
    /// assert_eq!(bpf.ca_name(), "so_cubic");
    /// assert_eq!(bpf.snd_cwnd, native.snd_cwnd);
    /// assert!(bpf.snd_cwnd > 10, "slow start grew the window: {}", bpf.snd_cwnd);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load_object(
        &self,
        bytes: &[u8],
        path: &str,
        map: Option<&str>,
    ) -> Result<LoadedCc, HostError> {
        let obj = self.load(bytes, path)?;
        let map = pick_map(&obj, path, map)?;
        let link = obj
            .attach_struct_ops(&self.rt, &map)
            .map_err(|source| HostError::Load {
                path: path.to_string(),
                source,
            })?;
        let name = self.table_name(&obj, &map).unwrap_or_default();
        Ok(LoadedCc {
            name,
            map,
            path: path.to_string(),
            obj,
            link,
            swapped: Vec::new(),
            rt: self.rt.clone(),
        })
    }

    /// Loads an object without attaching anything.
    ///
    /// # Errors
    ///
    /// [`HostError::Load`].
    pub fn load(&self, bytes: &[u8], path: &str) -> Result<LoadedObject, HostError> {
        self.load_with(bytes, path, &LoadOptions::default())
    }

    /// [`TcpHost::load`] with loader options, e.g. a `__ksym` resolver that knows only
    /// the kfuncs of the congestion-control modules some kernel has.
    ///
    /// # Errors
    ///
    /// [`HostError::Load`].
    pub fn load_with(
        &self,
        bytes: &[u8],
        path: &str,
        opts: &LoadOptions<'_>,
    ) -> Result<LoadedObject, HostError> {
        let err = |source| HostError::Load {
            path: path.to_string(),
            source,
        };
        let loader = ObjectLoader::open(bytes, path).map_err(err)?;
        loader.load(&self.rt, opts).map_err(err)
    }

    /// Attaches every struct_ops map of `obj` in object order, as a libbpf program
    /// calling `bpf_map__attach_struct_ops` on each does: a later map sees what the
    /// earlier ones registered (`EEXIST` for a second table with the same name). The
    /// registrations last until the returned [`AttachedObject`] is dropped.
    pub fn attach_all(&self, obj: LoadedObject) -> AttachedObject {
        let names: Vec<String> = obj
            .object()
            .maps()
            .iter()
            .filter(|m| m.struct_ops().is_some())
            .map(|m| m.name().to_string())
            .collect();
        let maps = names
            .into_iter()
            .map(|name| {
                let r = obj
                    .attach_struct_ops(&self.rt, &name)
                    .map_err(|e| e.errno());
                (name, r)
            })
            .collect();
        AttachedObject {
            obj,
            maps,
            rt: self.rt.clone(),
        }
    }

    /// Hot swap: moves `cc`'s link to the struct_ops map `map` of the object `bytes`
    /// (`bpf_link__update_map`). The new table must have the same name; sockets running
    /// the old one switch at their next hook call.
    ///
    /// # Errors
    ///
    /// [`HostError::Load`] (the update's errno, e.g. `EINVAL` for another name),
    /// [`HostError::NoStructOps`], [`HostError::NotALink`] for a `.struct_ops` map.
    pub fn update(
        &self,
        cc: &mut LoadedCc,
        bytes: &[u8],
        path: &str,
        map: Option<&str>,
    ) -> Result<(), HostError> {
        if !matches!(cc.link, StructOpsLink::Link(_)) {
            return Err(HostError::NotALink {
                what: format!("{}:{}", cc.path, cc.map),
                errno: Errno::EINVAL,
            });
        }
        let obj = self.load(bytes, path)?;
        let map = pick_map(&obj, path, map)?;
        cc.link
            .update_map(&self.rt, &obj, &map)
            .map_err(|source| HostError::Load {
                path: path.to_string(),
                source,
            })?;
        cc.swapped.push(obj);
        Ok(())
    }

    /// The `.name` the object's struct_ops map `map` was given (after its update).
    fn table_name(&self, obj: &LoadedObject, map: &str) -> Option<String> {
        let handle = obj.map(map)?;
        let st = handle.struct_ops()?;
        let table = st.table()?;
        Some(self.shared.rules.name_of(table.kdata()))
    }

    /// A new socket (established, no congestion control yet: choose one with
    /// [`TcpHost::set_congestion_control`]).
    pub fn socket(&self) -> Box<Socket> {
        let mut tp = TcpSock::default();
        tp.sk_mut().__sk_common.skc_state = TCP_ESTABLISHED;
        tp.sk_mut().sk_pacing_shift = 10;
        tp.sk_mut().sk_max_pacing_rate = !0;
        tp.sk_mut().sk_gso_max_segs = 64;
        tp.sk_mut().sk_gso_max_size = 65536;
        let sock = Box::new(Socket {
            tp,
            ca: None,
            shared: self.shared.clone(),
            generation: 0,
            send_acks: Vec::new(),
            chg_cc_inprogress: false,
            storage: HostObject::new(),
        });
        // The box never moves, so its address names the socket until it is dropped.
        let addr = std::ptr::from_ref::<Socket>(&sock).expose_provenance() as u64;
        self.shared.sockets().insert(addr, sock.storage.clone());
        live_sockets().insert(addr);
        sock
    }

    /// `tcp_set_congestion_control(sk, name, load = false, cap_net_admin = true)`:
    /// switches `sock` to the registered congestion control `name`, re-initialising it
    /// (`ENOENT` if there is none; nothing happens when it already runs it).
    ///
    /// # Errors
    ///
    /// `ENOENT`.
    pub fn set_congestion_control(&self, sock: &mut Socket, name: &str) -> Result<(), Errno> {
        sock.set_congestion_control(name)
    }
}

/// `TCP_ESTABLISHED`.
pub const TCP_ESTABLISHED: u8 = 1;
/// `INET_ECN_MASK`.
const INET_ECN_MASK: u8 = 3;
/// `INET_ECN_ECT_0`.
const INET_ECN_ECT_0: u8 = 2;

/// The struct_ops map to attach: `map`, or the only one.
fn pick_map(obj: &LoadedObject, path: &str, map: Option<&str>) -> Result<String, HostError> {
    let names: Vec<&str> = obj
        .object()
        .maps()
        .iter()
        .filter(|m| m.struct_ops().is_some())
        .map(|m| m.name())
        .collect();
    let none = || HostError::NoStructOps {
        path: path.to_string(),
        map: map.map(str::to_string),
    };
    match map {
        Some(m) if names.contains(&m) => Ok(m.to_string()),
        Some(_) => Err(none()),
        None if names.len() == 1 => Ok(names[0].to_string()),
        None => Err(none()),
    }
}

/// A TCP endpoint: the kernel-layout [`TcpSock`] its congestion control sees, and the
/// host's state about it. Created by [`TcpHost::socket`]; derefs to the [`TcpSock`].
///
/// The `ca_*` methods are the kernel's call sites of `icsk_ca_ops` (`tcp_ca_event`,
/// `tcp_set_ca_state`, `tcp_init_congestion_control`, ...): each calls the member if the
/// table has it, through the table's function pointer (the native entry point of the
/// implementing program, or a native Rust function).
#[repr(C)]
pub struct Socket {
    /// First, so that a `struct sock *` to `tp` is also a pointer to the `Socket`.
    tp: TcpSock,
    ca: Option<Cc>,
    shared: Arc<Shared>,
    generation: u64,
    send_acks: Vec<u32>,
    /// The kernel's `tp->bpf_chg_cc_inprogress`.
    chg_cc_inprogress: bool,
    /// The owner of the socket's local storage (`sk->sk_bpf_storage`): its values in
    /// `SK_STORAGE` maps, released when the socket is dropped.
    storage: HostObject,
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("ca", &self.ca)
            .field("snd_cwnd", &self.tp.snd_cwnd)
            .field("snd_ssthresh", &self.tp.snd_ssthresh)
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for Socket {
    type Target = TcpSock;
    fn deref(&self) -> &TcpSock {
        &self.tp
    }
}

impl std::ops::DerefMut for Socket {
    fn deref_mut(&mut self) -> &mut TcpSock {
        &mut self.tp
    }
}

impl Socket {
    /// The `struct sock *` congestion-control members take (the socket's address).
    fn sk(this: *mut Socket) -> *mut Sock {
        this.cast()
    }

    /// The table this socket runs, after following a link update of it.
    fn table(&mut self) -> Option<*const TcpCongestionOps> {
        let g = self.shared.generation.load(Ordering::Acquire);
        if g != self.generation {
            self.generation = g;
            self.follow_update();
        }
        self.ca.as_ref().map(|c| c.ops)
    }

    /// If the name this socket runs now has another table, switch to it
    /// (`tcp_reinit_congestion_control`).
    fn follow_update(&mut self) {
        let Some(cur) = self.ca.clone() else {
            return;
        };
        if let Some(now) = self.shared.find(&cur.name)
            && !now.same(&cur)
        {
            self.reinit(now);
        }
    }

    /// `tcp_reinit_congestion_control`.
    fn reinit(&mut self, cc: Cc) {
        self.ca_release();
        let needs_ecn = cc.ops().flags & TCP_CONG_NEEDS_ECN != 0;
        self.tp.icsk_mut().icsk_ca_ops = cc.ops;
        self.ca = Some(cc);
        self.tp.icsk_mut().set_ca_setsockopt(true);
        self.tp.icsk_mut().icsk_ca_priv = [0; crate::types::ICSK_CA_PRIV_SIZE / 8];
        self.set_ecn_xmit(needs_ecn);
        self.ca_init();
    }

    fn set_ecn_xmit(&mut self, on: bool) {
        // INET_ECN_xmit / INET_ECN_dontxmit: whether data goes out ECT(0) (the ECN bits
        // of the TOS byte). Negotiation (`TCP_ECN_OK`) is the connection's business.
        let tos = &mut self.tp.icsk_mut().icsk_inet.tos;
        *tos = (*tos & !INET_ECN_MASK) | if on { INET_ECN_ECT_0 } else { 0 };
    }

    /// Whether data goes out ECN-capable (`INET_ECN_xmit` was last called).
    pub fn ecn_xmit(&self) -> bool {
        self.tp.icsk().icsk_inet.tos & INET_ECN_MASK == INET_ECN_ECT_0
    }

    /// `tcp_set_congestion_control` (`load = false`, privileged), without the
    /// `bpf_setsockopt` recursion guard (see [`crate::helpers`]).
    pub fn set_congestion_control(&mut self, name: &str) -> Result<(), Errno> {
        let cc = self.shared.find(name).ok_or(Errno::ENOENT)?;
        self.generation = self.shared.generation.load(Ordering::Acquire);
        if self.ca.as_ref().is_some_and(|c| c.same(&cc)) {
            self.tp.icsk_mut().set_ca_setsockopt(true);
            return Ok(());
        }
        self.reinit(cc);
        Ok(())
    }

    /// The owner of this socket's values in `SK_STORAGE` maps (what
    /// `bpf_sk_storage_get` on it reaches; the host reads them with
    /// [`structops::Map::storage_get`] or through a descriptor of it).
    pub fn storage(&self) -> &HostObject {
        &self.storage
    }

    /// The name of the congestion control this socket runs (empty without one).
    pub fn ca_name(&self) -> String {
        self.ca.as_ref().map(|c| c.name.clone()).unwrap_or_default()
    }

    /// The id of the struct_ops map whose table this socket runs (`None` for a built-in
    /// congestion control or none).
    pub fn ca_map_id(&self) -> Option<u32> {
        self.ca.as_ref()?.table.as_ref().map(|t| t.map_id())
    }

    /// The table this socket runs.
    pub fn ca_ops(&self) -> Option<&TcpCongestionOps> {
        self.ca.as_ref().map(Cc::ops)
    }

    /// Whether the congestion control wants ECN (`TCP_CONG_NEEDS_ECN`).
    pub fn needs_ecn(&self) -> bool {
        self.ca_ops()
            .is_some_and(|o| o.flags & TCP_CONG_NEEDS_ECN != 0)
    }

    /// Whether the congestion control has `cong_control`.
    pub fn has_cong_control(&self) -> bool {
        self.ca_ops().is_some_and(|o| o.cong_control.is_some())
    }

    /// The `rcv_nxt` values of the ACKs the congestion control asked to send
    /// (`bpf_tcp_send_ack`, the kernel's `tcp_send_ack`) since the last call.
    pub fn take_send_acks(&mut self) -> std::vec::Drain<'_, u32> {
        self.send_acks.drain(..)
    }

    /// The kernel's `tp->bpf_chg_cc_inprogress`: a `bpf_setsockopt(TCP_CONGESTION)` of
    /// this socket is running.
    pub fn chg_cc_in_progress(&self) -> bool {
        self.chg_cc_inprogress
    }

    /// Sets `bpf_chg_cc_inprogress`.
    pub fn set_chg_cc_in_progress(&mut self, on: bool) {
        self.chg_cc_inprogress = on;
    }

    /// Queues an ACK with `rcv_nxt` (what `bpf_tcp_send_ack` does).
    pub fn request_ack(&mut self, rcv_nxt: u32) {
        self.send_acks.push(rcv_nxt);
    }

    /// Reads member `f` of the current table (after following updates).
    fn member<F: Copy>(&mut self, f: impl Fn(&TcpCongestionOps) -> Option<F>) -> Option<F> {
        let ops = self.table()?;
        // SAFETY: `table` returns the pointer of the `Cc` this socket holds, alive.
        f(unsafe { &*ops })
    }

    /// `tcp_init_congestion_control`.
    pub fn ca_init(&mut self) {
        self.tp.prior_ssthresh = 0;
        if let Some(f) = self.member(|o| o.init) {
            let p: *mut Socket = self;
            // SAFETY: `p` is this live socket; the member may re-enter the host (a helper
            // switching the congestion control), which works on `p` too; nothing here
            // holds a reference into the socket across the call.
            unsafe { f(Socket::sk(p)) };
        }
        self.adopt_native_switch();
        let ecn = self.needs_ecn();
        self.set_ecn_xmit(ecn);
        self.tp.icsk_mut().set_ca_initialized(true);
    }

    /// A built-in congestion control's `init` may switch the socket to another built-in
    /// table by writing `icsk_ca_ops` (DCTCP falls back to Reno without ECN), as kernel
    /// modules do; programs cannot write it. Follow such a switch.
    fn adopt_native_switch(&mut self) {
        let now = self.tp.icsk().icsk_ca_ops;
        let Some(cur) = &self.ca else {
            return;
        };
        if now.is_null() || std::ptr::eq(now, cur.ops) {
            return;
        }
        if crate::cc::is_builtin_table(now) {
            // SAFETY: `now` is one of the built-in statics (checked just above).
            let ops: &'static TcpCongestionOps = unsafe { &*now };
            self.ca = Some(Cc::builtin(ops));
        } else {
            // Anything else is not a table this host knows: keep the current one.
            self.tp.icsk_mut().icsk_ca_ops = cur.ops;
        }
    }

    /// `tcp_cleanup_congestion_control`: `release`.
    pub fn ca_release(&mut self) {
        if self.ca.is_none() {
            return;
        }
        let release = self.ca.as_ref().and_then(|c| c.ops().release);
        if let Some(f) = release {
            let p: *mut Socket = self;
            // SAFETY: as in `ca_init`.
            unsafe { f(Socket::sk(p)) };
        }
    }

    /// `ssthresh` (required; 0 without a congestion control).
    pub fn ca_ssthresh(&mut self) -> u32 {
        let Some(f) = self.member(|o| o.ssthresh) else {
            return 0;
        };
        let p: *mut Socket = self;
        // SAFETY: as in `ca_init`.
        unsafe { f(Socket::sk(p)) }
    }

    /// `cong_avoid(ack, acked)`.
    pub fn ca_cong_avoid(&mut self, ack: u32, acked: u32) {
        if let Some(f) = self.member(|o| o.cong_avoid) {
            let p: *mut Socket = self;
            // SAFETY: as in `ca_init`.
            unsafe { f(Socket::sk(p), ack, acked) };
        }
    }

    /// `cong_control(ack, flag, rs)`.
    pub fn ca_cong_control(&mut self, ack: u32, flag: i32, rs: &RateSample) {
        if let Some(f) = self.member(|o| o.cong_control) {
            let p: *mut Socket = self;
            // SAFETY: as in `ca_init`; `rs` outlives the call.
            unsafe { f(Socket::sk(p), ack, flag as c_int, rs) };
        }
    }

    /// `tcp_set_ca_state`: `set_state(state)`, then `icsk_ca_state = state`.
    pub fn ca_set_state(&mut self, state: TcpCaState) {
        if let Some(f) = self.member(|o| o.set_state) {
            let p: *mut Socket = self;
            // SAFETY: as in `ca_init`.
            unsafe { f(Socket::sk(p), state as u8) };
        }
        self.tp.icsk_mut().set_ca_state(state as u8);
    }

    /// `tcp_ca_event(ev)`.
    pub fn ca_event(&mut self, ev: TcpCaEvent) {
        if let Some(f) = self.member(|o| o.cwnd_event) {
            let p: *mut Socket = self;
            // SAFETY: as in `ca_init`.
            unsafe { f(Socket::sk(p), ev) };
        }
    }

    /// `in_ack_event(flags)`.
    pub fn ca_in_ack_event(&mut self, flags: u32) {
        if let Some(f) = self.member(|o| o.in_ack_event) {
            let p: *mut Socket = self;
            // SAFETY: as in `ca_init`.
            unsafe { f(Socket::sk(p), flags) };
        }
    }

    /// `pkts_acked(sample)`.
    pub fn ca_pkts_acked(&mut self, sample: &AckSample) {
        if let Some(f) = self.member(|o| o.pkts_acked) {
            let p: *mut Socket = self;
            // SAFETY: as in `ca_init`; `sample` outlives the call.
            unsafe { f(Socket::sk(p), sample) };
        }
    }

    /// `undo_cwnd` (required; the current cwnd without a congestion control).
    pub fn ca_undo_cwnd(&mut self) -> u32 {
        let Some(f) = self.member(|o| o.undo_cwnd) else {
            return self.tp.snd_cwnd;
        };
        let p: *mut Socket = self;
        // SAFETY: as in `ca_init`.
        unsafe { f(Socket::sk(p)) }
    }

    /// `min_tso_segs`, if the congestion control has it.
    pub fn ca_min_tso_segs(&mut self) -> Option<u32> {
        let f = self.member(|o| o.min_tso_segs)?;
        let p: *mut Socket = self;
        // SAFETY: as in `ca_init`.
        Some(unsafe { f(Socket::sk(p)) })
    }

    /// `sndbuf_expand`, if the congestion control has it.
    pub fn ca_sndbuf_expand(&mut self) -> Option<u32> {
        let f = self.member(|o| o.sndbuf_expand)?;
        let p: *mut Socket = self;
        // SAFETY: as in `ca_init`.
        Some(unsafe { f(Socket::sk(p)) })
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // `tcp_cleanup_congestion_control` on close (its `release` may still use the
        // socket's storage), then `bpf_sk_storage_free`.
        self.ca_release();
        let addr = std::ptr::from_mut::<Socket>(self).expose_provenance() as u64;
        live_sockets().remove(&addr);
        self.shared.sockets().remove(&addr);
        self.storage.release();
    }
}

/// The addresses of every live [`Socket`] of every host in the process.
static LIVE_SOCKETS: Mutex<BTreeSet<u64>> = Mutex::new(BTreeSet::new());

fn live_sockets() -> MutexGuard<'static, BTreeSet<u64>> {
    LIVE_SOCKETS.lock().unwrap_or_else(|p| p.into_inner())
}

/// The send-ACK hook [`TcpHost::enter`] installs: queues the ACK on the socket (nothing
/// happens for an address that is not a live [`Socket`]).
fn queue_send_ack(sk: *mut Sock, rcv_nxt: u32) {
    // SAFETY: the hooks are called with the `struct sock *` of the member being run;
    // `socket_of` only returns live sockets.
    if let Some(s) = unsafe { socket_of(sk.expose_provenance() as u64) } {
        s.request_ack(rcv_nxt);
    }
}

/// The [`Socket`] at `sk`, if it is the address of a live one. A `TcpSock` that is not
/// part of a `Socket` (a host calling a member through [`OpsTable::call`] with its own
/// struct) finds nothing, so helpers never reach past it.
///
/// # Safety
///
/// While the returned reference is used, no other reference to that socket may be used
/// (the members are running on it through a raw pointer; see [`Socket`]).
pub(crate) unsafe fn socket_of<'a>(sk: u64) -> Option<&'a mut Socket> {
    if !live_sockets().contains(&sk) {
        return None;
    }
    // SAFETY: `sk` is a live `Socket` (checked above; a socket leaves the set before it
    // is freed, and only its own thread runs its members); the caller's contract covers
    // aliasing.
    Some(unsafe { &mut *std::ptr::with_exposed_provenance_mut::<Socket>(sk as usize) })
}
