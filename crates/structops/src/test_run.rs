//! `BPF_PROG_TEST_RUN`: run a loaded program once or `repeat` times on given input, as
//! the kernel's `net/bpf/test_run.c` and `bpf_struct_ops_test_run` do.
//!
//! - **XDP** (`bpf_prog_test_run_xdp`): the packet goes into a page-sized buffer after
//!   `XDP_PACKET_HEADROOM` (256) bytes of headroom, with the tailroom of a
//!   `skb_shared_info` (320) at the end; `ctx_in` may describe metadata (`data`) and the
//!   packet length (`data_end`) as `struct xdp_md` offsets; `data_out` receives the bytes
//!   from `data_meta` to `data_end` after the run; the context is the loopback
//!   device's queue 0 (`ingress_ifindex` 1). Repeated runs work on the same buffer, as
//!   in the kernel.
//! - **skb** (`bpf_prog_test_run_skb`, for `SOCKET_FILTER`, `SCHED_CLS`, `SCHED_ACT`):
//!   the packet is parsed as an Ethernet frame of the loopback device (`protocol`,
//!   `pkt_type`), `ctx_in` may set `mark`, `priority`, `ingress_ifindex`, `ifindex`,
//!   `cb[]`, `tstamp`, `wire_len`, `gso_segs`, `gso_size` and `hwtstamp` (anything else
//!   non-zero is `EINVAL`); socket filters see the packet from the network header, and
//!   their output gets a zeroed Ethernet header back, as in the kernel.
//! - **struct_ops** (`bpf_struct_ops_test_run`): `ctx_in` is the array of `u64`
//!   arguments of the member's function prototype; `retval` is what the program
//!   returned. Pointer arguments are host addresses the program may not touch: a
//!   member with pointer arguments always runs checked (`RunMode::Unchecked` is
//!   `EACCES` there), since the words are not the objects its types promise.
//!
//! `duration` is the average wall time of one run in nanoseconds, measured around the
//! whole loop like the kernel's `bpf_test_timer`.
//!
//! Packets live anywhere in memory: a verified program's loads of the 32-bit pointer
//! fields of the uapi contexts were rewritten into loads of the real 64-bit pointers
//! (see [`crate::ctx`]). Programs loaded unverified are not rewritten, so their packets
//! are placed below 4 GiB, where the 32-bit fields still hold the whole address.
//!
//! Multi-buffer XDP (`data_size_in` larger than one page allows), live frames
//! (`BPF_F_TEST_XDP_LIVE_FRAMES`) and `BPF_F_TEST_RUN_ON_CPU` are not supported
//! (`EOPNOTSUPP`); other program types have no test run (`ENOTSUPP`, as in the kernel).

use std::time::Instant;

use structops_vm::{Access, Code, Config, Engine, Interpreter, Mode, Region, VmError};
use thiserror::Error;

use crate::ctx::{
    BPF_SOCK_SIZE, BpfSock, SK_BUFF_SIZE, SkBuff, XDP_MD_SIZE, XdpBuff, XdpMd, sk_buff,
};
use crate::errno::Errno;
use crate::exec::{ExecError, PacketCtx, ProgEnv, SKB_SHARED_INFO_SIZE};
use crate::maps::Guard;
use crate::prog::{AttachType, Prog, ProgHandle, ProgType, Verification};
use crate::runtime::Runtime;

/// `BPF_F_TEST_RUN_ON_CPU`.
pub const BPF_F_TEST_RUN_ON_CPU: u32 = 1 << 0;
/// `BPF_F_TEST_XDP_LIVE_FRAMES`.
pub const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;
/// `BPF_F_TEST_SKB_CHECKSUM_COMPLETE`.
pub const BPF_F_TEST_SKB_CHECKSUM_COMPLETE: u32 = 1 << 2;
/// `XDP_PACKET_HEADROOM`.
pub const XDP_PACKET_HEADROOM: u32 = 256;
/// `PAGE_SIZE`, the XDP test frame size.
const PAGE_SIZE: u32 = 4096;
/// `ETH_HLEN`.
const ETH_HLEN: u32 = 14;
/// `NET_SKB_PAD + NET_IP_ALIGN` on x86-64.
const SKB_HEADROOM: u32 = 64;
/// `sizeof(struct xdp_frame)`.
const XDP_FRAME_SIZE: u32 = 40;
/// `GSO_LEGACY_MAX_SIZE`.
const GSO_LEGACY_MAX_SIZE: u32 = 65536;
/// `GSO_MAX_SEGS`.
const GSO_MAX_SEGS: u32 = 65535;
/// The loopback device's ifindex.
const LOOPBACK_IFINDEX: u32 = 1;
/// `EBADMSG`: a `BPF_F_TEST_SKB_CHECKSUM_COMPLETE` checksum that no longer matches.
const EBADMSG: Errno = Errno(74);

