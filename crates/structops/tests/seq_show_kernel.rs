//! `seq_show` of struct_ops maps against the kernel's: a struct_ops map of each
//! ops type this machine's kernel and this runtime share (`bpf_dummy_ops`,
//! `tcp_congestion_ops`) is created on both; the kernel's is pinned in bpffs and read
//! back (`bpf_struct_ops_map_seq_show_elem` through the bpffs map file), ours printed
//! with `StructOpsMap::seq_show`. The texts must be equal (after the kernel file's two
//! warning lines).
//!
//! Skips, printing why, without root and BPF, bpffs, or the ops types in vmlinux.

#[path = "common/kernel.rs"]
#[expect(dead_code, reason = "shared bpf(2) helpers, not all used here")]
mod kernel;

use kernel as k;
use structops::struct_ops::MAP_TYPE_STRUCT_OPS;
use structops::{MapCreateAttr, Runtime, RuntimeConfig};
use structops_btf::{Btf, BtfBuilder, INT_SIGNED, Kind};

/// `BPF_OBJ_PIN`.
const OBJ_PIN: u32 = 6;

/// The kernel's map file text for a fresh struct_ops map of value type `value_id`, or
/// why it is not available.
fn kernel_show(value_id: u32, value_size: u32, name: &str) -> Result<String, String> {
    let mut b = BtfBuilder::new();
    b.add_int("int", 4, INT_SIGNED);
    let btf_fd = k::btf_load(&b.build().encode()).map_err(|e| format!("BTF_LOAD: {e}"))?;
    let a = MapCreateAttr {
        map_type: MAP_TYPE_STRUCT_OPS,
        key_size: 4,
        value_size,
        max_entries: 1,
        btf_fd: btf_fd as u32,
        btf_vmlinux_value_type_id: value_id,
        ..MapCreateAttr::default()
    };
    let fd = k::map_create(&a);
    k::close(btf_fd);
    let fd = fd.map_err(|e| format!("MAP_CREATE: {e}"))?;
    let path = format!(
        "/sys/fs/bpf/structops_seq_show_{name}_{}\0",
        std::process::id()
    );
    let mut at = k::Attr::new();
    at.u64(0, path.as_ptr() as u64).u32(8, fd as u32);
    let pinned = k::sys_bpf(OBJ_PIN, &mut at);
    k::close(fd);
    pinned.map_err(|e| format!("OBJ_PIN: {e} (no bpffs at /sys/fs/bpf?)"))?;
    let file = path.trim_end_matches('\0');
    let text = std::fs::read_to_string(file);
    // Unpin whatever happened, so that nothing stays in the kernel.
    let _ = std::fs::remove_file(file);
    let text = text.map_err(|e| format!("reading {file}: {e}"))?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect())
}

#[test]
fn struct_ops_seq_show_equals_the_kernels() {
    let Some(vmlinux) = std::fs::read("/sys/kernel/btf/vmlinux")
        .ok()
        .and_then(|b| Btf::parse(&b).ok())
    else {
        eprintln!("skipped: no /sys/kernel/btf/vmlinux");
        return;
    };
    let rt = Runtime::new(RuntimeConfig::default());
    let has_dummy = vmlinux
        .find_by_name_kind("bpf_dummy_ops", Kind::Struct)
        .is_some();
    rt.register_host_btf(vmlinux).unwrap();
    let mut types = Vec::new();
    if has_dummy {
        types.push(rt.register_dummy_ops().unwrap());
    }
    if let Ok(t) = rt.register_tcp_congestion_ops() {
        types.push(t);
    }
    if types.is_empty() {
        eprintln!("skipped: neither ops type is in this kernel's BTF");
        return;
    }
    let mut b = BtfBuilder::new();
    b.add_int("int", 4, INT_SIGNED);
    let btf_fd = rt
        .fd_install(rt.btf_load(&b.build().encode()).unwrap())
        .unwrap();
    for ty in types {
        let theirs = match kernel_show(ty.value_id(), ty.value_size(), ty.name()) {
            Ok(t) => t,
            Err(why) => {
                eprintln!("skipped: kernel side unavailable ({why})");
                return;
            }
        };
        let m = rt
            .map_create(&MapCreateAttr {
                map_type: MAP_TYPE_STRUCT_OPS,
                key_size: 4,
                value_size: ty.value_size(),
                max_entries: 1,
                btf_fd,
                btf_vmlinux_value_type_id: ty.value_id(),
                ..MapCreateAttr::default()
            })
            .unwrap();
        let ours = m.struct_ops().unwrap().seq_show();
        assert_eq!(ours, theirs, "{}", ty.name());
        assert!(ours.contains("BPF_STRUCT_OPS_STATE_INIT"), "{ours}");
    }
}
