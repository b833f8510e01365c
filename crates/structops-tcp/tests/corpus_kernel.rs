//! The attach transcript of every corpus TCP congestion-control object, ours against the
//! running kernel's: per object the load's errno (0 when it loads), then per struct_ops
//! map, in object order, the errno of attaching it (`bpf_map__attach_struct_ops`), later
//! maps seeing what earlier ones registered. The kernel's comes from
//! `conformance/build/bin/libbpf_report attach` (libbpf 1.5 on the real kernel, every
//! link destroyed before it exits); ours from a [`TcpHost`] on each engine
//! ([`TcpHost::load_with`], [`TcpHost::attach_all`]). They must be equal, errno for
//! errno; the table of both is printed.
//!
//! Which kfuncs a kernel has depends on its configuration: the CUBIC, DCTCP and BBR
//! kfuncs exist only where those congestion controls are built in or their modules are
//! loaded. Our host implements all of them, so for the comparison it is given the
//! running kernel's set: its `__ksym` resolver knows a kfunc only when the kernel's BTF
//! has a `FUNC` of that name (an object calling one the kernel lacks then fails to load
//! with libbpf's `EINVAL`, as on the kernel). The transcript of the full host (every
//! kfunc) is printed too, and every object must load there unless the kernel refuses it
//! for a reason other than a missing kfunc.
//!
//! A registration under the same name by another process at the same moment would make
//! the kernel answer `EEXIST`; the kernel's transcript is taken again (up to three
//! times) before a difference counts.
//!
//! Skips with a printed reason when not root, without the corpus or without
//! `libbpf_report` (run `conformance/build.sh`).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use structops::loader::LoadOptions;
use structops::{Engine, Errno};
use structops_btf::{Btf, Kind};
use structops_obj::{BtfKsyms, KsymResolver, KsymTarget};
use structops_tcp::{HostConfig, HostError, TcpHost};

/// The corpus objects, in the order of the table.
const OBJECTS: &[&str] = &[
    "bpf_cubic",
    "bpf_cc_cubic",
    "bpf_dctcp",
    "bpf_dctcp_release",
    "tcp_ca_write_sk_pacing",
    "tcp_ca_update",
    "tcp_ca_incompl_cong_ops",
    "tcp_ca_unsupp_cong_op",
    "tcp_ca_kfunc",
    "bpf_tcp_nogpl",
];

/// One object's transcript: the load's errno and each struct_ops map's attach errno.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Transcript {
    load: i32,
    maps: Vec<(String, i32)>,
}

fn build_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../conformance/build")
}

/// Why the kernel side cannot run, if it cannot.
fn kernel_missing(report: &Path) -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("");
    if uid != "0" {
        return Some("not root (the kernel side registers congestion controls)".into());
    }
    if !report.exists() {
        return Some(format!(
            "{} missing; run conformance/build.sh",
            report.display()
        ));
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Some("no /sys/kernel/btf/vmlinux".into());
    }
    None
}

