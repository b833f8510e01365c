//! structops-tcp: the `tcp_congestion_ops` host.
//!
//! - [`types`]: Rust mirrors of the kernel's `sock`, `inet_connection_sock`, `tcp_sock`,
//!   `rate_sample`, `ack_sample` and `tcp_congestion_ops`, named as in `vmlinux.h` so that
//!   programs compiled for the kernel relocate onto them through CO-RE;
//! - [`clock`]: the simulated clock behind `jiffies` and the BPF time helpers;
//! - [`cc`]: the built-in congestion controls (Reno, CUBIC, DCTCP, BBR) in Rust;
//! - [`host`]: [`TcpHost`] (a runtime with `tcp_congestion_ops`, the registry, the kfuncs
//!   of [`kfuncs`] and the helpers of [`helpers`]) and [`Socket`] (a TCP endpoint calling
//!   its congestion control at the kernel's hook points);
//! - [`sim`]: a deterministic discrete-event dumbbell simulator driving [`Socket`]s.
//!
//! BPF congestion controls load with [`TcpHost::load_object`] (see its example, which
//! runs `bpf/cubic.bpf.o` against the native CUBIC); [`sim::Sim`] and [`sim::run`] run
//! them over a simulated bottleneck.
//!
//! ```
//! use structops_tcp::{HostConfig, TcpHost};
//!
//! let host = TcpHost::new(HostConfig::default())?;
//! assert_eq!(host.available(), ["reno", "cubic", "dctcp", "bbr"]);
//! let mut sock = host.socket();
//! host.set_congestion_control(&mut sock, "reno")?;
//! assert_eq!(sock.ca_name(), "reno");
//! assert_eq!(host.set_congestion_control(&mut sock, "vegas"), Err(structops::Errno::ENOENT));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod btf;
pub mod cc;
pub mod clock;
pub mod helpers;
pub mod host;
pub mod kfuncs;
pub mod sim;
pub mod types;

pub use host::{AttachedObject, HostConfig, HostError, LoadedCc, Socket, TcpHost};

pub use types::{
    AckSample, InetConnectionSock, RateSample, Sock, TcpCaEvent, TcpCaState, TcpCongestionOps,
    TcpSock,
};
