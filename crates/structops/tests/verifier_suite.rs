//! The project's verifier suite: small accept/reject programs across every rule family
//! of the verifier (issue 4), each with the verdict, errno and log message the real
//! kernel gives. The cases live in `tests/verifier_cases/*.txt`; their format is
//! described in `tests/verifier_cases/README.md`.
//!
//! Two runs over the same cases:
//!
//! - **Kernel** ([`kernel_agrees_with_every_case`]): every case whose program type the
//!   running kernel can load standalone is loaded with `BPF_PROG_LOAD` (log level 1,
//!   64 MiB log buffer); the kernel's verdict, errno and last meaningful log line must
//!   equal the case's. struct_ops cases load against the kernel's own `bpf_dummy_ops`
//!   (`attach_btf_id` = its vmlinux type id, `expected_attach_type` = member index).
//!   Needs root and BPF; skips with a printed reason otherwise.
//! - **Ours** ([`runtime_agrees_with_every_case`]): the same case loaded into
//!   [`structops::Runtime`] with `prog_load` (maps from `Runtime::map_create`, the
//!   vmlinux BTF as host BTF), compared the same way. The runtime registers the kernel's
//!   two struct_ops types as the library's twins against vmlinux — `bpf_dummy_ops`
//!   ([`structops::struct_ops::dummy`]) and `tcp_congestion_ops` without a TCP host
//!   ([`structops::struct_ops::tcp_ca`]) — with the TCP kfuncs and `bpf_tcp_send_ack`
//!   registered for struct_ops programs ([`register_kernel_struct_ops`]). Every case
//!   outside the `ALLOWLIST` must agree; set `STRUCTOPS_VERIFIER_SUITE_STRICT=1` to make
//!   the allowlisted ones fail too.
//!
//! Run: `cargo test -p structops --test verifier_suite -- --nocapture`
//! (`STRUCTOPS_VERIFIER_SUITE_FILTER=substr` runs only cases whose `file:name` contains
//! `substr`).

#[path = "common/kernel.rs"]
#[expect(dead_code, reason = "shared bpf(2) helpers, not all used here")]
mod kernel;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use structops::helpers::{Arg, ArgType, HelperProto, HostFn, HostHelper, Ret};
use structops::struct_ops::tcp_ca;
use structops::{Errno, KfuncFlags, MapCreateAttr, ProgLoadAttr, ProgType, Runtime, RuntimeConfig};
use structops_btf::ext::FuncInfo;
use structops_btf::{Btf, BtfBuilder, INT_SIGNED, Kind, Linkage};
use structops_isa::{AsmError, Insn, assemble};
use structops_vm::VmError;

/// `BPF_PROG_LOAD`.
const BPF_PROG_LOAD: u32 = 5;
/// `BPF_F_SLEEPABLE`.
const BPF_F_SLEEPABLE: u32 = 1 << 4;
/// The kernel's log buffer: large enough for a level-1 log of a program that hits the
/// 1,000,000 processed-instruction limit (the log is not truncated, so no `ENOSPC`).
const LOG_SIZE: usize = 64 << 20;

/// What a case expects.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Expect {
    Accept,
    Reject { errno: Errno, msg: String },
}

/// One map a case creates.
#[derive(Clone, Debug)]
struct MapSpec {
    name: String,
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    flags: u32,
}

/// One `.raw` instruction slot.
#[derive(Clone, Copy, Debug)]
struct RawSlot {
    /// Index of the instruction line (among instruction lines) it replaces.
    op_index: usize,
    insn: Insn,
}

/// One case of a case file.
#[derive(Clone, Debug)]
struct Case {
    file: String,
    line: usize,
    name: String,
    prog_type: ProgType,
    /// `(struct name, member name)` of a struct_ops program.
    attach: Option<(String, String)>,
    license: String,
    prog_flags: u32,
    maps: Vec<MapSpec>,
    expect: Expect,
    /// Why the kernel does not load this case, if it does not.
    kernel_skip: Option<String>,
    /// Whether to load a program BTF with one `FUNC` per subprogram and func_info
    /// (`btf: func_info`; callbacks and some subprogram features need it).
    func_info: bool,
    /// Substrings that must appear somewhere in the log (`log:` lines).
    log_has: Vec<String>,
    /// First line of the program text in the file.
    prog_line: usize,
    /// Program lines (with `#` comment lines blanked so line numbers stay).
    prog: Vec<String>,
}

impl Case {
    fn id(&self) -> String {
        format!("{}:{} {}", self.file, self.line, self.name)
    }
}

/// A parse error in a case file, with the file and line.
#[derive(Debug)]
struct CaseError {
    file: String,
    line: usize,
    msg: String,
}

impl fmt::Display for CaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.msg)
    }
}

fn prog_type_by_name(s: &str) -> Option<(ProgType, bool)> {
    // (type, kernel can load it standalone)
    Some(match s {
        "socket_filter" => (ProgType::SOCKET_FILTER, true),
        "kprobe" => (ProgType::KPROBE, true),
        "sched_cls" => (ProgType::SCHED_CLS, true),
        "sched_act" => (ProgType::SCHED_ACT, true),
        "tracepoint" => (ProgType::TRACEPOINT, true),
        "xdp" => (ProgType::XDP, true),
        "perf_event" => (ProgType::PERF_EVENT, true),
        "cgroup_skb" => (ProgType::CGROUP_SKB, true),
        "raw_tracepoint" => (ProgType(17), true),
        "struct_ops" => (ProgType::STRUCT_OPS, true),
        "syscall" => (ProgType(31), true),
        _ => return None,
    })
}

