//! `structops map`: list, dump, look up, update and delete map elements — of a running
//! host (`--host`), or of an object loaded into an in-process runtime (optionally after
//! test-running one of its programs) — printed as bpftool prints them (with BTF:
//! formatted keys and values; without: hex bytes).

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::{Value, json};
use structops::{Errno, MapHandle, MapType};
use structops_btf::Btf;
use structops_btf::value::{Formatted, ValuePrinter, map_dump_plain, map_entry_json};
use structops_control::MapEntry;

use crate::error::CliError;
use crate::inproc::{self, Engine, Loaded};
use crate::live::{self, Conn, Sel, Spec, parse_bytes};
use crate::output::Output;
use crate::prog;

/// Most entries dumped per map; a map larger than this is cut off with a note, so a
/// huge `max_entries` cannot make the CLI run without bound.
const MAX_DUMP_ENTRIES: usize = 100_000;

/// `map` verbs.
#[derive(Debug, Subcommand)]
pub enum MapCmd {
    /// List maps (`bpftool map show`): a host's (--host), or those FILE creates in a
    /// runtime in this process.
    #[command(override_usage = "structops map show [FILE] [id N | name NAME]")]
    Show {
        /// `[FILE] [id N | name NAME]`.
        #[arg(value_name = "SPEC")]
        words: Vec<String>,
        /// The in-process runtime's host BTF (default: /sys/kernel/btf/vmlinux).
        #[arg(long, value_name = "PATH")]
        btf: Option<PathBuf>,
    },
    /// Dump maps: a host's map (--host, `id N` or `name NAME`), or FILE's maps after
    /// loading it into an in-process runtime and optionally test-running one program.
    #[command(
        override_usage = "structops map dump FILE [--map NAME] [--run PROG] ...\n       \
                                structops --host PATH map dump (id N | name NAME)"
    )]
    Dump {
        /// `FILE`, or with --host `id N` / `name NAME`.
        #[arg(value_name = "SPEC")]
        words: Vec<String>,
        /// Dump only this map (libbpf names: `counts`, `obj.rodata`, ...).
        #[arg(long = "map", value_name = "NAME")]
        map: Option<String>,
        /// Test-run this program first (only it is loaded; without it, no program is
        /// loaded and the maps hold their initial contents).
        #[arg(long = "run", value_name = "PROG")]
        run: Option<String>,
        /// The runtime's host BTF (default: /sys/kernel/btf/vmlinux when readable).
        #[arg(long, value_name = "PATH")]
        btf: Option<PathBuf>,
        #[command(flatten)]
        input: inproc::RunInput,
    },
    /// Look up one key (`bpftool map lookup`). Bytes are words as in bpftool: decimal,
    /// 0x hex or 0 octal, or `hex` followed by hex bytes.
    #[command(
        override_usage = "structops [--host PATH] map lookup [FILE] (id N | name NAME) \
                                key BYTES..."
    )]
    Lookup {
        /// `[FILE] (id N | name NAME) key BYTES...`.
        #[arg(value_name = "ARGS", num_args = 0.., allow_hyphen_values = true)]
        words: Vec<String>,
    },
    /// Update one value in a running host (`bpftool map update`); flags `any` (the
    /// default), `exist`, `noexist`.
    #[command(
        override_usage = "structops --host PATH map update (id N | name NAME) \
                                key BYTES... value BYTES... [any|exist|noexist]"
    )]
    Update {
        /// `(id N | name NAME) key BYTES... value BYTES... [FLAG]`.
        #[arg(value_name = "ARGS", num_args = 0.., allow_hyphen_values = true)]
        words: Vec<String>,
    },
    /// Delete one key in a running host (`bpftool map delete`).
    #[command(override_usage = "structops --host PATH map delete (id N | name NAME) key BYTES...")]
    Delete {
        /// `(id N | name NAME) key BYTES...`.
        #[arg(value_name = "ARGS", num_args = 0.., allow_hyphen_values = true)]
        words: Vec<String>,
    },
}

