//! `structops struct_ops`: `show` and `dump` list struct_ops maps (of a running host or
//! of an object loaded in-process); `register` and `unregister` change a running host
//! through its control socket (`--host`).
//!
//! Without `--host`, `structops struct_ops register FILE.o` loads an object into the in-process runtime
//! and attaches every struct_ops map, as libbpf's `bpf_object__load` followed by
//! `bpf_map__attach_struct_ops` would: per program its load result (ok, or the errno
//! name and the verifier's error line), per struct_ops map its name, ops type, link
//! flag and attach result, then what is registered, each map's value printed through
//! BTF like bpftool's `struct_ops dump`.
//!
//! The ops types are the CLI runtime's (see [`crate::inproc`]): `bpf_dummy_ops` today,
//! whose registration the kernel refuses with `EOPNOTSUPP` (it exists for test runs
//! only), and so does this runtime. The registrations end with the process.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use structops::loader::LoadError;
use structops_btf::value::ValuePrinter;
use structops_control::{StructOpsEntry, Target};

use crate::error::CliError;
use crate::inproc;
use crate::live::{self, Conn, Sel};
use crate::output::Output;
use crate::prog;

/// `structops struct_ops` subcommands.
#[derive(Debug, Subcommand)]
pub enum StructOpsCmd {
    /// List struct_ops maps (`bpftool struct_ops show`): ID, name and ops type.
    #[command(override_usage = "structops [--host PATH] struct_ops show [FILE] [id N | name NAME]")]
    Show {
        /// `[FILE] [id N | name NAME]`.
        #[arg(value_name = "SPEC")]
        words: Vec<String>,
    },
    /// Print struct_ops maps with their state and value (the ops table with each
    /// member's program id), as the kernel's `seq_show` prints a pinned map.
    #[command(override_usage = "structops [--host PATH] struct_ops dump [FILE] [id N | name NAME]")]
    Dump {
        /// `[FILE] [id N | name NAME]`.
        #[arg(value_name = "SPEC")]
        words: Vec<String>,
    },
    /// Load an object and attach its struct_ops maps: in a running host (--host), where
    /// they stay registered, or in-process, printing each program's load result, each
    /// map's attach result and the registered values.
    Register(RegisterArgs),
    /// Remove a struct_ops registration from a running host: by struct_ops map id, link
    /// id, or map name (`bpftool struct_ops unregister`).
    #[command(override_usage = "structops --host PATH struct_ops unregister (id N | name NAME)")]
    Unregister {
        /// `id N` or `name NAME`.
        #[arg(value_name = "SPEC")]
        words: Vec<String>,
    },
}

/// `structops struct_ops register` arguments.
#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// The BPF object.
    file: PathBuf,
    /// Only this struct_ops map (default: every struct_ops map of the object).
    map: Option<String>,
    /// The runtime's host BTF (default: /sys/kernel/btf/vmlinux when readable).
    #[arg(long, value_name = "PATH")]
    btf: Option<PathBuf>,
    /// Execution engine of verified programs.
    #[arg(long, value_enum, default_value_t = inproc::Engine::Jit)]
    engine: inproc::Engine,
}

/// `struct_ops show` and `struct_ops dump`.
fn show(words: &[String], host: Option<&Path>, dump: bool, out: &Output) -> Result<(), CliError> {
    let command: &'static [&'static str] = if dump {
        &["struct_ops", "dump"]
    } else {
        &["struct_ops", "show"]
    };
    let spec = prog::spec(words, None, command)?;
    let mut conn = Conn::open(host, spec.file.as_deref(), None, inproc::Engine::Jit)?;
    let all = conn.struct_ops()?;
    let shown: Vec<&StructOpsEntry> = match &spec.sel {
        Some(sel) => live::select(&all, sel, "struct_ops", |s| (s.map_id, &s.name))?,
        None => all.iter().collect(),
    };
    if dump {
        let v = dump_values(&mut conn, &shown)?;
        return if out.json {
            out.json(&v)
        } else {
            out.text(&format!("{}\n", crate::map::pretty4(&v)))
        };
    }
    if out.json {
        return out.json(&Value::Array(
            shown.iter().map(|s| live::struct_ops_json(s)).collect(),
        ));
    }
    out.text(
        &shown
            .iter()
            .map(|s| live::struct_ops_text(s))
            .collect::<String>(),
    )
}