fn map_type_by_name(s: &str) -> Option<u32> {
    Some(match s {
        "hash" => 1,
        "array" => 2,
        "prog_array" => 3,
        "percpu_hash" => 5,
        "percpu_array" => 6,
        "lru_hash" => 9,
        "queue" => 22,
        "stack" => 23,
        "ringbuf" => 27,
        "sk_storage" => SK_STORAGE,
        _ => return None,
    })
}

/// `BPF_MAP_TYPE_SK_STORAGE`.
const SK_STORAGE: u32 = 24;

/// The BTF a local-storage map must name (`btf_key_type_id` = 1, an `int`;
/// `btf_value_type_id` = 2, an array of `value_size / 4` ints): `None` for map types
/// created without BTF.
fn map_btf(m: &MapSpec) -> Option<Vec<u8>> {
    if m.map_type != SK_STORAGE {
        return None;
    }
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, INT_SIGNED);
    b.add_array(int, int, m.value_size / 4);
    Some(b.build().encode())
}

fn errno_by_name(s: &str) -> Option<Errno> {
    Some(match s {
        "EPERM" => Errno::EPERM,
        "ENOENT" => Errno::ENOENT,
        "E2BIG" => Errno::E2BIG,
        "EBADF" => Errno::EBADF,
        "EACCES" => Errno::EACCES,
        "EFAULT" => Errno::EFAULT,
        "EINVAL" => Errno::EINVAL,
        "ENOSPC" => Errno::ENOSPC,
        "ENOTSUPP" => Errno::ENOTSUPP,
        "EOPNOTSUPP" => Errno::EOPNOTSUPP,
        "EBUSY" => Errno::EBUSY,
        "ELOOP" => Errno::ELOOP,
        _ => return None,
    })
}

fn parse_u32(s: &str) -> Option<u32> {
    match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Parses one case file. Format: see `tests/verifier_cases/README.md`.
fn parse_cases(file: &str, text: &str) -> Result<Vec<Case>, CaseError> {
    let err = |line: usize, msg: String| CaseError {
        file: file.to_owned(),
        line,
        msg,
    };
    let mut cases: Vec<Case> = Vec::new();
    // (case, in header?)
    let mut cur: Option<(Case, bool, bool)> = None; // (case, in_header, has_expect)
    let finish = |c: Option<(Case, bool, bool)>, cases: &mut Vec<Case>| -> Result<(), CaseError> {
        if let Some((case, in_header, has_expect)) = c {
            if in_header {
                return Err(err(case.line, "case without `---` and program".into()));
            }
            if !has_expect {
                return Err(err(case.line, "case without `expect:`".into()));
            }
            if !case.prog.iter().any(|l| !l.trim().is_empty()) {
                return Err(err(case.line, "case with an empty program".into()));
            }
            if case.prog_type == ProgType::STRUCT_OPS && case.attach.is_none() {
                return Err(err(case.line, "struct_ops case without `attach:`".into()));
            }
            cases.push(case);
        }
        Ok(())
    };
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if let Some(name) = raw.strip_prefix("###") {
            finish(cur.take(), &mut cases)?;
            let name = name.trim();
            if name.is_empty() {
                return Err(err(line, "case without a name".into()));
            }
            if cases.iter().any(|c| c.name == name) {
                return Err(err(line, format!("duplicate case name `{name}`")));
            }
            cur = Some((
                Case {
                    file: file.to_owned(),
                    line,
                    name: name.to_owned(),
                    prog_type: ProgType::SOCKET_FILTER,
                    attach: None,
                    license: "GPL".into(),
                    prog_flags: 0,
                    maps: Vec::new(),
                    expect: Expect::Accept,
                    kernel_skip: None,
                    log_has: Vec::new(),
                    func_info: false,
                    prog_line: 0,
                    prog: Vec::new(),
                },
                true,
                false,
            ));
            continue;
        }
        let trimmed = raw.trim();
        let Some((case, in_header, has_expect)) = cur.as_mut() else {
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            return Err(err(line, "text before the first `### name`".into()));
        };
        if !*in_header {
            let keep = if trimmed.starts_with('#') { "" } else { raw };
            case.prog.push(keep.to_owned());
            continue;
        }
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if trimmed == "---" {
            *in_header = false;
            case.prog_line = line + 1;
            continue;
        }
        let Some((key, value)) = trimmed.split_once(':') else {
            return Err(err(line, format!("`key: value` expected, got `{trimmed}`")));
        };
        let value = value.trim();
        match key.trim() {
            "type" => {
                case.prog_type = prog_type_by_name(value)
                    .ok_or_else(|| err(line, format!("unknown program type `{value}`")))?
                    .0;
            }
            "attach" => {
                let (s, m) = value
                    .split_once('.')
                    .ok_or_else(|| err(line, "attach: STRUCT.MEMBER expected".into()))?;
                case.attach = Some((s.to_owned(), m.to_owned()));
            }
            "license" => case.license = value.to_owned(),
            "flags" => {
                for f in value.split_whitespace() {
                    match f {
                        "sleepable" => case.prog_flags |= BPF_F_SLEEPABLE,
                        other => {
                            case.prog_flags |= parse_u32(other)
                                .ok_or_else(|| err(line, format!("unknown flag `{other}`")))?;
                        }
                    }
                }
            }
            "map" => {
                let w: Vec<&str> = value.split_whitespace().collect();
                let bad = || err(line, "map: NAME TYPE KEY VALUE ENTRIES [FLAGS]".into());
                if w.len() != 5 && w.len() != 6 {
                    return Err(bad());
                }
                let map_type = map_type_by_name(w[1])
                    .ok_or_else(|| err(line, format!("unknown map type `{}`", w[1])))?;
                let num = |s: &str| parse_u32(s).ok_or_else(bad);
                case.maps.push(MapSpec {
                    name: w[0].to_owned(),
                    map_type,
                    key_size: num(w[2])?,
                    value_size: num(w[3])?,
                    max_entries: num(w[4])?,
                    flags: if w.len() == 6 { num(w[5])? } else { 0 },
                });
            }
            "expect" => {
                *has_expect = true;
                case.expect = if value == "accept" {
                    Expect::Accept
                } else if let Some(rest) = value.strip_prefix("reject") {
                    let rest = rest.trim();
                    let (e, msg) = rest.split_once(' ').unwrap_or((rest, ""));
                    let errno = errno_by_name(e)
                        .ok_or_else(|| err(line, format!("unknown errno `{e}`")))?;
                    let msg = msg.trim();
                    if msg.is_empty() {
                        return Err(err(line, "reject without a message".into()));
                    }
                    Expect::Reject {
                        errno,
                        msg: msg.to_owned(),
                    }
                } else {
                    return Err(err(
                        line,
                        format!("accept or reject expected, got `{value}`"),
                    ));
                };
            }
            "btf" => {
                if value != "func_info" {
                    return Err(err(line, "btf: func_info expected".into()));
                }
                case.func_info = true;
            }
            "log" => {
                if value.is_empty() {
                    return Err(err(line, "log: SUBSTRING expected".into()));
                }
                case.log_has.push(value.to_owned());
            }
            "kernel" => {
                let reason = value
                    .strip_prefix("skip")
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .ok_or_else(|| err(line, "kernel: skip REASON expected".into()))?;
                case.kernel_skip = Some(reason.to_owned());
            }
            other => return Err(err(line, format!("unknown key `{other}`"))),
        }
    }
    finish(cur.take(), &mut cases)?;
    Ok(cases)
}

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/verifier_cases")
}

