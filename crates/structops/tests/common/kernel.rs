//! Raw `bpf(2)` for the differential tests: every command used, with the kernel's
//! `union bpf_attr` layout, and fds closed on every path.

use structops::{Errno, MapCreateAttr};

pub const MAP_CREATE: u32 = 0;
pub const MAP_LOOKUP_ELEM: u32 = 1;
pub const MAP_UPDATE_ELEM: u32 = 2;
pub const MAP_DELETE_ELEM: u32 = 3;
pub const MAP_GET_NEXT_KEY: u32 = 4;
pub const MAP_GET_NEXT_ID: u32 = 12;
pub const MAP_GET_FD_BY_ID: u32 = 14;
pub const OBJ_GET_INFO_BY_FD: u32 = 15;
pub const BTF_LOAD: u32 = 18;
pub const BTF_GET_FD_BY_ID: u32 = 19;
pub const MAP_FREEZE: u32 = 22;
pub const BTF_GET_NEXT_ID: u32 = 23;

#[repr(C, align(8))]
pub struct Attr(pub [u8; 144]);

impl Attr {
    pub fn new() -> Attr {
        Attr([0; 144])
    }
    pub fn u32(&mut self, off: usize, v: u32) -> &mut Attr {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    pub fn u64(&mut self, off: usize, v: u64) -> &mut Attr {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    pub fn get_u32(&self, off: usize) -> u32 {
        u32::from_ne_bytes(self.0[off..off + 4].try_into().unwrap())
    }
}

pub fn sys_bpf(cmd: u32, attr: &mut Attr) -> Result<i64, Errno> {
    // SAFETY: `attr` is a valid, writable `union bpf_attr`-sized buffer, and every
    // pointer inside it was set by the caller to live buffers of the sizes the kernel
    // reads or writes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr.0.as_mut_ptr(),
            attr.0.len() as libc::c_long,
        )
    };
    if r < 0 {
        Err(Errno(
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        ))
    } else {
        Ok(r)
    }
}

pub fn close(fd: i32) {
    if fd >= 0 {
        // SAFETY: closing an fd this test opened.
        unsafe { libc::close(fd) };
    }
}

fn ptr(b: Option<&[u8]>) -> u64 {
    b.map_or(0, |b| b.as_ptr() as u64)
}

pub fn map_create(a: &MapCreateAttr) -> Result<i32, Errno> {
    let mut at = Attr::new();
    at.u32(0, a.map_type)
        .u32(4, a.key_size)
        .u32(8, a.value_size)
        .u32(12, a.max_entries)
        .u32(16, a.map_flags)
        .u32(20, a.inner_map_fd)
        .u32(24, a.numa_node);
    at.0[28..44].copy_from_slice(&a.map_name);
    at.u32(44, a.map_ifindex)
        .u32(48, a.btf_fd)
        .u32(52, a.btf_key_type_id)
        .u32(56, a.btf_value_type_id)
        .u32(60, a.btf_vmlinux_value_type_id)
        .u64(64, a.map_extra)
        .u32(76, a.map_token_fd as u32);
    sys_bpf(MAP_CREATE, &mut at).map(|fd| fd as i32)
}

pub fn elem_cmd(
    cmd: u32,
    fd: i32,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    flags: u64,
) -> Result<(), Errno> {
    let mut at = Attr::new();
    at.u32(0, fd as u32)
        .u64(8, ptr(key))
        .u64(16, ptr(value))
        .u64(24, flags);
    sys_bpf(cmd, &mut at).map(drop)
}

pub fn lookup(fd: i32, key: Option<&[u8]>, out: &mut [u8], flags: u64) -> Result<(), Errno> {
    let mut at = Attr::new();
    at.u32(0, fd as u32)
        .u64(8, ptr(key))
        .u64(16, out.as_mut_ptr() as u64)
        .u64(24, flags);
    sys_bpf(MAP_LOOKUP_ELEM, &mut at).map(drop)
}

