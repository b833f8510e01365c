//! `structops object show`: what an object holds, as libbpf sees it after
//! `bpf_object__open` — programs, maps, struct_ops variables with their member bindings,
//! and externs.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{Value, json};
use structops_btf::Btf;
use structops_obj::{Object, ParseOptions, Program, StructOps};

use crate::error::CliError;
use crate::host;
use crate::output::Output;

/// The object `object show` describes when no file is given: the project's own
/// `tcp_congestion_ops` fixture, bundled into the binary.
pub const BUNDLED_NAME: &str = "tcp_ca.bpf.o";
/// Bytes of the bundled object.
pub const BUNDLED: &[u8] = include_bytes!("../../../bpf/tcp_ca.bpf.o");

/// `object` verbs.
#[derive(Debug, Subcommand)]
pub enum ObjectCmd {
    /// Show programs, maps, struct_ops variables and externs of an object.
    Show {
        /// The BPF object (default: the bundled tcp_congestion_ops example).
        file: Option<PathBuf>,
    },
}

/// Runs an `object` verb.
pub fn run(cmd: ObjectCmd, out: &Output) -> Result<(), CliError> {
    match cmd {
        ObjectCmd::Show { file } => {
            let (name, bytes) = match &file {
                Some(p) => (p.display().to_string(), host::read(p)?),
                None => (BUNDLED_NAME.to_string(), BUNDLED.to_vec()),
            };
            let obj = open(&name, &bytes)?;
            let v = describe(&name, &obj);
            if out.json {
                out.json(&v)
            } else {
                out.text(&render(&v))
            }
        }
    }
}

/// Parses an object as `bpf_object__open_file` would for `path`.
pub fn open(path: &str, bytes: &[u8]) -> Result<Object, CliError> {
    Object::parse_with(bytes, &ParseOptions::for_path(path)).map_err(|source| CliError::Object {
        path: path.to_string(),
        source: Box::new(source),
    })
}

/// Name of member `idx` of the struct_ops variable's local type.
fn member_name(btf: Option<&Btf>, st: &StructOps, idx: usize) -> String {
    let name = btf.and_then(|b| {
        let (_, t) = b.resolved_ty(st.type_id()).ok()?;
        let m = t.composite()?.members.get(idx)?;
        b.name(m.name_off).ok().map(str::to_owned)
    });
    name.unwrap_or_else(|| format!("#{idx}"))
}

/// For each program, the struct_ops (map, ops type, member) slots that bind it.
fn bindings(obj: &Object) -> Vec<Vec<(String, String, String)>> {
    let mut out = vec![Vec::new(); obj.programs().len()];
    for map in obj.maps() {
        let Some(st) = map.struct_ops() else { continue };
        for (idx, prog) in st.programs().iter().enumerate() {
            if let Some(slot) = prog.and_then(|p| out.get_mut(p)) {
                slot.push((
                    map.name().to_string(),
                    st.kernel_type_name().to_string(),
                    member_name(obj.btf(), st, idx),
                ));
            }
        }
    }
    out
}

fn program_json(p: &Program, binds: &[(String, String, String)]) -> Value {
    json!({
        "name": p.name(),
        "section": p.section_name(),
        "type": p.prog_type().to_string(),
        "expected_attach_type": p.expected_attach_type().to_string(),
        "insn_cnt": p.insn_cnt(),
        "autoload": p.autoload(),
        "sleepable": p.prog_flags() & BPF_F_SLEEPABLE != 0,
        "struct_ops": binds.iter().map(|(map, ty, member)| json!({
            "map": map, "type": ty, "member": member,
        })).collect::<Vec<_>>(),
    })
}

/// `BPF_F_SLEEPABLE`.
const BPF_F_SLEEPABLE: u32 = 1 << 4;

