//! Running programs: [`ProgEnv`], the runtime's [`structops_vm::Env`].
//!
//! While a program runs, `ProgEnv` dispatches its helper calls by id (the built-in
//! helpers of [`crate::helpers`] and host-registered ones) and its kfunc calls by BTF id
//! ([`crate::kfunc`]), resolves tail calls through `PROG_ARRAY`s, and serves `LD_ABS`
//! packet loads of skb programs.
//!
//! Every map argument is checked against the maps the run may use (those of the
//! programs it entered, and inner maps its lookups returned), in both modes: a map
//! pointer is a host address, and a wrong one must never be dereferenced. In checked
//! mode every pointer argument is also checked against the run's regions through the
//! [`Caller`], and memory handed to the program (map values, ring buffer records) is
//! granted as regions. In unchecked mode (verified programs only) pointer arguments are
//! trusted, as the kernel trusts its verifier.
//!
//! Helpers report failure the kernel's way, as a negative errno in `r0`. Conditions the
//! verifier rules out (an unknown map pointer, a ring buffer record submitted twice, a
//! second `bpf_spin_lock`) end the run with a [`VmError::Env`] carrying an
//! [`ExecError`].

use std::any::Any;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use std::ffi::c_void;
use structops_isa::Width;

use structops_vm::{
    Access, Caller, Code, Env, Mode, NativeCall, NativeFn, Region, TailCallTarget, VmError,
};
use thiserror::Error;

use crate::caps::Capabilities;
use crate::ctx::{BpfSock, SkBuff, XdpBuff};
use crate::errno::Errno;
use crate::helpers::printf::{self, MemReader};
use crate::helpers::{self as h, HostFn};
use crate::maps::{
    BPF_F_RDONLY_PROG, BPF_LOCAL_STORAGE_GET_F_CREATE, Guard, HostObject, Map, MapType,
};
use crate::prog::load::clock_ns;
use crate::prog::{Callee, ClockKind, HelperCall, HelperTrace};
use crate::prog::{Prog, ProgRegistry, ProgType, Verification};

/// `ETH_HLEN`.
const ETH_HLEN: u64 = 14;
/// `sizeof(struct xdp_frame)` on 64-bit kernels: the part of the XDP headroom that
/// `bpf_xdp_adjust_head`/`_meta` may not move into.
const XDP_FRAME_SIZE: u64 = 40;
/// `SKB_DATA_ALIGN(sizeof(struct skb_shared_info))` on x86-64: the tailroom.
pub(crate) const SKB_SHARED_INFO_SIZE: u64 = 320;
/// `BPF_MAX_LOOPS`: most iterations of `bpf_loop`.
const BPF_MAX_LOOPS: u64 = 1 << 23;
/// `SKF_NET_OFF`.
const SKF_NET_OFF: i32 = -0x10_0000;
/// `SKF_LL_OFF`.
const SKF_LL_OFF: i32 = -0x20_0000;
/// Longest constant format string read for `bpf_snprintf`.
const MAX_CONST_STR: usize = 64 * 1024;

/// Why a run was stopped by the environment (inside [`VmError::Env`]).
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExecError {
    /// A map argument is not a map this run may use.
    #[error("helper #{helper}: r{arg} = {addr:#x} is not a map this program may use")]
    UnknownMap {
        /// Helper id.
        helper: i32,
        /// Argument register.
        arg: u8,
        /// The value passed.
        addr: u64,
    },
    /// A map of the wrong type for the helper.
    #[error("helper #{helper}: map {map_id} of type {map_type:?} is not accepted")]
    WrongMapType {
        /// Helper id.
        helper: i32,
        /// The map's id.
        map_id: u32,
        /// Its type.
        map_type: MapType,
    },
    /// A helper the program's type may not call, or that does not exist.
    #[error("helper #{id} is not available to {prog_type} programs")]
    HelperNotAllowed {
        /// Helper id.
        id: i32,
        /// The program type.
        prog_type: ProgType,
    },
    /// A GPL-only helper called by a program whose license is not GPL-compatible.
    #[error("helper #{id} is GPL-only and the program's license is not GPL-compatible")]
    GplOnly {
        /// Helper id.
        id: i32,
    },
    /// A kfunc that is not registered, or not for this program type.
    #[error("kfunc btf_id {btf_id} is not available to {prog_type} programs")]
    KfuncNotAllowed {
        /// BTF id of the kfunc.
        btf_id: u32,
        /// The program type.
        prog_type: ProgType,
    },
    /// A context argument that is not the run's context.
    #[error("helper #{helper}: {addr:#x} is not this run's context")]
    NotContext {
        /// Helper id.
        helper: i32,
        /// The value passed.
        addr: u64,
    },
    /// A ring buffer record that is not an outstanding reservation of this run.
    #[error("{addr:#x} is not an outstanding ring buffer reservation of this run")]
    BadRingbufSample {
        /// The value passed.
        addr: u64,
    },
    /// `bpf_spin_lock` while holding a lock.
    #[error("bpf_spin_lock at {addr:#x} while holding the lock at {held:#x}")]
    NestedSpinLock {
        /// The lock requested.
        addr: u64,
        /// The lock held.
        held: u64,
    },
    /// `bpf_spin_unlock` of a lock the program does not hold.
    #[error("bpf_spin_unlock at {addr:#x} without holding it")]
    SpinUnlockNotHeld {
        /// The lock.
        addr: u64,
    },
    /// A lock address that is not 4-byte aligned.
    #[error("bpf_spin_lock at misaligned address {addr:#x}")]
    MisalignedSpinLock {
        /// The lock.
        addr: u64,
    },
    /// A tail call from an unchecked run into an unverified program.
    #[error("tail call into unverified program {prog_id} from an unchecked run")]
    UnverifiedTailCall {
        /// The target's id.
        prog_id: u32,
    },
    /// The program returned while holding a `bpf_spin_lock`.
    #[error("program exited holding the bpf_spin_lock at {addr:#x}")]
    LockHeldAtExit {
        /// The lock (released by the runtime).
        addr: u64,
    },
    /// A socket argument that is not a socket this runtime can answer for (the run's
    /// skb socket, in the states it can have).
    #[error("helper #{helper}: {addr:#x} is not a socket of this run")]
    NotSocket {
        /// Helper id.
        helper: i32,
        /// The value passed.
        addr: u64,
    },
    /// The program returned with ring buffer records neither submitted nor discarded.
    #[error("program exited with {count} unreleased ring buffer reservations (discarded)")]
    UnreleasedReservations {
        /// How many.
        count: usize,
    },
}

fn env_err(pc: usize, e: ExecError) -> VmError {
    VmError::Env {
        pc,
        source: Box::new(e),
    }
}

/// `-errno` as a helper's `r0`.
fn neg(e: Errno) -> u64 {
    (-i64::from(e.0)) as u64
}

/// The packet context of a run, for the helpers that work on it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum PacketCtx {
    /// No packet.
    None,
    /// An XDP run: the `XdpBuff` at this address.
    Xdp(*mut XdpBuff),
    /// An skb run: the `SkBuff` at this address.
    Skb(*mut SkBuff),
}

/// A small buffer for helper arguments (map keys and values), on the stack when it fits.
enum ArgBuf {
    Small([u8; 64], usize),
    Big(Vec<u8>),
}

impl ArgBuf {
    fn new(len: usize) -> ArgBuf {
        if len <= 64 {
            ArgBuf::Small([0; 64], len)
        } else {
            ArgBuf::Big(vec![0; len])
        }
    }

    fn as_mut(&mut self) -> &mut [u8] {
        match self {
            ArgBuf::Small(b, n) => b.get_mut(..*n).unwrap_or(&mut []),
            ArgBuf::Big(v) => v,
        }
    }

    fn as_ref(&self) -> &[u8] {
        match self {
            ArgBuf::Small(b, n) => b.get(..*n).unwrap_or(&[]),
            ArgBuf::Big(v) => v,
        }
    }
}

