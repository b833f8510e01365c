//! The server side: a Unix socket in front of a [`Runtime`].

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use structops::loader::{LoadOptions, LoadedObject, ObjectLoader, StructOpsLink};
use structops::{Errno, ObjKind, Runtime};

use crate::frame::{self, DEFAULT_MAX_FRAME, FrameError};
use crate::message::{
    ControlError, LinkEntry, MapEntry, OpsTypeEntry, ProgEntry, Registered, Request, Response,
    Step, StructOpsEntry, Target,
};

/// What a peer may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Lists, dumps, lookups and the status.
    ReadOnly,
    /// Everything, including updates and (un)registration.
    ReadWrite,
}

/// The embedder's status hook: the host's own state as JSON.
pub type StatusHook = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// How [`ControlServer::start`] serves.
#[derive(Clone)]
pub struct ServeConfig {
    /// The socket file's mode, set explicitly after binding (independent of the umask).
    pub mode: u32,
    /// The uids allowed to connect and their roles; a uid not here gets `EPERM`.
    /// Default: the process's effective uid, read-write.
    pub allow: BTreeMap<u32, Role>,
    /// The most connections served at once; more get `EAGAIN` and are closed.
    pub max_connections: usize,
    /// Per read and per write timeout on a connection; an idle client is disconnected
    /// after it.
    pub timeout: Duration,
    /// The largest frame accepted or sent.
    pub max_frame: u32,
    /// The host status hook ([`Request::Status`]); `None` answers `EOPNOTSUPP`.
    pub status: Option<StatusHook>,
}

impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeConfig")
            .field("mode", &format_args!("{:o}", self.mode))
            .field("allow", &self.allow)
            .field("max_connections", &self.max_connections)
            .field("timeout", &self.timeout)
            .field("max_frame", &self.max_frame)
            .field("status", &self.status.is_some())
            .finish()
    }
}

impl Default for ServeConfig {
    fn default() -> ServeConfig {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let uid = unsafe { libc::geteuid() };
        ServeConfig {
            mode: 0o600,
            allow: BTreeMap::from([(uid, Role::ReadWrite)]),
            max_connections: 16,
            timeout: Duration::from_secs(30),
            max_frame: DEFAULT_MAX_FRAME,
            status: None,
        }
    }
}

impl ServeConfig {
    /// Allows `uid` with `role` (replacing its previous role).
    pub fn allow(mut self, uid: u32, role: Role) -> ServeConfig {
        self.allow.insert(uid, role);
        self
    }

    /// Installs the status hook.
    pub fn status(mut self, hook: impl Fn() -> serde_json::Value + Send + Sync + 'static) -> Self {
        self.status = Some(Arc::new(hook));
        self
    }
}

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Something already exists at the socket path (a stale socket is not replaced
    /// silently: remove it first).
    #[error("{path}: already exists")]
    Exists {
        /// The socket path.
        path: PathBuf,
    },
    /// Binding, setting the mode or renaming into place failed.
    #[error("{path}: {step}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The failing step (`bind`, `chmod`, `rename`, `spawn`).
        step: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// One struct_ops object loaded through the socket, kept alive while any of its maps
/// stays registered.
struct Registration {
    #[expect(
        dead_code,
        reason = "held so the programs and maps outlive the registration"
    )]
    obj: LoadedObject,
    links: Vec<(String, StructOpsLink)>,
}