/// The JSON description of an object (also the source of the text form).
pub fn describe(path: &str, obj: &Object) -> Value {
    let binds = bindings(obj);
    let programs: Vec<Value> = obj
        .programs()
        .iter()
        .zip(&binds)
        .filter(|(p, _)| !p.is_subprog())
        .map(|(p, b)| program_json(p, b))
        .collect();
    let maps: Vec<Value> = obj
        .maps()
        .iter()
        .map(|m| {
            json!({
                "name": m.name(),
                "type": m.map_type().to_string(),
                "key_size": m.key_size(),
                "value_size": m.value_size(),
                "max_entries": m.max_entries(),
                "map_flags": m.map_flags(),
                "autocreate": m.autocreate(),
                "struct_ops_type": m.struct_ops_type(),
                "link": m.is_link(),
            })
        })
        .collect();
    let struct_ops: Vec<Value> = obj
        .maps()
        .iter()
        .filter_map(|m| {
            let st = m.struct_ops()?;
            let members: Vec<Value> = st
                .programs()
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let prog = p
                        .and_then(|p| obj.programs().get(p))
                        .map(|p| p.name().to_string());
                    json!({ "member": member_name(obj.btf(), st, i), "program": prog })
                })
                .collect();
            Some(json!({
                "map": m.name(),
                "type": st.kernel_type_name(),
                "local_type": st.type_name(),
                "link": m.is_link(),
                "members": members,
            }))
        })
        .collect();
    let externs: Vec<Value> = obj
        .externs()
        .iter()
        .map(|e| {
            json!({
                "name": e.name(),
                "kind": if e.is_func() { "kfunc" } else if e.kcfg().is_some() { "kconfig" } else { "ksym" },
                "weak": e.is_weak(),
            })
        })
        .collect();
    json!({
        "file": path,
        "name": obj.name(),
        "license": obj.license(),
        "kern_version": obj.kern_version(),
        "btf_types": obj.btf().map(|b| b.len().saturating_sub(1)),
        "programs": programs,
        "maps": maps,
        "struct_ops": struct_ops,
        "externs": externs,
    })
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("-")
}

fn n(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn items<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The text form of [`describe`]'s JSON.
pub fn render(v: &Value) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "object {}: name {}  license {}  btf {} types",
        s(v, "file"),
        s(v, "name"),
        s(v, "license"),
        n(v, "btf_types"),
    );
    let _ = writeln!(t, "programs:");
    for p in items(v, "programs") {
        let _ = write!(
            t,
            "  {}  section {}  type {}  insns {}{}{}",
            s(p, "name"),
            s(p, "section"),
            s(p, "type"),
            n(p, "insn_cnt"),
            if p["autoload"] == Value::Bool(true) {
                ""
            } else {
                "  noautoload"
            },
            if p["sleepable"] == Value::Bool(true) {
                "  sleepable"
            } else {
                ""
            },
        );
        for b in items(p, "struct_ops") {
            let _ = write!(
                t,
                "  -> {}.{} (map {})",
                s(b, "type"),
                s(b, "member"),
                s(b, "map")
            );
        }
        t.push('\n');
    }
    let _ = writeln!(t, "maps:");
    for m in items(v, "maps") {
        let _ = writeln!(
            t,
            "  {}  type {}  key {}B  value {}B  max_entries {}  flags {:#x}{}",
            s(m, "name"),
            s(m, "type"),
            n(m, "key_size"),
            n(m, "value_size"),
            n(m, "max_entries"),
            n(m, "map_flags"),
            if m["autocreate"] == Value::Bool(true) {
                ""
            } else {
                "  noautocreate"
            },
        );
    }
    if !items(v, "struct_ops").is_empty() {
        let _ = writeln!(t, "struct_ops:");
    }
    for st in items(v, "struct_ops") {
        let _ = writeln!(
            t,
            "  {}: {} (local {}){}",
            s(st, "map"),
            s(st, "type"),
            s(st, "local_type"),
            if st["link"] == Value::Bool(true) {
                "  link"
            } else {
                ""
            },
        );
        for m in items(st, "members") {
            if let Some(p) = m.get("program").and_then(Value::as_str) {
                let _ = writeln!(t, "    .{} = {}", s(m, "member"), p);
            }
        }
    }
    if !items(v, "externs").is_empty() {
        let _ = writeln!(t, "externs:");
    }
    for e in items(v, "externs") {
        let _ = writeln!(
            t,
            "  {}  {}{}",
            s(e, "name"),
            s(e, "kind"),
            if e["weak"] == Value::Bool(true) {
                "  weak"
            } else {
                ""
            },
        );
    }
    t
}