/// Reads `len` bytes of program memory at `addr` (checked in checked mode).
fn read_arg(caller: &mut Caller<'_>, addr: u64, len: usize) -> Result<ArgBuf, VmError> {
    let mut b = ArgBuf::new(len);
    caller.read(addr, b.as_mut())?;
    Ok(b)
}

/// A per-thread xorshift generator for `bpf_get_prandom_u32`.
fn prandom_u32(state: &mut u64) -> u32 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
}

/// A generator state for one run: from the runtime's
/// [`crate::RuntimeConfig::prandom_seed`] and its run count when it has one (every
/// run of a seeded runtime draws a reproducible sequence), else random.
fn seed(rt: &ProgRegistry) -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let hs = match rt.prandom_seed {
        Some(seed) => {
            let mut h = std::hash::DefaultHasher::new();
            h.write_u64(seed);
            h.write_u64(
                rt.prandom_runs
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            );
            h
        }
        None => {
            let mut h = RandomState::new().build_hasher();
            h.write_u64(clock_ns(libc::CLOCK_MONOTONIC));
            h
        }
    };
    hs.finish() | 1
}

/// The runtime's clock for `kind`: the host's hook if it set one, else the system's.
fn now(rt: &ProgRegistry, kind: ClockKind) -> u64 {
    // Without a host clock (the usual case) no lock is touched. With one, it is called
    // under the read lock (no reference count is taken: this runs per helper call).
    if rt.clock_on.load(std::sync::atomic::Ordering::Relaxed)
        && let Ok(c) = rt.clock.read()
        && let Some(clock) = c.as_ref()
    {
        return clock(kind);
    }
    {
        clock_ns(match kind {
            ClockKind::Monotonic => libc::CLOCK_MONOTONIC,
            ClockKind::Boottime => libc::CLOCK_BOOTTIME,
            ClockKind::MonotonicCoarse => libc::CLOCK_MONOTONIC_COARSE,
        })
    }
}

/// `bpf_jiffies64` from the monotonic clock: `ns * HZ / 10^9`, in 64-bit arithmetic
/// when `HZ` divides a second (every usual `CONFIG_HZ` but 300), which gives the same
/// result as the exact 128-bit form used otherwise.
pub fn jiffies(ns: u64, hz: u64) -> u64 {
    let hz = hz.max(1);
    if 1_000_000_000 % hz == 0 {
        ns / (1_000_000_000 / hz)
    } else {
        (u128::from(ns) * u128::from(hz) / 1_000_000_000) as u64
    }
}

/// The time helpers as direct native calls of JIT code
/// ([`structops_vm::JitOptions::nullary_helpers`], set by `prog_load`): `data` is the
/// address of the runtime's [`ProgRegistry`], which outlives every run of its programs
/// (runs borrow it, entry points hold it). A panicking host clock gives 0 rather than
/// unwinding into JIT code.
pub(crate) unsafe extern "C" fn native_time(id: u64, data: u64) -> u64 {
    // SAFETY: `data` is the registry's address, alive for the run (see above).
    let rt = unsafe { &*std::ptr::with_exposed_provenance::<ProgRegistry>(data as usize) };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match id as u32 as i32 {
        h::BPF_FUNC_KTIME_GET_NS => now(rt, ClockKind::Monotonic),
        h::BPF_FUNC_KTIME_GET_BOOT_NS => now(rt, ClockKind::Boottime),
        h::BPF_FUNC_KTIME_GET_COARSE_NS => now(rt, ClockKind::MonotonicCoarse),
        h::BPF_FUNC_JIFFIES64 => jiffies(now(rt, ClockKind::Monotonic), u64::from(rt.hz)),
        _ => 0,
    }))
    .unwrap_or(0)
}

/// The helpers [`native_time`] implements.
pub(crate) const NATIVE_TIME_HELPERS: [i32; 4] = [
    h::BPF_FUNC_KTIME_GET_NS,
    h::BPF_FUNC_KTIME_GET_BOOT_NS,
    h::BPF_FUNC_KTIME_GET_COARSE_NS,
    h::BPF_FUNC_JIFFIES64,
];

/// The runtime's environment for one run of one program (and the programs it tail-calls).
pub struct ProgEnv<'r> {
    rt: &'r ProgRegistry,
    guard: &'r Guard,
    prog_type: ProgType,
    caps: Capabilities,
    gpl: bool,
    checked: bool,
    /// The used maps of the program the run started with (borrowed: nothing is cloned
    /// or counted per run).
    base_maps: &'r [Arc<Map>],
    /// Used maps of programs entered by tail calls, beyond `base_maps`.
    maps: Vec<Arc<Map>>,
    /// Inner maps lookups returned (alive while `guard` is held).
    inner: Vec<u64>,
    /// The id of the program the run started with.
    root: u32,
    /// Programs entered by tail calls (kept for their maps).
    entered: Vec<u32>,
    /// Outstanding ring buffer reservations.
    reservations: Vec<u64>,
    /// The `bpf_spin_lock` held, if any.
    lock_held: Option<u64>,
    /// Keys copied for `bpf_for_each_map_elem` callbacks (stable addresses).
    scratch: Vec<Box<[u8]>>,
    packet: PacketCtx,
    rng: u64,
    hz: u64,
    /// The runtime's helper trace, when one was set ([`Runtime::set_helper_trace`]).
    trace: Option<HelperTrace>,
    /// Whether the map helpers may run natively ([`Env::native_helper`]): an unchecked,
    /// untraced run.
    native_maps: bool,
}

impl std::fmt::Debug for ProgEnv<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProgEnv")
            .field("prog_type", &self.prog_type)
            .field("checked", &self.checked)
            .field("maps", &self.run_maps().count())
            .finish_non_exhaustive()
    }
}