/// Every case of every `*.txt` file, in file-name order; a parse error names file:line.
fn load_all_cases() -> Result<Vec<Case>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .map_err(|e| format!("{}: {e}", cases_dir().display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    let mut all = Vec::new();
    for f in files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&f).map_err(|e| format!("{name}: {e}"))?;
        all.extend(parse_cases(&name, &text).map_err(|e| e.to_string())?);
    }
    let filter = std::env::var("STRUCTOPS_VERIFIER_SUITE_FILTER").unwrap_or_default();
    all.retain(|c| c.id().contains(&filter));
    Ok(all)
}

/// Host facts the assembler pre-processing needs.
struct Resolver<'a> {
    /// Map name → fd (kernel fd or runtime fd).
    maps: BTreeMap<String, i32>,
    vmlinux: Option<&'a Btf>,
}

/// Assembles a case's program: `map[NAME]` / `map[NAME]+OFF` become the map's fd (or
/// direct value), `call kfunc:NAME` the vmlinux `FUNC` id, `.raw CODE DST SRC OFF IMM`
/// lines an arbitrary slot (the assembler only writes valid instructions).
fn assemble_case(case: &Case, r: &Resolver<'_>) -> Result<Vec<Insn>, String> {
    let mut text = String::new();
    let mut raws: Vec<RawSlot> = Vec::new();
    let mut op_index = 0usize;
    // `subprog[LABEL]` loads: (op index, label), and label → op index.
    let mut func_refs: Vec<(usize, String)> = Vec::new();
    let mut labels: BTreeMap<String, usize> = BTreeMap::new();
    for (i, line) in case.prog.iter().enumerate() {
        let file_line = case.prog_line + i;
        let at = |m: String| format!("{}:{}: {m}", case.file, file_line);
        let body = line.split(';').next().unwrap_or("").trim();
        if let Some(rest) = body.strip_prefix(".raw") {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let parse = |s: &str| -> Option<i64> {
                let (neg, s) = match s.strip_prefix('-') {
                    Some(s) => (true, s),
                    None => (false, s),
                };
                let v = match s.strip_prefix("0x") {
                    Some(h) => i64::from_str_radix(h, 16).ok()?,
                    None => s.parse().ok()?,
                };
                Some(if neg { -v } else { v })
            };
            let v: Option<Vec<i64>> = f.iter().map(|s| parse(s)).collect();
            let v = v
                .filter(|v| v.len() == 5)
                .ok_or_else(|| at(".raw CODE DST SRC OFF IMM expected".into()))?;
            raws.push(RawSlot {
                op_index,
                insn: Insn::new(v[0] as u8, v[1] as u8, v[2] as u8, v[3] as i16, v[4] as i32),
            });
            op_index += 1;
            text.push_str("r0 = 0\n");
            continue;
        }
        let is_label = body.ends_with(':') && !body.contains(' ');
        if is_label {
            labels.insert(body.trim_end_matches(':').to_owned(), op_index);
        }
        let mut line = substitute(line, r).map_err(at)?;
        if let Some(pos) = line.find("subprog[") {
            let end = line[pos..]
                .find(']')
                .ok_or_else(|| at("unterminated subprog[".into()))?
                + pos;
            let label = line[pos + 8..end].trim().to_owned();
            if label.parse::<i64>().is_err() {
                func_refs.push((op_index, label));
                line = format!("{}subprog[0]{}", &line[..pos], &line[end + 1..]);
            }
        }
        if !body.is_empty() && !is_label {
            op_index += 1;
        }
        text.push_str(&line);
        text.push('\n');
    }
    let prog = assemble(&text).map_err(|e| {
        // Assembler lines count from the first program line.
        let n = match &e {
            AsmError::Syntax { line, .. }
            | AsmError::OutOfRange { line, .. }
            | AsmError::UnknownLabel { line, .. }
            | AsmError::DuplicateLabel { line, .. }
            | AsmError::OpcodeMismatch { line, .. }
            | AsmError::Invalid { line, .. } => *line,
        };
        format!(
            "{}:{}: {e} (case {})",
            case.file,
            case.prog_line + n - 1,
            case.name
        )
    })?;
    let mut insns = prog.encode();
    for raw in raws {
        let pc = prog
            .pc_of(raw.op_index)
            .ok_or_else(|| format!("{}: .raw slot out of range", case.id()))?;
        if let Some(slot) = insns.get_mut(pc) {
            *slot = raw.insn;
        }
    }
    for (idx, label) in func_refs {
        let target_idx = labels
            .get(&label)
            .ok_or_else(|| format!("{}: unknown label `{label}` in subprog[]", case.id()))?;
        let target = prog.pc_of(*target_idx).unwrap_or(prog.slot_count());
        let pc = prog
            .pc_of(idx)
            .ok_or_else(|| format!("{}: subprog[] out of range", case.id()))?;
        if let Some(slot) = insns.get_mut(pc) {
            slot.imm = target as i32 - pc as i32 - 1;
        }
    }
    Ok(insns)
}

