//! Differential tests against libbpf itself.
//!
//! For every object of the kernel selftest corpus (`conformance/build/corpus/*.bpf.o`),
//! the project's fixtures (`bpf/*.bpf.o`) and this crate's test objects
//! (`tests/data/*.bpf.o`):
//!
//! - **open**: our [`Object::parse_with`] against `libbpf_report open FILE` — success or
//!   errno, object name, and per entry program and map every attribute libbpf reports;
//! - **load**: for each program, our load pipeline (externs, struct_ops, CO-RE against
//!   `/sys/kernel/btf/vmlinux`, relocation) against `libbpf_report load --each FILE`:
//!   the final instructions, with map fds replaced by map indexes and BTF object fds
//!   zeroed, plus the program's type and expected attach type after load. Programs are
//!   compared when libbpf relocated them (the kernel then loaded or rejected them);
//!   the others are listed as skipped with libbpf's reason.
//!
//! `conformance/build.sh` builds the oracle and the corpus; when they are missing the
//! tests print why and skip. Loading needs root (libbpf creates maps and programs).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use structops_btf::{Btf, Kind};
use structops_obj::core_relo::CoreTarget;
use structops_obj::{
    CoreEngine, ExternHost, KsymResolver, KsymTarget, LoadHost, MapKind, Object, ParseOptions,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn report_bin() -> Option<PathBuf> {
    let p = root().join("conformance/build/bin/libbpf_report");
    if p.exists() {
        Some(p)
    } else {
        println!(
            "skipped: {} not built (run `bash conformance/build.sh`)",
            p.display()
        );
        None
    }
}

fn glob_objects(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().ends_with(".bpf.o"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Every object to compare, with a short label.
fn objects() -> Vec<PathBuf> {
    let mut v = Vec::new();
    let corpus = root().join("conformance/build/corpus");
    if corpus.join("MANIFEST").exists() {
        v.extend(glob_objects(&corpus));
    } else {
        println!(
            "note: no corpus at {} (run `bash conformance/build.sh`)",
            corpus.display()
        );
    }
    v.extend(glob_objects(&root().join("bpf")));
    v.extend(glob_objects(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data"),
    ));
    v
}

fn run_report(bin: &Path, args: &[&str], file: &Path) -> Option<Value> {
    let out = Command::new(bin).args(args).arg(file).output().ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

fn file_label(p: &Path) -> String {
    p.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn as_u64(v: &Value) -> u64 {
    v.as_u64().unwrap_or(u64::MAX)
}

/// Compares our parse with `libbpf_report open`; returns mismatch descriptions.
fn compare_open(path: &Path, report: &Value) -> Vec<String> {
    let mut diffs = Vec::new();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return vec![format!("cannot read: {e}")],
    };
    let ours = Object::parse_with(&bytes, &ParseOptions::for_path(&path.to_string_lossy()));
    let ok = report["ok"].as_bool().unwrap_or(false);
    let obj = match (ok, ours) {
        (false, Err(e)) => {
            let theirs = report["errno"].as_i64().unwrap_or(0);
            if i64::from(e.libbpf_errno()) != theirs {
                diffs.push(format!(
                    "both fail, errno ours {} ({e}) libbpf {theirs}",
                    e.libbpf_errno()
                ));
            }
            return diffs;
        }
        (false, Ok(_)) => {
            return vec![format!(
                "libbpf fails (errno {}), we parse: {}",
                report["errno"],
                report["error"]
                    .as_str()
                    .unwrap_or("")
                    .lines()
                    .last()
                    .unwrap_or("")
            )];
        }
        (true, Err(e)) => return vec![format!("we fail: {e}")],
        (true, Ok(o)) => o,
    };
    if report["name"].as_str() != Some(obj.name()) {
        diffs.push(format!("name {} vs {}", obj.name(), report["name"]));
    }
    if let Some(kv) = obj.kern_version()
        && u64::from(kv) != as_u64(&report["kversion"])
    {
        diffs.push(format!("kversion {kv} vs {}", report["kversion"]));
    }
    let ours: Vec<_> = obj.programs().iter().filter(|p| !p.is_subprog()).collect();
    let theirs = report["programs"].as_array().cloned().unwrap_or_default();
    if ours.len() != theirs.len() {
        diffs.push(format!("{} programs vs {}", ours.len(), theirs.len()));
    }
    for (p, t) in ours.iter().zip(&theirs) {
        let fields: [(&str, u64, &Value); 3] = [
            ("type", u64::from(p.prog_type().0), &t["type"]),
            (
                "expected_attach_type",
                u64::from(p.expected_attach_type().0),
                &t["expected_attach_type"],
            ),
            ("insn_cnt", p.insn_cnt() as u64, &t["insn_cnt"]),
        ];
        if t["name"].as_str() != Some(p.name()) {
            diffs.push(format!("program {} vs {}", p.name(), t["name"]));
            continue;
        }
        if t["section"].as_str() != Some(p.section_name()) {
            diffs.push(format!(
                "{}: section {} vs {}",
                p.name(),
                p.section_name(),
                t["section"]
            ));
        }
        for (f, o, l) in fields {
            if o != as_u64(l) {
                diffs.push(format!("{}: {f} {o} vs {l}", p.name()));
            }
        }
        if t["autoload"].as_bool() != Some(p.autoload()) {
            diffs.push(format!(
                "{}: autoload {} vs {}",
                p.name(),
                p.autoload(),
                t["autoload"]
            ));
        }
    }
    let maps = report["maps"].as_array().cloned().unwrap_or_default();
    if obj.maps().len() != maps.len() {
        diffs.push(format!("{} maps vs {}", obj.maps().len(), maps.len()));
    }
    for (m, t) in obj.maps().iter().zip(&maps) {
        if t["name"].as_str() != Some(m.name()) {
            diffs.push(format!("map {} vs {}", m.name(), t["name"]));
            continue;
        }
        let fields: [(&str, u64); 7] = [
            ("type", u64::from(m.map_type().0)),
            ("key_size", u64::from(m.key_size())),
            ("value_size", u64::from(m.value_size())),
            ("max_entries", u64::from(m.max_entries())),
            ("map_flags", u64::from(m.map_flags())),
            ("btf_key_type_id", u64::from(m.btf_key_type_id())),
            ("btf_value_type_id", u64::from(m.btf_value_type_id())),
        ];
        for (f, o) in fields {
            if o != as_u64(&t[f]) {
                diffs.push(format!("map {}: {f} {o} vs {}", m.name(), t[f]));
            }
        }
        let bools = [
            ("internal", m.is_internal()),
            ("link", m.is_link()),
            ("autocreate", m.autocreate()),
        ];
        for (f, o) in bools {
            if t[f].as_bool() != Some(o) {
                diffs.push(format!("map {}: {f} {o} vs {}", m.name(), t[f]));
            }
        }
        let local = m.struct_ops().map(|s| s.type_name());
        if t["struct_ops_local_type"].as_str() != local {
            diffs.push(format!(
                "map {}: local type {local:?} vs {}",
                m.name(),
                t["struct_ops_local_type"]
            ));
        }
        if t["struct_ops_type"].as_str() != m.struct_ops_type() {
            diffs.push(format!(
                "map {}: struct_ops type {:?} vs {}",
                m.name(),
                m.struct_ops_type(),
                t["struct_ops_type"]
            ));
        }
    }
    diffs
}

#[test]
fn open_matches_libbpf() {
    let Some(bin) = report_bin() else { return };
    let objs = objects();
    let mut mismatches = BTreeMap::new();
    let mut matched = 0;
    for path in &objs {
        if path.to_string_lossy().ends_with(".bpfeb.o") {
            continue;
        }
        let Some(report) = run_report(&bin, &["open"], path) else {
            println!("skipped {}: no report", file_label(path));
            continue;
        };
        let diffs = compare_open(path, &report);
        if diffs.is_empty() {
            matched += 1;
        } else {
            mismatches.insert(file_label(path), diffs);
        }
    }
    println!("open: {matched} of {} objects match libbpf", objs.len());
    for (f, d) in &mismatches {
        println!("MISMATCH {f}:\n  {}", d.join("\n  "));
    }
    assert!(matched > 0 || objs.is_empty());
    assert!(
        mismatches.is_empty(),
        "{} objects differ from libbpf",
        mismatches.len()
    );
}

/// The host facts libbpf reads, read the same way.
struct Host {
    vmlinux: Btf,
    kallsyms: HashMap<String, u64>,
    kconfig: Option<String>,
    kernel_version: u32,
}

impl KsymResolver for Host {
    fn kfunc(&self, name: &str) -> Option<KsymTarget> {
        self.vmlinux
            .find_by_name_kind(name, Kind::Func)
            .map(|btf_id| KsymTarget {
                btf_id,
                ..KsymTarget::default()
            })
    }

    fn var(&self, name: &str) -> Option<KsymTarget> {
        self.vmlinux
            .find_by_name_kind(name, Kind::Var)
            .map(|btf_id| KsymTarget {
                btf_id,
                ..KsymTarget::default()
            })
    }

    fn kallsyms(&self, name: &str) -> Option<u64> {
        self.kallsyms.get(name).copied()
    }
}

fn host() -> Option<Host> {
    let bytes = match std::fs::read("/sys/kernel/btf/vmlinux") {
        Ok(b) => b,
        Err(e) => {
            println!("skipped: /sys/kernel/btf/vmlinux: {e}");
            return None;
        }
    };
    let vmlinux = Btf::parse(&bytes).ok()?;
    let mut kallsyms = HashMap::new();
    if let Ok(text) = std::fs::read_to_string("/proc/kallsyms") {
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let (Some(addr), Some(_ty), Some(name)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            if let Ok(a) = u64::from_str_radix(addr, 16) {
                kallsyms.entry(name.to_string()).or_insert(a);
            }
        }
    }
    let kconfig = Command::new("zcat")
        .arg("/proc/config.gz")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let release = Command::new("uname").arg("-r").output().ok()?;
    let release = String::from_utf8_lossy(&release.stdout).into_owned();
    let nums: Vec<u32> = release
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .filter_map(|s| s.parse().ok())
        .collect();
    let kernel_version = match nums.as_slice() {
        [a, b, c] => (a << 16) + (b << 8) + (*c).min(255),
        _ => 0,
    };
    Some(Host {
        vmlinux,
        kallsyms,
        kconfig,
        kernel_version,
    })
}

/// Mirrors libbpf_report's `restrict_to_prog`: only `name` is loaded, struct_ops maps
/// naming it are created and the others are not, and in those that do its siblings
/// are unbound.
fn restrict_to(obj: &mut Object, name: &str) -> Option<usize> {
    let target = obj.program_index(name)?;
    for (i, p) in obj.programs_mut().iter_mut().enumerate() {
        p.set_autoload(i == target);
    }
    for m in obj.maps_mut() {
        if m.kind() != MapKind::StructOps {
            continue;
        }
        let refs = m
            .struct_ops()
            .is_some_and(|s| s.programs().contains(&Some(target)));
        m.set_autocreate(refs);
        if !refs {
            continue;
        }
        if let Some(st) = m.struct_ops_mut() {
            for i in 0..st.programs().len() {
                if st
                    .programs()
                    .get(i)
                    .copied()
                    .flatten()
                    .is_some_and(|p| p != target)
                {
                    st.set_program(i, None);
                }
            }
        }
    }
    Some(target)
}

type Row = [i64; 5];

fn insn_rows(insns: &[structops_isa::Insn]) -> Vec<Row> {
    insns
        .iter()
        .map(|i| {
            [
                i64::from(i.code),
                i64::from(i.dst_reg()),
                i64::from(i.src_reg()),
                i64::from(i.off),
                i64::from(i.imm),
            ]
        })
        .collect()
}

/// libbpf's instructions with map fds replaced by map indexes and BTF object fds by 0.
fn normalize_libbpf(insns: &[Value], fd_to_map: &HashMap<i64, i64>) -> Vec<Row> {
    let mut rows: Vec<Row> = insns
        .iter()
        .map(|r| {
            let a = r.as_array().cloned().unwrap_or_default();
            let g = |k: usize| a.get(k).and_then(Value::as_i64).unwrap_or(i64::MIN);
            [g(0), g(1), g(2), g(3), g(4)]
        })
        .collect();
    normalize_common(&mut rows, |fd| {
        fd_to_map.get(&fd).copied().unwrap_or(-1000 - fd)
    });
    rows
}

fn normalize_common(rows: &mut [Row], map_of: impl Fn(i64) -> i64) {
    let mut i = 0;
    while i < rows.len() {
        let [code, _, src, _, imm] = rows[i];
        if code == 0x18 {
            if src == 1 || src == 2 {
                rows[i][4] = map_of(imm);
            }
            if src == 3
                && let Some(next) = rows.get_mut(i + 1)
            {
                next[4] = 0;
            }
            i += 2;
            continue;
        }
        i += 1;
    }
}

#[test]
fn load_matches_libbpf() {
    let Some(bin) = report_bin() else { return };
    let Some(host) = host() else { return };
    let core_target = CoreTarget::new(&host.vmlinux);
    let mut matched = Vec::new();
    let mut mismatched = Vec::new();
    let mut skipped = Vec::new();
    for path in objects() {
        if path.to_string_lossy().ends_with(".bpfeb.o") {
            continue;
        }
        let label = file_label(&path);
        let Some(report) = run_report(&bin, &["load", "--each"], &path) else {
            skipped.push(format!("{label}: no report"));
            continue;
        };
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        for e in report["each"].as_array().cloned().unwrap_or_default() {
            let name = e["prog_filter"].as_str().unwrap_or("").to_string();
            let id = format!("{label}:{name}");
            let Some(theirs) = e["programs"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p["name"].as_str() == Some(&name)))
                .cloned()
            else {
                skipped.push(format!("{id}: libbpf could not open or restrict it"));
                continue;
            };
            let relocated = theirs["loaded"].as_bool() == Some(true)
                || e["failed_prog"].as_str() == Some(name.as_str());
            let libbpf_error = e["error"]
                .as_str()
                .unwrap_or("")
                .lines()
                .rev()
                .find(|l| !l.contains("failed to load object"))
                .unwrap_or("")
                .to_string();
            // libbpf failed after relocation but before loading (map creation, prog
            // array setup): nothing of ours to compare.
            let kernel_stage = libbpf_error.contains("failed to create")
                || libbpf_error.contains("failed to initialize slot");
            let pre_relocation_failure =
                !relocated && !kernel_stage && e["ok"].as_bool() == Some(false);
            if (!relocated || theirs.get("insns").is_none()) && !pre_relocation_failure {
                skipped.push(format!("{id}: libbpf did not relocate it: {libbpf_error}"));
                continue;
            }
            let libbpf_errno = e["errno"].as_i64().unwrap_or(0);
            let fd_to_map: HashMap<i64, i64> = e["maps"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|m| Some((m["fd"].as_i64()?, m["index"].as_i64()?)))
                .filter(|(fd, _)| *fd >= 0)
                .collect();
            let want = normalize_libbpf(
                theirs["insns"].as_array().map_or(&[][..], |v| v),
                &fd_to_map,
            );

            let mut obj = match Object::parse_with(
                &bytes,
                &ParseOptions::for_path(&path.to_string_lossy()),
            ) {
                Ok(o) => o,
                Err(err) => {
                    mismatched.push(format!("{id}: we fail to parse: {err}"));
                    continue;
                }
            };
            let Some(pi) = restrict_to(&mut obj, &name) else {
                mismatched.push(format!("{id}: no such program in our parse"));
                continue;
            };
            let engine = CoreEngine::new(&core_target);
            let load_host = LoadHost {
                target_btf: &host.vmlinux,
                externs: ExternHost {
                    kernel_version: host.kernel_version,
                    has_bpf_cookie: true,
                    has_syscall_wrapper: true,
                    extra_kconfig: None,
                    system_kconfig: host.kconfig.as_deref(),
                    ksyms: &host,
                },
                core: &engine,
                map_handle: &|m| m as i32,
            };
            let linked = match obj.load(&load_host) {
                Ok(l) if pre_relocation_failure => {
                    let _ = l;
                    mismatched.push(format!(
                        "{id}: libbpf fails ({libbpf_errno}: {libbpf_error}), we load"
                    ));
                    continue;
                }
                Ok(l) => l,
                Err(err) => {
                    // Both refuse the object, or libbpf's own per-program checks
                    // (unknown type, unreferenced struct_ops) fail after relocation.
                    let refused_prog = e["failed_prog"].as_str() == Some(name.as_str())
                        && theirs["loaded"].as_bool() != Some(true)
                        && matches!(err, structops_obj::Error::Link { .. });
                    if (pre_relocation_failure || refused_prog)
                        && i64::from(err.libbpf_errno()) == libbpf_errno
                    {
                        matched.push(format!("{id} (both fail with errno {libbpf_errno}: {err})"));
                    } else {
                        mismatched.push(format!(
                            "{id}: we fail: {err} (errno {}); libbpf: errno {libbpf_errno} {libbpf_error}",
                            err.libbpf_errno()
                        ));
                    }
                    continue;
                }
            };
            let Some(ours) = linked.iter().find(|l| l.program == pi) else {
                mismatched.push(format!("{id}: we do not load it"));
                continue;
            };
            let mut got = insn_rows(&ours.insns);
            normalize_common(&mut got, |m| m);
            let prog = &obj.programs()[pi];
            let mut diffs = Vec::new();
            if u64::from(prog.prog_type().0) != as_u64(&theirs["type"]) {
                diffs.push(format!("type {} vs {}", prog.prog_type().0, theirs["type"]));
            }
            if u64::from(prog.expected_attach_type().0) != as_u64(&theirs["expected_attach_type"]) {
                diffs.push(format!(
                    "expected_attach_type {} vs {}",
                    prog.expected_attach_type().0,
                    theirs["expected_attach_type"]
                ));
            }
            if got.len() != want.len() {
                diffs.push(format!("{} insns vs {}", got.len(), want.len()));
            }
            if let Some(k) = got.iter().zip(&want).position(|(a, b)| a != b) {
                diffs.push(format!("insn {k}: ours {:?} libbpf {:?}", got[k], want[k]));
            }
            if diffs.is_empty() {
                matched.push(id);
            } else {
                mismatched.push(format!("{id}: {}", diffs.join("; ")));
            }
        }
    }
    println!(
        "load: {} programs match libbpf, {} differ, {} skipped",
        matched.len(),
        mismatched.len(),
        skipped.len()
    );
    for m in &matched {
        println!("MATCH {m}");
    }
    for s in &skipped {
        println!("SKIP {s}");
    }
    for m in &mismatched {
        println!("MISMATCH {m}");
    }
    assert!(
        mismatched.is_empty(),
        "{} programs differ from libbpf",
        mismatched.len()
    );
}