impl<'r> ProgEnv<'r> {
    /// An environment for running `prog` in `mode`, under `guard` (the run's read
    /// section: hold it until the run ends).
    pub(crate) fn new(
        rt: &'r ProgRegistry,
        prog: &'r Prog,
        guard: &'r Guard,
        mode: Mode,
    ) -> ProgEnv<'r> {
        let trace = if rt.trace_on.load(std::sync::atomic::Ordering::Relaxed) {
            rt.helper_trace.read().ok().and_then(|t| t.clone())
        } else {
            None
        };
        ProgEnv {
            native_maps: mode == Mode::Unchecked && trace.is_none(),
            trace,
            rt,
            guard,
            prog_type: prog.prog_type(),
            caps: prog.load_caps(),
            gpl: prog.gpl_compatible(),
            checked: mode == Mode::Checked,
            base_maps: prog.used_maps(),
            maps: Vec::new(),
            inner: Vec::new(),
            root: prog.id(),
            entered: Vec::new(),
            reservations: Vec::new(),
            lock_held: None,
            scratch: Vec::new(),
            packet: PacketCtx::None,
            // Seeded on the first `bpf_get_prandom_u32` (most runs never call it).
            rng: 0,
            hz: u64::from(rt.hz),
        }
    }

    /// Every map the run may name: the starting program's and those of programs it
    /// entered by tail calls.
    fn run_maps(&self) -> impl Iterator<Item = &Arc<Map>> {
        self.base_maps.iter().chain(&self.maps)
    }

    /// Sets the packet context (XDP or skb runs).
    pub(crate) fn set_packet(&mut self, p: PacketCtx) {
        self.packet = p;
    }

    /// The regions a checked run of `prog` starts with besides its context: the value
    /// areas of the `ARRAY` maps it (and the programs its program arrays hold) uses —
    /// global data included — read-only for `BPF_F_RDONLY_PROG` maps.
    pub fn initial_regions(prog: &'r Prog, guard: &'r Guard) -> Vec<Region<'r>> {
        let mut out = Vec::new();
        let mut seen_progs = vec![prog.id()];
        let mut seen_maps: Vec<*const Map> = Vec::new();
        let mut todo: Vec<&'r Prog> = vec![prog];
        while let Some(p) = todo.pop() {
            for m in p.used_maps() {
                if seen_maps.contains(&Arc::as_ptr(m)) {
                    continue;
                }
                seen_maps.push(Arc::as_ptr(m));
                if let Some((base, elem)) = m.array_layout() {
                    let len = elem as usize * m.max_entries() as usize;
                    let access = if m.map_flags() & BPF_F_RDONLY_PROG != 0 {
                        Access::Read
                    } else {
                        Access::ReadWrite
                    };
                    // SAFETY: an array's value area is allocated once and lives as long
                    // as the map; `prog` holds the map for `'r`. Programs and the host
                    // share map values by design (concurrent access is the kernel's
                    // data race too).
                    out.push(unsafe { Region::from_raw_parts(base.as_ptr() as u64, len, access) });
                }
                if m.map_type() == MapType::ProgArray {
                    for i in 0..m.max_entries() {
                        let Some(t) = m.tail_call_target(i, guard) else {
                            continue;
                        };
                        let any: &dyn Any = &**t;
                        if let Some(tp) = any.downcast_ref::<Prog>()
                            && !seen_progs.contains(&tp.id())
                        {
                            seen_progs.push(tp.id());
                            todo.push(tp);
                        }
                    }
                }
            }
        }
        out
    }

    /// Ends the run: releases a lock still held and discards outstanding ring buffer
    /// records (a verified program never leaves either), reporting them as an error.
    ///
    /// # Errors
    ///
    /// [`ExecError::LockHeldAtExit`] or [`ExecError::UnreleasedReservations`].
    #[inline]
    pub fn finish(&mut self) -> Result<(), ExecError> {
        if self.lock_held.is_none() && self.reservations.is_empty() {
            return Ok(());
        }
        self.finish_slow()
    }

    /// [`ProgEnv::finish`] when a lock or reservation is outstanding.
    #[cold]
    fn finish_slow(&mut self) -> Result<(), ExecError> {
        let mut err = None;
        if let Some(addr) = self.lock_held.take() {
            // SAFETY: the lock word was checked (region, alignment) when it was taken
            // and lies in a map value, which outlives the run.
            unsafe { lock_word(addr).store(0, Ordering::Release) };
            err = Some(ExecError::LockHeldAtExit { addr });
        }
        let count = self.reservations.len();
        for addr in std::mem::take(&mut self.reservations) {
            if let Some(p) = NonNull::new(addr as *mut u8) {
                // SAFETY: an outstanding reservation of this run, not yet committed.
                unsafe { crate::maps::ringbuf::commit_sample(p, 0, true) };
            }
        }
        if err.is_none() && count > 0 {
            err = Some(ExecError::UnreleasedReservations { count });
        }
        err.map_or(Ok(()), Err)
    }

    /// The map at `addr`, if the run may use it.
    fn map(&self, pc: usize, helper: i32, arg: u8, addr: u64) -> Result<&'r Map, VmError> {
        if !self.checked && addr != 0 {
            // SAFETY: unchecked runs are of verified programs, whose map arguments are
            // `CONST_PTR_TO_MAP`: one of the run's maps (alive for `'r`) or an inner map
            // a lookup of this run returned (freed only after a grace period; `guard`
            // pins the epoch for `'r`). Checked runs check below instead.
            return Ok(unsafe { &*std::ptr::with_exposed_provenance::<Map>(addr as usize) });
        }
        if let Some(m) = self.run_maps().find(|m| Arc::as_ptr(m) as u64 == addr) {
            let p: *const Map = Arc::as_ptr(m);
            // SAFETY: `base_maps` is borrowed for `'r` and `self.maps` holds a reference
            // for the whole run (entries are never removed); the run ends before `'r`.
            return Ok(unsafe { &*p });
        }
        if self.inner.contains(&addr) {
            // SAFETY: an inner map a lookup of this run returned; it is freed only after
            // a grace period, and `self.guard` pins the epoch for `'r`.
            return Ok(unsafe { &*(addr as *const Map) });
        }
        Err(env_err(pc, ExecError::UnknownMap { helper, arg, addr }))
    }

    fn check_ctx(&self, pc: usize, helper: i32, addr: u64) -> Result<*mut XdpBuff, VmError> {
        match self.packet {
            PacketCtx::Xdp(p) if p as u64 == addr => Ok(p),
            _ => Err(env_err(pc, ExecError::NotContext { helper, addr })),
        }
    }

    /// Grants `len` bytes at `addr` unless the run may already access them.
    fn grant(&self, caller: &mut Caller<'_>, addr: u64, len: usize, access: Access) {
        if !self.checked || caller.check(addr, len as u64, access).is_ok() {
            return;
        }
        // SAFETY: only called for memory owned by a map or ring buffer of this run, or a
        // local-storage value, valid while the run's guard is held (values are freed
        // after a grace period).
        unsafe { caller.grant(addr, len, access) };
    }

    /// Whether `[addr, addr + len)` lies in host memory registered with
    /// `register_probe_memory` or in the value area of one of the run's array maps.
    fn host_readable(&self, addr: u64, len: u64) -> bool {
        let Some(end) = addr.checked_add(len) else {
            return false;
        };
        let probe = self
            .rt
            .probe_memory
            .read()
            .unwrap_or_else(|p| p.into_inner());
        if probe.iter().any(|&(s, e)| addr >= s && end <= e) {
            return true;
        }
        drop(probe);
        // Array values of the run's maps (global data, for strings in `.rodata`).
        self.run_maps().any(|m| {
            m.array_layout().is_some_and(|(base, elem)| {
                let s = base.as_ptr() as u64;
                let e = s + u64::from(elem) * u64::from(m.max_entries());
                addr >= s && end <= e
            })
        })
    }

    /// Reads host memory for a probe: a registered range or map value area
    /// ([`ProgEnv::host_readable`]) directly; any other address, with
    /// [`crate::RuntimeConfig::probe_any_mapped`], through `process_vm_readv` on this
    /// process, which fails instead of faulting. Never reads the first 64 KiB (below
    /// Linux's `mmap_min_addr`: NULL plus a field offset).
    fn host_read(&self, addr: u64, buf: &mut [u8]) -> bool {
        const NULL_GUARD: u64 = 1 << 16;
        if addr < NULL_GUARD {
            return false;
        }
        if self.host_readable(addr, buf.len() as u64) {
            // SAFETY: inside host memory registered with `register_probe_memory`
            // (valid for reads per its contract) or a map's value area, which lives
            // while the run's guard is held.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    std::ptr::with_exposed_provenance::<u8>(addr as usize),
                    buf.as_mut_ptr(),
                    buf.len(),
                );
            }
            return true;
        }
        self.rt.probe_any_mapped && read_own_memory(addr, buf)
    }

    /// Copies `buf.len()` bytes at `addr` for `bpf_probe_read_kernel` and `%s`: the
    /// run's stack, or host memory ([`ProgEnv::host_read`]). The same in every mode, so
    /// checked runs, the interpreter and the JIT agree; other memory of the run (its
    /// context, packet, or a hash map's value) reads as a fault, where the kernel would
    /// read it.
    fn helper_probe_read(&self, caller: &mut Caller<'_>, addr: u64, buf: &mut [u8]) -> bool {
        let len = buf.len() as u64;
        let (lo, hi) = caller.stack_range();
        if addr >= lo && addr.checked_add(len).is_some_and(|end| end <= hi) {
            // The run's own stack, in every mode (the kernel reads it like any
            // kernel memory, initialized or not).
            // SAFETY: inside the run's stack allocation, alive for the run; the
            // program is stopped in this helper call, so nothing writes it meanwhile.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    std::ptr::with_exposed_provenance::<u8>(addr as usize),
                    buf.as_mut_ptr(),
                    buf.len(),
                );
            }
            return true;
        }
        self.host_read(addr, buf)
    }

    fn helper(
        &mut self,
        pc: usize,
        id: i32,
        a: [u64; 5],
        caller: &mut Caller<'_>,
    ) -> Result<u64, VmError> {
        let guard = self.guard;
        match id {
            h::BPF_FUNC_MAP_LOOKUP_ELEM => {
                let m = self.map(pc, id, 1, a[0])?;
                let key = read_arg(caller, a[1], m.key_size() as usize)?;
                if matches!(m.map_type(), MapType::ArrayOfMaps | MapType::HashOfMaps) {
                    return Ok(match m.inner_map(key.as_ref(), guard) {
                        Some(inner) => {
                            let addr = inner as *const Map as u64;
                            if !self.inner.contains(&addr) {
                                self.inner.push(addr);
                            }
                            addr
                        }
                        None => 0,
                    });
                }
                Ok(match m.lookup_ptr(key.as_ref(), guard) {
                    Some(p) => {
                        let access = if m.map_flags() & BPF_F_RDONLY_PROG != 0 {
                            Access::Read
                        } else {
                            Access::ReadWrite
                        };
                        self.grant(caller, p.as_ptr() as u64, m.value_size() as usize, access);
                        p.as_ptr() as u64
                    }
                    None => 0,
                })
            }
            h::BPF_FUNC_MAP_UPDATE_ELEM => {
                let m = self.map(pc, id, 1, a[0])?;
                let key = read_arg(caller, a[1], m.key_size() as usize)?;
                let value = read_arg(caller, a[2], m.value_size() as usize)?;
                Ok(
                    match m.update_from_prog(key.as_ref(), value.as_ref(), a[3], guard) {
                        Ok(()) => 0,
                        Err(e) => neg(e),
                    },
                )
            }
            h::BPF_FUNC_MAP_DELETE_ELEM => {
                let m = self.map(pc, id, 1, a[0])?;
                let key = read_arg(caller, a[1], m.key_size() as usize)?;
                Ok(match m.delete_from_prog(key.as_ref(), guard) {
                    Ok(()) => 0,
                    Err(e) => neg(e),
                })
            }
            h::BPF_FUNC_MAP_PUSH_ELEM => {
                let m = self.map(pc, id, 1, a[0])?;
                let value = read_arg(caller, a[1], m.value_size() as usize)?;
                Ok(match m.push_from_prog(value.as_ref(), a[2]) {
                    Ok(()) => 0,
                    Err(e) => neg(e),
                })
            }
            h::BPF_FUNC_MAP_POP_ELEM | h::BPF_FUNC_MAP_PEEK_ELEM => {
                let m = self.map(pc, id, 1, a[0])?;
                let mut value = ArgBuf::new(m.value_size() as usize);
                // The value is written even when the map is empty (zeroed).
                let r = m.pop_from_prog(value.as_mut(), id == h::BPF_FUNC_MAP_POP_ELEM);
                caller.write(a[1], value.as_ref())?;
                Ok(match r {
                    Ok(()) => 0,
                    Err(e) => neg(e),
                })
            }
            h::BPF_FUNC_SK_STORAGE_GET => self.sk_storage_get(pc, id, a, caller),
            h::BPF_FUNC_SK_STORAGE_DELETE => {
                let m = self.sk_storage_map(pc, id, a[0])?;
                // `bpf_sk_storage_delete`: `-EINVAL` for what is not a (full) socket.
                let Some(owner) = self.storage_owner(a[1]) else {
                    return Ok(neg(Errno::EINVAL));
                };
                Ok(match m.storage_delete(&owner) {
                    Ok(()) => 0,
                    Err(e) => neg(e),
                })
            }
            // No socket exists in this runtime: lookups match nothing and return NULL,
            // as the kernel's do for a tuple no socket is bound to. The tuple is still
            // the program's memory (checked runs check it).
            h::BPF_FUNC_SK_LOOKUP_TCP | h::BPF_FUNC_SK_LOOKUP_UDP | h::BPF_FUNC_SKC_LOOKUP_TCP => {
                caller.check(a[1], a[2], Access::Read)?;
                Ok(0)
            }
            // Only lookups acquire references, and they never return a socket.
            h::BPF_FUNC_SK_RELEASE => Ok(0),
            h::BPF_FUNC_SK_FULLSOCK | h::BPF_FUNC_TCP_SOCK | h::BPF_FUNC_GET_LISTENER_SOCK => {
                self.sock_helper(pc, id, a[0])
            }
            h::BPF_FUNC_KTIME_GET_NS => Ok(now(self.rt, ClockKind::Monotonic)),
            h::BPF_FUNC_KTIME_GET_BOOT_NS => Ok(now(self.rt, ClockKind::Boottime)),
            h::BPF_FUNC_KTIME_GET_COARSE_NS => Ok(now(self.rt, ClockKind::MonotonicCoarse)),
            h::BPF_FUNC_JIFFIES64 => Ok(jiffies(now(self.rt, ClockKind::Monotonic), self.hz)),
            h::BPF_FUNC_GET_PRANDOM_U32 => {
                if self.rng == 0 {
                    self.rng = seed(self.rt);
                }
                Ok(u64::from(prandom_u32(&mut self.rng)))
            }
            h::BPF_FUNC_GET_SMP_PROCESSOR_ID => {
                Ok(u64::from(crate::cpu::current_cpu(self.rt.ncpus)))
            }
            h::BPF_FUNC_GET_NUMA_NODE_ID => Ok(0),
            h::BPF_FUNC_TRACE_PRINTK => {
                let fmt = read_arg(caller, a[0], a[1] as u32 as usize)?;
                let mut reader = ProbeReader { env: self, caller };
                match printf::trace_printk(fmt.as_ref(), [a[2], a[3], a[4]], &mut reader) {
                    Ok((line, n)) => {
                        let sink = self
                            .rt
                            .trace_sink
                            .read()
                            .unwrap_or_else(|p| p.into_inner())
                            .clone();
                        if let Some(sink) = sink {
                            sink(&String::from_utf8_lossy(&line));
                        }
                        Ok(n as u64)
                    }
                    Err(e) => Ok(neg(e)),
                }
            }
            h::BPF_FUNC_SNPRINTF => self.snprintf(a, caller),
            h::BPF_FUNC_PROBE_READ_KERNEL | h::BPF_FUNC_PROBE_READ_KERNEL_STR => {
                let size = a[1] as u32 as usize;
                let mut buf = vec![0u8; size];
                if id == h::BPF_FUNC_PROBE_READ_KERNEL {
                    if self.helper_probe_read(caller, a[2], &mut buf) {
                        caller.write(a[0], &buf)?;
                        return Ok(0);
                    }
                    caller.write(a[0], &vec![0u8; size])?;
                    return Ok(neg(Errno::EFAULT));
                }
                // `strncpy_from_kernel_nofault`: up to `size - 1` bytes and a NUL.
                if size == 0 {
                    return Ok(0);
                }
                let mut n = 0usize;
                let mut ok = true;
                while n + 1 < size {
                    let mut b = [0u8; 1];
                    if !self.helper_probe_read(caller, a[2].wrapping_add(n as u64), &mut b) {
                        ok = false;
                        break;
                    }
                    if let Some(d) = buf.get_mut(n) {
                        *d = b[0];
                    }
                    if b[0] == 0 {
                        break;
                    }
                    n += 1;
                }
                if !ok {
                    caller.write(a[0], &vec![0u8; size])?;
                    return Ok(neg(Errno::EFAULT));
                }
                if let Some(d) = buf.get_mut(n) {
                    *d = 0;
                }
                caller.write(a[0], buf.get(..=n).unwrap_or(&[]))?;
                Ok(n as u64 + 1)
            }
            h::BPF_FUNC_RINGBUF_OUTPUT => {
                let m = self.map(pc, id, 1, a[0])?;
                let rb = self.ringbuf(pc, id, m)?;
                let data = read_arg(caller, a[1], a[2] as u32 as usize)?;
                Ok(match rb.output(data.as_ref(), a[3]) {
                    Ok(()) => 0,
                    Err(e) => neg(e),
                })
            }
            h::BPF_FUNC_RINGBUF_RESERVE => {
                let m = self.map(pc, id, 1, a[0])?;
                let rb = self.ringbuf(pc, id, m)?;
                Ok(match rb.reserve(a[1], a[2]) {
                    Some(p) => {
                        let addr = p.as_ptr() as u64;
                        self.reservations.push(addr);
                        self.grant(caller, addr, a[1] as usize, Access::ReadWrite);
                        addr
                    }
                    None => 0,
                })
            }
            h::BPF_FUNC_RINGBUF_SUBMIT | h::BPF_FUNC_RINGBUF_DISCARD => {
                let addr = a[0];
                let Some(i) = self.reservations.iter().position(|&r| r == addr) else {
                    return Err(env_err(pc, ExecError::BadRingbufSample { addr }));
                };
                self.reservations.swap_remove(i);
                caller.revoke(addr);
                if let Some(p) = NonNull::new(addr as *mut u8) {
                    // SAFETY: an outstanding reservation of this run, committed once.
                    unsafe {
                        crate::maps::ringbuf::commit_sample(
                            p,
                            a[1],
                            id == h::BPF_FUNC_RINGBUF_DISCARD,
                        )
                    };
                }
                Ok(0)
            }
            h::BPF_FUNC_RINGBUF_QUERY => {
                let m = self.map(pc, id, 1, a[0])?;
                Ok(self.ringbuf(pc, id, m)?.query(a[1]))
            }
            h::BPF_FUNC_SPIN_LOCK => {
                let addr = a[0];
                if !addr.is_multiple_of(4) {
                    return Err(env_err(pc, ExecError::MisalignedSpinLock { addr }));
                }
                caller.check(addr, 4, Access::ReadWrite)?;
                if let Some(held) = self.lock_held {
                    return Err(env_err(pc, ExecError::NestedSpinLock { addr, held }));
                }
                // SAFETY: checked (or, unchecked, guaranteed by the verifier) to be a
                // writable, aligned word of a map value that outlives the run.
                let w = unsafe { lock_word(addr) };
                while w
                    .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_err()
                {
                    std::hint::spin_loop();
                }
                self.lock_held = Some(addr);
                Ok(0)
            }
            h::BPF_FUNC_SPIN_UNLOCK => {
                let addr = a[0];
                if self.lock_held != Some(addr) {
                    return Err(env_err(pc, ExecError::SpinUnlockNotHeld { addr }));
                }
                self.lock_held = None;
                // SAFETY: the word `bpf_spin_lock` checked and took.
                unsafe { lock_word(addr).store(0, Ordering::Release) };
                Ok(0)
            }
            h::BPF_FUNC_LOOP => {
                if a[3] != 0 {
                    return Ok(neg(Errno::EINVAL));
                }
                let nr = a[0] as u32 as u64;
                if nr > BPF_MAX_LOOPS {
                    return Ok(neg(Errno::E2BIG));
                }
                for i in 0..nr {
                    let ret = caller.call_function(self, a[1], [i, a[2], 0, 0, 0])?;
                    if ret != 0 {
                        return Ok(i + 1);
                    }
                }
                Ok(nr)
            }
            h::BPF_FUNC_FOR_EACH_MAP_ELEM => self.for_each_map_elem(pc, a, caller),
            h::BPF_FUNC_XDP_ADJUST_HEAD
            | h::BPF_FUNC_XDP_ADJUST_TAIL
            | h::BPF_FUNC_XDP_ADJUST_META => {
                let x = self.check_ctx(pc, id, a[0])?;
                Ok(self.xdp_adjust(x, id, a[1] as u32 as i32, caller))
            }
            h::BPF_FUNC_XDP_GET_BUFF_LEN => {
                let x = self.check_ctx(pc, id, a[0])?;
                // SAFETY: the run's context, alive for the run.
                let (data, end) = unsafe { ((*x).data, (*x).data_end) };
                Ok(end.wrapping_sub(data))
            }
            h::BPF_FUNC_XDP_LOAD_BYTES | h::BPF_FUNC_XDP_STORE_BYTES => {
                let x = self.check_ctx(pc, id, a[0])?;
                // SAFETY: the run's context.
                let (data, end) = unsafe { ((*x).data, (*x).data_end) };
                let (off, len) = (a[1] as u32 as u64, a[3] as u32 as u64);
                if off.saturating_add(len) > end.wrapping_sub(data) {
                    return Ok(neg(Errno::EINVAL));
                }
                let pkt = data + off;
                if id == h::BPF_FUNC_XDP_LOAD_BYTES {
                    let mut buf = vec![0u8; len as usize];
                    // SAFETY: inside the packet, which the run owns.
                    unsafe { copy_from_addr(pkt, &mut buf) };
                    caller.write(a[2], &buf)?;
                } else {
                    let buf = read_arg(caller, a[2], len as usize)?;
                    // SAFETY: inside the packet, which the run owns.
                    unsafe { copy_to_addr(pkt, buf.as_ref()) };
                }
                Ok(0)
            }
            _ => Err(VmError::UnknownHelper { pc, id }),
        }
    }

    /// The host object owning the storage of the socket at `addr`, through the host's
    /// hook ([`crate::Runtime::set_storage_owner`]); `None` without one.
    fn storage_owner(&self, addr: u64) -> Option<HostObject> {
        let hook = self
            .rt
            .storage_owner
            .read()
            .unwrap_or_else(|p| p.into_inner());
        hook.as_ref().and_then(|owner| owner(addr))
    }

    /// The `SK_STORAGE` map at `addr` (the verifier admits no other type).
    fn sk_storage_map(&self, pc: usize, helper: i32, addr: u64) -> Result<&'r Map, VmError> {
        let m = self.map(pc, helper, 1, addr)?;
        if m.map_type() != MapType::SkStorage {
            return Err(env_err(
                pc,
                ExecError::WrongMapType {
                    helper,
                    map_id: m.id(),
                    map_type: m.map_type(),
                },
            ));
        }
        Ok(m)
    }

    /// `bpf_sk_storage_get(map, sk, value, flags)`: NULL for flags other than 0 and
    /// `BPF_SK_STORAGE_GET_F_CREATE` and for what is no socket of the host; the socket's
    /// value, created (from `value`, or zeroed when it is NULL) with the flag.
    fn sk_storage_get(
        &self,
        pc: usize,
        id: i32,
        a: [u64; 5],
        caller: &mut Caller<'_>,
    ) -> Result<u64, VmError> {
        let m = self.sk_storage_map(pc, id, a[0])?;
        let flags = a[3];
        if flags > BPF_LOCAL_STORAGE_GET_F_CREATE {
            return Ok(0);
        }
        let Some(owner) = self.storage_owner(a[1]) else {
            return Ok(0);
        };
        let size = m.value_size() as usize;
        let init = if flags == BPF_LOCAL_STORAGE_GET_F_CREATE && a[2] != 0 {
            Some(read_arg(caller, a[2], size)?)
        } else {
            None
        };
        Ok(
            match m.storage_get(&owner, init.as_ref().map(ArgBuf::as_ref), flags, self.guard) {
                Some(p) => {
                    let addr = p.as_ptr() as u64;
                    self.grant(caller, addr, size, Access::ReadWrite);
                    addr
                }
                None => 0,
            },
        )
    }

    /// `bpf_sk_fullsock`, `bpf_tcp_sock`, `bpf_get_listener_sock` on `addr`, which must
    /// be the socket of this run's skb (the only socket a program can hold here).
    fn sock_helper(&self, pc: usize, helper: i32, addr: u64) -> Result<u64, VmError> {
        let sock = match self.packet {
            // SAFETY: the run's skb, alive for the whole run; the program only reads
            // its socket.
            PacketCtx::Skb(p) if addr == p as u64 + SkBuff::SOCK as u64 => unsafe { (*p).sock },
            _ => return Err(env_err(pc, ExecError::NotSocket { helper, addr })),
        };
        let full = sock.is_fullsock();
        match helper {
            h::BPF_FUNC_SK_FULLSOCK => Ok(if full { addr } else { 0 }),
            // `struct bpf_tcp_sock` views exist only for TCP sockets, and the run's
            // socket has no protocol.
            h::BPF_FUNC_TCP_SOCK if !(full && sock.protocol == BpfSock::IPPROTO_TCP) => Ok(0),
            // Not a listener (`TCP_LISTEN` with `SOCK_RCU_FREE`).
            h::BPF_FUNC_GET_LISTENER_SOCK if sock.state != BpfSock::TCP_LISTEN => Ok(0),
            _ => Err(env_err(pc, ExecError::NotSocket { helper, addr })),
        }
    }

    fn ringbuf(&self, pc: usize, helper: i32, m: &'r Map) -> Result<&'r crate::RingBuf, VmError> {
        m.ringbuf().ok_or_else(|| {
            env_err(
                pc,
                ExecError::WrongMapType {
                    helper,
                    map_id: m.id(),
                    map_type: m.map_type(),
                },
            )
        })
    }

    fn snprintf(&mut self, a: [u64; 5], caller: &mut Caller<'_>) -> Result<u64, VmError> {
        // The format: a NUL-terminated string (`ARG_PTR_TO_CONST_STR`).
        let mut fmt = Vec::new();
        loop {
            let mut b = [0u8; 1];
            caller.read(a[2].wrapping_add(fmt.len() as u64), &mut b)?;
            fmt.push(b[0]);
            if b[0] == 0 || fmt.len() >= MAX_CONST_STR {
                break;
            }
        }
        let data_len = a[4] as u32;
        let nargs = (data_len as usize / 8).min(printf::MAX_BPRINTF_VARARGS);
        let mut args = [0u64; printf::MAX_BPRINTF_VARARGS];
        if data_len.is_multiple_of(8) && data_len as usize <= printf::MAX_BPRINTF_VARARGS * 8 {
            if data_len != 0 && a[3] == 0 {
                return Ok(neg(Errno::EINVAL));
            }
            let raw = read_arg(caller, a[3], nargs * 8)?;
            for (d, s) in args.iter_mut().zip(raw.as_ref().chunks_exact(8)) {
                let mut w = [0u8; 8];
                w.copy_from_slice(s);
                *d = u64::from_ne_bytes(w);
            }
        }
        let str_size = a[1] as u32;
        let mut reader = ProbeReader { env: self, caller };
        match printf::snprintf(str_size, &fmt, &args, data_len, &mut reader) {
            Ok((out, ret)) => {
                caller.write(a[0], &out)?;
                Ok(ret as u64)
            }
            Err(e) => Ok(neg(e)),
        }
    }

    fn for_each_map_elem(
        &mut self,
        pc: usize,
        a: [u64; 5],
        caller: &mut Caller<'_>,
    ) -> Result<u64, VmError> {
        let id = h::BPF_FUNC_FOR_EACH_MAP_ELEM;
        let m = self.map(pc, id, 1, a[0])?;
        if a[3] != 0 {
            return Ok(neg(Errno::EINVAL));
        }
        let key_size = m.key_size() as usize;
        let value_size = m.value_size() as usize;
        let value_access = if m.map_flags() & BPF_F_RDONLY_PROG != 0 {
            Access::Read
        } else {
            Access::ReadWrite
        };
        let scratch: Box<[u8]> = vec![0u8; key_size.max(1)].into_boxed_slice();
        let key_addr = scratch.as_ptr() as u64;
        self.scratch.push(scratch);
        let slot = self.scratch.len() - 1;
        if self.checked {
            // SAFETY: the scratch box lives in `self.scratch` until the env is dropped,
            // after the run; it is only written between callbacks.
            unsafe { caller.grant(key_addr, key_size, Access::Read) };
        }
        let mut failure: Option<VmError> = None;
        let guard = self.guard;
        let walked = m.for_each_elem(guard, |key, value| {
            if let Some(buf) = self.scratch.get_mut(slot) {
                // SAFETY: writing the scratch box through its exposed address while no
                // reference to its contents is held elsewhere.
                unsafe {
                    copy_to_addr(buf.as_mut_ptr() as u64, key.get(..key_size).unwrap_or(key))
                };
            }
            self.grant(caller, value.as_ptr() as u64, value_size, value_access);
            match caller.call_function(self, a[1], [a[0], key_addr, value.as_ptr() as u64, a[2], 0])
            {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => {
                    failure = Some(e);
                    false
                }
            }
        });
        caller.revoke(key_addr);
        if let Some(e) = failure {
            return Err(e);
        }
        Ok(match walked {
            Ok(n) => u64::from(n),
            Err(e) => neg(e),
        })
    }

    /// `bpf_xdp_adjust_head`, `_tail` and `_meta` on the run's buffer.
    fn xdp_adjust(
        &mut self,
        x: *mut XdpBuff,
        id: i32,
        offset: i32,
        caller: &mut Caller<'_>,
    ) -> u64 {
        // SAFETY: `x` is the run's context, alive and not referenced elsewhere.
        let b = unsafe { *x };
        let off = i64::from(offset);
        let frame_end = b.data_hard_start + XDP_FRAME_SIZE;
        let metalen = b.data - b.data_meta;
        let (meta, data, end) = match id {
            h::BPF_FUNC_XDP_ADJUST_HEAD => {
                let data = b.data.wrapping_add_signed(off);
                if data < frame_end + metalen || data > b.data_end - ETH_HLEN {
                    return neg(Errno::EINVAL);
                }
                let meta = b.data_meta.wrapping_add_signed(off);
                if metalen > 0 {
                    // SAFETY: both ranges lie inside the run's packet buffer (checked
                    // above: `meta >= frame_end`, `meta + metalen = data <= data_end`).
                    unsafe {
                        std::ptr::copy(
                            std::ptr::with_exposed_provenance::<u8>(b.data_meta as usize),
                            std::ptr::with_exposed_provenance_mut::<u8>(meta as usize),
                            metalen as usize,
                        );
                    }
                }
                (meta, data, b.data_end)
            }
            h::BPF_FUNC_XDP_ADJUST_TAIL => {
                let hard_end = b.data_hard_start + u64::from(b.frame_sz) - SKB_SHARED_INFO_SIZE;
                let end = b.data_end.wrapping_add_signed(off);
                if end > hard_end || end < b.data + ETH_HLEN {
                    return neg(Errno::EINVAL);
                }
                if off > 0 {
                    // SAFETY: `[data_end, end)` is inside the buffer (end <= hard_end).
                    unsafe { copy_to_addr(b.data_end, &vec![0u8; off as usize]) };
                }
                (b.data_meta, b.data, end)
            }
            _ => {
                let meta = b.data_meta.wrapping_add_signed(off);
                if meta < frame_end || meta > b.data {
                    return neg(Errno::EINVAL);
                }
                let metalen = b.data - meta;
                if !metalen.is_multiple_of(4) || metalen > 255 {
                    return neg(Errno::EACCES);
                }
                (meta, b.data, b.data_end)
            }
        };
        // SAFETY: as above.
        unsafe { XdpBuff::set_pointers(x, meta, data, end) };
        if self.checked {
            caller.revoke(b.data_meta);
            // SAFETY: the packet buffer is the run's and lives until it ends.
            unsafe { caller.grant(meta, (end - meta) as usize, Access::ReadWrite) };
        }
        0
    }
}