/// A program BTF with one static `int f<N>(void)` per subprogram start (pseudo calls and
/// `BPF_PSEUDO_FUNC` loads), and the func_info records naming them.
fn prog_btf(insns: &[Insn]) -> (Vec<u8>, Vec<FuncInfo>) {
    let mut starts = vec![0usize];
    for (i, insn) in insns.iter().enumerate() {
        let call = insn.code == 0x85 && insn.src_reg() == 1;
        let func = insn.code == 0x18 && insn.src_reg() == 4;
        if call || func {
            let t = i as i64 + i64::from(insn.imm) + 1;
            if t >= 0 && (t as usize) < insns.len() {
                starts.push(t as usize);
            }
        }
    }
    starts.sort_unstable();
    starts.dedup();
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, INT_SIGNED);
    let proto = b.add_func_proto(int, &[]);
    let infos = starts
        .iter()
        .map(|&s| FuncInfo {
            insn_off: s as u32,
            type_id: b.add_func(&format!("f{s}"), proto, Linkage::Static),
        })
        .collect();
    (b.build().encode(), infos)
}

/// The `map[NAME]` and `call kfunc:NAME` rewrites of one line.
fn substitute(line: &str, r: &Resolver<'_>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = line;
    while let Some(pos) = rest.find("map[") {
        out.push_str(&rest[..pos + 4]);
        rest = &rest[pos + 4..];
        let end = rest.find(']').ok_or("unterminated map[")?;
        let name = &rest[..end];
        if name.starts_with("id:") || name.starts_with("idx:") {
            continue;
        }
        let fd = r
            .maps
            .get(name)
            .ok_or_else(|| format!("unknown map `{name}`"))?;
        rest = &rest[end + 1..];
        if rest.trim_start().starts_with('+') {
            out.push_str(&format!("id:{fd}][0]"));
        } else {
            out.push_str(&format!("id:{fd}]"));
        }
    }
    out.push_str(rest);
    while let Some(pos) = out.find("offsetof(") {
        let end = out[pos..].find(')').ok_or("unterminated offsetof(")? + pos;
        let inner = &out[pos + 9..end];
        let (s, path) = inner
            .split_once(',')
            .ok_or("offsetof(STRUCT, a.b) expected")?;
        let btf = r.vmlinux.ok_or("offsetof without vmlinux BTF")?;
        let off = btf_offsetof(btf, s.trim(), path.trim())?;
        out = format!("{}{off}{}", &out[..pos], &out[end + 1..]);
    }
    while let Some(pos) = out.find("sizeof(") {
        let end = out[pos..].find(')').ok_or("unterminated sizeof(")? + pos;
        let name = out[pos + 7..end].trim();
        let btf = r.vmlinux.ok_or("sizeof without vmlinux BTF")?;
        let id = btf
            .find_by_name_kind(name, Kind::Struct)
            .ok_or_else(|| format!("no struct {name} in vmlinux BTF"))?;
        let size = btf.size_of(id).map_err(|e| e.to_string())?;
        out = format!("{}{size}{}", &out[..pos], &out[end + 1..]);
    }
    if let Some(pos) = out.find("kfunc:") {
        let name: String = out[pos + 6..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let btf = r.vmlinux.ok_or("kfunc call without vmlinux BTF")?;
        let id = btf
            .find_by_name_kind(&name, Kind::Func)
            .ok_or_else(|| format!("no kfunc `{name}` in vmlinux BTF"))?;
        out = format!(
            "{}kernel-function#{}{}",
            &out[..pos],
            id,
            &out[pos + 6 + name.len()..]
        );
    }
    Ok(out)
}

/// Byte offset of the member path `a.b.c` in vmlinux `struct s` (anonymous members
/// descended into).
fn btf_offsetof(btf: &Btf, s: &str, path: &str) -> Result<u32, String> {
    let mut id = btf
        .find_by_name_kind(s, Kind::Struct)
        .ok_or_else(|| format!("no struct {s} in vmlinux BTF"))?;
    let mut bits = 0u32;
    for part in path.split('.') {
        let (m, off) = btf
            .member_by_name(id, part)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no member {part} in {s}.{path}"))?;
        bits += off;
        id = m.ty;
    }
    Ok(bits / 8)
}

/// `(struct type id, member index)` of `attach: STRUCT.MEMBER` in vmlinux; `#N` is a
/// raw member index.
fn struct_ops_target(btf: &Btf, s: &str, m: &str) -> Result<(u32, u32), String> {
    let id = btf
        .find_by_name_kind(s, Kind::Struct)
        .ok_or_else(|| format!("no struct {s} in vmlinux BTF"))?;
    if let Some(n) = m.strip_prefix('#') {
        return n
            .parse()
            .map(|n| (id, n))
            .map_err(|_| format!("bad member index {m}"));
    }
    let ty = btf.ty(id).map_err(|e| e.to_string())?;
    let comp = ty
        .composite()
        .ok_or_else(|| format!("{s} is not a struct"))?;
    let idx = comp
        .members
        .iter()
        .position(|mem| btf.name(mem.name_off).is_ok_and(|n| n == m))
        .ok_or_else(|| format!("no member {m} in struct {s}"))?;
    Ok((id, idx as u32))
}

/// The line the kernel's message is expected in: the last non-empty line that is not
/// the stats or timing lines a log ends with.
fn last_meaningful_line(log: &str) -> &str {
    log.lines()
        .rev()
        .map(str::trim)
        .find(|l| {
            !l.is_empty()
                && !l.starts_with("processed ")
                && !l.starts_with("verification time")
                && !l.starts_with("stack depth")
                && !l.starts_with("-- END PROG LOAD LOG --")
                && !l.starts_with("cur state:")
                && !l.starts_with("old state:")
        })
        .unwrap_or("")
}

/// What one load produced.
#[derive(Debug)]
struct Outcome {
    result: Result<(), Errno>,
    log: String,
}

/// Compares an outcome with a case's expectation; `None` if they agree.
fn disagreement(case: &Case, out: &Outcome) -> Option<String> {
    let last = last_meaningful_line(&out.log);
    match (&case.expect, out.result) {
        (Expect::Accept, Ok(())) => case
            .log_has
            .iter()
            .find(|s| !out.log.contains(s.as_str()))
            .map(|s| format!("log lacks `{s}`")),
        (Expect::Accept, Err(e)) => Some(format!("expected accept, got {e:?}: {last}")),
        (Expect::Reject { errno, .. }, Ok(())) => {
            Some(format!("expected reject {errno:?}, got accept"))
        }
        (Expect::Reject { errno, msg }, Err(e)) => {
            if *errno != e {
                Some(format!("expected {errno:?}, got {e:?}: {last}"))
            } else if !last.contains(msg.as_str()) {
                Some(format!("expected message `{msg}`, last line `{last}`"))
            } else {
                case.log_has
                    .iter()
                    .find(|s| !out.log.contains(s.as_str()))
                    .map(|s| format!("log lacks `{s}`; last line `{last}`"))
            }
        }
    }
}

// ---------------------------------------------------------------- kernel side

/// Owns kernel fds and closes them on drop (also on panic).
struct Fds(Vec<i32>);

impl Drop for Fds {
    fn drop(&mut self) {
        for &fd in &self.0 {
            kernel::close(fd);
        }
    }
}

/// The map's attributes; `btf_fd` is the descriptor of [`map_btf`] where it has one.
fn map_attr(m: &MapSpec, btf_fd: Option<u32>) -> MapCreateAttr {
    let (btf_key_type_id, btf_value_type_id) = if btf_fd.is_some() { (1, 2) } else { (0, 0) };
    MapCreateAttr {
        map_type: m.map_type,
        key_size: m.key_size,
        value_size: m.value_size,
        max_entries: m.max_entries,
        map_flags: m.flags,
        btf_fd: btf_fd.unwrap_or(0),
        btf_key_type_id,
        btf_value_type_id,
        ..MapCreateAttr::default()
    }
}

/// Creates the map in the kernel; its BTF's descriptor (if any) goes into `fds`.
fn kernel_map_create(m: &MapSpec, fds: &mut Fds) -> Result<i32, Errno> {
    let btf_fd = match map_btf(m) {
        Some(b) => {
            let fd = kernel::btf_load(&b)?;
            fds.0.push(fd);
            Some(fd as u32)
        }
        None => None,
    };
    kernel::map_create(&map_attr(m, btf_fd))
}

/// Loads a case into the kernel. `Err` for harness failures (not verdicts).
fn kernel_run(case: &Case, vmlinux: &Btf, log: &mut [u8]) -> Result<Outcome, String> {
    let mut fds = Fds(Vec::new());
    let mut maps = BTreeMap::new();
    for m in &case.maps {
        let fd = kernel_map_create(m, &mut fds)
            .map_err(|e| format!("{}: map {}: {e:?}", case.id(), m.name))?;
        fds.0.push(fd);
        maps.insert(m.name.clone(), fd);
    }
    let r = Resolver {
        maps,
        vmlinux: Some(vmlinux),
    };
    let insns = assemble_case(case, &r)?;
    let (attach_btf_id, expected) = match &case.attach {
        Some((s, m)) => {
            struct_ops_target(vmlinux, s, m).map_err(|e| format!("{}: {e}", case.id()))?
        }
        None => (0, 0),
    };
    let license = format!("{}\0", case.license);
    log.fill(0);
    let mut at = kernel::Attr::new();
    at.u32(0, case.prog_type.0)
        .u32(4, insns.len() as u32)
        .u64(8, insns.as_ptr() as u64)
        .u64(16, license.as_ptr() as u64)
        .u32(24, 1)
        .u32(28, log.len() as u32)
        .u64(32, log.as_mut_ptr() as u64)
        .u32(44, case.prog_flags)
        .u32(68, expected)
        .u32(108, attach_btf_id);
    let name = b"vsuite";
    at.0[48..48 + name.len()].copy_from_slice(name);
    let (btf, infos) = prog_btf(&insns);
    let records: Vec<u32> = infos.iter().flat_map(|r| [r.insn_off, r.type_id]).collect();
    if case.func_info {
        let btf_fd =
            kernel::btf_load(&btf).map_err(|e| format!("{}: BTF_LOAD: {e:?}", case.id()))?;
        fds.0.push(btf_fd);
        at.u32(72, btf_fd as u32)
            .u32(76, 8)
            .u64(80, records.as_ptr() as u64)
            .u32(88, infos.len() as u32);
    }
    let result = kernel::sys_bpf(BPF_PROG_LOAD, &mut at).map(|fd| fds.0.push(fd as i32));
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    Ok(Outcome {
        result,
        log: String::from_utf8_lossy(&log[..end]).into_owned(),
    })
}

fn vmlinux_btf() -> Result<Btf, String> {
    let bytes =
        std::fs::read("/sys/kernel/btf/vmlinux").map_err(|e| format!("vmlinux BTF: {e}"))?;
    Btf::parse(&bytes).map_err(|e| format!("vmlinux BTF: {e}"))
}

#[test]
fn case_files_parse() {
    let cases = load_all_cases().unwrap_or_else(|e| panic!("{e}"));
    let mut per_file: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for c in &cases {
        let e = per_file.entry(&c.file).or_default();
        match c.expect {
            Expect::Accept => e.0 += 1,
            Expect::Reject { .. } => e.1 += 1,
        }
    }
    for (f, (a, r)) in &per_file {
        println!("{f}: {} cases ({a} accept, {r} reject)", a + r);
    }
    if std::env::var("STRUCTOPS_VERIFIER_SUITE_FILTER").is_err() {
        assert!(cases.len() >= 300, "only {} cases", cases.len());
    }
    // Every case assembles (with placeholder map fds and no kfunc resolution failures).
    let vmlinux = vmlinux_btf().ok();
    for c in &cases {
        let maps = c.maps.iter().map(|m| (m.name.clone(), 3)).collect();
        let r = Resolver {
            maps,
            vmlinux: vmlinux.as_ref(),
        };
        if let Err(e) = assemble_case(c, &r)
            && (vmlinux.is_some() || !e.contains("vmlinux"))
        {
            panic!("{e}");
        }
    }
}

#[test]
fn format_errors_name_file_and_line() {
    let e = parse_cases("x.txt", "### a\ntype: nope\n---\nexit\n").unwrap_err();
    assert_eq!((e.line, e.file.as_str()), (2, "x.txt"));
    let e = parse_cases("x.txt", "### a\nexpect: accept\n").unwrap_err();
    assert_eq!(e.line, 1);
    let e = parse_cases("x.txt", "### a\nexpect: reject EACCES\n---\nexit\n").unwrap_err();
    assert_eq!(e.line, 2);
    let ok = parse_cases(
        "x.txt",
        "### a\nexpect: reject EACCES R0 !read_ok\n---\n# c\nexit\n",
    )
    .unwrap();
    assert_eq!(
        ok[0].expect,
        Expect::Reject {
            errno: Errno::EACCES,
            msg: "R0 !read_ok".into()
        }
    );
    assert_eq!((ok[0].prog_line, ok[0].prog.len()), (4, 2));
    let r = Resolver {
        maps: [("m".to_owned(), 7)].into(),
        vmlinux: None,
    };
    assert_eq!(substitute("r1 = map[m]", &r).unwrap(), "r1 = map[id:7]");
    assert_eq!(
        substitute("r1 = map[m]+8", &r).unwrap(),
        "r1 = map[id:7][0]+8"
    );
    assert!(substitute("r1 = map[q]", &r).is_err());
    let raw = assemble_case(
        &Case {
            prog: vec!["r0 = 0x1".into(), ".raw 0x07 0 0 1 0".into(), "exit".into()],
            ..ok[0].clone()
        },
        &r,
    )
    .unwrap();
    assert_eq!(raw.len(), 4);
    assert_eq!(raw[2], Insn::new(0x07, 0, 0, 1, 0));
    assert_eq!(
        last_meaningful_line("a\nb\nprocessed 3 insns (limit)\n\n"),
        "b"
    );
}

#[test]
fn kernel_agrees_with_every_case() {
    if let Some(why) = kernel::unavailable() {
        println!("SKIP kernel verifier suite: {why}");
        return;
    }
    let vmlinux = match vmlinux_btf() {
        Ok(b) => b,
        Err(e) => {
            println!("SKIP kernel verifier suite: {e}");
            return;
        }
    };
    let cases = load_all_cases().unwrap_or_else(|e| panic!("{e}"));
    let mut log = vec![0u8; LOG_SIZE];
    let (mut checked, mut skipped) = (0usize, 0usize);
    let mut bad: Vec<String> = Vec::new();
    for c in &cases {
        if let Some(why) = &c.kernel_skip {
            println!("kernel skip {}: {why}", c.id());
            skipped += 1;
            continue;
        }
        let out = kernel_run(c, &vmlinux, &mut log).unwrap_or_else(|e| panic!("{e}"));
        checked += 1;
        if std::env::var("STRUCTOPS_VERIFIER_SUITE_LOG").is_ok() {
            println!("== {} -> {:?}\n{}", c.id(), out.result, out.log);
        }
        if let Some(d) = disagreement(c, &out) {
            bad.push(format!("{}: {d}", c.id()));
        }
    }
    println!(
        "verifier suite (kernel): {} cases, {checked} kernel-checked, {skipped} skipped-by-type, {} disagree",
        cases.len(),
        bad.len()
    );
    assert!(bad.is_empty(), "kernel disagrees:\n{}", bad.join("\n"));
}

// ---------------------------------------------------------------- our side

/// Prefix of a [`runtime_run`] error for cases the runtime cannot set up.
const UNSUPPORTED: &str = "unsupported by the runtime: ";

/// Loads one case into `rt` with `prog_load` and returns the outcome. This is the hook
/// the verifier comparison runs through: `prog_load` runs `structops-verifier`, so its
/// verdict, errno and level-1 log land here.
fn runtime_run(rt: &Runtime, case: &Case, vmlinux: Option<&Btf>) -> Result<Outcome, String> {
    let mut maps = BTreeMap::new();
    let mut fds = Vec::new();
    for m in &case.maps {
        let btf_fd = match map_btf(m) {
            Some(b) => {
                let h = rt
                    .btf_load(&b)
                    .map_err(|e| format!("{}: runtime btf_load: {e:?}", case.id()))?;
                let fd = rt
                    .fd_install(h)
                    .map_err(|e| format!("{}: fd_install: {e:?}", case.id()))?;
                fds.push(fd);
                Some(fd)
            }
            None => None,
        };
        // A map type the runtime does not implement makes the case unrunnable here;
        // that is reported, not a harness failure.
        let h = rt
            .map_create(&map_attr(m, btf_fd))
            .map_err(|e| format!("{UNSUPPORTED}map {} ({e:?})", m.name))?;
        let fd = rt
            .fd_install(h)
            .map_err(|e| format!("{}: fd_install: {e:?}", case.id()))?;
        fds.push(fd);
        maps.insert(m.name.clone(), fd as i32);
    }
    let r = Resolver { maps, vmlinux };
    let result = (|| {
        let insns = assemble_case(case, &r)?;
        let (btf, infos) = prog_btf(&insns);
        let mut attr = ProgLoadAttr::new(case.prog_type, insns, &case.license).name("vsuite");
        if case.func_info {
            let h = rt
                .btf_load(&btf)
                .map_err(|e| format!("{}: runtime btf_load: {e:?}", case.id()))?;
            let fd = rt
                .fd_install(h)
                .map_err(|e| format!("{}: fd_install: {e:?}", case.id()))?;
            fds.push(fd);
            attr = attr.func_info(fd, &infos);
        }
        attr.prog_flags = case.prog_flags;
        attr.log_level = 1;
        if let Some((s, m)) = &case.attach {
            let btf = vmlinux.ok_or("struct_ops case without vmlinux BTF")?;
            let (id, idx) = struct_ops_target(btf, s, m)?;
            attr.attach_btf_id = id;
            attr.expected_attach_type = idx;
        }
        let mut log = String::new();
        let res = rt.prog_load_with_log(&attr, &mut log).map(drop);
        Ok(Outcome { result: res, log })
    })();
    for fd in fds {
        let _ = rt.fd_close(fd);
    }
    result
}

/// What a kernel function the suite's runtime has no host for does when a program calls
/// it: the cases are only loaded, never run, so this only has to refuse honestly.
fn without_tcp_host() -> HostFn {
    Arc::new(|caller, _| {
        Err(VmError::Unsupported {
            pc: caller.pc(),
            what: "a TCP kernel function without a TCP host",
        })
    })
}

/// The kernel's struct_ops types in `rt` (whose host BTF is vmlinux), as the running
/// kernel registers them: the `bpf_dummy_ops` and `tcp_congestion_ops` twins, the TCP
/// congestion-control kfuncs for struct_ops programs (those vmlinux has) and
/// `bpf_tcp_send_ack` (`bpf_tcp_send_ack_proto`).
fn register_kernel_struct_ops(rt: &Runtime) -> Result<(), String> {
    rt.register_dummy_ops()
        .map_err(|e| format!("register bpf_dummy_ops: {e:?}"))?;
    rt.register_tcp_congestion_ops()
        .map_err(|e| format!("register tcp_congestion_ops: {e:?}"))?;
    for name in tcp_ca::KFUNCS {
        match rt.register_kfunc(
            name,
            KfuncFlags::NONE,
            vec![ProgType::STRUCT_OPS],
            without_tcp_host(),
        ) {
            Ok(_) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(format!("register kfunc {name}: {e:?}")),
        }
    }
    let proto = HelperProto {
        id: tcp_ca::FUNC_TCP_SEND_ACK,
        name: "tcp_send_ack",
        ret: Ret::INTEGER,
        args: [
            Arg::new(ArgType::PtrToBtfId),
            Arg::new(ArgType::Anything),
            Arg::DONTCARE,
            Arg::DONTCARE,
            Arg::DONTCARE,
        ],
        gpl_only: false,
        might_sleep: false,
        pkt_access: false,
    };
    rt.register_helper(HostHelper {
        proto,
        prog_types: vec![ProgType::STRUCT_OPS],
        func: without_tcp_host(),
    })
    .map_err(|e| format!("register bpf_tcp_send_ack: {e:?}"))
}

/// Which concurrent line of verifier work an allowlisted case waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    /// `PTR_TO_BTF_ID`, struct_ops, kfuncs.
    Btf,
    /// Callbacks, iterators, `may_goto`, precision and liveness.
    Loops,
    /// Verifier or runtime gaps of the integration itself, not yet closed.
    Runtime,
}