struct Shared {
    rt: Arc<Runtime>,
    config: ServeConfig,
    stop: AtomicBool,
    live: AtomicUsize,
    next_conn: AtomicU64,
    conns: Mutex<HashMap<u64, UnixStream>>,
    regs: Mutex<Vec<Registration>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent, so a poisoned lock is usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A control socket serving a runtime; [`ControlServer::stop`] (or drop) shuts it down
/// and removes the socket file.
pub struct ControlServer {
    shared: Arc<Shared>,
    path: PathBuf,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlServer")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// `rt.serve(path, config)` on an `Arc<Runtime>`.
pub trait Serve {
    /// Starts a [`ControlServer`] for this runtime at `path`.
    ///
    /// # Errors
    ///
    /// [`ServeError`] when the socket cannot be created.
    fn serve(
        &self,
        path: impl AsRef<Path>,
        config: ServeConfig,
    ) -> Result<ControlServer, ServeError>;
}

impl Serve for Arc<Runtime> {
    fn serve(
        &self,
        path: impl AsRef<Path>,
        config: ServeConfig,
    ) -> Result<ControlServer, ServeError> {
        ControlServer::start(self.clone(), path, config)
    }
}

impl ControlServer {
    /// Binds `path` and starts the accept thread.
    ///
    /// The socket is bound under a temporary name in the same directory, given
    /// `config.mode`, then renamed into place, so the final path never exists with a
    /// looser mode than asked, whatever the umask.
    ///
    /// # Errors
    ///
    /// [`ServeError::Exists`] if `path` exists, [`ServeError::Io`] otherwise.
    pub fn start(
        rt: Arc<Runtime>,
        path: impl AsRef<Path>,
        config: ServeConfig,
    ) -> Result<ControlServer, ServeError> {
        let path = path.as_ref().to_path_buf();
        if path.symlink_metadata().is_ok() {
            return Err(ServeError::Exists { path });
        }
        let io_err = |p: &Path, step, source| ServeError::Io {
            path: p.to_path_buf(),
            step,
            source,
        };
        let mut tmp = path.clone().into_os_string();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp);
        let listener = UnixListener::bind(&tmp).map_err(|e| io_err(&tmp, "bind", e))?;
        let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(config.mode))
            .map_err(|e| io_err(&tmp, "chmod", e))
            .and_then(|()| std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, "rename", e)));
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let shared = Arc::new(Shared {
            rt,
            config,
            stop: AtomicBool::new(false),
            live: AtomicUsize::new(0),
            next_conn: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
            regs: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let accept = std::thread::Builder::new()
            .name("structops-control".into())
            .spawn(move || accept_loop(&s, &listener))
            .map_err(|e| {
                let _ = std::fs::remove_file(&path);
                io_err(&path, "spawn", e)
            })?;
        log::info!("control socket {} serving", path.display());
        Ok(ControlServer {
            shared,
            path,
            accept: Some(accept),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Connections being served now.
    pub fn connections(&self) -> usize {
        self.shared.live.load(Ordering::Acquire)
    }

    /// Stops accepting, closes every connection, removes the socket file. Struct_ops
    /// maps registered through the socket stay registered until the server is dropped.
    pub fn stop(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.shared.stop.store(true, Ordering::Release);
        // Wake the blocking accept with a connection of our own. If the socket file was
        // removed behind our back the wake-up cannot reach it: leave the thread parked
        // in accept (it exits at process end) rather than hang here.
        if UnixStream::connect(&self.path).is_ok() {
            let _ = accept.join();
        }
        for (_, c) in lock(&self.shared.conns).drain() {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        let _ = std::fs::remove_file(&self.path);
        log::info!("control socket {} stopped", self.path.display());
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop();
        let mut regs = lock(&self.shared.regs);
        for reg in regs.drain(..) {
            for (_, link) in &reg.links {
                let _ = link.detach(&self.shared.rt);
            }
        }
    }
}

/// `SO_PEERCRED`: the connecting process's uid.
fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes given.
    let r = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &raw mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

fn accept_loop(shared: &Arc<Shared>, listener: &UnixListener) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        let Ok(mut stream) = stream else {
            // EMFILE and friends: back off instead of spinning.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let timeout = Some(shared.config.timeout);
        if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
            continue;
        }
        let limit = shared.config.max_frame;
        if shared.live.fetch_add(1, Ordering::AcqRel) >= shared.config.max_connections {
            shared.live.fetch_sub(1, Ordering::AcqRel);
            log::warn!("control socket: connection refused, limit reached");
            let e = ControlError::new(Errno::EAGAIN, Step::Accept, "too many connections");
            let _ = frame::write_message(&mut stream, &Response::Error(e), limit);
            continue;
        }
        let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        if let Ok(c) = stream.try_clone() {
            lock(&shared.conns).insert(id, c);
        }
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("structops-control-conn".into())
            .spawn(move || {
                serve_connection(&s, stream);
                lock(&s.conns).remove(&id);
                s.live.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            lock(&shared.conns).remove(&id);
            shared.live.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

fn serve_connection(shared: &Shared, mut stream: UnixStream) {
    let limit = shared.config.max_frame;
    let role = match peer_uid(&stream) {
        Ok(uid) => shared.config.allow.get(&uid).copied().ok_or(uid),
        Err(_) => Err(u32::MAX),
    };
    loop {
        let req = match frame::read_message::<Request>(&mut stream, limit) {
            Ok(r) => r,
            Err(FrameError::Closed) => return,
            Err(e) => {
                let step = match e {
                    FrameError::Decode(_) => Step::Decode,
                    _ => Step::Frame,
                };
                log::debug!("control socket: bad frame: {e}");
                let errno = match e {
                    FrameError::TooLarge { .. } => Errno::E2BIG,
                    FrameError::Io(_) | FrameError::Truncated(_) => Errno::EPROTO,
                    _ => Errno::EINVAL,
                };
                let resp = Response::Error(ControlError::new(errno, step, e.to_string()));
                let _ = frame::write_message(&mut stream, &resp, limit);
                return;
            }
        };
        let resp = match role {
            Err(uid) => {
                log::warn!("control socket: refused uid {uid} ({req:?} not allowed)");
                let e = ControlError::new(
                    Errno::EPERM,
                    Step::Access,
                    format!("uid {uid} is not allowed"),
                );
                let _ = frame::write_message(&mut stream, &Response::Error(e), limit);
                return;
            }
            Ok(Role::ReadOnly) if req.is_write() => {
                log::warn!("control socket: refused a write by a read-only peer");
                Response::Error(ControlError::new(
                    Errno::EPERM,
                    Step::Access,
                    "read-only peer",
                ))
            }
            Ok(_) => catch_unwind(AssertUnwindSafe(|| dispatch(shared, req)))
                .unwrap_or_else(|_| {
                    Err(ControlError::new(
                        Errno::EFAULT,
                        Step::Internal,
                        "request handler panicked",
                    ))
                })
                .unwrap_or_else(Response::Error),
        };
        let written = match frame::write_message(&mut stream, &resp, limit) {
            Err(FrameError::TooLarge { len, limit }) => {
                let e = ControlError::new(
                    Errno::E2BIG,
                    Step::Frame,
                    format!("response of {len} bytes over {limit}"),
                );
                frame::write_message(&mut stream, &Response::Error(e), limit)
            }
            r => r,
        };
        if written.is_err() {
            return;
        }
    }
}

type Reply = Result<Response, ControlError>;

fn err(step: Step, message: impl Into<String>) -> impl Fn(Errno) -> ControlError {
    let message = message.into();
    move |e| ControlError::new(e, step, message.clone())
}

/// Every live id of `kind`, in order.
fn ids(rt: &Runtime, kind: ObjKind) -> Result<Vec<u32>, ControlError> {
    let mut out = Vec::new();
    let mut id = 0;
    loop {
        match rt.get_next_id(kind, id) {
            Ok(next) => {
                out.push(next);
                id = next;
            }
            Err(Errno::ENOENT) => return Ok(out),
            Err(e) => {
                return Err(ControlError::new(
                    e,
                    Step::Lookup,
                    format!("get_next_id({kind:?})"),
                ));
            }
        }
    }
}

fn dispatch(shared: &Shared, req: Request) -> Reply {
    let rt = &*shared.rt;
    match req {
        Request::ListProgs => {
            let mut out = Vec::new();
            for id in ids(rt, ObjKind::Prog)? {
                // An object freed between get_next_id and get_fd_by_id is skipped.
                let Ok(p) = rt.prog_get_fd_by_id(id) else {
                    continue;
                };
                let i = p.info();
                out.push(ProgEntry {
                    id: i.id,
                    prog_type: i.prog_type,
                    name: i.name,
                    tag: i.tag,
                    gpl_compatible: i.gpl_compatible,
                    load_time: i.load_time,
                    xlated_len: i.xlated_prog_len,
                    jited_len: i.jited_prog_len,
                    map_ids: i.map_ids,
                    btf_id: i.btf_id,
                });
            }
            Ok(Response::Progs(out))
        }
        Request::ListMaps => {
            let mut out = Vec::new();
            for id in ids(rt, ObjKind::Map)? {
                let Ok(m) = rt.map_get_fd_by_id(id, 0) else {
                    continue;
                };
                out.push(map_entry(&m));
            }
            Ok(Response::Maps(out))
        }
        Request::ListLinks => {
            let mut out = Vec::new();
            for id in ids(rt, ObjKind::Link)? {
                let Ok(l) = rt.link_get_fd_by_id(id) else {
                    continue;
                };
                let i = l.info();
                out.push(LinkEntry {
                    id: i.id,
                    link_type: i.link_type,
                    prog_id: i.prog_id,
                    map_id: i.map_id,
                });
            }
            Ok(Response::Links(out))
        }
        Request::ListStructOpsTypes => Ok(Response::StructOpsTypes(
            rt.struct_ops_types()
                .iter()
                .map(|t| OpsTypeEntry {
                    name: t.name().to_string(),
                    size: t.size(),
                    value_size: t.value_size(),
                    members: t.members().iter().map(|m| m.name.to_string()).collect(),
                })
                .collect(),
        )),
        Request::ListStructOps => {
            let mut out = Vec::new();
            for id in ids(rt, ObjKind::Map)? {
                let Ok(m) = rt.map_get_fd_by_id(id, 0) else {
                    continue;
                };
                let Some(st) = m.struct_ops() else { continue };
                out.push(StructOpsEntry {
                    map_id: id,
                    name: m.info().name,
                    ops_type: st.ops_type().name().to_string(),
                    state: st.state() as u32,
                    link_map: st.is_link_map(),
                    value: st.seq_show(),
                });
            }
            Ok(Response::StructOps(out))
        }
        Request::MapLookup { id, key } => {
            let m = rt
                .map_get_fd_by_id(id, 0)
                .map_err(err(Step::Lookup, format!("map {id}")))?;
            let mut v = vec![0u8; m.sys_value_size()];
            rt.map_lookup_elem(&m, Some(&key), &mut v, 0)
                .map_err(err(Step::Map, "lookup"))?;
            Ok(Response::Value(v))
        }
        Request::MapUpdate {
            id,
            key,
            value,
            flags,
        } => {
            let m = rt
                .map_get_fd_by_id(id, 0)
                .map_err(err(Step::Lookup, format!("map {id}")))?;
            rt.map_update_elem(&m, Some(&key), &value, flags)
                .map_err(err(Step::Map, "update"))?;
            Ok(Response::Done)
        }
        Request::MapDelete { id, key } => {
            let m = rt
                .map_get_fd_by_id(id, 0)
                .map_err(err(Step::Lookup, format!("map {id}")))?;
            rt.map_delete_elem(&m, Some(&key))
                .map_err(err(Step::Map, "delete"))?;
            Ok(Response::Done)
        }
        Request::MapDump { id } => map_dump(shared, id),
        Request::StructOpsRegister { object, path, map } => {
            register(shared, &object, &path, map.as_deref())
        }
        Request::StructOpsUnregister { target } => unregister(shared, &target),
        Request::LinkUpdate {
            link_id,
            object,
            path,
            map,
        } => link_update(shared, link_id, &object, &path, map.as_deref()),
        Request::LinkDetach { link_id } => {
            let l = rt
                .link_get_fd_by_id(link_id)
                .map_err(err(Step::Lookup, format!("link {link_id}")))?;
            rt.link_detach(&l)
                .map_err(err(Step::LinkDetach, format!("link {link_id}")))?;
            // Drop our own reference to it, if the socket created it.
            let mut regs = lock(&shared.regs);
            for reg in regs.iter_mut() {
                reg.links
                    .retain(|(_, sl)| !matches!(sl, StructOpsLink::Link(h) if h.id() == link_id));
            }
            regs.retain(|r| !r.links.is_empty());
            Ok(Response::Done)
        }
        Request::Status => {
            let hook = shared.config.status.as_ref().ok_or(ControlError::new(
                Errno::EOPNOTSUPP,
                Step::Status,
                "the host has no status hook",
            ))?;
            let v = hook();
            serde_json::to_string(&v)
                .map(Response::Status)
                .map_err(|e| ControlError::new(Errno::EINVAL, Step::Status, e.to_string()))
        }
    }
}

fn map_entry(m: &structops::MapHandle) -> MapEntry {
    let i = m.info();
    MapEntry {
        id: i.id,
        map_type: i.map_type,
        name: i.name,
        key_size: i.key_size,
        value_size: i.value_size,
        sys_value_size: u32::try_from(m.sys_value_size()).unwrap_or(u32::MAX),
        max_entries: i.max_entries,
        map_flags: i.map_flags,
        btf_id: i.btf_id,
        btf_key_type_id: i.btf_key_type_id,
        btf_value_type_id: i.btf_value_type_id,
        btf_vmlinux_value_type_id: i.btf_vmlinux_value_type_id,
    }
}

fn map_dump(shared: &Shared, id: u32) -> Reply {
    let rt = &*shared.rt;
    let m = rt
        .map_get_fd_by_id(id, 0)
        .map_err(err(Step::Lookup, format!("map {id}")))?;
    let info = m.info();
    let vsize = m.sys_value_size();
    let budget = shared.config.max_frame as usize;
    let mut used = 0usize;
    let mut out = Vec::new();
    let mut key: Option<Vec<u8>> = None;
    let mut next = vec![0u8; info.key_size as usize];
    // get_next_key can cycle back to the first key when the previous one was deleted
    // concurrently; max_entries bounds the walk.
    for _ in 0..=info.max_entries {
        match rt.map_get_next_key(&m, key.as_deref(), &mut next) {
            Ok(()) => {}
            Err(Errno::ENOENT) => break,
            Err(e) => return Err(ControlError::new(e, Step::Map, "get_next_key")),
        }
        let mut v = vec![0u8; vsize];
        match rt.map_lookup_elem(&m, Some(&next), &mut v, 0) {
            Ok(()) => {
                used += next.len() + v.len() + 8;
                if used > budget {
                    return Err(ControlError::new(
                        Errno::E2BIG,
                        Step::Map,
                        "dump over the frame limit",
                    ));
                }
                out.push((next.clone(), v));
            }
            // Deleted in between: skip it, as bpftool does.
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(ControlError::new(e, Step::Map, "lookup")),
        }
        key = Some(next.clone());
    }
    Ok(Response::Entries(out))
}

fn load(rt: &Runtime, bytes: &[u8], path: &str) -> Result<LoadedObject, ControlError> {
    let loader = ObjectLoader::open(bytes, path)
        .map_err(|e| ControlError::new(e.errno(), Step::Open, e.to_string()))?;
    loader
        .load(rt, &LoadOptions::default())
        .map_err(|e| ControlError::new(e.errno(), Step::Load, e.to_string()))
}

fn struct_ops_maps(obj: &LoadedObject) -> Vec<String> {
    obj.object()
        .maps()
        .iter()
        .filter(|m| m.struct_ops().is_some())
        .map(|m| m.name().to_string())
        .collect()
}

fn registered(name: &str, link: &StructOpsLink) -> Registered {
    match link {
        StructOpsLink::Map(m) => Registered {
            name: name.to_string(),
            map_id: m.id(),
            link_id: None,
        },
        StructOpsLink::Link(l) => Registered {
            name: name.to_string(),
            map_id: l.info().map_id,
            link_id: Some(l.id()),
        },
    }
}

/// Loads the object and attaches every struct_ops map (or `only`), like
/// `TcpHost::attach_all`; on a failure the maps already attached are detached again,
/// so a registration is all or nothing.
fn register(shared: &Shared, bytes: &[u8], path: &str, only: Option<&str>) -> Reply {
    let rt = &*shared.rt;
    let obj = load(rt, bytes, path)?;
    let mut names = struct_ops_maps(&obj);
    if let Some(only) = only {
        names.retain(|n| n == only);
    }
    if names.is_empty() {
        return Err(ControlError::new(
            Errno::ENOENT,
            Step::Attach,
            format!(
                "{path}: no struct_ops map{}",
                only.map(|m| format!(" {m}")).unwrap_or_default()
            ),
        ));
    }
    let mut links: Vec<(String, StructOpsLink)> = Vec::new();
    for name in names {
        match obj.attach_struct_ops(rt, &name) {
            Ok(l) => links.push((name, l)),
            Err(e) => {
                for (_, l) in &links {
                    let _ = l.detach(rt);
                }
                return Err(ControlError::new(
                    e.errno(),
                    Step::Attach,
                    format!("{path}: map {name}: {e}"),
                ));
            }
        }
    }
    let out = links.iter().map(|(n, l)| registered(n, l)).collect();
    log::info!("control socket: registered {path}");
    lock(&shared.regs).push(Registration { obj, links });
    Ok(Response::Registered(out))
}

fn unregister(shared: &Shared, target: &Target) -> Reply {
    let rt = &*shared.rt;
    let mut regs = lock(&shared.regs);
    let hit = |name: &str, l: &StructOpsLink| match (target, l) {
        (Target::Name(n), _) => n == name,
        (Target::Id(id), StructOpsLink::Map(m)) => m.id() == *id,
        (Target::Id(id), StructOpsLink::Link(h)) => h.id() == *id || h.info().map_id == *id,
    };
    let pos = regs
        .iter()
        .enumerate()
        .find_map(|(i, r)| r.links.iter().position(|(n, l)| hit(n, l)).map(|j| (i, j)));
    if let Some((i, j)) = pos {
        let (name, link) = regs[i].links.remove(j);
        link.detach(rt).map_err(err(Step::Unregister, name))?;
        if regs[i].links.is_empty() {
            regs.remove(i);
        }
        return Ok(Response::Done);
    }
    drop(regs);
    // Not registered through the socket: a `.struct_ops` map of the host's own is
    // unregistered by deleting its element, as `bpftool struct_ops unregister` does.
    let Target::Id(id) = target else {
        return Err(ControlError::new(
            Errno::ENOENT,
            Step::Unregister,
            format!("{target:?}"),
        ));
    };
    let m = rt
        .map_get_fd_by_id(*id, 0)
        .map_err(err(Step::Lookup, format!("map {id}")))?;
    if m.struct_ops().is_none() {
        return Err(ControlError::new(
            Errno::EINVAL,
            Step::Unregister,
            format!("map {id} is not a struct_ops map"),
        ));
    }
    rt.map_delete_elem(&m, Some(&0u32.to_ne_bytes()))
        .map_err(err(Step::Unregister, format!("map {id}")))?;
    Ok(Response::Done)
}

fn link_update(
    shared: &Shared,
    link_id: u32,
    bytes: &[u8],
    path: &str,
    map: Option<&str>,
) -> Reply {
    let rt = &*shared.rt;
    let link = rt
        .link_get_fd_by_id(link_id)
        .map_err(err(Step::Lookup, format!("link {link_id}")))?;
    let obj = load(rt, bytes, path)?;
    let name = match map {
        Some(m) => m.to_string(),
        None => {
            let names = struct_ops_maps(&obj);
            match names.as_slice() {
                [one] => one.clone(),
                [] => {
                    return Err(ControlError::new(
                        Errno::ENOENT,
                        Step::LinkUpdate,
                        format!("{path}: no struct_ops map"),
                    ));
                }
                _ => {
                    return Err(ControlError::new(
                        Errno::EINVAL,
                        Step::LinkUpdate,
                        format!("{path}: several struct_ops maps, name one"),
                    ));
                }
            }
        }
    };
    let sl = StructOpsLink::Link(link);
    sl.update_map(rt, &obj, &name).map_err(|e| {
        ControlError::new(
            e.errno(),
            Step::LinkUpdate,
            format!("{path}: map {name}: {e}"),
        )
    })?;
    let mut regs = lock(&shared.regs);
    // The link now runs the new object's map: it owns the link from here on, and the
    // old object is released once nothing of it is registered.
    for reg in regs.iter_mut() {
        reg.links
            .retain(|(_, l)| !matches!(l, StructOpsLink::Link(h) if h.id() == link_id));
    }
    regs.retain(|r| !r.links.is_empty());
    let out = vec![registered(&name, &sl)];
    regs.push(Registration {
        obj,
        links: vec![(name, sl)],
    });
    Ok(Response::Registered(out))
}