/// Which interpreter mode a test run uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RunMode {
    /// Unchecked for verified programs, checked for unverified ones.
    #[default]
    Auto,
    /// Checked mode for any program.
    Checked,
    /// Unchecked mode; verified programs only (`EACCES` otherwise).
    Unchecked,
}

/// Why a checked run stopped early (the runtime's addition to the kernel's results).
#[derive(Debug, Error)]
pub enum RunFault {
    /// The interpreter stopped the program.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// The program broke a rule the verifier enforces (see [`ExecError`]).
    #[error(transparent)]
    Exec(#[from] ExecError),
}

/// The `BPF_PROG_TEST_RUN` attributes and results (`attr.test`), in and out as in the
/// kernel.
#[derive(Debug, Default)]
pub struct TestRun {
    /// `data_in` (`data_size_in` is its length).
    pub data_in: Vec<u8>,
    /// `data_out`: `None` is a NULL pointer; `Some` receives up to `data_size_out`
    /// bytes (or the whole output without a size hint).
    pub data_out: Option<Vec<u8>>,
    /// In: the size hint (0 for none); out: the full output size.
    pub data_size_out: u32,
    /// `ctx_in` (`ctx_size_in` is its length; `Some(empty)` is `EINVAL`, as a non-NULL
    /// pointer with size 0 is).
    pub ctx_in: Option<Vec<u8>>,
    /// `ctx_out`: `None` is NULL; `Some` receives up to `ctx_size_out` bytes.
    pub ctx_out: Option<Vec<u8>>,
    /// In: the size of the `ctx_out` buffer; out: the context's full size.
    pub ctx_size_out: u32,
    /// `repeat` (0 runs once).
    pub repeat: u32,
    /// `flags` (`BPF_F_TEST_*`).
    pub flags: u32,
    /// `cpu`.
    pub cpu: u32,
    /// `batch_size`.
    pub batch_size: u32,
    /// The interpreter mode (not in the kernel).
    pub mode: RunMode,
    /// Out: the program's return value (`retval`).
    pub retval: u32,
    /// Out: average ns per run (`duration`).
    pub duration: u32,
    /// Out: why the run stopped early, when `prog_test_run` returns `EFAULT`.
    pub fault: Option<RunFault>,
    /// `bpf_dummy_ops` runs: the `struct bpf_dummy_ops_state` (its `val`) that a non-zero
    /// `args[0]` points to, in and out (the kernel copies it from and back to the user
    /// pointer in `args[0]`). `None` with a non-zero `args[0]` is `EFAULT`.
    pub dummy_state: Option<i32>,
}

impl TestRun {
    /// A run on `data_in` that wants the output data.
    pub fn with_data(data_in: &[u8]) -> TestRun {
        TestRun {
            data_in: data_in.to_vec(),
            data_out: Some(Vec::new()),
            ..TestRun::default()
        }
    }

    /// A run with `ctx_in` (and the context back in `ctx_out`).
    pub fn with_ctx(ctx_in: &[u8]) -> TestRun {
        TestRun {
            ctx_in: Some(ctx_in.to_vec()),
            ctx_out: Some(Vec::new()),
            ctx_size_out: ctx_in.len() as u32,
            ..TestRun::default()
        }
    }

    /// A struct_ops run with `args` as the argument array.
    pub fn with_args(args: &[u64]) -> TestRun {
        let bytes: Vec<u8> = args.iter().flat_map(|a| a.to_ne_bytes()).collect();
        TestRun {
            ctx_in: (!bytes.is_empty()).then_some(bytes),
            ..TestRun::default()
        }
    }
}

/// Memory for a test-run packet, page-aligned and zeroed when mapped: anywhere, or
/// (`low`, for programs loaded unverified, whose loads of the 32-bit pointer fields of
/// `xdp_md` and `__sk_buff` are not rewritten) below 4 GiB.
struct PacketBuf {
    ptr: *mut u8,
    len: usize,
}

impl PacketBuf {
    fn new(len: usize, low: bool) -> Result<PacketBuf, Errno> {
        let len = len.max(1).next_multiple_of(PAGE_SIZE as usize);
        #[cfg(target_arch = "x86_64")]
        let (hint, extra) = (std::ptr::null_mut(), libc::MAP_32BIT);
        #[cfg(not(target_arch = "x86_64"))]
        let (hint, extra) = (0x4000_0000usize as *mut libc::c_void, 0);
        let (hint, extra) = if low {
            (hint, extra)
        } else {
            (std::ptr::null_mut(), 0)
        };
        // SAFETY: an anonymous private mapping with no fixed address; the result is
        // checked below.
        let p = unsafe {
            libc::mmap(
                hint,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Errno::ENOMEM);
        }
        let buf = PacketBuf {
            ptr: p.cast::<u8>(),
            len,
        };
        if low && (p as u64).saturating_add(len as u64) > 1 << 32 {
            return Err(Errno::ENOMEM);
        }
        Ok(buf)
    }

    fn addr(&self) -> u64 {
        self.ptr.expose_provenance() as u64
    }

