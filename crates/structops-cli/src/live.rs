//! Commands on loaded objects: those of a running host, reached through its control
//! socket (`--host PATH`), or those of an object file loaded into a runtime inside this
//! process. Both answer the same typed requests (`structops_control::Request`) — the
//! socket's server and the in-process [`Controller`] are one handler — so `prog show`,
//! `map dump`, `struct_ops show` and the rest print the same thing either way.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use structops_control::{
    BtfEntry, ClientError, ControlClient, Controller, Entries, JitedProg, LinkEntry, MapEntry,
    ProgEntry, Registered, Request, Response, RunOutput, StructOpsEntry, Target, XlatedProg,
};

use crate::error::CliError;
use crate::inproc::{self, Engine, Loaded};

/// A runtime to send requests to.
pub enum Conn {
    /// An object loaded into this process.
    Local {
        /// The request handler over the loaded object's runtime.
        ctl: Box<Controller>,
        /// The object, kept loaded while the command runs.
        #[expect(
            dead_code,
            reason = "held so the object's programs and maps stay loaded"
        )]
        loaded: Box<Loaded>,
    },
    /// A host's control socket.
    Remote {
        /// The connection.
        client: ControlClient,
    },
}

impl Conn {
    /// Connects to the host serving at `path`.
    pub fn remote(path: &Path) -> Result<Conn, CliError> {
        let client = ControlClient::connect(path).map_err(|e| CliError::Connect {
            path: path.display().to_string(),
            source: Box::new(e),
        })?;
        Ok(Conn::Remote { client })
    }

    /// Loads `file` (every program and map) into a runtime in this process.
    pub fn local(file: &Path, btf: Option<&Path>, engine: Engine) -> Result<Conn, CliError> {
        let loaded = inproc::load(file, btf, None, engine)?;
        let ctl = Controller::new(loaded.rt.clone(), None);
        Ok(Conn::Local {
            ctl: Box::new(ctl),
            loaded: Box::new(loaded),
        })
    }

    /// The host (`--host PATH`), or else the object file loaded in-process.
    pub fn open(
        host: Option<&Path>,
        file: Option<&Path>,
        btf: Option<&Path>,
        engine: Engine,
    ) -> Result<Conn, CliError> {
        match (host, file) {
            (Some(h), None) => Conn::remote(h),
            (None, Some(f)) => Conn::local(f, btf, engine),
            (Some(_), Some(f)) => Err(CliError::Unsupported {
                what: format!(
                    "{}: with --host the objects are the host's; name them with `id N` or \
                     `name NAME`",
                    f.display()
                ),
            }),
            (None, None) => Err(CliError::Unsupported {
                what: "no objects: give a FILE.bpf.o to load in-process, or --host PATH".into(),
            }),
        }
    }

    /// Sends one request; an error answer becomes [`CliError::Remote`].
    pub fn call(&mut self, what: &str, req: Request) -> Result<Response, CliError> {
        let resp = match self {
            Conn::Local { ctl, .. } => ctl.handle(req),
            Conn::Remote { client, .. } => match client.call(&req) {
                Ok(r) => r,
                Err(ClientError::Remote(error)) => Response::Error(error),
                Err(e) => {
                    return Err(CliError::Protocol {
                        what: what.to_string(),
                        source: Box::new(e),
                    });
                }
            },
        };
        match resp {
            Response::Error(error) => Err(CliError::Remote {
                what: what.to_string(),
                error,
            }),
            r => Ok(r),
        }
    }

    fn unexpected(what: &str, r: Response) -> CliError {
        CliError::Protocol {
            what: what.to_string(),
            source: Box::new(ClientError::Unexpected(Box::new(r))),
        }
    }
}

