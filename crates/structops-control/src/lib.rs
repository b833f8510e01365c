//! The structops control socket: a host exposes its [`Runtime`](structops::Runtime) on a
//! Unix socket, and `structops --host PATH` (or a [`ControlClient`]) inspects and changes
//! it while it runs — lists programs, maps, links and struct_ops tables, dumps and edits
//! map values, registers, replaces and removes struct_ops implementations.
//!
//! A separate crate, not a module of `structops`, so that the runtime stays free of
//! serde, postcard and logging, and a host that does not serve pays for none of it.
//!
//! # Protocol
//!
//! Each message is one frame (see [`frame`]): `"SOPS"`, a `u16` version, a `u32`
//! length (at most 16 MiB by default), then a postcard-encoded [`Request`] or
//! [`Response`]. One response follows each request. Failures are
//! [`Response::Error`] with a Linux errno and the failing [`Step`].
//!
//! # Access control
//!
//! The socket file gets mode 0600 (set explicitly, whatever the umask). Each connection's
//! `SO_PEERCRED` uid must be in [`ServeConfig::allow`] (default: the server's own uid,
//! read-write); others get `EPERM` as soon as they connect, before they take a
//! connection slot, and the refusal is logged. Read-only peers get `EPERM`
//! for writes. A garbled, truncated or oversized frame gets an error reply and the
//! connection is closed; every connection has its own thread and timeouts, so one client
//! cannot stall another.
//!
//! ```
//! use std::sync::Arc;
//! use structops::{MapCreateAttr, MapType, Runtime};
//! use structops_control::{ControlClient, Serve, ServeConfig};
//!
//! let rt = Arc::new(Runtime::default());
//! let map = rt.map_create(&MapCreateAttr::new(MapType::Array, 4, 8, 4).name("counts"))?;
//! let dir = std::env::temp_dir().join(format!("structops-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("ctl.sock");
//! let server = rt.serve(&path, ServeConfig::default())?;
//!
//! let mut client = ControlClient::connect(&path)?;
//! client.map_update(map.id(), &1u32.to_ne_bytes(), &7u64.to_ne_bytes(), 0)?;
//! assert_eq!(client.map_lookup(map.id(), &1u32.to_ne_bytes())?, 7u64.to_ne_bytes());
//! assert_eq!(client.list_maps()?[0].name, "counts");
//! drop(server); // stops serving and removes the socket file
//! assert!(!path.exists());
//! # std::fs::remove_dir(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod client;
mod controller;
pub mod frame;
mod message;
mod server;

pub use client::{ClientError, ControlClient};
pub use controller::Controller;
pub use message::{
    BtfEntry, ControlError, Entries, JitedProg, LinkEntry, MAX_REMOTE_REPEAT, MapEntry,
    OpsTypeEntry, ProgEntry, Registered, Request, Response, RunOutput, Step, StructOpsEntry,
    Target, XlatedProg,
};
pub use server::{ControlServer, Role, Serve, ServeConfig, ServeError, StatusHook};
