//! The server side: a Unix socket in front of a [`Runtime`].

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use structops::{Errno, Runtime};

use crate::controller::Controller;
use crate::frame::{self, DEFAULT_MAX_FRAME, FrameError};
use crate::message::{ControlError, Request, Response, Step};

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
    /// The uids allowed to connect and their roles; a uid not here gets `EPERM` at
    /// accept, before it takes one of the [`max_connections`](Self::max_connections).
    /// Default: the process's effective uid, read-write.
    pub allow: BTreeMap<u32, Role>,
    /// The most connections served at once; more get `EAGAIN` and are closed.
    pub max_connections: usize,
    /// How long a request frame may take to arrive, from its first byte's wait to its
    /// last (a client that trickles bytes is cut off), and the timeout of each write;
    /// an idle client is disconnected after it.
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

struct Shared {
    ctl: Controller,
    config: ServeConfig,
    stop: AtomicBool,
    live: AtomicUsize,
    next_conn: AtomicU64,
    conns: Mutex<HashMap<u64, UnixStream>>,
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
        let ctl = Controller::with_reply_limit(rt, config.status.clone(), config.max_frame);
        let shared = Arc::new(Shared {
            ctl,
            config,
            stop: AtomicBool::new(false),
            live: AtomicUsize::new(0),
            next_conn: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
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
        self.shared.ctl.detach_all();
    }
}

/// Reads from a connection until a deadline: each read waits at most the time left.
struct DeadlineReader<'a> {
    stream: &'a UnixStream,
    deadline: Instant,
}

impl io::Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "frame not complete within the timeout",
            ));
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut s = self.stream;
        io::Read::read(&mut s, buf)
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
        // Credentials first: a peer outside the allow-list is refused here, before it
        // takes a connection slot or a thread, so strangers cannot crowd out the owner.
        let role = match peer_uid(&stream) {
            Ok(uid) => shared.config.allow.get(&uid).copied().ok_or(uid),
            Err(_) => Err(u32::MAX),
        };
        let role = match role {
            Ok(role) => role,
            Err(uid) => {
                log::warn!("control socket: refused uid {uid}: not in the allow-list");
                let e = ControlError::new(
                    Errno::EPERM,
                    Step::Access,
                    format!("uid {uid} is not allowed"),
                );
                // The frame is small and the socket's buffer empty: this does not block.
                let _ = frame::write_message(&mut stream, &Response::Error(e), limit);
                continue;
            }
        };
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
                serve_connection(&s, stream, role);
                lock(&s.conns).remove(&id);
                s.live.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            lock(&shared.conns).remove(&id);
            shared.live.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Serves an admitted peer's requests, one reply each, until it closes, errs or stalls.
fn serve_connection(shared: &Shared, mut stream: UnixStream, role: Role) {
    let limit = shared.config.max_frame;
    loop {
        // The whole frame must arrive within the timeout, not each read: a client that
        // trickles a byte at a time cannot hold its connection open.
        let read = {
            let mut r = DeadlineReader {
                stream: &stream,
                deadline: Instant::now() + shared.config.timeout,
            };
            frame::read_message::<Request>(&mut r, limit)
        };
        let req = match read {
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
            Role::ReadOnly if req.is_write() => {
                log::warn!("control socket: refused a write by a read-only peer");
                Response::Error(ControlError::new(
                    Errno::EPERM,
                    Step::Access,
                    "read-only peer",
                ))
            }
            _ => shared.ctl.handle(req),
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