/// Typed requests: one method per request, each naming what it asked in its errors.
macro_rules! typed {
    ($(#[$doc:meta] $fn:ident($($arg:ident: $ty:ty),*) -> $out:ty = $what:expr, $req:expr, $pat:pat => $val:expr;)*) => {
        impl Conn {
            $(
                #[$doc]
                pub fn $fn(&mut self, $($arg: $ty),*) -> Result<$out, CliError> {
                    let what = $what;
                    match self.call(&what, $req)? {
                        $pat => Ok($val),
                        r => Err(Conn::unexpected(&what, r)),
                    }
                }
            )*
        }
    };
}

typed! {
    /// Every program.
    progs() -> Vec<ProgEntry> = "listing programs".to_string(), Request::ListProgs, Response::Progs(v) => v;
    /// Every map.
    maps() -> Vec<MapEntry> = "listing maps".to_string(), Request::ListMaps, Response::Maps(v) => v;
    /// Every link.
    links() -> Vec<LinkEntry> = "listing links".to_string(), Request::ListLinks, Response::Links(v) => v;
    /// Every struct_ops map.
    struct_ops() -> Vec<StructOpsEntry> = "listing struct_ops maps".to_string(), Request::ListStructOps, Response::StructOps(v) => v;
    /// Every BTF object.
    btfs() -> Vec<BtfEntry> = "listing BTF objects".to_string(), Request::ListBtf, Response::Btfs(v) => v;
    /// A program's translated instructions.
    xlated(id: u32) -> XlatedProg = format!("prog {id}"), Request::ProgXlated { id }, Response::Xlated(v) => v;
    /// A program's native code.
    jited(id: u32) -> JitedProg = format!("prog {id}"), Request::ProgJited { id }, Response::Jited(v) => v;
    /// A BTF object's bytes.
    btf(id: u32) -> Vec<u8> = format!("btf {id}"), Request::BtfGet { id }, Response::Btf(v) => v;
    /// A map's entries.
    map_dump(id: u32) -> Entries = format!("map {id}"), Request::MapDump { id }, Response::Entries(v) => v;
    /// One value.
    map_lookup(id: u32, key: Vec<u8>) -> Vec<u8> = format!("map {id} lookup"), Request::MapLookup { id, key }, Response::Value(v) => v;
    /// Updates one value.
    map_update(id: u32, key: Vec<u8>, value: Vec<u8>, flags: u64) -> () = format!("map {id} update"), Request::MapUpdate { id, key, value, flags }, Response::Done => ();
    /// Deletes one key.
    map_delete(id: u32, key: Vec<u8>) -> () = format!("map {id} delete"), Request::MapDelete { id, key }, Response::Done => ();
    /// Registers an object's struct_ops maps.
    register(object: Vec<u8>, path: String, map: Option<String>) -> Vec<Registered> = format!("registering {path}"), Request::StructOpsRegister { object, path, map }, Response::Registered(v) => v;
    /// Unregisters one.
    unregister(target: Target) -> () = format!("unregistering {}", target_text(&target)), Request::StructOpsUnregister { target }, Response::Done => ();
    /// Moves a link to a map of a new object.
    link_update(link_id: u32, object: Vec<u8>, path: String, map: Option<String>) -> Vec<Registered> = format!("link {link_id} update"), Request::LinkUpdate { link_id, object, path, map }, Response::Registered(v) => v;
    /// Detaches a link.
    link_detach(link_id: u32) -> () = format!("link {link_id} detach"), Request::LinkDetach { link_id }, Response::Done => ();
    /// Test-runs a program.
    prog_run(id: u32, args: Vec<u64>, data_in: Option<Vec<u8>>, ctx_in: Option<Vec<u8>>, repeat: u32) -> RunOutput = format!("prog {id} run"), Request::ProgRun { id, args, data_in, ctx_in, repeat }, Response::Ran(v) => v;
    /// The host's status JSON text.
    status() -> String = "reading the host status".to_string(), Request::Status, Response::Status(v) => v;
}

fn target_text(t: &Target) -> String {
    match t {
        Target::Id(id) => format!("id {id}"),
        Target::Name(n) => format!("name {n}"),
    }
}

/// The longest object name the runtime keeps (`BPF_OBJ_NAME_LEN` - 1).
const OBJ_NAME_MAX: usize = 15;

/// How an object is named on the command line, as in bpftool: `id N` or `name NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sel {
    /// `id N`.
    Id(u32),
    /// `name NAME`.
    Name(String),
}

impl std::fmt::Display for Sel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sel::Id(id) => write!(f, "id {id}"),
            Sel::Name(n) => write!(f, "name {n}"),
        }
    }
}