    /// Copies `data` to offset `off` (must fit).
    fn write(&mut self, off: usize, data: &[u8]) {
        if off.saturating_add(data.len()) <= self.len {
            // SAFETY: inside the mapping (checked), which nothing else references.
            unsafe {
                std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(off), data.len());
            }
        }
    }

    /// The bytes `[addr, addr + len)` (absolute addresses inside the mapping).
    fn read(&self, addr: u64, len: u64) -> Vec<u8> {
        let start = addr.wrapping_sub(self.addr());
        if start.saturating_add(len) > self.len as u64 {
            return Vec::new();
        }
        let mut out = vec![0u8; len as usize];
        // SAFETY: inside the mapping (checked); no run is active.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.add(start as usize),
                out.as_mut_ptr(),
                out.len(),
            );
        }
        out
    }

    /// Writes zeros to `[addr, addr + len)` (absolute, inside the mapping).
    fn zero(&mut self, addr: u64, len: u64) {
        let start = addr.wrapping_sub(self.addr());
        if start.saturating_add(len) <= self.len as u64 {
            // SAFETY: inside the mapping.
            unsafe { self.ptr.add(start as usize).write_bytes(0, len as usize) };
        }
    }
}

impl Drop for PacketBuf {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// A heap value handed to a run by address (the context), freed when dropped.
struct Boxed<T> {
    ptr: *mut T,
}

impl<T> Boxed<T> {
    fn new(v: T) -> Boxed<T> {
        Boxed {
            ptr: Box::into_raw(Box::new(v)),
        }
    }

    fn addr(&self) -> u64 {
        self.ptr.expose_provenance() as u64
    }

    fn get(&self) -> &T {
        // SAFETY: alive until drop; only read between runs.
        unsafe { &*self.ptr }
    }

    fn get_mut(&mut self) -> &mut T {
        // SAFETY: as above, with exclusive access.
        unsafe { &mut *self.ptr }
    }
}

impl<T> Drop for Boxed<T> {
    fn drop(&mut self) {
        // SAFETY: from `Box::into_raw`, freed once.
        drop(unsafe { Box::from_raw(self.ptr) });
    }
}

/// `bpf_ctx_init`: the context from `ctx_in` (bytes past `max` must be zero: `E2BIG`),
/// or `None` when neither `ctx_in` nor `ctx_out` is given.
fn ctx_init(t: &TestRun, max: usize) -> Result<Option<Vec<u8>>, Errno> {
    if t.ctx_in.is_none() && t.ctx_out.is_none() {
        return Ok(None);
    }
    let mut ctx = vec![0u8; max];
    if let Some(input) = &t.ctx_in {
        if input.len() > max && input.get(max..).is_some_and(|r| r.iter().any(|&b| b != 0)) {
            return Err(Errno::E2BIG);
        }
        let n = input.len().min(max);
        if let (Some(d), Some(s)) = (ctx.get_mut(..n), input.get(..n)) {
            d.copy_from_slice(s);
        }
    }
    Ok(Some(ctx))
}

/// `bpf_test_finish`: the output data, its full size, retval and duration.
fn test_finish(t: &mut TestRun, data: &[u8], retval: u32, duration: u32) -> Result<(), Errno> {
    let size = data.len() as u32;
    let mut copy = size;
    let mut err = Ok(());
    if t.data_size_out != 0 && copy > t.data_size_out {
        copy = t.data_size_out;
        err = Err(Errno::ENOSPC);
    }
    if let Some(out) = t.data_out.as_mut() {
        *out = data.get(..copy as usize).unwrap_or(data).to_vec();
    }
    t.data_size_out = size;
    t.retval = retval;
    t.duration = duration;
    err
}

/// `bpf_ctx_finish`.
fn ctx_finish(t: &mut TestRun, ctx: Option<&[u8]>) -> Result<(), Errno> {
    let (Some(ctx), Some(out)) = (ctx, t.ctx_out.as_mut()) else {
        return Ok(());
    };
    let size = ctx.len() as u32;
    let mut copy = size;
    let mut err = Ok(());
    if copy > t.ctx_size_out {
        copy = t.ctx_size_out;
        err = Err(Errno::ENOSPC);
    }
    *out = ctx.get(..copy as usize).unwrap_or(ctx).to_vec();
    t.ctx_size_out = size;
    err
}

/// The program a run executes and how.
struct Exec<'p> {
    code: &'p Code,
    mode: Mode,
    /// The engine of unchecked runs.
    engine: Engine,
}

fn choose<'p>(rt: &Runtime, prog: &'p Prog, mode: RunMode) -> Result<Exec<'p>, Errno> {
    match (prog.verification(), mode) {
        (Verification::Verified(v), RunMode::Auto | RunMode::Unchecked) => Ok(Exec {
            code: v.code(),
            mode: Mode::Unchecked,
            engine: v.engine(),
        }),
        (Verification::Verified(v), RunMode::Checked) => Ok(Exec {
            code: v.code(),
            mode: Mode::Checked,
            engine: Engine::Interp,
        }),
        (Verification::Unverified(_), RunMode::Auto | RunMode::Checked) if rt.run_unverified() => {
            Ok(Exec {
                code: prog.unverified_code(),
                mode: Mode::Checked,
                engine: Engine::Interp,
            })
        }
        _ => Err(Errno::EACCES),
    }
}

