//! Shared helpers for the kernel differential tests: raw BTF assembly and `bpf(2)`.

#![allow(
    dead_code,
    reason = "shared by several test binaries; each uses a subset"
)]

use std::os::fd::{FromRawFd, OwnedFd};

/// `BPF_BTF_LOAD`.
const BPF_BTF_LOAD: libc::c_int = 18;
/// `BPF_MAP_CREATE`.
const BPF_MAP_CREATE: libc::c_int = 0;
/// `BPF_MAP_UPDATE_ELEM`.
const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
/// `BPF_OBJ_GET_INFO_BY_FD`.
const BPF_OBJ_GET_INFO_BY_FD: libc::c_int = 15;

/// One raw type record: the fixed part and the trailing words.
#[derive(Clone, Debug)]
pub struct Raw {
    pub name_off: u32,
    pub info: u32,
    pub size_or_type: u32,
    pub extra: Vec<u32>,
}

/// `info` from kind, vlen and kflag.
pub fn info(kind: u32, vlen: u32, kflag: bool) -> u32 {
    (kflag as u32) << 31 | kind << 24 | vlen
}

/// A raw record.
pub fn rec(name_off: u32, kind: u32, vlen: u32, kflag: bool, sot: u32, extra: &[u32]) -> Raw {
    Raw {
        name_off,
        info: info(kind, vlen, kflag),
        size_or_type: sot,
        extra: extra.to_vec(),
    }
}

/// Encodes records back to back.
pub fn type_bytes(types: &[Raw]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in types {
        for w in [t.name_off, t.info, t.size_or_type]
            .into_iter()
            .chain(t.extra.iter().copied())
        {
            out.extend_from_slice(&w.to_le_bytes());
        }
    }
    out
}

/// A well-formed blob (24-byte header, types, then strings).
pub fn blob(types: &[Raw], strings: &[u8]) -> Vec<u8> {
    blob_bytes(&type_bytes(types), strings)
}

/// A well-formed blob from a raw type section.
pub fn blob_bytes(types: &[u8], strings: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xeb9fu16.to_le_bytes());
    out.push(1);
    out.push(0);
    for w in [
        24u32,
        0,
        types.len() as u32,
        types.len() as u32,
        strings.len() as u32,
    ] {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out.extend_from_slice(types);
    out.extend_from_slice(strings);
    out
}

/// Overwrites the little-endian u32 at `off`.
pub fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// What the kernel said about one `BPF_BTF_LOAD`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelResult {
    /// 0 on success, else the errno.
    pub errno: i32,
    /// The level-1 log (lossy UTF-8), or `None` when it did not fit.
    pub log: Option<String>,
}

#[repr(C)]
#[derive(Default)]
struct BtfLoadAttr {
    btf: u64,
    btf_log_buf: u64,
    btf_size: u32,
    btf_log_size: u32,
    btf_log_level: u32,
    btf_log_true_size: u32,
    btf_flags: u32,
    btf_token_fd: i32,
}

fn sys_bpf(cmd: libc::c_int, attr: *mut u8, size: usize) -> (i64, i32) {
    // SAFETY: `attr` points to a live, writable attribute struct of `size` bytes, and
    // every pointer inside it refers to a live buffer of the stated size.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd as libc::c_long, attr, size) };
    let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    (r, if r < 0 { e } else { 0 })
}

/// Loads `btf` into the kernel with a level-1 log of `log_size` bytes.
pub fn kernel_load(btf: &[u8], log_size: usize) -> KernelResult {
    let mut log = vec![0u8; log_size];
    let mut attr = BtfLoadAttr {
        btf: btf.as_ptr() as u64,
        btf_size: btf.len() as u32,
        ..Default::default()
    };
    if log_size > 0 {
        attr.btf_log_buf = log.as_mut_ptr() as u64;
        attr.btf_log_size = log_size as u32;
        attr.btf_log_level = 1;
    }
    let (r, errno) = sys_bpf(
        BPF_BTF_LOAD,
        &mut attr as *mut BtfLoadAttr as *mut u8,
        std::mem::size_of::<BtfLoadAttr>(),
    );
    if r >= 0 {
        // SAFETY: the kernel returned a new file descriptor that nothing else owns.
        drop(unsafe { OwnedFd::from_raw_fd(r as i32) });
    }
    if errno == libc::ENOSPC {
        // The log did not fit: ask again without one for the errno.
        let mut r = kernel_load(btf, 0);
        r.log = None;
        return r;
    }
    let text = if log_size > 0 {
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        Some(String::from_utf8_lossy(&log[..end]).into_owned())
    } else {
        None
    };
    KernelResult { errno, log: text }
}