/// `bpftool struct_ops dump`: per map, `{"bpf_map_info": ..}` and
/// `{"bpf_struct_ops_TYPE": value}`, the value formatted through the host BTF with
/// each function pointer shown as the program that implements it.
fn dump_values(conn: &mut Conn, shown: &[&StructOpsEntry]) -> Result<Value, CliError> {
    let maps = conn.maps()?;
    let progs = conn.progs()?;
    let btfs = conn.btfs()?;
    let Some(host) = btfs.iter().find(|b| b.kernel) else {
        return Err(CliError::Unsupported {
            what: "the runtime has no host BTF to format struct_ops values with".into(),
        });
    };
    let raw = conn.btf(host.id)?;
    let btf = structops_btf::Btf::parse(&raw).map_err(|source| CliError::Btf {
        path: format!("btf id {}", host.id),
        source,
    })?;
    let names = |id: u32| progs.iter().find(|p| p.id == id).map(|p| p.name.clone());
    let printer = ValuePrinter::new(&btf).with_prog_id_func_ptrs(&names);
    let mut out = Vec::new();
    for s in shown {
        let Some(m) = maps.iter().find(|m| m.id == s.map_id) else {
            continue;
        };
        out.push(json!({"bpf_map_info": {
            "type": m.map_type,
            "id": m.id,
            "key_size": m.key_size,
            "value_size": m.value_size,
            "max_entries": m.max_entries,
            "map_flags": m.map_flags,
            "name": m.name,
            "btf_vmlinux_value_type_id": m.btf_vmlinux_value_type_id,
            "btf_id": m.btf_id,
            "btf_key_type_id": m.btf_key_type_id,
            "btf_value_type_id": m.btf_value_type_id,
        }}));
        let value = conn.map_lookup(m.id, 0u32.to_ne_bytes().to_vec())?;
        let formatted = printer
            .format(m.btf_vmlinux_value_type_id, &value)
            .map_err(|e| CliError::Unsupported {
                what: format!("struct_ops map {}: formatting its value: {e}", m.id),
            })?;
        let mut obj = serde_json::Map::new();
        obj.insert(
            format!("bpf_struct_ops_{}", s.ops_type),
            formatted.to_json(),
        );
        out.push(Value::Object(obj));
    }
    Ok(Value::Array(out))
}

/// `struct_ops register FILE [MAP]` in a running host.
fn register_remote(args: &RegisterArgs, host: &Path, out: &Output) -> Result<(), CliError> {
    let bytes = crate::host::read(&args.file)?;
    let path = args.file.display().to_string();
    let mut conn = Conn::remote(host)?;
    let regs = conn.register(bytes, path, args.map.clone())?;
    // The ops type of each, for the message bpftool prints.
    let types = conn.struct_ops().unwrap_or_default();
    let type_of = |id: u32| {
        types
            .iter()
            .find(|s| s.map_id == id)
            .map_or("struct_ops", |s| s.ops_type.as_str())
            .to_string()
    };
    if out.json {
        let v = regs
            .iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "id": r.map_id,
                    "kernel_struct_ops": type_of(r.map_id),
                    "link_id": r.link_id,
                })
            })
            .collect();
        return out.json(&Value::Array(v));
    }
    let mut text = String::new();
    for r in &regs {
        text.push_str(&format!(
            "Registered {} {} id {}",
            type_of(r.map_id),
            r.name,
            r.map_id
        ));
        if let Some(l) = r.link_id {
            text.push_str(&format!(" link_id {l}"));
        }
        text.push('\n');
    }
    out.text(&text)
}

/// `struct_ops unregister (id N | name NAME)` in a running host.
fn unregister(words: &[String], host: Option<&Path>, out: &Output) -> Result<(), CliError> {
    let spec = prog::spec(words, None, &["struct_ops", "unregister"])?;
    let Some(h) = host else {
        return Err(CliError::NeedsHost {
            command: "struct_ops unregister",
        });
    };
    let target = match (spec.file, spec.sel) {
        (None, Some(Sel::Id(id))) => Target::Id(id),
        (None, Some(Sel::Name(n))) => Target::Name(n),
        _ => {
            return Err(CliError::Usage {
                command: &["struct_ops", "unregister"],
                message: "name the registration: `id N` (map or link id) or `name NAME`".into(),
            });
        }
    };
    let mut conn = Conn::remote(h)?;
    let what = match &target {
        Target::Id(id) => format!("id {id}"),
        Target::Name(n) => n.clone(),
    };
    conn.unregister(target)?;
    if out.json {
        return crate::map::done(out);
    }
    out.text(&format!("Unregistered {what}\n"))
}