/// Runs a `map` verb.
pub fn run(cmd: MapCmd, host: Option<&Path>, out: &Output) -> Result<(), CliError> {
    match cmd {
        MapCmd::Show { words, btf } => {
            let spec = prog::spec(&words, None, &["map", "show"])?;
            let mut conn = Conn::open(host, spec.file.as_deref(), btf.as_deref(), Engine::Jit)?;
            let maps = conn.maps()?;
            let shown: Vec<&MapEntry> = match &spec.sel {
                Some(sel) => live::select(&maps, sel, "map", |m| (m.id, &m.name))?,
                None => maps.iter().collect(),
            };
            if out.json {
                out.json(&Value::Array(
                    shown.iter().map(|m| live::map_json(m)).collect(),
                ))
            } else {
                out.text(&shown.iter().map(|m| live::map_text(m)).collect::<String>())
            }
        }
        MapCmd::Dump {
            words,
            map,
            run,
            btf,
            input,
        } => {
            let spec = prog::spec(&words, None, &["map", "dump"])?;
            match (host, spec.file) {
                (None, Some(file)) => {
                    let only = match (map, spec.sel) {
                        (Some(m), None) => Some(m),
                        (None, Some(Sel::Name(m))) => Some(m),
                        (None, None) => None,
                        _ => {
                            return Err(CliError::Usage {
                                command: &["map", "dump"],
                                message: "name the map of FILE with --map NAME or `name NAME`"
                                    .into(),
                            });
                        }
                    };
                    dump(
                        &file,
                        only.as_deref(),
                        run.as_deref(),
                        btf.as_deref(),
                        &input,
                        out,
                    )
                }
                (Some(h), None) => {
                    let sel = match (spec.sel, map) {
                        (Some(s), None) => s,
                        (None, Some(m)) => Sel::Name(m),
                        (None, None) => {
                            return Err(CliError::Usage {
                                command: &["map", "dump"],
                                message: "name the host's map: `id N` or `name NAME`".into(),
                            });
                        }
                        (Some(_), Some(_)) => {
                            return Err(CliError::Usage {
                                command: &["map", "dump"],
                                message: "name one map".into(),
                            });
                        }
                    };
                    let mut conn = Conn::remote(h)?;
                    let maps = conn.maps()?;
                    let hits = live::select(&maps, &sel, "map", |m| (m.id, &m.name))?;
                    let mut text = String::new();
                    let mut json_maps = Vec::new();
                    for m in hits {
                        let d = dump_remote(&mut conn, m)?;
                        text.push_str(&d.text);
                        json_maps.push(d.json);
                    }
                    if out.json {
                        out.json(&Value::Array(json_maps))
                    } else {
                        out.text(&text)
                    }
                }
                (Some(_), Some(f)) => Err(CliError::Unsupported {
                    what: format!(
                        "{}: with --host the maps are the host's: `id N` or `name NAME`",
                        f.display()
                    ),
                }),
                (None, None) => Err(CliError::Usage {
                    command: &["map", "dump"],
                    message: "give a FILE, or --host PATH with `id N` / `name NAME`".into(),
                }),
            }
        }
        MapCmd::Lookup { words } => {
            let a = elem_args(&words, "lookup", false)?;
            let mut conn = Conn::open(host, a.spec.file.as_deref(), None, Engine::Jit)?;
            let (m, btf) = find_map(&mut conn, &a.sel)?;
            check_sizes(&m, &a, &["map", "lookup"])?;
            let v = conn.map_lookup(m.id, a.key.clone())?;
            let d = render_one(&m, &a.key, &v, btf.as_ref());
            if out.json {
                out.json(&d.json)
            } else {
                out.text(&d.text)
            }
        }
        MapCmd::Update { words } => {
            let a = elem_args(&words, "update", true)?;
            let Some(h) = host else {
                return Err(CliError::NeedsHost {
                    command: "map update",
                });
            };
            let mut conn = Conn::remote(h)?;
            let (m, _) = find_map(&mut conn, &a.sel)?;
            check_sizes(&m, &a, &["map", "update"])?;
            conn.map_update(m.id, a.key, a.value, a.flags)?;
            done(out)
        }
        MapCmd::Delete { words } => {
            let a = elem_args(&words, "delete", false)?;
            let Some(h) = host else {
                return Err(CliError::NeedsHost {
                    command: "map delete",
                });
            };
            let mut conn = Conn::remote(h)?;
            let (m, _) = find_map(&mut conn, &a.sel)?;
            check_sizes(&m, &a, &["map", "delete"])?;
            conn.map_delete(m.id, a.key)?;
            done(out)
        }
    }
}

