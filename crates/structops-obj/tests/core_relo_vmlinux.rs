//! CO-RE relocation of real clang-compiled objects against this machine's kernel BTF
//! (`/sys/kernel/btf/vmlinux`), compared with what libbpf computes for the same objects.
//!
//! Objects: `tests/data/core/*.bpf.o` (sources beside them, rebuilt by
//! `tests/data/core/build.sh`) and the repository's CO-RE fixtures `bpf/core_*.bpf.o`.
//!
//! The oracle, in order of preference:
//! 1. live: `conformance/build/bin/libbpf_report load --each FILE` (libbpf 1.5 built by
//!    `conformance/build.sh`; needs root to load programs), whose per-program
//!    instructions are the ones libbpf submitted to the kernel after relocation;
//! 2. recorded: `tests/data/core/<name>.libbpf.json`, the same report recorded on a
//!    machine whose vmlinux BTF had the fingerprint in `tests/data/core/vmlinux.fnv`,
//!    used only when this machine's BTF has that fingerprint.
//!
//! Otherwise the comparison is skipped with a printed reason
//! (`STRUCTOPS_CORE_ORACLE=recorded` forces the recorded oracle). Independent checks against
//! offsets read from vmlinux BTF run whenever the kernel BTF is there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};
use structops_btf::Btf;
use structops_btf::ext::{BtfExt, CoreRelo};
use structops_isa::{Insn, opcode};
use structops_obj::core_relo::{CoreError, CoreRelocator, CoreTarget, POISON_IMM};

const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/core")
}

fn vmlinux() -> Option<(Vec<u8>, Btf)> {
    let bytes = match std::fs::read(VMLINUX) {
        Ok(b) => b,
        Err(e) => {
            println!("skipped: cannot read {VMLINUX}: {e}");
            return None;
        }
    };
    let btf = Btf::parse(&bytes).expect("vmlinux BTF parses");
    Some((bytes, btf))
}

/// FNV-1a 64 of the kernel BTF, to know whether recorded libbpf results apply here.
fn fingerprint(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:016x} {}", h, bytes.len())
}

/// One entry program of an object: its section, its first instruction in the section
/// and its instructions.
struct Prog {
    section: String,
    start: usize,
    insns: Vec<Insn>,
}

/// What the test needs from an object file.
struct Obj {
    btf: Btf,
    /// CO-RE relocations per section name, in record order.
    relos: BTreeMap<String, Vec<CoreRelo>>,
    progs: BTreeMap<String, Prog>,
}

fn load_obj(path: &Path) -> Obj {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = object::File::parse(&*data).expect("ELF parses");
    let btf_data = file.section_by_name(".BTF").expect(".BTF").data().unwrap();
    let ext_data = file
        .section_by_name(".BTF.ext")
        .expect(".BTF.ext")
        .data()
        .unwrap();
    let btf = Btf::parse(btf_data).expect("object BTF parses");
    let ext = BtfExt::parse(ext_data).expect(".BTF.ext parses");
    let mut relos = BTreeMap::new();
    for sec in &ext.core_relos {
        let name = btf.name(sec.sec_name_off).unwrap().to_string();
        relos.insert(name, sec.records.clone());
    }
    let mut progs = BTreeMap::new();
    for sym in file.symbols() {
        if sym.kind() != SymbolKind::Text || sym.size() == 0 {
            continue;
        }
        let Some(idx) = sym.section_index() else {
            continue;
        };
        let sec = file.section_by_index(idx).unwrap();
        let sec_name = sec.name().unwrap().to_string();
        if sec_name == ".text" {
            continue; // subprograms: libbpf appends them to their callers
        }
        let bytes = sec.data().unwrap();
        let start = sym.address() as usize;
        let end = start + sym.size() as usize;
        let insns = Insn::parse_slice(&bytes[start..end]).unwrap();
        progs.insert(
            sym.name().unwrap().to_string(),
            Prog {
                section: sec_name,
                start: start / 8,
                insns,
            },
        );
    }
    Obj { btf, relos, progs }
}