/// The errno name `name` as the runtime spells it (`EINVAL` if it is not one).
fn static_errno_name(name: &str) -> &'static str {
    (1..=255)
        .filter_map(|e| structops::Errno(e).name())
        .find(|n| *n == name)
        .unwrap_or("EINVAL")
}

/// One program's load result.
#[derive(Debug, PartialEq, Eq)]
struct ProgRow {
    name: String,
    /// `None`: loaded.
    errno: Option<String>,
    error: String,
}

/// One struct_ops map's attach result.
#[derive(Debug, PartialEq, Eq)]
struct MapRow {
    name: String,
    ops: String,
    link: bool,
    /// `None`: attached.
    errno: Option<String>,
    /// The registered value through BTF (attached maps).
    value: Option<String>,
}

/// The last meaningful line of a verifier log.
fn error_line(log: &str) -> String {
    log.lines()
        .rev()
        .map(str::trim)
        .find(|l| {
            !l.is_empty()
                && !l.starts_with("processed ")
                && !l.starts_with("verification time")
                && !l.starts_with("stack depth")
        })
        .unwrap_or_default()
        .to_owned()
}

/// Runs the command.
///
/// # Errors
///
/// A [`CliError`] when the object cannot be read or parsed, or (after printing the
/// transcript) [`CliError::Failed`] when a program or an attach failed.
pub fn run(cmd: StructOpsCmd, host: Option<&Path>, out: &Output) -> Result<(), CliError> {
    let args = match cmd {
        StructOpsCmd::Show { words } => return show(&words, host, false, out),
        StructOpsCmd::Dump { words } => return show(&words, host, true, out),
        StructOpsCmd::Unregister { words } => return unregister(&words, host, out),
        StructOpsCmd::Register(args) => args,
    };
    if let Some(h) = host {
        return register_remote(&args, h, out);
    }
    let (progs, maps) = register(&args)?;
    let failed = progs.iter().any(|p| p.errno.is_some()) || maps.iter().any(|m| m.errno.is_some());
    if out.json {
        let v = json!({
            "file": args.file.display().to_string(),
            "progs": progs.iter().map(|p| json!({
                "name": p.name,
                "result": p.errno.as_deref().unwrap_or("ok"),
                "error": p.error,
            })).collect::<Vec<_>>(),
            "maps": maps.iter().map(|m| json!({
                "name": m.name,
                "ops": m.ops,
                "link": m.link,
                "attach": m.errno.as_deref().unwrap_or("ok"),
                "value": m.value,
            })).collect::<Vec<_>>(),
        });
        out.json(&v)?;
    } else {
        let mut s = String::new();
        for p in &progs {
            match &p.errno {
                None => s.push_str(&format!("prog {}: ok\n", p.name)),
                Some(e) => s.push_str(&format!("prog {}: {e}: {}\n", p.name, p.error)),
            }
        }
        for m in &maps {
            s.push_str(&format!(
                "map {}: ops {}, link {}, attach {}\n",
                m.name,
                m.ops,
                if m.link { "yes" } else { "no" },
                m.errno.as_deref().unwrap_or("ok")
            ));
        }
        for m in maps.iter().filter(|m| m.value.is_some()) {
            s.push_str(&format!(
                "registered {}:\n{}\n",
                m.name,
                m.value.as_deref().unwrap_or_default()
            ));
        }
        out.text(&s)?;
    }
    if failed {
        let first = progs
            .iter()
            .filter_map(|p| p.errno.as_deref())
            .chain(maps.iter().filter_map(|m| m.errno.as_deref()))
            .next()
            .unwrap_or_default();
        return Err(CliError::NotRegistered {
            progs: progs.iter().filter(|p| p.errno.is_some()).count(),
            maps: maps.iter().filter(|m| m.errno.is_some()).count(),
            errno: static_errno_name(first),
        });
    }
    Ok(())
}