/// What a successful change prints: nothing, or bpftool's JSON `null`.
pub fn done(out: &Output) -> Result<(), CliError> {
    if out.json {
        out.json(&Value::Null)
    } else {
        Ok(())
    }
}

/// The words of `map lookup|update|delete`.
struct ElemArgs {
    spec: Spec,
    sel: Sel,
    key: Vec<u8>,
    value: Vec<u8>,
    flags: u64,
}

fn elem_args(words: &[String], verb: &'static str, update: bool) -> Result<ElemArgs, CliError> {
    let command: &'static [&'static str] = match verb {
        "lookup" => &["map", "lookup"],
        "update" => &["map", "update"],
        _ => &["map", "delete"],
    };
    let usage = |message: String| CliError::Usage { command, message };
    let Some(at) = words.iter().position(|w| w == "key") else {
        return Err(usage("missing `key BYTES...`".into()));
    };
    let spec = prog::spec(&words[..at], None, command)?;
    let Some(sel) = spec.sel.clone() else {
        return Err(usage("name the map: `id N` or `name NAME`".into()));
    };
    let rest = &words[at + 1..];
    let (key, used) = parse_bytes(rest, &["value"]).map_err(|e| usage(format!("key: {e}")))?;
    let rest = &rest[used..];
    let (mut value, mut flags) = (Vec::new(), structops::BPF_ANY);
    match (update, rest.first().map(String::as_str)) {
        (true, Some("value")) => {
            let (v, used) = parse_bytes(&rest[1..], &["any", "exist", "noexist"])
                .map_err(|e| usage(format!("value: {e}")))?;
            value = v;
            let tail = &rest[1 + used..];
            flags = match tail {
                [] => structops::BPF_ANY,
                [f] if f == "any" => structops::BPF_ANY,
                [f] if f == "exist" => structops::BPF_EXIST,
                [f] if f == "noexist" => structops::BPF_NOEXIST,
                _ => return Err(usage(format!("unexpected '{}'", tail.join(" ")))),
            };
        }
        (true, _) => return Err(usage("missing `value BYTES...`".into())),
        (false, None) => {}
        (false, Some(w)) => return Err(usage(format!("unexpected '{w}'"))),
    }
    Ok(ElemArgs {
        spec,
        sel,
        key,
        value,
        flags,
    })
}

/// The one map `sel` names, and its BTF when it has a value type.
/// Refuses a key or value whose size is not the map's, before asking the host.
fn check_sizes(
    m: &MapEntry,
    a: &ElemArgs,
    command: &'static [&'static str],
) -> Result<(), CliError> {
    let usage = |message: String| CliError::Usage { command, message };
    if a.key.len() != m.key_size as usize {
        return Err(usage(format!(
            "key: {} bytes given, map {} ({}) has {}-byte keys",
            a.key.len(),
            m.id,
            m.name,
            m.key_size
        )));
    }
    if command == ["map", "update"] && a.value.len() != m.sys_value_size as usize {
        return Err(usage(format!(
            "value: {} bytes given, map {} ({}) takes {} bytes",
            a.value.len(),
            m.id,
            m.name,
            m.sys_value_size
        )));
    }
    Ok(())
}