/// Reads `buf.len()` bytes of this process at `addr` with `process_vm_readv(2)`, which
/// reports an unmapped or unreadable address as an error instead of faulting. `false`
/// unless every byte was read.
fn read_own_memory(addr: u64, buf: &mut [u8]) -> bool {
    if buf.is_empty() {
        return true;
    }
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: std::ptr::without_provenance_mut(addr as usize),
        iov_len: buf.len(),
    };
    // SAFETY: `local` describes `buf`, which the kernel writes; `remote` is only
    // read by the kernel on our behalf, which checks it and fails on a bad address.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    usize::try_from(n).is_ok_and(|n| n == buf.len())
}

/// The map, key and value of a native map helper call.
///
/// # Safety
///
/// `map` is the address of a live [`Map`]; `key` (and `value`, when given) point at
/// `key_size` (`value_size`) readable bytes that stay unchanged during the call; `guard`
/// is the run's epoch guard. A verified program's map helper call guarantees all of it.
unsafe fn native_args<'a>(
    map: u64,
    key: u64,
    value: Option<u64>,
    guard: *mut c_void,
) -> (&'a Map, &'a [u8], &'a [u8], &'a Guard) {
    // SAFETY: the caller's contract.
    unsafe {
        let m = &*std::ptr::with_exposed_provenance::<Map>(map as usize);
        let k = std::slice::from_raw_parts(
            std::ptr::with_exposed_provenance::<u8>(key as usize),
            m.key_size() as usize,
        );
        let v = match value {
            Some(v) => std::slice::from_raw_parts(
                std::ptr::with_exposed_provenance::<u8>(v as usize),
                m.value_size() as usize,
            ),
            None => &[],
        };
        (m, k, v, &*guard.cast::<Guard>())
    }
}