/// Relocates one program as libbpf does when it is the only one loaded (`--each`): a
/// fresh candidate cache, only this program's relocations, in record order. Returns the
/// patched instructions and the indices touched, or the first error.
fn relocate_prog(
    obj: &Obj,
    target: &CoreTarget<'_>,
    prog: &Prog,
) -> Result<(Vec<Insn>, Vec<usize>), CoreError> {
    let mut rel = CoreRelocator::new(&obj.btf, target);
    let mut insns = prog.insns.clone();
    let mut touched = Vec::new();
    let Some(relos) = obj.relos.get(&prog.section) else {
        return Ok((insns, touched));
    };
    for r in relos {
        let idx = (r.insn_off / 8) as usize;
        if idx < prog.start || idx >= prog.start + prog.insns.len() {
            continue;
        }
        let local = idx - prog.start;
        let ld_imm64 = insns[local].code == opcode::LD_IMM64;
        rel.relocate(&mut insns, local, r)?;
        touched.push(local);
        if ld_imm64 {
            touched.push(local + 1);
        }
    }
    Ok((insns, touched))
}

// ---------------------------------------------------------------------------------------
// A minimal JSON reader for libbpf_report's output.

#[derive(Debug, Clone)]
enum Json {
    Null,
    Bool(bool),
    Num(i64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(kv) => kv.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    fn arr(&self) -> &[Json] {
        match self {
            Json::Arr(a) => a,
            _ => &[],
        }
    }
    fn str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }
    fn num(&self) -> i64 {
        match self {
            Json::Num(n) => *n,
            _ => panic!("not a number: {self:?}"),
        }
    }
}

struct Reader<'a> {
    s: &'a [u8],
    i: usize,
}

impl Reader<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) {
        self.ws();
        assert_eq!(
            self.s[self.i], c,
            "JSON: expected {:?} at {}",
            c as char, self.i
        );
        self.i += 1;
    }
    fn value(&mut self) -> Json {
        self.ws();
        match self.s[self.i] {
            b'{' => {
                self.i += 1;
                let mut kv = Vec::new();
                self.ws();
                if self.s[self.i] == b'}' {
                    self.i += 1;
                    return Json::Obj(kv);
                }
                loop {
                    self.ws();
                    let Json::Str(k) = self.value() else {
                        panic!("JSON: key")
                    };
                    self.eat(b':');
                    kv.push((k, self.value()));
                    self.ws();
                    self.i += 1;
                    if self.s[self.i - 1] == b'}' {
                        return Json::Obj(kv);
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut a = Vec::new();
                self.ws();
                if self.s[self.i] == b']' {
                    self.i += 1;
                    return Json::Arr(a);
                }
                loop {
                    a.push(self.value());
                    self.ws();
                    self.i += 1;
                    if self.s[self.i - 1] == b']' {
                        return Json::Arr(a);
                    }
                }
            }
            b'"' => {
                self.i += 1;
                let mut out = String::new();
                loop {
                    let c = self.s[self.i];
                    self.i += 1;
                    match c {
                        b'"' => return Json::Str(out),
                        b'\\' => {
                            let e = self.s[self.i];
                            self.i += 1;
                            match e {
                                b'n' => out.push('\n'),
                                b't' => out.push('\t'),
                                b'r' => out.push('\r'),
                                b'u' => {
                                    let hex =
                                        std::str::from_utf8(&self.s[self.i..self.i + 4]).unwrap();
                                    self.i += 4;
                                    let cp = u32::from_str_radix(hex, 16).unwrap();
                                    out.push(char::from_u32(cp).unwrap_or('?'));
                                }
                                other => out.push(other as char),
                            }
                        }
                        _ => {
                            // copy a whole UTF-8 sequence
                            let start = self.i - 1;
                            let mut end = self.i;
                            while end < self.s.len() && (self.s[end] & 0xc0) == 0x80 {
                                end += 1;
                            }
                            out.push_str(std::str::from_utf8(&self.s[start..end]).unwrap());
                            self.i = end;
                        }
                    }
                }
            }
            b't' => {
                self.i += 4;
                Json::Bool(true)
            }
            b'f' => {
                self.i += 5;
                Json::Bool(false)
            }
            b'n' => {
                self.i += 4;
                Json::Null
            }
            _ => {
                let start = self.i;
                while self.i < self.s.len()
                    && (self.s[self.i] == b'-' || self.s[self.i].is_ascii_digit())
                {
                    self.i += 1;
                }
                let t = std::str::from_utf8(&self.s[start..self.i]).unwrap();
                Json::Num(t.parse().unwrap_or_else(|_| panic!("JSON number {t:?}")))
            }
        }
    }
}

fn parse_json(text: &str) -> Json {
    Reader {
        s: text.as_bytes(),
        i: 0,
    }
    .value()
}

/// libbpf's view of one program.
#[derive(Debug)]
struct LibbpfProg {
    ok: bool,
    errno: i64,
    error: String,
    insns: Option<Vec<Insn>>,
}

/// `libbpf_report load --each` output → program name → result.
fn libbpf_programs(report: &Json) -> BTreeMap<String, LibbpfProg> {
    let mut out = BTreeMap::new();
    for each in report.get("each").expect("each").arr() {
        let ok = matches!(each.get("ok"), Some(Json::Bool(true)));
        let errno = each.get("errno").map_or(0, Json::num);
        let error = each
            .get("error")
            .and_then(Json::str)
            .unwrap_or("")
            .to_string();
        for p in each.get("programs").map_or(&[][..], Json::arr) {
            let name = p.get("name").and_then(Json::str).unwrap().to_string();
            let insns = p.get("insns").map(|a| {
                a.arr()
                    .iter()
                    .map(|i| {
                        let f = i.arr();
                        Insn::new(
                            f[0].num() as u8,
                            f[1].num() as u8,
                            f[2].num() as u8,
                            f[3].num() as i16,
                            f[4].num() as i32,
                        )
                    })
                    .collect()
            });
            out.insert(
                name,
                LibbpfProg {
                    ok,
                    errno,
                    error: error.clone(),
                    insns,
                },
            );
        }
    }
    out
}

fn libbpf_report_bin() -> Option<PathBuf> {
    // STRUCTOPS_CORE_ORACLE=recorded exercises the recorded fallback.
    if std::env::var("STRUCTOPS_CORE_ORACLE").as_deref() == Ok("recorded") {
        return None;
    }
    let p = repo_root().join("conformance/build/bin/libbpf_report");
    if !p.exists() {
        return None;
    }
    // Loading programs needs root (CAP_BPF and friends).
    let euid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&euid.stdout).trim() != "0" {
        println!("note: not root, libbpf_report cannot load programs");
        return None;
    }
    Some(p)
}

