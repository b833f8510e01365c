//! Raw `bpf(2)` for the kernel benchmark: the few commands it needs, with the kernel's
//! `union bpf_attr` layout. Every descriptor is an [`Fd`], closed when dropped.

use std::io;

const MAP_CREATE: u32 = 0;
const MAP_UPDATE_ELEM: u32 = 2;
const PROG_LOAD: u32 = 5;
const PROG_TEST_RUN: u32 = 10;
const BTF_LOAD: u32 = 18;
const MAP_FREEZE: u32 = 22;

/// `BPF_MAP_TYPE_ARRAY`.
const MAP_TYPE_ARRAY: u32 = 2;

/// A `union bpf_attr` (large enough for every command used here).
#[repr(C, align(8))]
struct Attr([u8; 144]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 144])
    }

    fn u32(&mut self, off: usize, v: u32) -> &mut Attr {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }

    fn u64(&mut self, off: usize, v: u64) -> &mut Attr {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }

    fn get_u32(&self, off: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.0[off..off + 4]);
        u32::from_ne_bytes(b)
    }
}

fn sys_bpf(cmd: u32, attr: &mut Attr) -> io::Result<i64> {
    // SAFETY: `attr` is a writable `union bpf_attr`-sized buffer; every pointer in it
    // was set by the callers below to live buffers of the sizes the kernel accesses.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            libc::c_long::from(cmd),
            attr.0.as_mut_ptr(),
            attr.0.len() as libc::c_long,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A kernel descriptor, closed on drop.
#[derive(Debug)]
pub struct Fd(i32);

impl Fd {
    /// The raw descriptor.
    pub fn raw(&self) -> i32 {
        self.0
    }

    fn from_ret(r: i64) -> io::Result<Fd> {
        i32::try_from(r)
            .map(Fd)
            .map_err(|_| io::Error::from_raw_os_error(libc::EBADF))
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: closing a descriptor this module opened and nobody else owns.
        unsafe { libc::close(self.0) };
    }
}

/// `BPF_MAP_CREATE` without BTF (`inner`: the inner map template of a map of maps).
pub fn map_create(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    flags: u32,
    inner: Option<&Fd>,
) -> io::Result<Fd> {
    let mut a = Attr::new();
    a.u32(0, map_type)
        .u32(4, key_size)
        .u32(8, value_size)
        .u32(12, max_entries)
        .u32(16, flags)
        .u32(20, inner.map_or(0, |f| f.raw() as u32));
    sys_bpf(MAP_CREATE, &mut a).and_then(Fd::from_ret)
}

/// `BPF_MAP_UPDATE_ELEM`.
pub fn map_update(fd: &Fd, key: &[u8], value: &[u8]) -> io::Result<()> {
    let mut a = Attr::new();
    a.u32(0, fd.raw() as u32)
        .u64(8, key.as_ptr() as u64)
        .u64(16, value.as_ptr() as u64);
    sys_bpf(MAP_UPDATE_ELEM, &mut a).map(drop)
}

/// `BPF_MAP_FREEZE`.
pub fn map_freeze(fd: &Fd) -> io::Result<()> {
    let mut a = Attr::new();
    a.u32(0, fd.raw() as u32);
    sys_bpf(MAP_FREEZE, &mut a).map(drop)
}

/// `BPF_BTF_LOAD`.
pub fn btf_load(data: &[u8]) -> io::Result<Fd> {
    let mut a = Attr::new();
    a.u64(0, data.as_ptr() as u64).u32(16, data.len() as u32);
    sys_bpf(BTF_LOAD, &mut a).and_then(Fd::from_ret)
}

/// `BPF_PROG_LOAD` with the fields of the runtime's attribute struct that the
/// benchmark's programs need (type, instructions, license, expected attach type,
/// `prog_btf_fd`, func_info and line_info); on failure the errno and the verifier
/// log's last line.
pub fn prog_load(p: &structops::ProgLoadAttr) -> Result<Fd, String> {
    let insns = structops_isa::Insn::slice_to_bytes(&p.insns);
    let mut lic = p.license.clone().into_bytes();
    lic.push(0);
    let ptr = |v: &[u8]| if v.is_empty() { 0 } else { v.as_ptr() as u64 };
    let attempt = |log: &mut [u8]| {
        let mut a = Attr::new();
        a.u32(0, p.prog_type)
            .u32(4, (insns.len() / 8) as u32)
            .u64(8, insns.as_ptr() as u64)
            .u64(16, lic.as_ptr() as u64)
            .u32(68, p.expected_attach_type)
            .u32(72, p.prog_btf_fd)
            .u32(76, p.func_info_rec_size)
            .u64(80, ptr(&p.func_info))
            .u32(88, p.func_info_cnt)
            .u32(92, p.line_info_rec_size)
            .u64(96, ptr(&p.line_info))
            .u32(104, p.line_info_cnt);
        if !log.is_empty() {
            a.u32(24, 1)
                .u32(28, log.len() as u32)
                .u64(32, log.as_mut_ptr() as u64);
        }
        sys_bpf(PROG_LOAD, &mut a).and_then(Fd::from_ret)
    };
    match attempt(&mut []) {
        Ok(fd) => Ok(fd),
        Err(e) => {
            // Again with a log, for the verifier's message.
            let mut log = vec![0u8; 16 << 20];
            let _ = attempt(&mut log).map(drop);
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            let last = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty() && !l.starts_with("processed "))
                .unwrap_or("");
            Err(format!("BPF_PROG_LOAD: {e} ({last})"))
        }
    }
}

/// `BPF_PROG_TEST_RUN` of `prog` on `data` with `repeat`: `(retval, duration ns)`.
pub fn prog_test_run(prog: &Fd, data: &[u8], repeat: u32) -> io::Result<(u32, u32)> {
    let mut a = Attr::new();
    a.u32(0, prog.raw() as u32)
        .u32(8, data.len() as u32)
        .u64(16, data.as_ptr() as u64)
        .u32(32, repeat);
    sys_bpf(PROG_TEST_RUN, &mut a)?;
    Ok((a.get_u32(4), a.get_u32(36)))
}

/// Why the kernel's BPF cannot be used here, if it cannot.
pub fn unavailable() -> Option<String> {
    // SAFETY: a plain syscall.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (the kernel's bpf(2) needs CAP_BPF and CAP_NET_ADMIN)".into());
    }
    match map_create(MAP_TYPE_ARRAY, 4, 4, 1, 0, None) {
        Ok(_fd) => None,
        Err(e) => Some(format!("bpf(BPF_MAP_CREATE) failed: {e}")),
    }
}