pub fn update(fd: i32, key: Option<&[u8]>, value: &[u8], flags: u64) -> Result<(), Errno> {
    elem_cmd(MAP_UPDATE_ELEM, fd, key, Some(value), flags)
}

pub fn delete(fd: i32, key: Option<&[u8]>) -> Result<(), Errno> {
    let mut at = Attr::new();
    at.u32(0, fd as u32).u64(8, ptr(key));
    sys_bpf(MAP_DELETE_ELEM, &mut at).map(drop)
}

pub fn next_key(fd: i32, key: Option<&[u8]>, out: &mut [u8]) -> Result<(), Errno> {
    let mut at = Attr::new();
    at.u32(0, fd as u32)
        .u64(8, ptr(key))
        .u64(16, out.as_mut_ptr() as u64);
    sys_bpf(MAP_GET_NEXT_KEY, &mut at).map(drop)
}

pub fn freeze(fd: i32) -> Result<(), Errno> {
    let mut at = Attr::new();
    at.u32(0, fd as u32);
    sys_bpf(MAP_FREEZE, &mut at).map(drop)
}

/// `(type, id, key_size, value_size, max_entries, map_flags, name, btf_id,
/// btf_key_type_id, btf_value_type_id)` of a map.
pub fn map_info(fd: i32) -> Result<[u32; 9], Errno> {
    let mut info = [0u8; 88];
    let mut at = Attr::new();
    at.u32(0, fd as u32)
        .u32(4, info.len() as u32)
        .u64(8, info.as_mut_ptr() as u64);
    sys_bpf(OBJ_GET_INFO_BY_FD, &mut at)?;
    let g = |o: usize| u32::from_ne_bytes(info[o..o + 4].try_into().unwrap());
    Ok([g(0), g(4), g(8), g(12), g(16), g(20), g(64), g(68), g(72)])
}

pub fn map_name(fd: i32) -> Result<String, Errno> {
    let mut info = [0u8; 88];
    let mut at = Attr::new();
    at.u32(0, fd as u32)
        .u32(4, info.len() as u32)
        .u64(8, info.as_mut_ptr() as u64);
    sys_bpf(OBJ_GET_INFO_BY_FD, &mut at)?;
    let n = &info[24..40];
    let end = n.iter().position(|&b| b == 0).unwrap_or(16);
    Ok(n[..end].iter().map(|&c| char::from(c)).collect())
}

pub fn btf_load(data: &[u8]) -> Result<i32, Errno> {
    let mut at = Attr::new();
    at.u64(0, data.as_ptr() as u64).u32(16, data.len() as u32);
    sys_bpf(BTF_LOAD, &mut at).map(|fd| fd as i32)
}

pub fn get_next_id(cmd: u32, start: u32) -> Result<u32, Errno> {
    let mut at = Attr::new();
    at.u32(0, start);
    sys_bpf(cmd, &mut at)?;
    Ok(at.get_u32(4))
}

pub fn get_fd_by_id(cmd: u32, id: u32, open_flags: u32) -> Result<i32, Errno> {
    let mut at = Attr::new();
    at.u32(0, id).u32(8, open_flags);
    sys_bpf(cmd, &mut at).map(|fd| fd as i32)
}

/// `(kernel_btf, id)` of a BTF fd.
pub fn btf_info(fd: i32) -> Result<(bool, u32), Errno> {
    let mut info = [0u8; 32];
    let mut at = Attr::new();
    at.u32(0, fd as u32)
        .u32(4, info.len() as u32)
        .u64(8, info.as_mut_ptr() as u64);
    sys_bpf(OBJ_GET_INFO_BY_FD, &mut at)?;
    let g = |o: usize| u32::from_ne_bytes(info[o..o + 4].try_into().unwrap());
    Ok((g(28) != 0, g(12)))
}