/// Runs a native helper body; a panic (a bug) becomes `-EFAULT` instead of unwinding
/// out of an `extern "C"` function, which would abort the host.
fn no_unwind(body: impl FnOnce() -> u64) -> u64 {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(neg(Errno::EFAULT))
}

/// Native `bpf_map_lookup_elem` (see [`ProgEnv::native_helper`]).
unsafe extern "C" fn native_map_lookup(
    map: u64,
    key: u64,
    _: u64,
    _: u64,
    _: u64,
    guard: *mut c_void,
) -> u64 {
    // SAFETY: a verified program's call, under the run's guard (`native_args`).
    let (m, k, _, g) = unsafe { native_args(map, key, None, guard) };
    no_unwind(|| {
        if matches!(m.map_type(), MapType::ArrayOfMaps | MapType::HashOfMaps) {
            // The inner map itself (alive while the guard is held).
            return m.inner_map(k, g).map_or(0, |inner| {
                std::ptr::from_ref(inner).expose_provenance() as u64
            });
        }
        m.lookup_ptr(k, g).map_or(0, |p| p.as_ptr() as u64)
    })
}

/// Native `bpf_map_update_elem` (see [`ProgEnv::native_helper`]).
unsafe extern "C" fn native_map_update(
    map: u64,
    key: u64,
    value: u64,
    flags: u64,
    _: u64,
    guard: *mut c_void,
) -> u64 {
    // SAFETY: as for lookups, with a value of `value_size` bytes.
    let (m, k, v, g) = unsafe { native_args(map, key, Some(value), guard) };
    no_unwind(|| {
        // The value may be the very element being replaced (a program passing what a
        // lookup returned): copy it out first, as the kernel copies before writing.
        let mut copy = ArgBuf::new(v.len());
        copy.as_mut().copy_from_slice(v);
        match m.update_from_prog(k, copy.as_ref(), flags, g) {
            Ok(()) => 0,
            Err(e) => neg(e),
        }
    })
}