/// Loads and attaches; the transcript's rows.
fn register(args: &RegisterArgs) -> Result<(Vec<ProgRow>, Vec<MapRow>), CliError> {
    let file = args.file.as_path();
    let btf = args.btf.as_deref();
    let loaded = match inproc::load_with(file, btf, None, 1, args.engine) {
        Ok(l) => l,
        Err(CliError::Load(e)) if matches!(*e, LoadError::ProgLoad { .. }) => {
            // One program failed, so nothing loaded (libbpf's rule): report each
            // program as it loads alone, and no map attached.
            return Ok((each_alone(args)?, Vec::new()));
        }
        Err(e) => return Err(e),
    };
    let progs = loaded
        .obj
        .progs()
        .map(|(name, _)| ProgRow {
            name: name.to_owned(),
            errno: None,
            error: String::new(),
        })
        .collect();
    let mut maps = Vec::new();
    let names: Vec<String> = loaded
        .obj
        .maps()
        .filter(|(_, h)| h.struct_ops().is_some())
        .map(|(n, _)| n.to_owned())
        .filter(|n| args.map.as_ref().is_none_or(|only| only == n))
        .collect();
    if let (Some(only), true) = (&args.map, names.is_empty()) {
        return Err(CliError::NoSuchMap {
            name: only.clone(),
            path: file.display().to_string(),
            available: loaded
                .obj
                .maps()
                .filter(|(_, h)| h.struct_ops().is_some())
                .map(|(n, _)| n.to_owned())
                .collect(),
        });
    }
    for name in names {
        let Some(h) = loaded.obj.map(&name) else {
            continue;
        };
        let (ops, link) = h
            .struct_ops()
            .map(|s| (s.ops_type().name().to_owned(), s.is_link_map()))
            .unwrap_or_default();
        let attached = loaded.obj.attach_struct_ops(&loaded.rt, &name);
        let errno = match &attached {
            Ok(_) => None,
            Err(LoadError::Attach { errno, .. }) => {
                Some(errno.name().unwrap_or("EINVAL").to_owned())
            }
            Err(e) => Some(e.to_string()),
        };
        let value = attached
            .is_ok()
            .then(|| registered_value(&loaded.rt, h))
            .flatten();
        maps.push(MapRow {
            name,
            ops,
            link,
            errno,
            value,
        });
    }
    Ok((progs, maps))
}

/// The map's value (program ids, state, refcnt, the ops struct) formatted through the
/// host BTF's `bpf_struct_ops_<name>` type, as bpftool's `struct_ops dump` prints it.
fn registered_value(rt: &structops::Runtime, h: &structops::MapHandle) -> Option<String> {
    let so = h.struct_ops()?;
    let mut v = vec![0u8; so.ops_type().value_size() as usize];
    rt.map_lookup_elem(h, Some(&0u32.to_ne_bytes()), &mut v, 0)
        .ok()?;
    let host = rt.host_btf()?;
    let btf = host.object().btf();
    let printer = structops_btf::value::ValuePrinter::new(btf);
    let f = printer.format(so.ops_type().value_id(), &v).ok()?;
    Some(f.to_text(structops_btf::value::Style::Plain))
}

/// Every program of the object loaded on its own: ok, or its errno and error line.
fn each_alone(args: &RegisterArgs) -> Result<Vec<ProgRow>, CliError> {
    let bytes = crate::host::read(&args.file)?;
    let path = args.file.display().to_string();
    let obj = structops_obj::Object::parse(&bytes).map_err(|source| CliError::Object {
        path: path.clone(),
        source: Box::new(source),
    })?;
    let names: Vec<String> = obj.programs().iter().map(|p| p.name().to_owned()).collect();
    let mut rows = Vec::new();
    for name in names {
        let row = match inproc::load_with(
            &args.file,
            args.btf.as_deref(),
            Some(&[name.as_str()]),
            1,
            args.engine,
        ) {
            Ok(_) => ProgRow {
                name,
                errno: None,
                error: String::new(),
            },
            Err(CliError::Load(e)) => match *e {
                LoadError::ProgLoad { errno, ref log, .. } => ProgRow {
                    name,
                    errno: Some(errno.name().unwrap_or("EINVAL").to_owned()),
                    error: error_line(log),
                },
                other => ProgRow {
                    name,
                    errno: Some("ELOAD".into()),
                    error: other.to_string(),
                },
            },
            Err(e) => return Err(e),
        };
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_line_skips_the_stats() {
        let log = "0: (b7) r0 = 0\nR1 invalid mem access 'scalar'\nprocessed 3 insns (limit 1000000)\nverification time 5 usec\n";
        assert_eq!(error_line(log), "R1 invalid mem access 'scalar'");
        assert_eq!(error_line(""), "");
    }
}