fn find_map(conn: &mut Conn, sel: &Sel) -> Result<(MapEntry, Option<Btf>), CliError> {
    let maps = conn.maps()?;
    let m = live::select_one(&maps, sel, "map", |m| (m.id, &m.name))?.clone();
    let btf = map_btf(conn, &m);
    Ok((m, btf))
}

/// The BTF a map's key and value types live in, if it has one and it can be read
/// (a map without it is printed in hex, as bpftool does).
fn map_btf(conn: &mut Conn, m: &MapEntry) -> Option<Btf> {
    if m.btf_id == 0 || m.btf_value_type_id == 0 {
        return None;
    }
    let raw = conn.btf(m.btf_id).ok()?;
    Btf::parse(&raw).ok()
}

fn head(m: &MapEntry) -> Head {
    Head {
        id: m.id,
        map_type: m.map_type,
        key_size: m.key_size,
        value_size: m.value_size,
        max_entries: m.max_entries,
    }
}

/// `map dump` of a host's map.
fn dump_remote(conn: &mut Conn, m: &MapEntry) -> Result<MapDump, CliError> {
    let items = if MapType::from_raw(m.map_type) == Some(MapType::Ringbuf) {
        Vec::new()
    } else {
        conn.map_dump(m.id)?
    };
    let btf = map_btf(conn, m);
    Ok(render(
        &m.name,
        &head(m),
        &items,
        false,
        btf.as_ref(),
        m.btf_key_type_id,
        m.btf_value_type_id,
    ))
}

/// One looked-up entry as `bpftool map lookup` prints it: through BTF, the formatted
/// `{"key": .., "value": ..}` object; without, `key: .. value: ..` in hex.
fn render_one(m: &MapEntry, key: &[u8], value: &[u8], btf: Option<&Btf>) -> MapDump {
    let items = vec![(key.to_vec(), value.to_vec())];
    let d = render(
        &m.name,
        &head(m),
        &items,
        false,
        btf,
        m.btf_key_type_id,
        m.btf_value_type_id,
    );
    let json = d
        .json
        .get("entries")
        .and_then(|e| e.get(0))
        .cloned()
        .unwrap_or(Value::Null);
    let text = match json.get("formatted") {
        Some(f) => format!("{}\n", pretty4(f)),
        None => d
            .text
            .lines()
            .filter(|l| l.starts_with("key") || l.starts_with("value"))
            .map(|l| format!("{l}\n"))
            .collect(),
    };
    MapDump { text, json }
}

/// JSON with bpftool's four-space indentation.
pub fn pretty4(v: &Value) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    match serde::Serialize::serialize(v, &mut ser) {
        Ok(()) => String::from_utf8_lossy(&buf).into_owned(),
        Err(_) => v.to_string(),
    }
}

fn dump(
    file: &Path,
    only: Option<&str>,
    run: Option<&str>,
    btf: Option<&Path>,
    input: &inproc::RunInput,
    out: &Output,
) -> Result<(), CliError> {
    let progs: Vec<&str> = run.into_iter().collect();
    let loaded = inproc::load(file, btf, Some(&progs), input.engine)?;
    if let Some(name) = run {
        let Some(prog) = loaded.obj.prog(name) else {
            return Err(CliError::NoSuchProgram {
                name: name.to_string(),
                path: file.display().to_string(),
                available: Vec::new(),
            });
        };
        inproc::run(&loaded, name, prog, input)?;
    }
    let maps: Vec<(&str, &MapHandle)> = match only {
        Some(name) => match loaded.obj.map(name) {
            Some(h) => vec![(name, h)],
            None => {
                return Err(CliError::NoSuchMap {
                    name: name.to_string(),
                    path: file.display().to_string(),
                    available: loaded.obj.maps().map(|(n, _)| n.to_string()).collect(),
                });
            }
        },
        None => loaded.obj.maps().collect(),
    };
    let btf = loaded.obj.object().btf();
    let mut text = String::new();
    let mut json_maps = Vec::new();
    for (name, h) in maps {
        let d = dump_map(&loaded, name, h, btf)?;
        if out.json {
            json_maps.push(d.json);
        } else {
            text.push_str(&d.text);
        }
    }
    if out.json {
        out.json(&Value::Array(json_maps))
    } else {
        out.text(&text)
    }
}