/// Loads `btf` and keeps the fd (for map creation); `Err(errno)` on failure.
pub fn kernel_load_fd(btf: &[u8]) -> Result<OwnedFd, i32> {
    let mut attr = BtfLoadAttr {
        btf: btf.as_ptr() as u64,
        btf_size: btf.len() as u32,
        ..Default::default()
    };
    let (r, errno) = sys_bpf(
        BPF_BTF_LOAD,
        &mut attr as *mut BtfLoadAttr as *mut u8,
        std::mem::size_of::<BtfLoadAttr>(),
    );
    if r < 0 {
        return Err(errno);
    }
    // SAFETY: the kernel returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

/// Why kernel tests cannot run here, if they cannot.
pub fn kernel_unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root".into());
    }
    // A minimal valid blob: one `int`.
    let strings = b"\0int\0";
    let probe = blob(&[rec(1, 1, 0, false, 4, &[32])], strings);
    let r = kernel_load(&probe, 0);
    match r.errno {
        0 => None,
        libc::EPERM => Some("BPF_BTF_LOAD: EPERM".into()),
        libc::ENOSYS => Some("bpf(2): ENOSYS".into()),
        e => Some(format!(
            "BPF_BTF_LOAD of a minimal blob failed with errno {e}"
        )),
    }
}

/// `bpf_map_create` for an `ARRAY` map with BTF key/value types; returns the fd.
pub fn create_array_map(
    btf_fd: &OwnedFd,
    name: &str,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    key_type_id: u32,
    value_type_id: u32,
) -> Result<OwnedFd, i32> {
    create_map(
        btf_fd,
        2, // BPF_MAP_TYPE_ARRAY
        name,
        [
            key_size,
            value_size,
            max_entries,
            key_type_id,
            value_type_id,
        ],
    )
}

/// `bpf_map_create` of `map_type` with BTF; `dims` is key size, value size, max entries,
/// key type id and value type id.
pub fn create_map(
    btf_fd: &OwnedFd,
    map_type: u32,
    name: &str,
    dims: [u32; 5],
) -> Result<OwnedFd, i32> {
    use std::os::fd::AsRawFd;
    let [
        key_size,
        value_size,
        max_entries,
        key_type_id,
        value_type_id,
    ] = dims;
    // union bpf_attr's map_create layout up to btf_value_type_id.
    let mut attr = [0u8; 72];
    let mut w = |off: usize, v: u32| attr[off..off + 4].copy_from_slice(&v.to_le_bytes());
    w(0, map_type);
    w(4, key_size);
    w(8, value_size);
    w(12, max_entries);
    let mut nm = [0u8; 16];
    for (d, s) in nm.iter_mut().zip(name.bytes().take(15)) {
        *d = s;
    }
    attr[28..44].copy_from_slice(&nm);
    let mut w = |off: usize, v: u32| attr[off..off + 4].copy_from_slice(&v.to_le_bytes());
    w(48, btf_fd.as_raw_fd() as u32);
    w(52, key_type_id);
    w(56, value_type_id);
    let (r, errno) = sys_bpf(BPF_MAP_CREATE, attr.as_mut_ptr(), attr.len());
    if r < 0 {
        return Err(errno);
    }
    // SAFETY: the kernel returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

/// The number of possible CPUs (`/sys/devices/system/cpu/possible`), as libbpf counts
/// them for per-CPU map values.
pub fn possible_cpus() -> Option<usize> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible").ok()?;
    let mut n = 0;
    for part in text.trim().split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        n = n.max(b.parse::<usize>().ok()? + 1);
        let _ = a;
    }
    Some(n)
}

/// `bpf_map_update_elem`.
pub fn map_update(map: &OwnedFd, key: &[u8], value: &[u8]) -> Result<(), i32> {
    use std::os::fd::AsRawFd;
    let mut attr = [0u8; 32];
    attr[0..4].copy_from_slice(&(map.as_raw_fd() as u32).to_le_bytes());
    attr[8..16].copy_from_slice(&(key.as_ptr() as u64).to_le_bytes());
    attr[16..24].copy_from_slice(&(value.as_ptr() as u64).to_le_bytes());
    let (r, errno) = sys_bpf(BPF_MAP_UPDATE_ELEM, attr.as_mut_ptr(), attr.len());
    if r < 0 { Err(errno) } else { Ok(()) }
}

/// The id of a map (`bpf_obj_get_info_by_fd`).
pub fn map_id(map: &OwnedFd) -> Result<u32, i32> {
    use std::os::fd::AsRawFd;
    let mut info = [0u8; 96];
    let mut attr = [0u8; 16];
    attr[0..4].copy_from_slice(&(map.as_raw_fd() as u32).to_le_bytes());
    attr[4..8].copy_from_slice(&(info.len() as u32).to_le_bytes());
    attr[8..16].copy_from_slice(&(info.as_mut_ptr() as u64).to_le_bytes());
    let (r, errno) = sys_bpf(BPF_OBJ_GET_INFO_BY_FD, attr.as_mut_ptr(), attr.len());
    if r < 0 {
        return Err(errno);
    }
    Ok(u32::from_le_bytes([info[4], info[5], info[6], info[7]]))
}

/// A deterministic splitmix64 generator.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