/// The kernel's transcript of `path`, from `libbpf_report attach`.
fn kernel_transcript(report: &Path, path: &Path) -> Transcript {
    let out = Command::new(report)
        .arg("attach")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", report.display()));
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("libbpf_report attach {}: {e}: {text}", path.display()));
    let num = |v: &serde_json::Value| v.as_i64().unwrap_or(-1) as i32;
    let open = num(&v["open"]);
    Transcript {
        load: if open != 0 { open } else { num(&v["load"]) },
        maps: v["maps"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| {
                        (
                            m["name"].as_str().unwrap_or("").to_string(),
                            num(&m["errno"]),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// The kfunc names the running kernel has: `FUNC`s of vmlinux, and names in the string
/// tables of module BTFs (split BTF, whose types need vmlinux as a base; a module
/// carrying the name is the module defining it).
fn kernel_kfuncs(names: &[&str]) -> BTreeSet<String> {
    let mut have = BTreeSet::new();
    if let Ok(b) = std::fs::read("/sys/kernel/btf/vmlinux")
        && let Ok(btf) = Btf::parse(&b)
    {
        for n in names {
            if btf.find_by_name_kind(n, Kind::Func).is_some() {
                have.insert(n.to_string());
            }
        }
    }
    let modules = std::fs::read_dir("/sys/kernel/btf").into_iter().flatten();
    for m in modules.flatten() {
        if m.file_name() == "vmlinux" {
            continue;
        }
        let Ok(raw) = std::fs::read(m.path()) else {
            continue;
        };
        for n in names {
            let needle: Vec<u8> = [b"\0", n.as_bytes(), b"\0"].concat();
            if raw.windows(needle.len()).any(|w| w == needle.as_slice()) {
                have.insert(n.to_string());
            }
        }
    }
    have
}

/// A `__ksym` resolver over the host BTF that knows only the kfuncs in `allowed`.
struct KernelKfuncs<'a> {
    host: BtfKsyms<'a>,
    allowed: &'a BTreeSet<String>,
}

impl KsymResolver for KernelKfuncs<'_> {
    fn kfunc(&self, name: &str) -> Option<KsymTarget> {
        if self.allowed.contains(name) {
            self.host.kfunc(name)
        } else {
            None
        }
    }

    fn var(&self, name: &str) -> Option<KsymTarget> {
        self.host.var(name)
    }

    fn kallsyms(&self, name: &str) -> Option<u64> {
        self.host.kallsyms(name)
    }
}

/// Our transcript of `bytes` on `engine`, with the kfuncs `allowed` (`None`: all).
fn our_transcript(
    engine: Engine,
    bytes: &[u8],
    path: &str,
    allowed: Option<&BTreeSet<String>>,
) -> Transcript {
    let host = TcpHost::new(HostConfig {
        engine,
        ..HostConfig::default()
    })
    .unwrap();
    let host_btf = host.runtime().host_btf().unwrap();
    let all = BtfKsyms {
        btf: host_btf.btf(),
    };
    let filtered = allowed.map(|allowed| KernelKfuncs { host: all, allowed });
    let opts = LoadOptions {
        ksyms: Some(match &filtered {
            Some(f) => f as &dyn KsymResolver,
            None => &all,
        }),
        ..LoadOptions::default()
    };
    let obj = match host.load_with(bytes, path, &opts) {
        Ok(o) => o,
        Err(HostError::Load { source, .. }) => {
            return Transcript {
                load: source.errno().0,
                maps: Vec::new(),
            };
        }
        Err(e) => panic!("{path}: {e}"),
    };
    let attached = host.attach_all(obj);
    let maps = attached
        .results()
        .into_iter()
        .map(|(n, r)| (n.to_string(), r.err().map_or(0, |e| e.0)))
        .collect();
    // Dropping `attached` unregisters everything, before the host goes.
    drop(attached);
    Transcript { load: 0, maps }
}

fn errno(n: i32) -> String {
    if n == 0 {
        "0".into()
    } else {
        Errno(n).to_string()
    }
}

/// The rows of one object: `(object, map, kernel, ours...)`.
fn rows(name: &str, kernel: &Transcript, ours: &[&Transcript]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut row = vec![name.to_string(), "(load)".into(), errno(kernel.load)];
    row.extend(ours.iter().map(|t| errno(t.load)));
    out.push(row);
    let n = ours
        .iter()
        .map(|t| t.maps.len())
        .chain([kernel.maps.len()])
        .max()
        .unwrap_or(0);
    for i in 0..n {
        let map = kernel
            .maps
            .get(i)
            .or_else(|| ours.iter().find_map(|t| t.maps.get(i)))
            .map(|(m, _)| m.clone())
            .unwrap_or_default();
        let cell = |t: &Transcript| {
            t.maps
                .get(i)
                .map(|(m, e)| {
                    if *m == map {
                        errno(*e)
                    } else {
                        format!("{m}: {}", errno(*e))
                    }
                })
                .unwrap_or_else(|| "-".into())
        };
        let mut row = vec![String::new(), map.clone(), cell(kernel)];
        row.extend(ours.iter().map(|t| cell(t)));
        out.push(row);
    }
    out
}

fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let mut s = String::new();
    let line = |s: &mut String, cells: Vec<&str>| {
        let cols: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        let _ = writeln!(s, "| {} |", cols.join(" | "));
    };
    line(&mut s, header.to_vec());
    let _ = writeln!(
        s,
        "|{}|",
        w.iter()
            .map(|n| "-".repeat(n + 2))
            .collect::<Vec<_>>()
            .join("|")
    );
    for r in rows {
        line(&mut s, r.iter().map(String::as_str).collect());
    }
    s
}

#[test]
fn attach_transcripts_equal_the_kernels() {
    let build = build_dir();
    let report = build.join("bin/libbpf_report");
    if let Some(why) = kernel_missing(&report) {
        println!("skipped: {why}");
        return;
    }
    let kfunc_names = structops_tcp::kfuncs::implemented();
    let kernel_has = kernel_kfuncs(&kfunc_names);
    let missing: Vec<&str> = kfunc_names
        .iter()
        .copied()
        .filter(|n| !kernel_has.contains(*n))
        .collect();
    println!(
        "kernel congestion controls: {}; kfuncs our host has that the kernel lacks: {}",
        std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_congestion_control")
            .unwrap_or_default()
            .trim(),
        if missing.is_empty() {
            "none".to_string()
        } else {
            missing.join(", ")
        }
    );
    let mut all_rows = Vec::new();
    let mut full_rows = Vec::new();
    let mut diffs = Vec::new();
    let mut ran = 0;
    for name in OBJECTS {
        let path = build.join("corpus").join(format!("{name}.bpf.o"));
        let Ok(bytes) = std::fs::read(&path) else {
            println!("{name}: not in the corpus, left out");
            continue;
        };
        ran += 1;
        let file = format!("{name}.bpf.o");
        let interp = our_transcript(Engine::Interp, &bytes, &file, Some(&kernel_has));
        let jit = our_transcript(Engine::Jit, &bytes, &file, Some(&kernel_has));
        assert_eq!(interp, jit, "{name}: the engines' transcripts differ");
        let mut kernel = kernel_transcript(&report, &path);
        for _ in 0..3 {
            if kernel == interp {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
            kernel = kernel_transcript(&report, &path);
        }
        all_rows.extend(rows(name, &kernel, &[&interp, &jit]));
        if kernel != interp {
            diffs.push(format!("{name}: kernel {kernel:?}, ours {interp:?}"));
        }
        // The full host: every kfunc.
        let full = our_transcript(Engine::Jit, &bytes, &file, None);
        full_rows.extend(rows(name, &kernel, &[&full]));
        if full.load != 0 && kernel.load == 0 {
            diffs.push(format!(
                "{name}: loads on the kernel but not on our full host: {full:?}"
            ));
        }
    }
    println!(
        "attach transcript (kfuncs as the running kernel has them):\n{}",
        table(
            &["object", "map", "kernel", "ours (interp)", "ours (jit)"],
            &all_rows
        )
    );
    println!(
        "our full host (every kfunc), jit:\n{}",
        table(&["object", "map", "kernel", "ours (full)"], &full_rows)
    );
    assert!(ran >= 9, "only {ran} corpus objects found");
    assert!(
        diffs.is_empty(),
        "transcripts differ:\n{}",
        diffs.join("\n")
    );
}
