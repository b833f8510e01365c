//! What the host plugs into running programs: helpers, kfuncs, the `bpf_trace_printk`
//! sink and the memory `bpf_probe_read_kernel` may read.

use std::sync::Arc;

use structops_btf::TypeId;

use super::{ProgType, TraceSink};
use crate::errno::Errno;
use crate::helpers::{self, HostFn, HostHelper};
use crate::kfunc::{Kfunc, KfuncFlags};
use crate::runtime::Runtime;

impl Runtime {
    /// Registers a host helper. Programs call it by `helper.proto.id`.
    ///
    /// # Errors
    ///
    /// `EEXIST` if the id is a built-in helper's or already registered.
    pub fn register_helper(&self, helper: HostHelper) -> Result<(), Errno> {
        if helpers::builtin(helper.proto.id).is_some() {
            return Err(Errno::EEXIST);
        }
        let mut list = self
            .progs
            .helpers
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if list.iter().any(|h| h.proto.id == helper.proto.id) {
            return Err(Errno::EEXIST);
        }
        list.push(helper);
        Ok(())
    }

    /// Removes the host helper with `id`.
    ///
    /// # Errors
    ///
    /// `ENOENT` if there is none.
    pub fn unregister_helper(&self, id: i32) -> Result<(), Errno> {
        let mut list = self
            .progs
            .helpers
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let i = list
            .iter()
            .position(|h| h.proto.id == id)
            .ok_or(Errno::ENOENT)?;
        list.remove(i);
        Ok(())
    }

    /// Registers `func` as the kfunc named `name`: a `FUNC` of the host BTF
    /// ([`Runtime::register_host_btf`]), whose prototype the verifier checks calls
    /// against. `prog_types` limits which program types may call it (empty: all).
    /// Returns the `FUNC`'s BTF id, which programs' calls carry.
    ///
    /// # Errors
    ///
    /// `ENOENT` without a host BTF or without a `FUNC` named `name` in it, `EINVAL` if
    /// its type is not a `FUNC_PROTO`, `EEXIST` if it is registered already.
    pub fn register_kfunc(
        &self,
        name: &str,
        flags: KfuncFlags,
        prog_types: Vec<ProgType>,
        func: HostFn,
    ) -> Result<TypeId, Errno> {
        let host = self.host_btf().ok_or(Errno::ENOENT)?;
        self.progs
            .kfuncs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .register(host.btf(), name, flags, prog_types, func)
    }

    /// Removes the kfunc with BTF id `btf_id`. Programs already loaded fail when they
    /// call it.
    ///
    /// # Errors
    ///
    /// `ENOENT` if it is not registered.
    pub fn unregister_kfunc(&self, btf_id: TypeId) -> Result<(), Errno> {
        self.progs
            .kfuncs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .unregister(btf_id)
    }

    /// The kfunc with BTF id `btf_id`, if registered.
    pub fn kfunc(&self, btf_id: TypeId) -> Option<Kfunc> {
        self.progs
            .kfuncs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(btf_id)
            .cloned()
    }

    /// Forgets every registered kfunc (for a host replacing its BTF).
    pub fn clear_kfuncs(&self) {
        self.progs
            .kfuncs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Sets where `bpf_trace_printk` lines go (the runtime's `trace_pipe`); `None`
    /// discards them.
    pub fn set_trace_sink(&self, sink: Option<TraceSink>) {
        *self
            .progs
            .trace_sink
            .write()
            .unwrap_or_else(|p| p.into_inner()) = sink;
    }

    /// Sets how `bpf_sk_storage_get`/`bpf_sk_storage_delete` find the owner of a
    /// socket's storage: `owner(addr)` for the socket pointer a program passed (a
    /// trusted pointer the host handed it, which the hook looks up rather than
    /// dereferences), `None` when the address is no live socket. Without a hook (`None`,
    /// the default) every socket is unknown: `get` returns NULL and `delete` `-EINVAL`,
    /// as the kernel's do for a socket that is not a full socket.
    pub fn set_storage_owner(&self, owner: Option<super::StorageOwner>) {
        *self
            .progs
            .storage_owner
            .write()
            .unwrap_or_else(|p| p.into_inner()) = owner;
    }

    /// Lets `bpf_probe_read_kernel` (and `%s` in `bpf_trace_printk`/`bpf_snprintf`)
    /// read `len` bytes of host memory at `addr`. Reads elsewhere fail with `EFAULT`
    /// and a zeroed destination, as the kernel's do on a fault.
    ///
    /// # Safety
    ///
    /// The range must stay valid for reads (through pointers made from the address
    /// with exposed provenance) until [`Runtime::unregister_probe_memory`] for it and no
    /// run is using it, or the runtime is dropped.
    pub unsafe fn register_probe_memory(&self, addr: u64, len: u64) {
        self.progs
            .probe_memory
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push((addr, addr.saturating_add(len)));
    }

    /// Withdraws every probe-readable range that starts at `addr`.
    pub fn unregister_probe_memory(&self, addr: u64) {
        self.progs
            .probe_memory
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|&(s, _)| s != addr);
    }
}

/// A trace sink that collects lines into a shared vector (for tests and tools).
pub fn collecting_sink() -> (TraceSink, Arc<std::sync::Mutex<Vec<String>>>) {
    let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
    let l2 = lines.clone();
    let sink: TraceSink = Arc::new(move |s: &str| {
        l2.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(s.to_string());
    });
    (sink, lines)
}