/// One map's dump in both renderings.
struct MapDump {
    text: String,
    json: Value,
}

/// A map's entries as raw key and value bytes.
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Reads every entry of `h` through the syscall side (`get_next_key` + lookup).
fn entries(loaded: &Loaded, h: &MapHandle) -> Result<(Entries, bool), CliError> {
    let info = loaded.rt.map_info(h);
    let percpu = MapType::from_raw(info.map_type).is_some_and(MapType::is_percpu);
    let value_len = if percpu {
        (info.value_size as usize).next_multiple_of(8) * loaded.rt.ncpus() as usize
    } else {
        info.value_size as usize
    };
    let mut out = Vec::new();
    let mut key: Option<Vec<u8>> = None;
    let mut next = vec![0u8; info.key_size as usize];
    let mut truncated = false;
    loop {
        match loaded.rt.map_get_next_key(h, key.as_deref(), &mut next) {
            Ok(()) => {}
            Err(Errno::ENOENT) => break,
            Err(errno) => {
                return Err(CliError::Runtime {
                    step: format!("map '{}': get_next_key", info.name),
                    errno,
                });
            }
        }
        if out.len() == MAX_DUMP_ENTRIES {
            truncated = true;
            break;
        }
        let mut value = vec![0u8; value_len];
        match loaded.rt.map_lookup_elem(h, Some(&next), &mut value, 0) {
            Ok(()) => out.push((next.clone(), value)),
            // Fd maps skip empty slots, as bpftool does.
            Err(Errno::ENOENT) => {}
            Err(errno) => {
                return Err(CliError::Runtime {
                    step: format!("map '{}': lookup", info.name),
                    errno,
                });
            }
        }
        key = Some(next.clone());
    }
    Ok((out, truncated))
}

fn dump_map(
    loaded: &Loaded,
    name: &str,
    h: &MapHandle,
    btf: Option<&Btf>,
) -> Result<MapDump, CliError> {
    let info = loaded.rt.map_info(h);
    let head = Head {
        id: info.id,
        map_type: info.map_type,
        key_size: info.key_size,
        value_size: info.value_size,
        max_entries: info.max_entries,
    };
    let (items, truncated) = if MapType::from_raw(info.map_type) == Some(MapType::Ringbuf) {
        (Vec::new(), false)
    } else {
        entries(loaded, h)?
    };
    let obj_map = loaded.obj.object().map(name);
    let key_ty = obj_map.map_or(0, |m| m.btf_key_type_id());
    let value_ty = obj_map.map_or(0, |m| m.btf_value_type_id());
    Ok(render(
        name, &head, &items, truncated, btf, key_ty, value_ty,
    ))
}

/// What a dump's header shows of a map.
struct Head {
    id: u32,
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
}