/// One context and packet of a run.
struct RunInput {
    ctx_addr: u64,
    ctx_len: usize,
    ctx_access: Access,
    packet: PacketCtx,
    /// The packet region `[start, end)` to grant in checked runs.
    packet_region: Option<(u64, u64)>,
    /// Read-only memory besides the context that loads reach in checked runs: the
    /// skb's socket (`__sk_buff->sk`) and its packet pointers (rewritten loads).
    extra_regions: Vec<(u64, usize)>,
}

impl RunInput {
    /// The packet region at the start of a run: an XDP program's `bpf_xdp_adjust_*`
    /// calls move `data_meta`/`data_end`, and each repeated run starts on the buffer as
    /// the previous one left it (the kernel's `bpf_test_run` loop reuses its
    /// `xdp_buff`), so its region is read from the context, not the first run's.
    fn packet_region_now(&self) -> Option<(u64, u64)> {
        match self.packet {
            PacketCtx::Xdp(x) if self.packet_region.is_some() => {
                // SAFETY: the run's context, alive for the whole test run; no program
                // is running while it is read.
                let b = unsafe { *x };
                Some((b.data_meta, b.data_end))
            }
            _ => self.packet_region,
        }
    }
}

/// Runs `exec` `repeat` times (0 means 1) on `input`; returns retval (the low 32 bits of
/// `r0`) and the average ns per run.
fn run_loop(
    rt: &Runtime,
    prog: &Prog,
    exec: &Exec<'_>,
    input: &RunInput,
    repeat: u32,
) -> Result<(u32, u32), RunFault> {
    let repeat = repeat.max(1);
    let guard: Guard = crate::read_lock();
    let mut env = ProgEnv::new(&rt.progs, prog, &guard, exec.mode);
    env.set_packet(input.packet);
    let mut regions = if exec.mode == Mode::Checked {
        ProgEnv::initial_regions(prog, &guard)
    } else {
        Vec::new()
    };
    if exec.mode == Mode::Checked {
        for &(addr, len) in &input.extra_regions {
            // SAFETY: memory of the run's context allocation (the skb's socket), alive
            // for the whole test run and only read by the program.
            regions.push(unsafe { Region::from_raw_parts(addr, len, Access::Read) });
        }
    }
    let fixed_regions = regions.len();
    let mut vm = Interpreter::with_config(Config::default());
    // The same program every run; the interpreter goes with this function.
    vm.keep_code(true);
    let mut r0 = 0u64;
    let start = Instant::now();
    for _ in 0..repeat {
        if exec.mode == Mode::Checked {
            regions.truncate(fixed_regions);
            if let Some((s, e)) = input.packet_region_now() {
                // SAFETY: the run's own packet buffer, alive until the run ends; the
                // program and the helpers access it only through raw pointers.
                regions.push(unsafe {
                    Region::from_raw_parts(s, (e - s) as usize, Access::ReadWrite)
                });
            }
        }
        r0 = match exec.mode {
            Mode::Checked => {
                // SAFETY: the context lives (boxed) for the whole test run and is only
                // accessed through raw pointers while the program runs.
                let ctx = unsafe {
                    Region::from_raw_parts(input.ctx_addr, input.ctx_len, input.ctx_access)
                };
                vm.run_checked(exec.code, &mut env, ctx, &regions)?
            }
            Mode::Unchecked => {
                // SAFETY: only verified programs run unchecked (`choose`), on either
                // engine; the context is the one the verifier checked the program
                // against.
                unsafe { vm.run(exec.engine, exec.code, &mut env, input.ctx_addr)? }
            }
        };
        env.finish()?;
    }
    let ns = start.elapsed().as_nanos() / u128::from(repeat);
    Ok((r0 as u32, u32::try_from(ns).unwrap_or(u32::MAX)))
}

impl Runtime {
    /// `BPF_PROG_TEST_RUN` on `prog` with the attributes and result fields of `t`.
    ///
    /// Runs only programs a verifier accepted, or — with
    /// [`crate::RuntimeConfig::run_unverified`] — unverified ones in checked mode
    /// (`EACCES` otherwise).
    ///
    /// # Errors
    ///
    /// The kernel's errnos for the same attributes (`EINVAL`, `E2BIG`, `ENOSPC` with the
    /// results filled in, `ENODEV`, `ENOTSUPP` for program types without a test run);
    /// `EOPNOTSUPP` for what this runtime does not support (see the module docs);
    /// `EFAULT` when a checked run stopped early, with the reason in [`TestRun::fault`].
    pub fn prog_test_run(&self, prog: &ProgHandle, t: &mut TestRun) -> Result<(), Errno> {
        if t.ctx_in.as_ref().is_some_and(Vec::is_empty) {
            return Err(Errno::EINVAL);
        }
        if t.ctx_out.is_some() != (t.ctx_size_out != 0) {
            return Err(Errno::EINVAL);
        }
        t.fault = None;
        let p: &Prog = prog;
        match p.prog_type() {
            ProgType::XDP => self.test_run_xdp(p, t),
            ProgType::SOCKET_FILTER | ProgType::SCHED_CLS | ProgType::SCHED_ACT => {
                self.test_run_skb(p, t)
            }
            ProgType::STRUCT_OPS => self.test_run_struct_ops(p, t),
            _ => Err(Errno::ENOTSUPP),
        }
    }

