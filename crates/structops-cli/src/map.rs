//! `structops map dump`: the maps of an object loaded into an in-process runtime,
//! optionally after test-running one of its programs, printed as `bpftool map dump`
//! prints a map (with BTF: formatted keys and values; without: hex bytes).

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::{Value, json};
use structops::{Errno, MapHandle, MapType};
use structops_btf::Btf;
use structops_btf::value::{Formatted, ValuePrinter, map_dump_plain, map_entry_json};

use crate::error::CliError;
use crate::inproc::{self, Loaded};
use crate::output::Output;

/// Most entries dumped per map; a map larger than this is cut off with a note, so a
/// huge `max_entries` cannot make the CLI run without bound.
const MAX_DUMP_ENTRIES: usize = 100_000;

/// `map` verbs.
#[derive(Debug, Subcommand)]
pub enum MapCmd {
    /// Load an object into an in-process runtime, optionally test-run one program, and
    /// dump its maps (or one map).
    Dump {
        /// The BPF object.
        file: PathBuf,
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
}

/// Runs a `map` verb.
pub fn run(cmd: MapCmd, out: &Output) -> Result<(), CliError> {
    match cmd {
        MapCmd::Dump {
            file,
            map,
            run,
            btf,
            input,
        } => dump(
            &file,
            map.as_deref(),
            run.as_deref(),
            btf.as_deref(),
            &input,
            out,
        ),
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
        return Ok(MapDump { text, json: meta });
    }
    let (items, truncated) = entries(loaded, h)?;
    let percpu = ty.is_some_and(MapType::is_percpu);
    let obj_map = loaded.obj.object().map(name);
    let key_ty = obj_map.map_or(0, |m| m.btf_key_type_id());
    let value_ty = obj_map.map_or(0, |m| m.btf_value_type_id());
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
            for (k, v) in &items {
                let key = fmt(p, key_ty, k);
                let values: Vec<Formatted> = v
                    .chunks(slot)
                    .filter_map(|c| c.get(..info.value_size as usize))
                    .filter_map(|c| fmt(p, value_ty, c))
                    .collect();
                rows.push((key, values));
            }
            text.push_str(&map_dump_plain_percpu_rows(&rows));
            for (k, v) in &items {
                json_entries.push(json!({"key": hex(k), "values": v.chunks(slot).enumerate()
                    .map(|(cpu, c)| json!({"cpu": cpu, "value": hex(&c[..(info.value_size as usize).min(c.len())])}))
                    .collect::<Vec<_>>()}));
            }
        }
        Some(p) => {
            let mut rows = Vec::new();
            for (k, v) in &items {
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
            for (k, v) in &items {
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
    Ok(MapDump { text, json: meta })
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