/// The libbpf oracle for `obj_path`: live if possible, else recorded if the kernel BTF
/// is the recorded one. `None` (with a printed reason) if neither is available.
fn libbpf_oracle(obj_path: &Path, vmlinux_bytes: &[u8]) -> Option<Json> {
    if let Some(bin) = libbpf_report_bin() {
        let out = Command::new(&bin)
            .arg("load")
            .arg("--each")
            .arg(obj_path)
            .output()
            .expect("run libbpf_report");
        assert!(
            out.status.success(),
            "libbpf_report failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // `tests/data/core/build.sh` sets this to refresh the recordings.
        if std::env::var_os("STRUCTOPS_RECORD_CORE").is_some() && obj_path.starts_with(data_dir()) {
            let stem = obj_path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap()
                .trim_end_matches(".bpf.o");
            let dir = data_dir();
            std::fs::write(dir.join(format!("{stem}.libbpf.json")), &text).unwrap();
            std::fs::write(dir.join("vmlinux.fnv"), fingerprint(vmlinux_bytes) + "\n").unwrap();
        }
        return Some(parse_json(&text));
    }
    let stem = obj_path.file_name()?.to_str()?.trim_end_matches(".bpf.o");
    let recorded = data_dir().join(format!("{stem}.libbpf.json"));
    let fp_file = data_dir().join("vmlinux.fnv");
    let (Ok(json), Ok(fp)) = (
        std::fs::read_to_string(&recorded),
        std::fs::read_to_string(&fp_file),
    ) else {
        println!(
            "skipped libbpf comparison for {}: no libbpf_report and no recording",
            obj_path.display()
        );
        return None;
    };
    if fp.trim() != fingerprint(vmlinux_bytes) {
        println!(
            "skipped libbpf comparison for {}: no libbpf_report, and this kernel's BTF is not the recorded one",
            obj_path.display()
        );
        return None;
    }
    Some(parse_json(&json))
}

/// Every object this test relocates.
fn objects() -> Vec<PathBuf> {
    let mut v = vec![
        data_dir().join("fields.bpf.o"),
        data_dir().join("types.bpf.o"),
    ];
    for name in ["core_local.bpf.o", "core_vmlinux.bpf.o"] {
        let p = repo_root().join("bpf").join(name);
        if p.exists() {
            v.push(p);
        }
    }
    v
}

/// Counts of what a comparison with libbpf covered.
#[derive(Default)]
struct Compared {
    insns: usize,
    progs: usize,
    failures: usize,
}

/// Relocates every entry program of `obj` against `target` and compares with libbpf's
/// report for the same object and target: every instruction we patch must equal
/// libbpf's, nothing else may change, and where we fail libbpf must fail CO-RE with the
/// same errno. With `whole`, every program must equal libbpf's instruction for
/// instruction (for objects libbpf changes in no other way).
fn compare_with_libbpf(
    what: &str,
    obj: &Obj,
    target: &CoreTarget<'_>,
    report: &Json,
    whole: bool,
    seen: &mut Compared,
) {
    let libbpf = libbpf_programs(report);
    for (name, prog) in &obj.progs {
        let Some(lb) = libbpf.get(name) else {
            panic!("{what}: libbpf reports no program {name}");
        };
        match relocate_prog(obj, target, prog) {
            Ok((insns, touched)) => {
                let Some(lb_insns) = &lb.insns else {
                    panic!(
                        "{what}: {name}: we relocated it, libbpf did not: {}",
                        lb.error
                    );
                };
                assert!(
                    !lb.error.contains("failed to relocate"),
                    "{what}: {name}: we relocated it, libbpf failed CO-RE: {}",
                    lb.error
                );
                for &k in &touched {
                    assert_eq!(
                        Some(&insns[k]),
                        lb_insns.get(k),
                        "{what}: {name}: insn #{k} differs from libbpf's"
                    );
                    seen.insns += 1;
                }
                for (k, (a, b)) in insns.iter().zip(&prog.insns).enumerate() {
                    if !touched.contains(&k) {
                        assert_eq!(a, b, "{what}: {name}: insn #{k} changed");
                    }
                }
                if whole {
                    assert_eq!(
                        &insns, lb_insns,
                        "{what}: {name}: program differs from libbpf's"
                    );
                }
            }
            Err(e) => {
                assert!(
                    !lb.ok
                        && lb.errno == i64::from(e.errno())
                        && lb.error.contains("failed to relocate"),
                    "{what}: {name}: we failed ({e}, errno {}), libbpf: ok={} errno={} {}",
                    e.errno(),
                    lb.ok,
                    lb.errno,
                    lb.error
                );
                println!("{what}: {name}: both fail: {e}");
                seen.failures += 1;
            }
        }
        seen.progs += 1;
    }
}

#[test]
fn relocations_equal_libbpf() {
    let Some((vm_bytes, vm)) = vmlinux() else {
        return;
    };
    let target = CoreTarget::new(&vm);
    let mut seen = Compared::default();
    for path in objects() {
        let obj = load_obj(&path);
        let Some(report) = libbpf_oracle(&path, &vm_bytes) else {
            continue;
        };
        println!(
            "{}: {} programs, {} CO-RE relocations",
            path.display(),
            obj.progs.len(),
            obj.relos.values().map(Vec::len).sum::<usize>()
        );
        let whole = path.starts_with(data_dir());
        compare_with_libbpf(
            &path.display().to_string(),
            &obj,
            &target,
            &report,
            whole,
            &mut seen,
        );
    }
    println!(
        "compared {} relocated insns in {} programs with libbpf",
        seen.insns, seen.progs
    );
}

/// libbpf's own CO-RE conformance suite: the kernel selftests' `test_core_reloc_*`
/// programs, each relocated against every `btf__core_reloc_<name>*` target BTF (the
/// variants with different layouts, flavors, missing and incompatible members,
/// ambiguous duplicates, ...), as `prog_tests/core_reloc.c` does with
/// `btf_custom_path`. Objects come from `conformance/build.sh`'s corpus; libbpf is run
/// live through `libbpf_report --btf`.
#[test]
fn selftest_core_reloc_suite_equals_libbpf() {
    let corpus = repo_root().join("conformance/build/corpus");
    let Ok(dir) = std::fs::read_dir(&corpus) else {
        println!(
            "skipped: no {} (run conformance/build.sh)",
            corpus.display()
        );
        return;
    };
    let Some(bin) = libbpf_report_bin() else {
        println!("skipped: conformance/build/bin/libbpf_report unavailable");
        return;
    };
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    let progs: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("test_core_reloc_") && n.ends_with(".bpf.o"))
        .collect();
    let vm = vmlinux();
    let mut seen = Compared::default();
    let mut pairs = 0usize;
    for prog in progs {
        let base = prog
            .trim_start_matches("test_core_reloc_")
            .trim_end_matches(".bpf.o");
        let base = base
            .strip_suffix("_direct")
            .or_else(|| base.strip_suffix("_probed"))
            .unwrap_or(base);
        let prefix = format!("btf__core_reloc_{base}");
        let mut targets: Vec<PathBuf> = names
            .iter()
            .filter(|n| {
                n.strip_prefix(&prefix)
                    .is_some_and(|rest| rest == ".bpf.o" || rest.starts_with("__"))
            })
            .map(|n| corpus.join(n))
            .collect();
        if targets.is_empty() {
            // test_core_reloc_kernel and _module: relocated against the kernel
            if vm.is_none() {
                continue;
            }
            targets.push(PathBuf::from(VMLINUX));
        }
        let obj = load_obj(&corpus.join(prog));
        for target_path in targets {
            let target_btf = if target_path == Path::new(VMLINUX) {
                vm.as_ref().map(|(_, b)| b.clone()).unwrap()
            } else {
                let data = std::fs::read(&target_path).unwrap();
                let file = object::File::parse(&*data).unwrap();
                Btf::parse(file.section_by_name(".BTF").unwrap().data().unwrap()).unwrap()
            };
            let target = CoreTarget::new(&target_btf);
            let mut cmd = Command::new(&bin);
            cmd.arg("load").arg("--each");
            if target_path != Path::new(VMLINUX) {
                cmd.arg("--btf").arg(&target_path);
            }
            let out = cmd.arg(corpus.join(prog)).output().unwrap();
            assert!(out.status.success(), "libbpf_report on {prog}");
            let report = parse_json(&String::from_utf8_lossy(&out.stdout));
            let what = format!(
                "{prog} against {}",
                target_path.file_name().unwrap().to_string_lossy()
            );
            compare_with_libbpf(&what, &obj, &target, &report, false, &mut seen);
            pairs += 1;
        }
    }
    println!(
        "core_reloc suite: {pairs} (program, target) pairs, {} programs, {} relocated insns equal, {} failures agreed",
        seen.progs, seen.insns, seen.failures
    );
    assert!(pairs > 50, "only {pairs} pairs");
}