/// The vmlinux BTF as an fd (the first kernel BTF by id).
pub fn vmlinux_btf_fd() -> Option<i32> {
    let mut id = 0;
    loop {
        id = get_next_id(BTF_GET_NEXT_ID, id).ok()?;
        let fd = get_fd_by_id(BTF_GET_FD_BY_ID, id, 0).ok()?;
        if btf_info(fd).is_ok_and(|(k, _)| k) {
            return Some(fd);
        }
        close(fd);
    }
}

/// `num_possible_cpus()`.
pub fn possible_cpus() -> u32 {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
    let mut n = 0;
    for part in s.trim().split(',') {
        let mut it = part.split('-');
        let a: u32 = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
        let b: u32 = it.next().and_then(|x| x.parse().ok()).unwrap_or(a);
        n += b - a + 1;
    }
    n.max(1)
}

/// Why the kernel cannot be used, if it cannot.
pub fn unavailable() -> Option<String> {
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    let a = MapCreateAttr::new(structops::MapType::Array, 4, 4, 1);
    match map_create(&a) {
        Ok(fd) => {
            close(fd);
            None
        }
        Err(e) => Some(format!("bpf(BPF_MAP_CREATE) failed: {e}")),
    }
}

/// Pins the calling thread to CPU `cpu` (so per-CPU behaviour is deterministic).
pub fn pin_to_cpu(cpu: usize) -> bool {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// A UDP socket (an `SK_STORAGE` owner).
pub fn socket() -> i32 {
    // SAFETY: plain syscall.
    unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) }
}

// ---- programs (appended for the XDP/skb test-run differential, tests/xdp_kernel.rs) ----

#[allow(
    dead_code,
    reason = "used by tests/xdp_kernel.rs, not by every test binary that includes this file"
)]
pub const PROG_LOAD: u32 = 5;
#[allow(
    dead_code,
    reason = "used by tests/xdp_kernel.rs, not by every test binary that includes this file"
)]
pub const PROG_TEST_RUN: u32 = 10;

/// Kernel descriptors owned by a test, all closed when it is dropped (on every path,
/// panics included).
#[derive(Debug, Default)]
#[allow(
    dead_code,
    reason = "used by tests/xdp_kernel.rs, not by every test binary that includes this file"
)]
pub struct OwnedFds(Vec<i32>);

#[allow(
    dead_code,
    reason = "used by tests/xdp_kernel.rs, not by every test binary that includes this file"
)]
impl OwnedFds {
    /// Takes ownership of `fd` and returns it.
    pub fn own(&mut self, fd: i32) -> i32 {
        self.0.push(fd);
        fd
    }
}

impl Drop for OwnedFds {
    fn drop(&mut self) {
        for fd in self.0.drain(..) {
            close(fd);
        }
    }
}

