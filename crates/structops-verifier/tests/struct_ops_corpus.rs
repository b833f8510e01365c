//! The kernel corpus' struct_ops programs (`conformance/build/corpus`)
//! verified here with the running kernel's BTF and the kernel's
//! `bpf_dummy_ops` / `tcp_congestion_ops` hooks, against the kernel's own
//! verdict on the same relocated instructions (the libbpf oracle
//! `libbpf_report load --each` loads each program alone, as libbpf does).
//! The verdict, errno and message must be equal. Also prints the processed
//! instruction counts of `bpf_cubic` next to the kernel's (raw
//! `BPF_PROG_LOAD` at log level 1 of the same instructions and map
//! contents).
//!
//! Skips with a reason when the corpus, the oracle or the kernel is missing.

mod kernel_ops;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use structops_btf::Btf;
use structops_isa::Insn;
use structops_obj::{BtfKsyms, ExternHost, Object};
use structops_verifier::{LogOptions, MapInfo, ProgInfo, StructOpsAttach, verify};

use kernel_ops::{KernelOps, vmlinux};

fn build_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance/build")
}

/// `license_is_gpl_compatible`.
fn gpl(license: &str) -> bool {
    matches!(
        license,
        "GPL"
            | "GPL v2"
            | "GPL and additional rights"
            | "Dual BSD/GPL"
            | "Dual MIT/GPL"
            | "Dual MPL/GPL"
    )
}

/// The kernel's message: the last meaningful line of the verifier log in
/// libbpf's error text.
fn kernel_message(err: &str) -> String {
    let log = err.split("-- END PROG LOAD LOG --").next().unwrap_or("");
    log.lines()
        .rev()
        .map(str::trim)
        .find(|l| {
            !l.is_empty()
                && !l.starts_with("processed ")
                && !l.starts_with("verification time")
                && !l.starts_with("stack depth")
                && !l.starts_with("libbpf:")
                && !l.starts_with("-- BEGIN PROG LOAD LOG --")
        })
        .unwrap_or("")
        .to_owned()
}