    fn fault(t: &mut TestRun, f: RunFault) -> Errno {
        t.fault = Some(f);
        Errno::EFAULT
    }

    /// `bpf_prog_test_run_xdp`.
    fn test_run_xdp(&self, prog: &Prog, t: &mut TestRun) -> Result<(), Errno> {
        let tailroom = SKB_SHARED_INFO_SIZE as u32;
        let mut headroom = XDP_PACKET_HEADROOM;
        let size_in = t.data_in.len() as u32;
        let mut linear = size_in;
        if matches!(
            prog.expected_attach_type(),
            AttachType::XDP_DEVMAP | AttachType::XDP_CPUMAP
        ) {
            return Err(Errno::EINVAL);
        }
        if t.flags & !BPF_F_TEST_XDP_LIVE_FRAMES != 0 {
            return Err(Errno::EINVAL);
        }
        if t.flags & BPF_F_TEST_XDP_LIVE_FRAMES != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        if t.batch_size != 0 {
            return Err(Errno::EINVAL);
        }
        let ctx = ctx_init(t, XDP_MD_SIZE)?;
        let md_in = ctx.as_deref().map(XdpMd::from_bytes);
        let mut meta = 0u32;
        if let Some(md) = md_in {
            if md.data_meta != 0 || md.data_end > size_in || md.data > md.data_end {
                return Err(Errno::EINVAL);
            }
            meta = md.data;
            if !meta.is_multiple_of(4) || meta > 255 || meta > headroom - XDP_FRAME_SIZE {
                return Err(Errno::EINVAL);
            }
            headroom -= meta;
            linear = md.data_end;
        }
        let max_linear = PAGE_SIZE - headroom - tailroom;
        linear = linear.min(max_linear);
        if size_in - meta < ETH_HLEN {
            return Err(Errno::EINVAL);
        }
        let alloc = max_linear.next_multiple_of(64) + headroom + tailroom;
        let mut buf = PacketBuf::new(alloc as usize, !prog.is_verified())?;
        buf.write(
            headroom as usize,
            t.data_in.get(..linear as usize).unwrap_or(&[]),
        );
        let hard_start = buf.addr();
        let mut data_meta = hard_start + u64::from(headroom);
        let data_end = data_meta + u64::from(linear);
        let (mut ingress, mut rxq) = (LOOPBACK_IFINDEX, 0u32);
        // `xdp_convert_md_to_buff`.
        if let Some(md) = md_in {
            if md.egress_ifindex != 0 {
                return Err(Errno::EINVAL);
            }
            if md.ingress_ifindex == 0 && md.rx_queue_index != 0 {
                return Err(Errno::EINVAL);
            }
            if md.ingress_ifindex != 0 {
                if md.ingress_ifindex != LOOPBACK_IFINDEX {
                    return Err(Errno::ENODEV);
                }
                if md.rx_queue_index >= 1 {
                    return Err(Errno::EINVAL);
                }
                ingress = md.ingress_ifindex;
                rxq = md.rx_queue_index;
            }
        }
        let data = data_meta + u64::from(md_in.map_or(0, |m| m.data));
        if size_in > linear {
            // Multi-buffer packets (frags) are not supported here.
            return Err(Errno::EOPNOTSUPP);
        }
        if md_in.is_none() {
            data_meta = data;
        }
        let mut xdp = Boxed::new(XdpBuff {
            md: XdpMd {
                ingress_ifindex: ingress,
                rx_queue_index: rxq,
                ..XdpMd::default()
            },
            data_hard_start: hard_start,
            frame_sz: PAGE_SIZE,
            ..XdpBuff::default()
        });
        // SAFETY: our own context, no other reference.
        unsafe { XdpBuff::set_pointers(xdp.ptr, data_meta, data, data_end) };
        let exec = choose(self, prog, t.mode)?;
        let input = RunInput {
            ctx_addr: xdp.addr(),
            // The uapi view and the pointers its rewritten loads read.
            ctx_len: XdpBuff::DATA_META + 8,
            ctx_access: Access::Read,
            packet: PacketCtx::Xdp(xdp.ptr),
            packet_region: Some((data_meta, data_end)),
            extra_regions: Vec::new(),
        };
        let result = run_loop(self, prog, &exec, &input, t.repeat);
        let b = *xdp.get_mut();
        let (retval, duration) = result.map_err(|f| Self::fault(t, f))?;
        // `xdp_convert_buff_to_md`.
        let ctx_out = ctx.map(|c| {
            let mut md = XdpMd::from_bytes(&c);
            md.data = (b.data - b.data_meta) as u32;
            md.data_end = (b.data_end - b.data_meta) as u32;
            md.to_bytes().to_vec()
        });
        let out = buf.read(b.data_meta, b.data_end.saturating_sub(b.data_meta));
        drop(xdp);
        test_finish(t, &out, retval, duration)?;
        ctx_finish(t, ctx_out.as_deref())
    }