impl Sel {
    /// Does an object with this id and name match? Object names are cut to 15 bytes
    /// (`BPF_OBJ_NAME_LEN`), so a longer name matches the object whose name is its
    /// first 15 bytes.
    pub fn matches(&self, id: u32, name: &str) -> bool {
        match self {
            Sel::Id(i) => *i == id,
            Sel::Name(n) => {
                n == name
                    || (name.len() == OBJ_NAME_MAX && n.len() > OBJ_NAME_MAX && n.starts_with(name))
            }
        }
    }
}

/// The objects a command is about: a FILE to load in-process and/or an `id N` /
/// `name NAME` selector, parsed from the verb's positional words.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Spec {
    /// The object file.
    pub file: Option<PathBuf>,
    /// The selector.
    pub sel: Option<Sel>,
}

impl Spec {
    /// Parses `[FILE] [id N | name NAME]`; `alias` (from `--prog NAME` / `--map NAME`)
    /// is the same as `name NAME`.
    pub fn parse(words: &[String], alias: Option<&str>) -> Result<Spec, String> {
        let mut spec = Spec::default();
        let mut it = words.iter();
        while let Some(w) = it.next() {
            match w.as_str() {
                "id" => {
                    let Some(n) = it.next() else {
                        return Err("`id` needs a number".into());
                    };
                    let id = parse_id(n).ok_or_else(|| format!("'{n}' is not an id"))?;
                    set_sel(&mut spec, Sel::Id(id))?;
                }
                "name" => {
                    let Some(n) = it.next() else {
                        return Err("`name` needs a name".into());
                    };
                    set_sel(&mut spec, Sel::Name(n.clone()))?;
                }
                _ if spec.file.is_none() && spec.sel.is_none() => {
                    spec.file = Some(PathBuf::from(w));
                }
                _ => return Err(format!("unexpected '{w}'")),
            }
        }
        if let Some(a) = alias {
            set_sel(&mut spec, Sel::Name(a.to_string()))?;
        }
        Ok(spec)
    }
}

fn set_sel(spec: &mut Spec, sel: Sel) -> Result<(), String> {
    if spec.sel.is_some() {
        return Err("name one object: either `id N` or `name NAME`".into());
    }
    spec.sel = Some(sel);
    Ok(())
}

/// An id: decimal or `0x` hex.
pub fn parse_id(s: &str) -> Option<u32> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Parses bytes as bpftool does (`key 1 0 0 0`, `key 0x01 0 0 0`, `key hex 01 00 00 00`):
/// each word is one byte, decimal, `0x` hex or `0` octal; after `hex`, every word is
/// hex. Returns the bytes and how many words were used; parsing stops at a word in
/// `stop`.
pub fn parse_bytes(words: &[String], stop: &[&str]) -> Result<(Vec<u8>, usize), String> {
    let mut out = Vec::new();
    let mut used = 0;
    let mut hex = false;
    for w in words {
        if stop.contains(&w.as_str()) {
            break;
        }
        used += 1;
        if w == "hex" && out.is_empty() && !hex {
            hex = true;
            continue;
        }
        if hex {
            // `hex 0102 03`: every word is one or more hex byte pairs.
            let digits = w.strip_prefix("0x").unwrap_or(w);
            if digits.is_empty() || digits.len() % 2 != 0 {
                return Err(format!("'{w}' is not whole hex bytes"));
            }
            for i in (0..digits.len()).step_by(2) {
                let pair = digits.get(i..i + 2).unwrap_or_default();
                out.push(u8::from_str_radix(pair, 16).map_err(|_| format!("'{w}' is not hex"))?);
            }
            continue;
        }
        let v = if let Some(h) = w.strip_prefix("0x").or_else(|| w.strip_prefix("0X")) {
            u8::from_str_radix(h, 16)
        } else if w.len() > 1 && w.starts_with('0') {
            u8::from_str_radix(&w[1..], 8)
        } else {
            w.parse::<u8>()
        };
        out.push(v.map_err(|_| format!("'{w}' is not a byte (0-255, 0x hex or 0 octal)"))?);
    }
    Ok((out, used))
}