/// A dump as text and JSON: through BTF when the map has a value type, else hex.
fn render(
    name: &str,
    info: &Head,
    items: &Entries,
    truncated: bool,
    btf: Option<&Btf>,
    key_ty: u32,
    value_ty: u32,
) -> MapDump {
    let ty = MapType::from_raw(info.map_type);
    let type_name = structops_obj::MapType(info.map_type)
        .name()
        .unwrap_or("unknown");
    let header = format!(
        "map {name} (id {}): {type_name}  key {}B  value {}B  max_entries {}\n",
        info.id, info.key_size, info.value_size, info.max_entries
    );
    let mut meta = json!({
        "name": name,
        "id": info.id,
        "type": type_name,
        "key_size": info.key_size,
        "value_size": info.value_size,
        "max_entries": info.max_entries,
    });
    // Ring buffers have no keys to walk.
    if ty == Some(MapType::Ringbuf) {
        let text = format!("{header}(ring buffer: records are consumed, not dumped)\n\n");
        return MapDump { text, json: meta };
    }
    let percpu = ty.is_some_and(MapType::is_percpu);
    let printer = btf.filter(|_| value_ty != 0).map(ValuePrinter::new);
    let slot = (info.value_size as usize).next_multiple_of(8);

    let mut text = header;
    let mut json_entries = Vec::new();
    let fmt = |p: &ValuePrinter<'_>, id, data: &[u8]| -> Option<Formatted> {
        if id == 0 {
            None
        } else {
            p.format(id, data).ok()
        }
    };
    match &printer {
        Some(p) if percpu => {
            let mut rows = Vec::new();
            for (k, v) in items {
                let key = fmt(p, key_ty, k);
                let values: Vec<Formatted> = v
                    .chunks(slot)
                    .filter_map(|c| c.get(..info.value_size as usize))
                    .filter_map(|c| fmt(p, value_ty, c))
                    .collect();
                rows.push((key, values));
            }
            text.push_str(&map_dump_plain_percpu_rows(&rows));
            for (k, v) in items {
                json_entries.push(json!({"key": hex(k), "values": v.chunks(slot).enumerate()
                    .map(|(cpu, c)| json!({"cpu": cpu, "value": hex(&c[..(info.value_size as usize).min(c.len())])}))
                    .collect::<Vec<_>>()}));
            }
        }
        Some(p) => {
            let mut rows = Vec::new();
            for (k, v) in items {
                match fmt(p, value_ty, v) {
                    Some(fv) => {
                        let fk = fmt(p, key_ty, k);
                        json_entries.push(map_entry_json(k, v, Some((fk.as_ref(), &fv))));
                        rows.push((fk, fv));
                    }
                    None => json_entries.push(map_entry_json(k, v, None)),
                }
            }
            text.push_str(&map_dump_plain(rows.iter().map(|(k, v)| (k.as_ref(), v))));
        }
        None => {
            for (k, v) in items {
                if percpu {
                    text.push_str(&format!("key: {}\n", spaced_hex(k)));
                    for (cpu, c) in v.chunks(slot).enumerate() {
                        let c = &c[..(info.value_size as usize).min(c.len())];
                        text.push_str(&format!("value (CPU {cpu:02}): {}\n", spaced_hex(c)));
                    }
                } else {
                    text.push_str(&format!(
                        "key: {}  value: {}\n",
                        spaced_hex(k),
                        spaced_hex(v)
                    ));
                }
                json_entries.push(map_entry_json(k, v, None));
            }
            text.push_str(&format!(
                "Found {} element{}\n",
                items.len(),
                plural(items.len())
            ));
        }
    }
    if truncated {
        text.push_str(&format!("(stopped after {MAX_DUMP_ENTRIES} entries)\n"));
    }
    text.push('\n');
    if let Value::Object(m) = &mut meta {
        m.insert("entries".into(), Value::Array(json_entries));
        m.insert("truncated".into(), Value::Bool(truncated));
    }
    MapDump { text, json: meta }
}

fn map_dump_plain_percpu_rows(rows: &[(Option<Formatted>, Vec<Formatted>)]) -> String {
    structops_btf::value::map_dump_plain_percpu(
        rows.iter().map(|(k, v)| (k.as_ref(), v.as_slice())),
    )
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn hex(d: &[u8]) -> Value {
    Value::Array(
        d.iter()
            .map(|b| Value::String(format!("0x{b:02x}")))
            .collect(),
    )
}

fn spaced_hex(d: &[u8]) -> String {
    d.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_forms() {
        assert_eq!(spaced_hex(&[0, 0xab, 7]), "00 ab 07");
        assert_eq!(hex(&[1, 0xff]), json!(["0x01", "0xff"]));
        assert_eq!(plural(1), "");
        assert_eq!(plural(0), "s");
    }
}