/// Independent of libbpf: the offsets patched into `fields.bpf.o`'s loads equal the
/// member offsets read from vmlinux BTF, and the poisoned / resized loads are the ones
/// the kernel's types call for.
#[test]
fn fields_object_matches_vmlinux_facts() {
    let Some((_, vm)) = vmlinux() else {
        return;
    };
    let target = CoreTarget::new(&vm);
    let obj = load_obj(&data_dir().join("fields.bpf.o"));
    let off = |ty: &str, member: &str| -> u64 {
        let id = vm
            .find_by_name_kind(ty, structops_btf::Kind::Struct)
            .unwrap();
        let (_, bits) = vm.member_by_name(id, member).unwrap().unwrap();
        u64::from(bits / 8)
    };

    let prog = &obj.progs["direct_loads"];
    let (insns, touched) = relocate_prog(&obj, &target, prog).unwrap();
    let offs: Vec<u64> = touched.iter().map(|&k| insns[k].off as u64).collect();
    let want_any = [
        off("task_struct", "pid"),
        off("task_struct", "tgid"),
        off("task_struct", "real_parent"),
        off("task_struct", "comm") + 3,
        off("task_struct", "se") + off("sched_entity", "vruntime"),
        off("task_struct", "se") + off("sched_entity", "load") + off("load_weight", "weight"),
        off("task_struct", "utime"),
    ];
    for w in want_any {
        assert!(offs.contains(&w), "offset {w} not patched in: {offs:?}");
    }
    // utime: u32 locally, u64 in the kernel: the load became 8 bytes wide
    let utime = touched
        .iter()
        .find(|&&k| insns[k].off as u64 == off("task_struct", "utime"))
        .unwrap();
    assert_eq!(insns[*utime].code, opcode::LDX | opcode::MEM | opcode::DW);

    // nvcsw: signed locally, unsigned long in the kernel: poisoned
    let prog = &obj.progs["signed_resize"];
    let (insns, touched) = relocate_prog(&obj, &target, prog).unwrap();
    assert_eq!(touched.len(), 1);
    assert_eq!(
        insns[touched[0]],
        Insn::new(opcode::CALL_CODE, 0, 0, 0, POISON_IMM)
    );

    // the guarded read of a missing field: exists -> 0, offset poisoned
    let prog = &obj.progs["missing_field_guarded"];
    let (insns, touched) = relocate_prog(&obj, &target, prog).unwrap();
    let poisoned = touched
        .iter()
        .filter(|&&k| insns[k].imm == POISON_IMM && insns[k].code == opcode::CALL_CODE)
        .count();
    assert_eq!(poisoned, 1);
}