/// Native `bpf_ringbuf_reserve` (see [`ProgEnv::native_helper`]).
unsafe extern "C" fn native_ringbuf_reserve(
    map: u64,
    size: u64,
    flags: u64,
    _: u64,
    _: u64,
    _: *mut c_void,
) -> u64 {
    // SAFETY: a verified program's ring buffer map (`CONST_PTR_TO_MAP` of that type).
    let m = unsafe { &*std::ptr::with_exposed_provenance::<Map>(map as usize) };
    no_unwind(|| {
        m.ringbuf()
            .and_then(|rb| rb.reserve(size, flags))
            .map_or(0, |p| p.as_ptr() as u64)
    })
}

/// Native `bpf_ringbuf_submit`/`bpf_ringbuf_discard`: commits the sample at `addr`.
fn native_commit(addr: u64, flags: u64, discard: bool) -> u64 {
    if let Some(p) = NonNull::new(std::ptr::with_exposed_provenance_mut::<u8>(addr as usize)) {
        // SAFETY: a verified program passes a sample it reserved and has not committed
        // (the verifier's reference tracking), committed exactly once here.
        no_unwind(|| {
            unsafe { crate::maps::ringbuf::commit_sample(p, flags, discard) };
            0
        })
    } else {
        0
    }
}

/// Native `bpf_ringbuf_submit` (see [`ProgEnv::native_helper`]).
unsafe extern "C" fn native_ringbuf_submit(
    addr: u64,
    flags: u64,
    _: u64,
    _: u64,
    _: u64,
    _: *mut c_void,
) -> u64 {
    native_commit(addr, flags, false)
}

