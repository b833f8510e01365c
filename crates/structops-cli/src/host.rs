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

/// The kernel configuration text from `/boot/config-$(uname -r)`, if present.
/// (`/proc/config.gz` is compressed; reading it is left to the runtime's host layer.)
pub fn system_kconfig() -> Option<String> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    std::fs::read_to_string(format!("/boot/config-{}", release.trim())).ok()
}