/// Resolving every relocation of every object costs one index of vmlinux, built once.
#[test]
fn target_index_is_shared() {
    let Some((_, vm)) = vmlinux() else {
        return;
    };
    let target = CoreTarget::new(&vm);
    let task = vm
        .find_by_name_kind("task_struct", structops_btf::Kind::Struct)
        .unwrap();
    let mut b = structops_btf::BtfBuilder::new();
    let int = b.add_int("int", 4, structops_btf::INT_SIGNED);
    let local = b.add_struct("task_struct___x", 4, &[("pid", int, 0)]);
    let local_btf = b.build();
    assert_eq!(target.candidates(&local_btf, local).unwrap(), vec![task]);
}

/// Self-consistency on the whole kernel BTF: with vmlinux as both the local and the
/// target BTF, every member of every named struct and union relocates to itself (or
/// fails with a typed error when the kernel has several differing types of that name),
/// and nothing panics.
#[test]
fn vmlinux_against_itself() {
    let Some((_, vm)) = vmlinux() else {
        return;
    };
    let mut b = structops_btf::BtfBuilder::from_btf(&vm);
    let max_members = vm
        .types()
        .iter()
        .filter_map(|t| t.composite())
        .map(|c| c.members.len())
        .max()
        .unwrap_or(0);
    let access: Vec<u32> = (0..max_members)
        .map(|i| b.add_string(&format!("0:{i}")))
        .collect();
    let zero = b.add_string("0");
    let local = b.build();
    let target = CoreTarget::new(&vm);
    let mut rel = CoreRelocator::new(&local, &target);
    let (mut same, mut ambiguous, mut checked_types) = (0usize, 0usize, 0usize);
    for (id, t) in vm.types().iter().enumerate() {
        let Some(c) = t.composite() else { continue };
        if t.name_off == 0 {
            continue;
        }
        let id = id as u32;
        checked_types += 1;
        let r = CoreRelo {
            insn_off: 0,
            type_id: id,
            access_str_off: zero,
            kind: structops_btf::ext::CoreReloKind::TypeSize,
        };
        match rel.resolve(&r) {
            Ok(res) => assert_eq!(res.values.orig_val, res.values.new_val, "size of [{id}]"),
            // several kernel types of this name with different sizes
            Err(CoreError::DecisionAmbiguity { .. }) => {
                let name = vm.type_name(id).unwrap();
                assert!(vm.ids_by_name(name).len() > 1, "[{id}] {name}");
                ambiguous += 1;
            }
            Err(e) => panic!("type [{id}]: {e}"),
        }
        for (i, m) in c.members.iter().enumerate() {
            // Relocations never end at an anonymous member (clang names the member
            // inside it), and libbpf would give nonsense for one.
            if m.name_off == 0 {
                continue;
            }
            for kind in [
                structops_btf::ext::CoreReloKind::FieldByteOffset,
                structops_btf::ext::CoreReloKind::FieldLshiftU64,
            ] {
                let r = CoreRelo {
                    insn_off: 0,
                    type_id: id,
                    access_str_off: access[i],
                    kind,
                };
                match rel.resolve(&r) {
                    Ok(res) => {
                        assert!(!res.values.poison, "[{id}] member {i} {kind:?}");
                        assert_eq!(res.values.orig_val, res.values.new_val, "[{id}] member {i}");
                        same += 1;
                    }
                    Err(
                        CoreError::FieldOffsetAmbiguity { .. }
                        | CoreError::DecisionAmbiguity { .. },
                    ) => ambiguous += 1,
                    Err(e) => panic!("[{id}] member {i} {kind:?}: {e}"),
                }
            }
        }
    }
    println!(
        "vmlinux against itself: {checked_types} types, {same} relocations equal, {ambiguous} ambiguous"
    );
    assert!(same > 10_000);
}