/// Native `bpf_ringbuf_discard` (see [`ProgEnv::native_helper`]).
unsafe extern "C" fn native_ringbuf_discard(
    addr: u64,
    flags: u64,
    _: u64,
    _: u64,
    _: u64,
    _: *mut c_void,
) -> u64 {
    native_commit(addr, flags, true)
}

/// Native `bpf_map_delete_elem` (see [`ProgEnv::native_helper`]).
unsafe extern "C" fn native_map_delete(
    map: u64,
    key: u64,
    _: u64,
    _: u64,
    _: u64,
    guard: *mut c_void,
) -> u64 {
    // SAFETY: as for lookups.
    let (m, k, _, g) = unsafe { native_args(map, key, None, guard) };
    no_unwind(|| match m.delete_from_prog(k, g) {
        Ok(()) => 0,
        Err(e) => neg(e),
    })
}

/// The word of a `struct bpf_spin_lock`.
///
/// # Safety
///
/// `addr` must be a 4-aligned word valid for atomic access for `'a`.
unsafe fn lock_word<'a>(addr: u64) -> &'a AtomicU32 {
    // SAFETY: (caller).
    unsafe { &*std::ptr::with_exposed_provenance::<AtomicU32>(addr as usize) }
}

/// Copies `buf.len()` bytes from `addr`.
///
/// # Safety
///
/// The range must be valid for reads.
unsafe fn copy_from_addr(addr: u64, buf: &mut [u8]) {
    // SAFETY: (caller).
    unsafe {
        std::ptr::copy_nonoverlapping(
            std::ptr::with_exposed_provenance::<u8>(addr as usize),
            buf.as_mut_ptr(),
            buf.len(),
        );
    }
}

/// Copies `data` to `addr`.
///
/// # Safety
///
/// The range must be valid for writes and not overlap `data`.
unsafe fn copy_to_addr(addr: u64, data: &[u8]) {
    // SAFETY: (caller).
    unsafe {
        std::ptr::copy_nonoverlapping(
            data.as_ptr(),
            std::ptr::with_exposed_provenance_mut::<u8>(addr as usize),
            data.len(),
        );
    }
}

/// Memory access for `%s` and IP conversions: what `probe_read_kernel` may read.
struct ProbeReader<'a, 'b, 'c, 'r> {
    env: &'a ProgEnv<'r>,
    caller: &'b mut Caller<'c>,
}

impl MemReader for ProbeReader<'_, '_, '_, '_> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        self.env.helper_probe_read(self.caller, addr, buf)
    }
}