/// Resolves a selector against a list, by id or name. `kind` names the objects.
pub fn select<'a, T>(
    items: &'a [T],
    sel: &Sel,
    kind: &'static str,
    key: impl Fn(&T) -> (u32, &str),
) -> Result<Vec<&'a T>, CliError> {
    let hits: Vec<&T> = items
        .iter()
        .filter(|t| {
            let (id, name) = key(t);
            sel.matches(id, name)
        })
        .collect();
    if hits.is_empty() {
        return Err(CliError::NotFound {
            kind,
            selector: sel.to_string(),
        });
    }
    Ok(hits)
}

/// Exactly one object for a verb that acts on one.
pub fn select_one<'a, T>(
    items: &'a [T],
    sel: &Sel,
    kind: &'static str,
    key: impl Fn(&T) -> (u32, &str),
) -> Result<&'a T, CliError> {
    let hits = select(items, sel, kind, &key)?;
    match hits.as_slice() {
        [one] => Ok(one),
        _ => Err(CliError::Unsupported {
            what: format!(
                "{kind} {sel}: {} objects have that name ({}); name one by id",
                hits.len(),
                hits.iter()
                    .map(|t| format!("id {}", key(t).0))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// `bpf_link_type` names, as bpftool prints them.
pub fn link_type_name(t: u32) -> String {
    let name = match t {
        1 => "raw_tracepoint",
        2 => "tracing",
        3 => "cgroup",
        4 => "iter",
        5 => "netns",
        6 => "xdp",
        7 => "perf_event",
        8 => "kprobe_multi",
        9 => "struct_ops",
        10 => "netfilter",
        11 => "tcx",
        12 => "uprobe_multi",
        13 => "netkit",
        14 => "sockmap",
        _ => return format!("type {t}"),
    };
    name.to_string()
}

fn prog_type_name(t: u32) -> String {
    structops_obj::ProgType(t)
        .name()
        .map_or_else(|| format!("type {t}"), str::to_string)
}

fn map_type_name(t: u32) -> String {
    structops_obj::MapType(t)
        .name()
        .map_or_else(|| format!("type {t}"), str::to_string)
}

/// Lowercase hex of a tag, as bpftool prints it.
pub fn tag_hex(tag: &[u8; 8]) -> String {
    tag.iter().map(|b| format!("{b:02x}")).collect()
}

/// `CLOCK_BOOTTIME` nanoseconds (a program's `load_time`) as Unix seconds, as bpftool
/// converts them; `None` if the clocks cannot be read.
pub fn boot_ns_to_unix(load_time: u64) -> Option<i64> {
    let now = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is valid for writes; clock_gettime has no other preconditions.
        let r = unsafe { libc::clock_gettime(clock, &raw mut ts) };
        (r == 0).then(|| i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec))
    };
    let real = now(libc::CLOCK_REALTIME)?;
    let boot = now(libc::CLOCK_BOOTTIME)?;
    let at = real - boot + i128::from(load_time);
    i64::try_from(at.div_euclid(1_000_000_000)).ok()
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SS+0000` (bpftool's `%FT%T%z`, in UTC).
pub fn iso8601_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Days since 1970-01-01 to a civil date, in 400-year eras of 146,097 days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}+0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `bpftool prog show` for one program, plain.
pub fn prog_text(p: &ProgEntry) -> String {
    let mut s = format!("{}: {}  ", p.id, prog_type_name(p.prog_type));
    if !p.name.is_empty() {
        s.push_str(&format!("name {}  ", p.name));
    }
    s.push_str(&format!("tag {}", tag_hex(&p.tag)));
    if p.gpl_compatible {
        s.push_str("  gpl");
    }
    s.push('\n');
    if let Some(at) = boot_ns_to_unix(p.load_time).filter(|_| p.load_time != 0) {
        s.push_str(&format!("\tloaded_at {}\n", iso8601_utc(at)));
    }
    s.push_str(&format!("\txlated {}B", p.xlated_len));
    if p.jited_len != 0 {
        s.push_str(&format!("  jited {}B", p.jited_len));
    } else {
        s.push_str("  not jited");
    }
    if !p.map_ids.is_empty() {
        let ids: Vec<String> = p.map_ids.iter().map(u32::to_string).collect();
        s.push_str(&format!("  map_ids {}", ids.join(",")));
    }
    s.push('\n');
    if p.btf_id != 0 {
        s.push_str(&format!("\tbtf_id {}\n", p.btf_id));
    }
    s
}

/// `bpftool -j prog show` for one program.
pub fn prog_json(p: &ProgEntry) -> Value {
    let mut v = json!({
        "id": p.id,
        "type": prog_type_name(p.prog_type),
        "name": p.name,
        "tag": tag_hex(&p.tag),
        "gpl_compatible": p.gpl_compatible,
    });
    if let (Value::Object(m), Some(at)) = (
        &mut v,
        boot_ns_to_unix(p.load_time).filter(|_| p.load_time != 0),
    ) {
        m.insert("loaded_at".into(), json!(at));
    }
    if let Value::Object(m) = &mut v {
        m.insert("bytes_xlated".into(), json!(p.xlated_len));
        m.insert("jited".into(), json!(p.jited_len != 0));
        if p.jited_len != 0 {
            m.insert("bytes_jited".into(), json!(p.jited_len));
        }
        if !p.map_ids.is_empty() {
            m.insert("map_ids".into(), json!(p.map_ids));
        }
        if p.btf_id != 0 {
            m.insert("btf_id".into(), json!(p.btf_id));
        }
    }
    v
}

/// `bpftool map show` for one map, plain.
pub fn map_text(m: &MapEntry) -> String {
    let mut s = format!(
        "{}: {}  name {}  flags 0x{:x}\n",
        m.id,
        map_type_name(m.map_type),
        m.name,
        m.map_flags
    );
    s.push_str(&format!(
        "\tkey {}B  value {}B  max_entries {}\n",
        m.key_size, m.value_size, m.max_entries
    ));
    if m.btf_id != 0 {
        s.push_str(&format!("\tbtf_id {}\n", m.btf_id));
    }
    s
}

/// `bpftool -j map show` for one map.
pub fn map_json(m: &MapEntry) -> Value {
    let mut v = json!({
        "id": m.id,
        "type": map_type_name(m.map_type),
        "name": m.name,
        "flags": m.map_flags,
        "bytes_key": m.key_size,
        "bytes_value": m.value_size,
        "max_entries": m.max_entries,
    });
    if let (Value::Object(o), true) = (&mut v, m.btf_id != 0) {
        o.insert("btf_id".into(), json!(m.btf_id));
    }
    v
}

/// `bpftool link show` for one link, plain.
pub fn link_text(l: &LinkEntry) -> String {
    let mut s = format!("{}: {}  ", l.id, link_type_name(l.link_type));
    if l.prog_id != 0 {
        s.push_str(&format!("prog {}  ", l.prog_id));
    }
    if l.link_type == 9 {
        s.push_str(&format!("map_id {}  ", l.map_id));
    }
    format!("{}\n", s.trim_end())
}

/// `bpftool -j link show` for one link.
pub fn link_json(l: &LinkEntry) -> Value {
    let mut v = json!({"id": l.id, "type": link_type_name(l.link_type)});
    if let Value::Object(o) = &mut v {
        if l.prog_id != 0 {
            o.insert("prog_id".into(), json!(l.prog_id));
        }
        if l.link_type == 9 {
            o.insert("map_id".into(), json!(l.map_id));
        }
    }
    v
}

/// `BPF_STRUCT_OPS_STATE_*` names.
pub fn state_name(state: u32) -> &'static str {
    match state {
        0 => "init",
        1 => "inuse",
        2 => "tobefree",
        3 => "ready",
        _ => "unknown",
    }
}

/// `bpftool struct_ops show` for one map, plain: `ID: NAME TYPE`.
pub fn struct_ops_text(s: &StructOpsEntry) -> String {
    format!("{}: {:<15} {:<32}\n", s.map_id, s.name, s.ops_type)
        .trim_end()
        .to_string()
        + "\n"
}

/// `bpftool -j struct_ops show` for one map.
pub fn struct_ops_json(s: &StructOpsEntry) -> Value {
    json!({
        "id": s.map_id,
        "name": s.name,
        "kernel_struct_ops": s.ops_type,
        "state": state_name(s.state),
        "link": s.link_map,
    })
}

/// `bpftool btf show` for one BTF object, plain.
pub fn btf_text(b: &BtfEntry) -> String {
    let mut s = format!("{}: ", b.id);
    if b.kernel {
        s.push_str(&format!("name [{}]  ", b.name));
    } else if !b.name.is_empty() {
        s.push_str(&format!("name {}  ", b.name));
    }
    s.push_str(&format!("size {}B", b.size));
    s.push('\n');
    s
}

/// `bpftool -j btf show` for one BTF object.
pub fn btf_json(b: &BtfEntry) -> Value {
    json!({"id": b.id, "size": b.size, "name": b.name, "kernel": b.kernel})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn specs_parse_like_bpftool() {
        assert_eq!(
            Spec::parse(&words("id 7"), None).unwrap(),
            Spec {
                file: None,
                sel: Some(Sel::Id(7))
            }
        );
        assert_eq!(
            Spec::parse(&words("a.o name cubic"), None).unwrap(),
            Spec {
                file: Some("a.o".into()),
                sel: Some(Sel::Name("cubic".into()))
            }
        );
        assert_eq!(
            Spec::parse(&words("a.o"), Some("p")).unwrap().sel,
            Some(Sel::Name("p".into()))
        );
        assert_eq!(
            Spec::parse(&words("id 0x10"), None).unwrap().sel,
            Some(Sel::Id(16))
        );
        assert!(Spec::parse(&words("id"), None).is_err());
        assert!(Spec::parse(&words("id x"), None).is_err());
        assert!(Spec::parse(&words("id 1 name a"), None).is_err());
        assert!(Spec::parse(&words("id 1"), Some("a")).is_err());
        assert!(Spec::parse(&words("a.o b.o"), None).is_err());
    }

    #[test]
    fn bytes_parse_like_bpftool() {
        let (b, n) = parse_bytes(&words("1 0x10 010 255 value 3"), &["value"]).unwrap();
        assert_eq!((b, n), (vec![1, 16, 8, 255], 4));
        let (b, n) = parse_bytes(&words("hex 01 ff 0a0b"), &[]).unwrap();
        assert_eq!((b, n), (vec![1, 255, 10, 11], 4));
        assert!(parse_bytes(&words("256"), &[]).is_err());
        assert!(parse_bytes(&words("hex 1"), &[]).is_err());
        assert!(parse_bytes(&words("hex zz"), &[]).is_err());
        assert!(parse_bytes(&words("-1"), &[]).is_err());
        assert_eq!(parse_bytes(&[], &[]).unwrap(), (vec![], 0));
    }

    #[test]
    fn dates_are_utc_iso8601() {
        assert_eq!(iso8601_utc(0), "1970-01-01T00:00:00+0000");
        assert_eq!(iso8601_utc(951_782_400), "2000-02-29T00:00:00+0000");
        assert_eq!(iso8601_utc(1_796_342_399), "2026-12-03T23:59:59+0000");
        assert_eq!(iso8601_utc(-1), "1969-12-31T23:59:59+0000");
    }

    #[test]
    fn selection_by_id_and_name() {
        fn key<'a>(t: &'a (u32, &'static str)) -> (u32, &'a str) {
            (t.0, t.1)
        }
        let items = [(1u32, "a"), (2, "b"), (3, "a"), (4, "so_demo_ssthres")];
        assert_eq!(
            select_one(&items, &Sel::Name("so_demo_ssthresh".into()), "prog", key)
                .unwrap()
                .0,
            4
        );
        assert!(select(&items, &Sel::Name("so_demo_ssthre".into()), "prog", key).is_err());
        assert_eq!(
            select(&items, &Sel::Name("a".into()), "prog", key)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(select_one(&items, &Sel::Id(2), "prog", key).unwrap().0, 2);
        assert!(matches!(
            select_one(&items, &Sel::Name("a".into()), "prog", key),
            Err(CliError::Unsupported { .. })
        ));
        assert!(matches!(
            select(&items, &Sel::Id(9), "prog", key),
            Err(CliError::NotFound { .. })
        ));
    }
}