    /// `bpf_prog_test_run_skb`.
    fn test_run_skb(&self, prog: &Prog, t: &mut TestRun) -> Result<(), Errno> {
        let size = t.data_in.len() as u32;
        if t.flags & !BPF_F_TEST_SKB_CHECKSUM_COMPLETE != 0 || t.cpu != 0 || t.batch_size != 0 {
            return Err(Errno::EINVAL);
        }
        if size < ETH_HLEN {
            return Err(Errno::EINVAL);
        }
        let tailroom = SKB_SHARED_INFO_SIZE as u32;
        if size > PAGE_SIZE - SKB_HEADROOM - tailroom {
            return Err(Errno::EINVAL);
        }
        let ctx = ctx_init(t, SK_BUFF_SIZE)?;
        let is_l2 = matches!(prog.prog_type(), ProgType::SCHED_CLS | ProgType::SCHED_ACT);
        let mut buf = PacketBuf::new(
            (size.next_multiple_of(64) + SKB_HEADROOM + tailroom) as usize,
            !prog.is_verified(),
        )?;
        buf.write(SKB_HEADROOM as usize, &t.data_in);
        let user = ctx.as_deref().map(|c| {
            let mut s = SkBuff::default();
            s.uapi
                .copy_from_slice(c.get(..SK_BUFF_SIZE).unwrap_or(&[0; SK_BUFF_SIZE]));
            s
        });
        if let Some(u) = &user
            && u.get_u32(sk_buff::IFINDEX) > LOOPBACK_IFINDEX
        {
            return Err(Errno::ENODEV);
        }
        let mac = buf.addr() + u64::from(SKB_HEADROOM);
        let frame = t.data_in.as_slice();
        // `eth_type_trans` on the loopback device (address 00:00:00:00:00:00).
        let dest = frame.get(..6).unwrap_or(&[]);
        let pkt_type = if dest.iter().all(|&b| b == 0) {
            0
        } else if dest.first().is_some_and(|b| b & 1 != 0) {
            2
        } else {
            3
        };
        let h_proto = u16::from_be_bytes([
            frame.get(12).copied().unwrap_or(0),
            frame.get(13).copied().unwrap_or(0),
        ]);
        let proto_host = if h_proto >= 0x0600 {
            h_proto
        } else if frame.get(14..16) == Some(&[0xff, 0xff]) {
            0x0001
        } else {
            0x0004
        };
        let net = mac + u64::from(ETH_HLEN);
        let headlen = size - ETH_HLEN;
        let payload = frame.get(ETH_HLEN as usize..).unwrap_or(&[]);
        let mut family = 0u32;
        let (mut local4, mut remote4) = (0u32, 0u32);
        let (mut local6, mut remote6) = ([0u8; 16], [0u8; 16]);
        match proto_host {
            0x0800 => {
                if headlen < 20 {
                    return Err(Errno::EINVAL);
                }
                family = 2;
                let word = |o: usize| {
                    let mut w = [0u8; 4];
                    w.copy_from_slice(payload.get(o..o + 4).unwrap_or(&[0; 4]));
                    u32::from_ne_bytes(w)
                };
                local4 = word(12);
                remote4 = word(16);
            }
            0x86dd => {
                if headlen < 40 {
                    return Err(Errno::EINVAL);
                }
                family = 10;
                local6.copy_from_slice(payload.get(8..24).unwrap_or(&[0; 16]));
                remote6.copy_from_slice(payload.get(24..40).unwrap_or(&[0; 16]));
            }
            _ => {}
        }
        let (data, len) = if is_l2 { (mac, size) } else { (net, headlen) };
        // `convert___skb_to_skb`: only the fields a test may set.
        let mut skb = SkBuff::default();
        let mut pkt_len = len;
        if let Some(u) = &user {
            let zero =
                |a: usize, b: usize| u.uapi.get(a..b).is_some_and(|r| r.iter().all(|&x| x == 0));
            let ok = zero(0, sk_buff::MARK)
                && zero(sk_buff::MARK + 4, sk_buff::PRIORITY)
                && zero(sk_buff::IFINDEX + 4, sk_buff::CB)
                && zero(sk_buff::CB + 20, sk_buff::TSTAMP)
                && zero(sk_buff::GSO_SEGS + 4, sk_buff::GSO_SIZE)
                && zero(sk_buff::GSO_SIZE + 4, sk_buff::HWTSTAMP);
            if !ok {
                return Err(Errno::EINVAL);
            }
            for off in [sk_buff::MARK, sk_buff::PRIORITY, sk_buff::INGRESS_IFINDEX] {
                skb.set_u32(off, u.get_u32(off));
            }
            for i in 0..5 {
                skb.set_u32(sk_buff::CB + 4 * i, u.get_u32(sk_buff::CB + 4 * i));
            }
            skb.set_u64(sk_buff::TSTAMP, u.get_u64(sk_buff::TSTAMP));
            let wire = u.get_u32(sk_buff::WIRE_LEN);
            if wire != 0 {
                if wire < len || wire > GSO_LEGACY_MAX_SIZE {
                    return Err(Errno::EINVAL);
                }
                pkt_len = wire;
            }
            if u.get_u32(sk_buff::GSO_SEGS) > GSO_MAX_SEGS {
                return Err(Errno::EINVAL);
            }
            skb.set_u32(sk_buff::GSO_SEGS, u.get_u32(sk_buff::GSO_SEGS));
            skb.set_u32(sk_buff::GSO_SIZE, u.get_u32(sk_buff::GSO_SIZE));
            skb.set_u64(sk_buff::HWTSTAMP, u.get_u64(sk_buff::HWTSTAMP));
        }
        let data_end = data + u64::from(len);
        skb.set_u32(sk_buff::LEN, len);
        skb.set_u32(sk_buff::PKT_TYPE, pkt_type);
        skb.set_u32(sk_buff::PROTOCOL, u32::from(proto_host.to_be()));
        skb.set_u32(sk_buff::IFINDEX, LOOPBACK_IFINDEX);
        skb.set_u32(sk_buff::DATA, data as u32);
        skb.set_u32(sk_buff::DATA_END, data_end as u32);
        skb.set_u32(sk_buff::DATA_META, data as u32);
        skb.set_u32(sk_buff::FAMILY, family);
        skb.set_u32(sk_buff::REMOTE_IP4, remote4);
        skb.set_u32(sk_buff::LOCAL_IP4, local4);
        if let Some(d) = skb
            .uapi
            .get_mut(sk_buff::REMOTE_IP6..sk_buff::REMOTE_IP6 + 16)
        {
            d.copy_from_slice(&remote6);
        }
        if let Some(d) = skb
            .uapi
            .get_mut(sk_buff::LOCAL_IP6..sk_buff::LOCAL_IP6 + 16)
        {
            d.copy_from_slice(&local6);
        }
        skb.set_u32(sk_buff::WIRE_LEN, pkt_len);
        // The socket `bpf_prog_test_run_skb` allocates (`sk_alloc` + `sock_init_data`
        // without a `struct socket`): no type, protocol or ports, state `TCP_CLOSE`, and
        // the family and addresses of the packet's IPv4 or IPv6 header.
        skb.sock = BpfSock {
            family,
            src_ip4: local4,
            dst_ip4: remote4,
            src_ip6: ip6_words(&local6),
            dst_ip6: ip6_words(&remote6),
            state: BpfSock::TCP_CLOSE,
            rx_queue_mapping: -1,
            ..BpfSock::default()
        };
        skb.data = data;
        skb.data_end = data_end;
        skb.mac_header = mac;
        skb.network_header = net;
        skb.len = len;
        let csum_before = (t.flags & BPF_F_TEST_SKB_CHECKSUM_COMPLETE != 0)
            .then(|| csum_fold(&buf.read(net, u64::from(headlen))));
        let mut boxed = Boxed::new(skb);
        let sock = boxed.addr() + SkBuff::SOCK as u64;
        boxed.get_mut().set_u64(sk_buff::SK, sock);
        let exec = choose(self, prog, t.mode)?;
        let input = RunInput {
            ctx_addr: boxed.addr(),
            ctx_len: SK_BUFF_SIZE,
            ctx_access: Access::ReadWrite,
            packet: PacketCtx::Skb(boxed.ptr),
            packet_region: Some((mac, mac + u64::from(size))),
            // The socket, and the packet pointers the rewritten loads of `data`,
            // `data_end` and `data_meta` read.
            extra_regions: vec![
                (sock, BPF_SOCK_SIZE),
                (boxed.addr() + SkBuff::DATA as u64, 16),
            ],
        };
        let result = run_loop(self, prog, &exec, &input, t.repeat);
        let after = *boxed.get();
        let (retval, duration) = result.map_err(|f| Self::fault(t, f))?;
        let mut out_start = after.data;
        let mut out_len = u64::from(after.len);
        if !is_l2 {
            // The kernel pushes the link-layer header back, zeroed.
            out_start -= u64::from(ETH_HLEN);
            out_len += u64::from(ETH_HLEN);
            buf.zero(out_start, u64::from(ETH_HLEN));
        }
        if let Some(before) = csum_before
            && before != csum_fold(&buf.read(net, u64::from(headlen)))
        {
            return Err(EBADMSG);
        }
        // `convert_skb_to___skb`.
        let ctx_out = user.map(|mut u| {
            for off in [sk_buff::MARK, sk_buff::PRIORITY, sk_buff::INGRESS_IFINDEX] {
                u.set_u32(off, after.get_u32(off));
            }
            u.set_u32(sk_buff::IFINDEX, LOOPBACK_IFINDEX);
            u.set_u64(sk_buff::TSTAMP, after.get_u64(sk_buff::TSTAMP));
            for i in 0..5 {
                u.set_u32(sk_buff::CB + 4 * i, after.get_u32(sk_buff::CB + 4 * i));
            }
            u.set_u32(sk_buff::WIRE_LEN, pkt_len);
            u.set_u32(sk_buff::GSO_SEGS, after.get_u32(sk_buff::GSO_SEGS));
            u.set_u64(sk_buff::HWTSTAMP, after.get_u64(sk_buff::HWTSTAMP));
            u.uapi.to_vec()
        });
        let out = buf.read(out_start, out_len);
        drop(boxed);
        test_finish(t, &out, retval, duration)?;
        ctx_finish(t, ctx_out.as_deref())
    }