/// `BPF_PROG_LOAD` with the runtime's attribute struct (every field it has, with the
/// kernel's layout); on failure the errno and, with `log_level > 0`, the verifier log.
#[allow(
    dead_code,
    reason = "used by tests/xdp_kernel.rs, not by every test binary that includes this file"
)]
pub fn prog_load(a: &structops::ProgLoadAttr, log_level: u32) -> Result<i32, (Errno, String)> {
    let insns = structops_isa::Insn::slice_to_bytes(&a.insns);
    let mut license = a.license.clone().into_bytes();
    license.push(0);
    let mut log = if log_level > 0 {
        vec![0u8; 1 << 20]
    } else {
        Vec::new()
    };
    let mut at = Attr::new();
    at.u32(0, a.prog_type)
        .u32(4, (insns.len() / 8) as u32)
        .u64(8, insns.as_ptr() as u64)
        .u64(16, license.as_ptr() as u64)
        .u32(24, log_level)
        .u32(28, log.len() as u32)
        .u64(
            32,
            if log.is_empty() {
                0
            } else {
                log.as_mut_ptr() as u64
            },
        )
        .u32(40, a.kern_version)
        .u32(44, a.prog_flags);
    at.0[48..64].copy_from_slice(&a.prog_name);
    at.u32(64, a.prog_ifindex)
        .u32(68, a.expected_attach_type)
        .u32(72, a.prog_btf_fd)
        .u32(76, a.func_info_rec_size)
        .u64(
            80,
            ptr(Some(&a.func_info)
                .filter(|v| !v.is_empty())
                .map(Vec::as_slice)),
        )
        .u32(88, a.func_info_cnt)
        .u32(92, a.line_info_rec_size)
        .u64(
            96,
            ptr(Some(&a.line_info)
                .filter(|v| !v.is_empty())
                .map(Vec::as_slice)),
        )
        .u32(104, a.line_info_cnt)
        .u32(108, a.attach_btf_id)
        .u32(112, a.attach_prog_fd);
    let fd_array: Option<Vec<u8>> = a
        .fd_array
        .as_ref()
        .map(|v| v.iter().flat_map(|f| f.to_ne_bytes()).collect());
    at.u64(120, ptr(fd_array.as_deref()));
    sys_bpf(PROG_LOAD, &mut at)
        .map(|fd| fd as i32)
        .map_err(|e| {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            (e, String::from_utf8_lossy(&log[..end]).into_owned())
        })
}

/// `BPF_PROG_TEST_RUN` on `prog_fd` with the attributes of `t` (the runtime's struct),
/// results written back into `t` as `Runtime::prog_test_run` writes them: `retval`,
/// `duration`, `data_size_out`, `data_out` (the bytes the kernel copied), `ctx_size_out`
/// and `ctx_out`. `data_out`/`ctx_out` buffers are as large as the size hints, or 64 KiB
/// without a hint (the kernel then copies the whole output).
#[allow(
    dead_code,
    reason = "used by tests/xdp_kernel.rs, not by every test binary that includes this file"
)]
pub fn prog_test_run(prog_fd: i32, t: &mut structops::TestRun) -> Result<(), Errno> {
    let out_cap = |hint: u32| if hint == 0 { 1 << 16 } else { hint as usize };
    let mut data_out = t
        .data_out
        .as_ref()
        .map(|_| vec![0u8; out_cap(t.data_size_out)]);
    let mut ctx_out = t
        .ctx_out
        .as_ref()
        .map(|_| vec![0u8; out_cap(t.ctx_size_out)]);
    let mut at = Attr::new();
    at.u32(0, prog_fd as u32)
        .u32(8, t.data_in.len() as u32)
        .u32(12, t.data_size_out)
        .u64(
            16,
            if t.data_in.is_empty() {
                0
            } else {
                t.data_in.as_ptr() as u64
            },
        )
        .u64(24, data_out.as_mut().map_or(0, |b| b.as_mut_ptr() as u64))
        .u32(32, t.repeat)
        .u32(40, t.ctx_in.as_ref().map_or(0, |c| c.len() as u32))
        .u32(44, t.ctx_size_out)
        .u64(48, ptr(t.ctx_in.as_deref()))
        .u64(56, ctx_out.as_mut().map_or(0, |b| b.as_mut_ptr() as u64))
        .u32(64, t.flags)
        .u32(68, t.cpu)
        .u32(72, t.batch_size);
    let r = sys_bpf(PROG_TEST_RUN, &mut at);
    t.retval = at.get_u32(4);
    t.data_size_out = at.get_u32(12);
    t.duration = at.get_u32(36);
    t.ctx_size_out = at.get_u32(44);
    if let Some(mut d) = data_out {
        d.truncate((t.data_size_out as usize).min(d.len()));
        t.data_out = Some(d);
    }
    if let Some(mut c) = ctx_out {
        c.truncate((t.ctx_size_out as usize).min(c.len()));
        t.ctx_out = Some(c);
    }
    r.map(drop)
}