fn insns_of(p: &Value) -> Vec<Insn> {
    p["insns"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| {
                    let f = |k: usize| i[k].as_i64().unwrap_or(0);
                    Insn::new(f(0) as u8, f(1) as u8, f(2) as u8, f(3) as i16, f(4) as i32)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Subprogram starts: targets of bpf-to-bpf calls and `BPF_PSEUDO_FUNC`
/// loads (what libbpf's func_info names).
fn subprogs(insns: &[Insn]) -> Vec<u32> {
    let mut out = Vec::new();
    let mut pc = 0;
    while pc < insns.len() {
        let i = insns[pc];
        let target = (pc as i64 + i64::from(i.imm) + 1) as u32;
        if (i.code == 0x85 && i.src_reg() == 1) || (i.code == 0x18 && i.src_reg() == 4) {
            out.push(target);
        }
        pc += if i.code == 0x18 { 2 } else { 1 };
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Map infos by fd from the report, values of frozen internal maps from
/// the object.
fn maps_of(entry: &Value, obj: &Object) -> HashMap<i32, MapInfo> {
    let mut out = HashMap::new();
    for m in entry["maps"].as_array().into_iter().flatten() {
        let fd = m["fd"].as_i64().unwrap_or(-1) as i32;
        if fd < 0 {
            continue;
        }
        let u = |k: &str| m[k].as_u64().unwrap_or(0) as u32;
        let name = m["name"].as_str().unwrap_or("").to_owned();
        let flags = u("map_flags");
        let rdonly = flags & 0x80 != 0;
        let frozen = if rdonly && m["internal"].as_bool().unwrap_or(false) {
            obj.maps()
                .iter()
                .find(|om| om.kernel_name() == name)
                .map(|om| {
                    let mut v = om.initial_value().to_vec();
                    v.resize(u("value_size") as usize, 0);
                    v
                })
        } else {
            None
        };
        out.insert(
            fd,
            MapInfo {
                map_type: u("type"),
                key_size: u("key_size"),
                value_size: u("value_size"),
                max_entries: u("max_entries"),
                flags,
                rdonly_prog: rdonly,
                wronly_prog: flags & 0x100 != 0,
                frozen_value: frozen,
                name,
                direct_value: u("type") == 2 && u("max_entries") == 1,
            },
        );
    }
    out
}

fn open_object(path: &Path, vmlinux: &Btf) -> Option<Object> {
    let bytes = std::fs::read(path).ok()?;
    let mut obj = Object::parse(&bytes).ok()?;
    let kconfig = Command::new("zcat")
        .arg("/proc/config.gz")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let ksyms = BtfKsyms { btf: vmlinux };
    let host = ExternHost {
        kernel_version: 0,
        has_bpf_cookie: true,
        has_syscall_wrapper: true,
        extra_kconfig: None,
        system_kconfig: kconfig.as_deref(),
        ksyms: &ksyms,
    };
    // Unresolvable externs leave the kconfig map zeroed; the kernel side
    // of the comparison is libbpf's own load.
    let _ = obj.resolve_externs(&host);
    Some(obj)
}

/// One program's row.
struct Row {
    object: String,
    prog: String,
    kernel: String,
    ours: String,
    agree: bool,
    processed: u64,
}

mod raw {
    //! Raw `bpf(2)` for the kernel's processed-instruction count.
    use std::collections::HashMap;

    use structops_isa::Insn;
    use structops_verifier::MapInfo;

    /// A descriptor closed on drop.
    pub struct Fd(pub libc::c_int);

    impl Drop for Fd {
        fn drop(&mut self) {
            // SAFETY: we own the descriptor and close it once.
            unsafe { libc::close(self.0) };
        }
    }

    fn bpf(cmd: libc::c_long, attr: &[u8]) -> i64 {
        // SAFETY: `attr` is a live buffer of the size passed, holding a
        // `union bpf_attr` prefix for `cmd`.
        unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_ptr(), attr.len()) }
    }

    fn put32(b: &mut [u8], off: usize, v: u32) {
        b[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn put64(b: &mut [u8], off: usize, v: u64) {
        b[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }

    /// Creates the map (with its frozen value written and frozen).
    pub fn map(m: &MapInfo) -> Option<Fd> {
        let mut a = [0u8; 72];
        put32(&mut a, 0, m.map_type);
        put32(&mut a, 4, m.key_size);
        put32(&mut a, 8, m.value_size);
        put32(&mut a, 12, m.max_entries);
        put32(&mut a, 16, m.flags & !0x80);
        let fd = bpf(0, &a);
        if fd < 0 {
            return None;
        }
        let fd = Fd(fd as libc::c_int);
        if let Some(v) = &m.frozen_value {
            let key = 0u32;
            let mut u = [0u8; 32];
            put32(&mut u, 0, fd.0 as u32);
            put64(&mut u, 8, &key as *const u32 as u64);
            put64(&mut u, 16, v.as_ptr() as u64);
            if bpf(2, &u) < 0 {
                return None;
            }
            let mut f = [0u8; 8];
            put32(&mut f, 0, fd.0 as u32);
            if bpf(22, &f) < 0 {
                return None;
            }
        }
        Some(fd)
    }

    /// `BPF_PROG_LOAD` as struct_ops at log level 1: the log, or `None`
    /// when a map could not be recreated.
    pub fn load(
        insns: &[Insn],
        maps: &HashMap<i32, MapInfo>,
        attach_btf_id: u32,
        member_idx: u32,
        sleepable: bool,
    ) -> Option<String> {
        let mut own = HashMap::new();
        for (fd, m) in maps {
            if m.map_type == 26 {
                continue;
            }
            own.insert(*fd, map(m)?);
        }
        let mut insns = insns.to_vec();
        for i in insns.iter_mut() {
            if i.code == 0x18 && matches!(i.src_reg(), 1 | 2) {
                let new = own.get(&i.imm)?.0;
                i.imm = new;
            }
        }
        let license = c"GPL";
        let mut log = vec![0u8; 1 << 24];
        let mut a = [0u8; 128];
        put32(&mut a, 0, 27);
        put32(&mut a, 4, insns.len() as u32);
        put64(&mut a, 8, insns.as_ptr() as u64);
        put64(&mut a, 16, license.as_ptr() as u64);
        put32(&mut a, 24, 1);
        put32(&mut a, 28, log.len() as u32);
        put64(&mut a, 32, log.as_mut_ptr() as u64);
        put32(&mut a, 44, if sleepable { 1 << 4 } else { 0 });
        put32(&mut a, 68, member_idx);
        put32(&mut a, 108, attach_btf_id);
        let fd = bpf(5, &a);
        if fd >= 0 {
            drop(Fd(fd as libc::c_int));
        }
        drop(own);
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        Some(String::from_utf8_lossy(&log[..end]).into_owned())
    }
}

#[test]
fn corpus_struct_ops_programs_agree_with_the_kernel() {
    let dir = build_dir();
    let oracle = dir.join("bin/libbpf_report");
    let manifest = std::fs::read_to_string(dir.join("corpus/MANIFEST"));
    let (true, Ok(manifest)) = (oracle.exists(), manifest) else {
        eprintln!(
            "skipped: conformance/build (corpus and libbpf_report) not built; run conformance/build.sh"
        );
        return;
    };
    let btf = match vmlinux() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("skipped: {e}");
            return;
        }
    };
    let vm_for_obj = vmlinux().unwrap();
    let mut env = KernelOps::new(btf).unwrap();
    let mut rows = Vec::new();
    let mut not_loaded = Vec::new();
    for line in manifest.lines() {
        let mut f = line.split('\t');
        let (Some(name), Some("struct_ops")) = (f.next(), f.next()) else {
            continue;
        };
        let path = dir.join("corpus").join(name);
        let out = Command::new(&oracle)
            .arg("load")
            .arg("--each")
            .arg(&path)
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let obj = open_object(&path, &vm_for_obj).unwrap();
        let license = obj.license().to_owned();
        for entry in report["each"].as_array().into_iter().flatten() {
            let Some(p) = entry["programs"].as_array().and_then(|a| a.first()) else {
                continue;
            };
            let pname = p["name"].as_str().unwrap_or("").to_owned();
            let Some(kerrno) = p["errno"].as_i64() else {
                // libbpf failed before BPF_PROG_LOAD (module types, missing ksyms).
                let why = entry["error"]
                    .as_str()
                    .and_then(|e| e.lines().rev().find(|l| !l.trim().is_empty()))
                    .unwrap_or("")
                    .to_owned();
                not_loaded.push(format!("{name} {pname}: {why}"));
                continue;
            };
            let ops = entry["maps"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| m["fd"].as_i64().unwrap_or(-1) >= 0 && m["struct_ops_type"].is_string())
                .and_then(|m| m["struct_ops_type"].as_str())
                .unwrap_or("")
                .to_owned();
            let member_idx = p["expected_attach_type"].as_u64().unwrap_or(0) as u32;
            let (btf_id, _) = env.target(&ops, "#0").unwrap();
            let insns = insns_of(p);
            env.maps = maps_of(entry, &obj);
            let sleepable = p["section"]
                .as_str()
                .unwrap_or("")
                .starts_with("struct_ops.s");
            let info = ProgInfo {
                gpl_compatible: gpl(&license),
                sleepable,
                func_info: subprogs(&insns),
                struct_ops: Some(StructOpsAttach { btf_id, member_idx }),
                ..ProgInfo::default()
            };
            let got = verify(&insns, &info, &env, &LogOptions::default());
            let kernel = if kerrno == 0 {
                "accept".to_owned()
            } else {
                format!(
                    "{kerrno} {}",
                    kernel_message(entry["error"].as_str().unwrap_or(""))
                )
            };
            let (ours, agree, processed) = match &got {
                Ok(v) => ("accept".to_owned(), kerrno == 0, v.stats().insn_processed),
                Err(e) => {
                    let km = kernel_message(entry["error"].as_str().unwrap_or(""));
                    (
                        format!("{} {}", e.errno, e.message),
                        i64::from(e.errno) == kerrno && e.message == km,
                        0,
                    )
                }
            };
            if name.starts_with("bpf_cubic")
                && let Some(log) = raw::load(&insns, &env.maps, btf_id, member_idx, sleepable)
            {
                let stats = log
                    .lines()
                    .find(|l| l.starts_with("processed "))
                    .unwrap_or("(no stats)");
                eprintln!("bpf_cubic {pname}: ours processed {processed}; kernel: {stats}");
            }
            rows.push(Row {
                object: name.to_owned(),
                prog: pname,
                kernel,
                ours,
                agree,
                processed,
            });
        }
    }
    eprintln!("| object | program | kernel | structops | agree | processed |");
    eprintln!("|---|---|---|---|---|---|");
    for r in &rows {
        eprintln!(
            "| {} | {} | {} | {} | {} | {} |",
            r.object,
            r.prog,
            r.kernel,
            r.ours,
            if r.agree { "yes" } else { "NO" },
            r.processed
        );
    }
    for n in &not_loaded {
        eprintln!("not loaded by the kernel (libbpf failed first): {n}");
    }
    let bad: Vec<&Row> = rows.iter().filter(|r| !r.agree).collect();
    eprintln!(
        "{} of {} programs agree",
        rows.len() - bad.len(),
        rows.len()
    );
    assert!(rows.len() >= 30, "only {} programs compared", rows.len());
    assert!(
        bad.is_empty(),
        "disagreements: {:?}",
        bad.iter()
            .map(|r| format!(
                "{} {}: kernel {} ours {}",
                r.object, r.prog, r.kernel, r.ours
            ))
            .collect::<Vec<_>>()
    );
}