/// Cases on which the runtime may still disagree with the kernel, each waiting for a
/// feature another line of work adds: `(file, case name, owner)`. Every other case
/// must agree ([`runtime_agrees_with_every_case`] asserts it); an allowlisted case
/// that agrees is reported so the entry can go.
const ALLOWLIST: &[(&str, &str, Owner)] = &[
    // Empty: every case agrees with the kernel through the runtime.
];

fn allowlisted(c: &Case) -> Option<Owner> {
    ALLOWLIST
        .iter()
        .find(|(f, n, _)| *f == c.file && *n == c.name)
        .map(|&(_, _, o)| o)
}

#[test]
fn runtime_agrees_with_every_case() {
    let strict = std::env::var("STRUCTOPS_VERIFIER_SUITE_STRICT").is_ok_and(|v| v == "1");
    let cases = load_all_cases().unwrap_or_else(|e| panic!("{e}"));
    let vmlinux = vmlinux_btf().ok();
    let rt = Runtime::new(RuntimeConfig::default());
    if let Some(b) = &vmlinux {
        rt.register_host_btf(b.clone())
            .unwrap_or_else(|e| panic!("register vmlinux BTF: {e:?}"));
        register_kernel_struct_ops(&rt).unwrap_or_else(|e| panic!("{e}"));
    }
    let mut agree_accept = 0usize;
    let mut agree_reject = 0usize;
    let mut verdict_only = 0usize;
    let mut unsupported: Vec<String> = Vec::new();
    let mut bad: Vec<String> = Vec::new();
    // Disagreements outside the allowlist, and allowlisted cases that agree now.
    let mut regressions: Vec<String> = Vec::new();
    let mut now_agree: Vec<String> = Vec::new();
    let mut allow_disagree = [0usize; 3];
    for c in &cases {
        let owner = allowlisted(c);
        let out = match runtime_run(&rt, c, vmlinux.as_ref()) {
            Ok(o) => o,
            Err(e) if e.starts_with(UNSUPPORTED) => {
                match owner {
                    Some(o) => allow_disagree[o as usize] += 1,
                    None => regressions.push(format!("{}: {e}", c.id())),
                }
                unsupported.push(format!("{}: {e}", c.id()));
                continue;
            }
            Err(e) => {
                bad.push(format!("{}: harness: {e}", c.id()));
                continue;
            }
        };
        if std::env::var("STRUCTOPS_VERIFIER_SUITE_LOG").is_ok() {
            println!("== ours {} -> {:?}\n{}", c.id(), out.result, out.log);
        }
        let d = disagreement(c, &out);
        match (&d, owner) {
            (None, Some(_)) => now_agree.push(c.id()),
            (Some(d), None) => regressions.push(format!("{}: {d}", c.id())),
            (Some(_), Some(o)) => allow_disagree[o as usize] += 1,
            (None, None) => {}
        }
        match d {
            None => match c.expect {
                Expect::Accept => agree_accept += 1,
                Expect::Reject { .. } => agree_reject += 1,
            },
            Some(d) => {
                let same_verdict = matches!(
                    (&c.expect, out.result),
                    (Expect::Accept, Ok(())) | (Expect::Reject { .. }, Err(_))
                );
                if same_verdict {
                    verdict_only += 1;
                }
                bad.push(format!("{}: {d}", c.id()));
            }
        }
    }
    for u in &unsupported {
        println!("runtime skip {u}");
    }
    println!(
        "verifier suite (structops runtime): {} cases, {} not runnable, {} agree ({agree_accept} accept, {agree_reject} reject), {verdict_only} same verdict but errno/message differ, {} disagree{}",
        cases.len(),
        unsupported.len(),
        agree_accept + agree_reject,
        bad.len(),
        if strict {
            ""
        } else {
            " (strict off: only disagreements outside ALLOWLIST fail)"
        }
    );
    let agree = agree_accept + agree_reject;
    println!(
        "verifier suite (our side): {agree} agree, {} disagree; allowlisted disagreements: {} PTR_TO_BTF_ID/struct_ops/kfuncs, {} callbacks/iterators/may_goto, {} integration gaps; {} outside the allowlist",
        cases.len() - agree,
        allow_disagree[Owner::Btf as usize],
        allow_disagree[Owner::Loops as usize],
        allow_disagree[Owner::Runtime as usize],
        regressions.len()
    );
    for a in &now_agree {
        println!("allowlisted but agrees now (remove from ALLOWLIST): {a}");
    }
    assert!(
        regressions.is_empty(),
        "runtime disagrees outside the allowlist:\n{}",
        regressions.join("\n")
    );
    if strict {
        assert!(
            bad.is_empty() && unsupported.is_empty(),
            "runtime disagrees:\n{}\n{}",
            bad.join("\n"),
            unsupported.join("\n")
        );
    } else {
        // What can be asserted today: every case goes through prog_load without a
        // harness failure (maps created, program assembled, attach target found).
        let harness: Vec<&String> = bad.iter().filter(|b| b.contains("harness:")).collect();
        assert!(harness.is_empty(), "harness failures:\n{harness:?}");
    }
}