    /// `bpf_struct_ops_test_run`: `ctx_in` holds one `u64` per argument of the member's
    /// prototype; the program runs once.
    ///
    /// When the `bpf_dummy_ops` twin is registered, this is the kernel's
    /// `bpf_struct_ops_test_run` exactly (see [`crate::struct_ops::dummy`]): programs of
    /// other ops types are `EOPNOTSUPP`. Without it, any struct_ops program runs with its
    /// raw arguments (an extension: the kernel can only test `bpf_dummy_ops`).
    fn test_run_struct_ops(&self, prog: &Prog, t: &mut TestRun) -> Result<(), Errno> {
        if let Some(dummy) = self.dummy_ops() {
            return crate::struct_ops::dummy::dummy_test_run(self, &dummy, prog, t);
        }
        let btf = prog.attach_btf().ok_or(Errno::EOPNOTSUPP)?;
        let nargs = btf
            .btf()
            .func_proto(prog.attach_func_proto())
            .map(|(_, params)| params.len())
            .map_err(|_| Errno::EOPNOTSUPP)?;
        let ctx_in = t.ctx_in.clone().unwrap_or_default();
        if ctx_in.len() != 8 * nargs {
            return Err(Errno::EINVAL);
        }
        let args: Vec<u64> = ctx_in
            .chunks_exact(8)
            .map(|c| {
                let mut w = [0u8; 8];
                w.copy_from_slice(c);
                u64::from_ne_bytes(w)
            })
            .collect();
        // At least one word, so the context pointer is never dangling.
        let mut words = Boxed::new(if args.is_empty() { vec![0u64] } else { args });
        let ctx_addr = words.get_mut().as_mut_ptr().expose_provenance() as u64;
        // The arguments are raw words from the caller, not the objects the member's
        // pointer types promise, so a program that may follow a pointer argument only
        // runs checked (where touching host memory traps).
        let has_ptr_arg = btf
            .btf()
            .func_proto(prog.attach_func_proto())
            .map(|(_, params)| {
                params.iter().any(|p| {
                    btf.btf()
                        .skip_modifiers(p.ty)
                        .ok()
                        .and_then(|t| btf.btf().ty(t).ok())
                        .is_some_and(|t| matches!(t.kind, structops_btf::TypeKind::Ptr { .. }))
                })
            })
            .unwrap_or(true);
        let mode = match t.mode {
            RunMode::Auto if has_ptr_arg => RunMode::Checked,
            RunMode::Unchecked if has_ptr_arg => return Err(Errno::EACCES),
            m => m,
        };
        let exec = choose(self, prog, mode)?;
        let input = RunInput {
            ctx_addr,
            ctx_len: 8 * nargs,
            ctx_access: Access::Read,
            packet: PacketCtx::None,
            packet_region: None,
            extra_regions: Vec::new(),
        };
        let (retval, _) = run_loop(self, prog, &exec, &input, 1).map_err(|f| Self::fault(t, f))?;
        drop(words);
        t.retval = retval;
        Ok(())
    }
}

/// The folded 16-bit one's complement sum of `data` (what `csum_fold` compares).
fn csum_fold(data: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    for c in data.chunks(2) {
        let w = u16::from_be_bytes([
            c.first().copied().unwrap_or(0),
            c.get(1).copied().unwrap_or(0),
        ]);
        sum += u64::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sixteen address bytes as the four `__u32` words of a uapi struct (byte order kept).
fn ip6_words(b: &[u8; 16]) -> [u32; 4] {
    let mut w = [0u32; 4];
    for (d, c) in w.iter_mut().zip(b.chunks_exact(4)) {
        let mut x = [0u8; 4];
        x.copy_from_slice(c);
        *d = u32::from_ne_bytes(x);
    }
    w
}