impl ProgEnv<'_> {
    /// Reports a finished helper or kfunc call to the runtime's helper trace.
    fn traced(&self, pc: usize, callee: Callee, mut args: [u64; 5], r: &Result<u64, VmError>) {
        if let Some(trace) = &self.trace {
            // Registers past a helper's arguments hold whatever the engine left there
            // (the verifier treats them as clobbered by earlier calls): reported as 0.
            if let Callee::Helper(id) = callee {
                let proto = h::builtin(id).copied().or_else(|| {
                    let helpers = self.rt.helpers.read().ok()?;
                    helpers
                        .iter()
                        .find(|hh| hh.proto.id == id)
                        .map(|hh| hh.proto)
                });
                if let Some(p) = proto {
                    for (a, spec) in args.iter_mut().zip(p.args.iter()) {
                        if spec.ty == structops_verifier::proto::ArgType::DontCare {
                            *a = 0;
                        }
                    }
                }
            }
            trace(&HelperCall {
                prog_id: self.root,
                pc,
                callee,
                args,
                ret: r.as_ref().ok().copied(),
            });
        }
    }

    fn dispatch_helper(
        &mut self,
        pc: usize,
        id: i32,
        args: [u64; 5],
        caller: &mut Caller<'_>,
    ) -> Result<u64, VmError> {
        if let Some(p) = h::func_proto(self.prog_type, id, self.caps) {
            if p.gpl_only && !self.gpl {
                return Err(env_err(pc, ExecError::GplOnly { id }));
            }
            return self.helper(pc, id, args, caller);
        }
        if h::builtin(id).is_some() {
            return Err(env_err(
                pc,
                ExecError::HelperNotAllowed {
                    id,
                    prog_type: self.prog_type,
                },
            ));
        }
        let host: Option<HostFn> = {
            let helpers = self.rt.helpers.read().unwrap_or_else(|p| p.into_inner());
            helpers
                .iter()
                .find(|hh| {
                    hh.proto.id == id
                        && (hh.prog_types.is_empty() || hh.prog_types.contains(&self.prog_type))
                })
                .map(|hh| {
                    if hh.proto.gpl_only && !self.gpl {
                        None
                    } else {
                        Some(hh.func.clone())
                    }
                })
                .ok_or(VmError::UnknownHelper { pc, id })?
        };
        match host {
            Some(f) => f(caller, args),
            None => Err(env_err(pc, ExecError::GplOnly { id })),
        }
    }

    fn dispatch_kfunc(
        &mut self,
        pc: usize,
        btf_id: u32,
        off: i16,
        args: [u64; 5],
        caller: &mut Caller<'_>,
    ) -> Result<u64, VmError> {
        if off != 0 {
            return Err(VmError::UnknownKfunc { pc, btf_id, off });
        }
        let f = {
            let table = self.rt.kfuncs.read().unwrap_or_else(|p| p.into_inner());
            match table.get(btf_id) {
                Some(k) if k.allowed_for(self.prog_type) => k.func.clone(),
                _ => {
                    return Err(env_err(
                        pc,
                        ExecError::KfuncNotAllowed {
                            btf_id,
                            prog_type: self.prog_type,
                        },
                    ));
                }
            }
        };
        f(caller, args)
    }
}

impl Env for ProgEnv<'_> {
    /// The map and ring buffer helpers' native forms, for unchecked untraced runs
    /// (`ProgEnv::native_maps`): the unchecked interpreter and the JIT call them
    /// directly, without the checks, copies and bookkeeping of [`Env::call_helper`],
    /// which a verified program makes unnecessary (its map argument is one of its maps,
    /// its key and value pointers cover `key_size` and `value_size` readable bytes, and
    /// it submits or discards every reservation it makes). The context is the run's
    /// epoch guard. Within one run either every call of these helpers is native or none
    /// is, so reservations are never half tracked.
    fn native_helper(&self, id: i32) -> Option<NativeCall> {
        if !self.native_maps {
            return None;
        }
        let func: NativeFn = match id {
            h::BPF_FUNC_MAP_LOOKUP_ELEM => native_map_lookup,
            h::BPF_FUNC_MAP_UPDATE_ELEM => native_map_update,
            h::BPF_FUNC_MAP_DELETE_ELEM => native_map_delete,
            h::BPF_FUNC_RINGBUF_RESERVE => native_ringbuf_reserve,
            h::BPF_FUNC_RINGBUF_SUBMIT => native_ringbuf_submit,
            h::BPF_FUNC_RINGBUF_DISCARD => native_ringbuf_discard,
            _ => return None,
        };
        Some(NativeCall {
            func,
            data: std::ptr::from_ref::<Guard>(self.guard).cast_mut().cast(),
        })
    }

    fn call_helper(
        &mut self,
        pc: usize,
        id: i32,
        args: [u64; 5],
        caller: &mut Caller<'_>,
    ) -> Result<u64, VmError> {
        let r = self.dispatch_helper(pc, id, args, caller);
        if self.trace.is_some() {
            self.traced(pc, Callee::Helper(id), args, &r);
        }
        r
    }

    fn call_kfunc(
        &mut self,
        pc: usize,
        btf_id: u32,
        off: i16,
        args: [u64; 5],
        caller: &mut Caller<'_>,
    ) -> Result<u64, VmError> {
        let r = self.dispatch_kfunc(pc, btf_id, off, args, caller);
        if self.trace.is_some() {
            self.traced(pc, Callee::Kfunc(btf_id), args, &r);
        }
        r
    }

    fn tail_call(&mut self, pc: usize, map: u64, index: u32) -> Result<TailCallTarget, VmError> {
        let m = self.map(pc, h::BPF_FUNC_TAIL_CALL, 2, map)?;
        if m.map_type() != MapType::ProgArray {
            return Err(env_err(
                pc,
                ExecError::WrongMapType {
                    helper: h::BPF_FUNC_TAIL_CALL,
                    map_id: m.id(),
                    map_type: m.map_type(),
                },
            ));
        }
        if index >= m.max_entries() {
            return Ok(TailCallTarget::OutOfRange);
        }
        let Some(t) = m.tail_call_target(index, self.guard) else {
            return Ok(TailCallTarget::Empty);
        };
        let any: &dyn Any = &**t;
        let Some(prog) = any.downcast_ref::<Prog>() else {
            return Ok(TailCallTarget::Empty);
        };
        let code: Code = match prog.verification() {
            Verification::Verified(v) => v.code().clone(),
            Verification::Unverified(_) => {
                if !self.checked || !self.rt.run_unverified.load(Ordering::Acquire) {
                    return Err(env_err(
                        pc,
                        ExecError::UnverifiedTailCall { prog_id: prog.id() },
                    ));
                }
                prog.unverified_code().clone()
            }
        };
        if prog.id() != self.root && !self.entered.contains(&prog.id()) {
            self.entered.push(prog.id());
            for um in prog.used_maps() {
                if !self.run_maps().any(|x| Arc::ptr_eq(x, um)) {
                    self.maps.push(um.clone());
                }
            }
        }
        Ok(TailCallTarget::Program(code))
    }

    /// The JIT may run `bpf_loop` itself (the kernel's inlining) when the helpers run
    /// natively anyway: an unchecked, untraced run. Its helper is exactly the kernel's.
    fn inline_bpf_loop(&self) -> bool {
        self.native_maps
    }

    /// Probe loads read host memory only, the same in every mode (see
    /// `ProgEnv::host_read`): never the run's own regions, which only a checked
    /// run could tell apart.
    fn probe_read(&mut self, _pc: usize, addr: u64, buf: &mut [u8], _: &mut Caller<'_>) -> bool {
        self.host_read(addr, buf)
    }

    fn load_packet(
        &mut self,
        _pc: usize,
        ctx: u64,
        offset: i32,
        width: Width,
    ) -> Result<Option<u64>, VmError> {
        let PacketCtx::Skb(skb) = self.packet else {
            return Ok(None);
        };
        if skb as u64 != ctx {
            return Ok(None);
        }
        // SAFETY: the run's context, alive for the run.
        let s = unsafe { *skb };
        let size = width.bytes() as u64;
        let start = if offset >= 0 {
            s.data + offset as u64
        } else if offset >= SKF_NET_OFF {
            s.network_header
                .wrapping_add_signed(i64::from(offset - SKF_NET_OFF))
        } else if offset >= SKF_LL_OFF {
            s.mac_header
                .wrapping_add_signed(i64::from(offset - SKF_LL_OFF))
        } else {
            return Ok(None);
        };
        // The packet's bytes run from the MAC header to `data_end`.
        if start < s.mac_header || start.saturating_add(size) > s.data_end {
            return Ok(None);
        }
        let mut b = [0u8; 8];
        // SAFETY: inside the run's packet buffer (checked just above).
        unsafe { copy_from_addr(start, b.get_mut(..size as usize).unwrap_or(&mut [])) };
        let v = b
            .iter()
            .take(size as usize)
            .fold(0u64, |acc, &x| acc << 8 | u64::from(x));
        Ok(Some(v))
    }
}
