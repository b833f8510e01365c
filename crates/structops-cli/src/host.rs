//! Host facts the loader needs when the CLI relocates an object outside any runtime: the
//! target BTF (the kernel's, unless `--btf` names another), the kernel version and the
//! kernel configuration, read the way libbpf reads them.

use std::path::{Path, PathBuf};

use structops_btf::Btf;

use crate::error::CliError;

/// The default target BTF, as libbpf's `btf__load_vmlinux_btf` finds it.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Reads a whole file, naming it in the error.
pub fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|source| CliError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Loads the target BTF: `path`, or the running kernel's.
pub fn target_btf(path: Option<&Path>) -> Result<Btf, CliError> {
    let path = path.map_or_else(|| PathBuf::from(VMLINUX_BTF), Path::to_path_buf);
    let bytes = read(&path)?;
    Btf::parse(&bytes).map_err(|source| CliError::Btf {
        path: path.display().to_string(),
        source,
    })
}

/// `LINUX_KERNEL_VERSION` as libbpf computes it from `uname -r`
/// (`KERNEL_VERSION(major, minor, patch)` with patch capped at 255); 0 if unknown.
pub fn kernel_version() -> u32 {
    let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return 0;
    };
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().unwrap_or(0));
    let (major, minor, patch) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    (major << 16) | (minor.min(255) << 8) | patch.min(255)
}

/// The most kernel configuration text read from `/proc/config.gz`: far more than any
/// real configuration, so a hostile or corrupt file cannot make us allocate without bound.
const MAX_KCONFIG: u64 = 16 << 20;

/// The kernel configuration text, found where libbpf looks for it:
/// `/boot/config-$(uname -r)`, else `/proc/config.gz`. `None` if neither is readable.
pub fn system_kconfig() -> Option<String> {
    use std::io::Read as _;
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    if let Ok(text) = std::fs::read_to_string(format!("/boot/config-{}", release.trim())) {
        return Some(text);
    }
    let gz = std::fs::File::open("/proc/config.gz").ok()?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(gz)
        .take(MAX_KCONFIG)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// `__ksym` resolution for the CLI: kfuncs and typed variables from the target BTF, and
/// typeless symbols from `/proc/kallsyms` (read once, on first use), as libbpf does.
pub struct HostKsyms<'a> {
    btf: structops_obj::BtfKsyms<'a>,
    kallsyms: std::sync::OnceLock<std::collections::HashMap<String, u64>>,
}

impl<'a> HostKsyms<'a> {
    /// A resolver over `target`.
    pub fn new(target: &'a Btf) -> HostKsyms<'a> {
        HostKsyms {
            btf: structops_obj::BtfKsyms { btf: target },
            kallsyms: std::sync::OnceLock::new(),
        }
    }

    /// `/proc/kallsyms` as name → address (first occurrence wins, as libbpf's
    /// `kallsyms_cb` keeps the first); empty if unreadable.
    fn table(&self) -> &std::collections::HashMap<String, u64> {
        self.kallsyms.get_or_init(|| {
            let text = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
            let mut map = std::collections::HashMap::new();
            for line in text.lines() {
                let mut f = line.split_ascii_whitespace();
                let (Some(addr), Some(_kind), Some(name)) = (f.next(), f.next(), f.next()) else {
                    continue;
                };
                if let Ok(addr) = u64::from_str_radix(addr, 16) {
                    map.entry(name.to_string()).or_insert(addr);
                }
            }
            map
        })
    }
}

impl structops_obj::KsymResolver for HostKsyms<'_> {
    fn kfunc(&self, name: &str) -> Option<structops_obj::KsymTarget> {
        self.btf.kfunc(name)
    }

    fn var(&self, name: &str) -> Option<structops_obj::KsymTarget> {
        self.btf.var(name)
    }

    fn kallsyms(&self, name: &str) -> Option<u64> {
        self.table().get(name).copied()
    }
}
