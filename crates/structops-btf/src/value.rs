//! Formatting raw bytes as values of BTF types, the way `bpftool map dump` does
//! (`tools/bpf/bpftool/btf_dumper.c` and `json_writer.c`, Linux 6.1).
//!
//! [`ValuePrinter::format`] turns a buffer into a [`Formatted`] tree once; the tree then
//! renders in bpftool's two styles:
//!
//! - [`Style::Plain`], what `bpftool map dump` prints for maps with BTF: JSON-like text
//!   where pointers are `0x...` (or `(nil)`), bitfields and 128-bit integers are bare
//!   hex, and non-printable chars are `0x..`;
//! - [`Style::Json`], the `"formatted"` part of `bpftool -j map dump`: pointers are
//!   decimal, hex numbers are quoted, non-printable chars are `"\u00xx"`.
//!   [`Formatted::to_json`] gives the same as a [`serde_json::Value`].
//!
//! ```
//! use structops_btf::{BtfBuilder, INT_SIGNED};
//! use structops_btf::value::{Style, ValuePrinter};
//!
//! let mut b = BtfBuilder::new();
//! let int = b.add_int("int", 4, INT_SIGNED);
//! let pt = b.add_struct("point", 8, &[("x", int, 0), ("y", int, 32)]);
//! let btf = b.build();
//! let v = ValuePrinter::new(&btf).format(pt, &[1, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff]).unwrap();
//! assert_eq!(v.to_json(), serde_json::json!({"x": 1, "y": -2}));
//! assert_eq!(v.to_text(Style::Plain), "{\n    \"x\": 1,\n    \"y\": -2\n}");
//! ```
//!
//! Faithful to bpftool, including its quirks: anonymous members are named `""`, a
//! backslash in a string is written as `\n` (bpftool's escape table has that typo), an
//! enum value that matches no enumerator is printed signed, and pretty-printed arrays keep
//! their elements on one line. Where bpftool 6.1 gives up, this module does better:
//! `FLOAT` values are printed (as numbers; 12- and 16-byte floats as hex), and a
//! `TYPE_TAG` is skipped like a modifier. Every read is bounds-checked: a buffer too short
//! for the type is a [`ValueError::Truncated`], never an out-of-bounds read.

use crate::Btf;
use crate::types::*;

/// Nesting limit for values (structs in structs, arrays of arrays); deeper types are
/// rejected rather than recursed into, so cyclic BTF cannot exhaust the stack.
pub const MAX_VALUE_DEPTH: usize = 64;
/// The most nodes (scalars, objects, arrays) one value may produce.
pub const MAX_VALUE_NODES: usize = 1 << 22;
/// libbpf's `MAX_RESOLVE_DEPTH` for `btf__resolve_type`.
const MAX_RESOLVE_DEPTH: usize = 32;
/// Size of bpftool's function signature buffer (`prog_str[1024]`).
const FUNC_SIG_SIZE: usize = 1024;

/// Why a value could not be formatted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The buffer ends before the bytes type `type_id` needs at `offset`.
    #[error("value of type [{type_id}] needs {need} bytes at offset {offset}, buffer has {have}")]
    Truncated {
        /// The type being read.
        type_id: TypeId,
        /// Byte offset of the read in the buffer.
        offset: usize,
        /// Bytes needed.
        need: usize,
        /// Buffer length.
        have: usize,
    },
    /// A kind bpftool cannot print as a value (`FWD`, `FUNC`, `FUNC_PROTO`, `DECL_TAG`).
    #[error("type [{type_id}] of kind {kind} has no printable value")]
    Unsupported {
        /// The type.
        type_id: TypeId,
        /// Its kind.
        kind: Kind,
    },
    /// An `INT` encoding with more than one flag, or an enum of an odd size.
    #[error("type [{type_id}]: {reason}")]
    BadType {
        /// The type.
        type_id: TypeId,
        /// What is wrong.
        reason: &'static str,
    },
    /// A referenced type id does not exist.
    #[error("type [{type_id}] does not exist")]
    NoSuchType {
        /// The missing id.
        type_id: TypeId,
    },
    /// Modifier chains, or the value's nesting, go deeper than the limits.
    #[error("type [{type_id}]: nesting deeper than {limit}")]
    TooDeep {
        /// Where the limit was hit.
        type_id: TypeId,
        /// The limit.
        limit: usize,
    },
    /// The value would have more than [`MAX_VALUE_NODES`] parts.
    #[error("value of type [{type_id}] has more than {limit} parts")]
    TooLarge {
        /// The top-level type.
        type_id: TypeId,
        /// The limit.
        limit: usize,
    },
}

/// bpftool's two output styles (its `is_plain_text` flag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// `bpftool map dump` on a map with BTF.
    Plain,
    /// `bpftool -j map dump`, the `"formatted"` member.
    Json,
}

/// A formatted value: the tree bpftool's dumper walks, with typed leaves.
#[derive(Clone, Debug, PartialEq)]
pub enum Formatted {
    /// A struct, union, `VAR` (`{"name": value}`) or `DATASEC` (`{"name": [vars]}`).
    Object(Vec<(String, Formatted)>),
    /// An array (not a printable `char` array).
    Array(Vec<Formatted>),
    /// An unsigned 8/16/32/64-bit integer.
    Unsigned(u64),
    /// A signed integer, or an enum value that matched no enumerator.
    Signed(i64),
    /// A `BTF_INT_BOOL`.
    Bool(bool),
    /// A bitfield, an integer of an irregular width, a 128-bit integer or a 12/16-byte
    /// float: bpftool prints these as hex.
    Hex {
        /// Upper 64 bits.
        hi: u64,
        /// Lower 64 bits.
        lo: u64,
    },
    /// A `BTF_INT_CHAR` byte.
    Char(u8),
    /// A pointer value.
    Pointer(u64),
    /// A string: a `char` array up to its NUL, an enumerator name, or a function pointer
    /// shown as a program.
    Str(String),
    /// A 2-, 4- or 8-byte float.
    Float(f64),
    /// `void` (bpftool prints `(unknown)`).
    Unknown,
}

fn c_isprint(c: u8) -> bool {
    (0x20..0x7f).contains(&c)
}

impl Formatted {
    /// The value as parsing bpftool's `-j` output gives it.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Formatted::Object(members) => {
                let mut map = serde_json::Map::new();
                for (k, v) in members {
                    map.insert(k.clone(), v.to_json());
                }
                Value::Object(map)
            }
            Formatted::Array(items) => Value::Array(items.iter().map(Formatted::to_json).collect()),
            Formatted::Unsigned(n) => Value::from(*n),
            Formatted::Signed(n) => Value::from(*n),
            Formatted::Bool(b) => Value::Bool(*b),
            Formatted::Hex { .. } => Value::String(self.hex()),
            Formatted::Char(c) => Value::String(char::from(*c).to_string()),
            Formatted::Pointer(p) => Value::from(*p),
            // bpftool escapes a backslash as `\n`.
            Formatted::Str(s) => Value::String(s.replace('\\', "\n")),
            Formatted::Float(f) => serde_json::Number::from_f64(*f)
                .map_or_else(|| Value::String(float_text(*f)), Value::Number),
            Formatted::Unknown => Value::String("(unknown)".into()),
        }
    }

    fn hex(&self) -> String {
        match self {
            Formatted::Hex { hi: 0, lo } => format!("0x{lo:x}"),
            Formatted::Hex { hi, lo } => format!("0x{hi:x}{lo:016x}"),
            _ => String::new(),
        }
    }

    /// Renders the value as bpftool does (pretty-printed, as its BTF writer is), without
    /// a trailing newline.
    pub fn to_text(&self, style: Style) -> String {
        let mut w = JsonWriter::new(true);
        self.write(&mut w, style);
        w.into_string()
    }

    /// Writes the value to `w` (at `w`'s current position, as `btf_dumper_type` does).
    pub fn write(&self, w: &mut JsonWriter, style: Style) {
        match self {
            Formatted::Object(members) => {
                w.start_object();
                for (k, v) in members {
                    w.name(k);
                    v.write(w, style);
                }
                w.end_object();
            }
            Formatted::Array(items) => {
                w.start_array();
                for v in items {
                    v.write(w, style);
                }
                w.end_array();
            }
            Formatted::Unsigned(n) => w.raw(&n.to_string()),
            Formatted::Signed(n) => w.raw(&n.to_string()),
            Formatted::Bool(b) => w.raw(if *b { "true" } else { "false" }),
            Formatted::Hex { .. } => match style {
                Style::Plain => w.raw(&self.hex()),
                Style::Json => w.raw(&format!("\"{}\"", self.hex())),
            },
            Formatted::Char(c) => {
                if c_isprint(*c) {
                    w.raw(&format!("\"{}\"", char::from(*c)));
                } else if style == Style::Plain {
                    w.raw(&format!("0x{c:x}"));
                } else {
                    w.raw(&format!("\"\\u00{c:02x}\""));
                }
            }
            Formatted::Pointer(p) => match (style, p) {
                (Style::Plain, 0) => w.raw("(nil)"),
                (Style::Plain, p) => w.raw(&format!("0x{p:x}")),
                (Style::Json, p) => w.raw(&p.to_string()),
            },
            Formatted::Str(s) => w.string(s),
            Formatted::Float(f) => {
                if f.is_finite() {
                    w.raw(&float_text(*f));
                } else {
                    w.string(&float_text(*f));
                }
            }
            Formatted::Unknown => w.raw("(unknown)"),
        }
    }
}

fn float_text(f: f64) -> String {
    if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        format!("{f}")
    }
}

/// bpftool's `json_writer`: the same separators, indentation (four spaces per level,
/// members on their own lines, array elements inline) and string escaping.
#[derive(Clone, Debug)]
pub struct JsonWriter {
    out: String,
    depth: usize,
    pretty: bool,
    sep: Option<char>,
}

impl JsonWriter {
    /// A writer; `pretty` adds bpftool's newlines and indentation.
    pub fn new(pretty: bool) -> JsonWriter {
        JsonWriter {
            out: String::new(),
            depth: 0,
            pretty,
            sep: None,
        }
    }

    fn eol(&mut self) {
        if self.pretty {
            self.out.push('\n');
            for _ in 0..self.depth {
                self.out.push_str("    ");
            }
        }
    }

    fn eor(&mut self) {
        if let Some(c) = self.sep {
            self.out.push(c);
        }
        self.sep = Some(',');
    }

    fn begin(&mut self, c: char) {
        self.eor();
        self.out.push(c);
        self.depth += 1;
        self.sep = None;
    }

    fn end(&mut self, c: char) {
        self.depth = self.depth.saturating_sub(1);
        if self.sep.is_some() {
            self.eol();
        }
        self.out.push(c);
        self.sep = Some(',');
    }

    fn puts(&mut self, s: &str) {
        self.out.push('"');
        for c in s.chars() {
            match c {
                '\t' => self.out.push_str("\\t"),
                '\n' | '\\' => self.out.push_str("\\n"),
                '\r' => self.out.push_str("\\r"),
                '\u{c}' => self.out.push_str("\\f"),
                '\u{8}' => self.out.push_str("\\b"),
                '"' => self.out.push_str("\\\""),
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }

    /// `jsonw_start_object`.
    pub fn start_object(&mut self) {
        self.begin('{');
    }

    /// `jsonw_end_object`.
    pub fn end_object(&mut self) {
        self.end('}');
    }

    /// `jsonw_start_array`.
    pub fn start_array(&mut self) {
        self.begin('[');
    }

    /// `jsonw_end_array`.
    pub fn end_array(&mut self) {
        self.end(']');
    }

    /// `jsonw_name`: the next member's name.
    pub fn name(&mut self, name: &str) {
        self.eor();
        self.eol();
        self.sep = None;
        self.puts(name);
        self.out.push(':');
        if self.pretty {
            self.out.push(' ');
        }
    }

    /// `jsonw_printf`: a value written as is.
    pub fn raw(&mut self, text: &str) {
        self.eor();
        self.out.push_str(text);
    }

    /// `jsonw_string`: a quoted, escaped string value.
    pub fn string(&mut self, s: &str) {
        self.eor();
        self.puts(s);
    }

    /// The text so far.
    pub fn as_str(&self) -> &str {
        &self.out
    }

    /// The text written.
    pub fn into_string(self) -> String {
        self.out
    }
}

/// Formats a whole map as `bpftool map dump` prints a map with BTF in plain mode: a
/// pretty array of `{"key": ..., "value": ...}` objects and a final newline. Entries with
/// no key type (`btf_key_type_id` 0) have `None` keys.
pub fn map_dump_plain<'v>(
    entries: impl IntoIterator<Item = (Option<&'v Formatted>, &'v Formatted)>,
) -> String {
    let mut w = JsonWriter::new(true);
    w.start_array();
    for (key, value) in entries {
        w.start_object();
        if let Some(k) = key {
            w.name("key");
            k.write(&mut w, Style::Plain);
        }
        w.name("value");
        value.write(&mut w, Style::Plain);
        w.end_object();
    }
    w.end_array();
    let mut s = w.into_string();
    s.push('\n');
    s
}

/// [`map_dump_plain`] for per-CPU maps: each entry has one value per possible CPU, shown
/// as `"values": [{"cpu": 0, "value": ...}, ...]`.
pub fn map_dump_plain_percpu<'v>(
    entries: impl IntoIterator<Item = (Option<&'v Formatted>, &'v [Formatted])>,
) -> String {
    let mut w = JsonWriter::new(true);
    w.start_array();
    for (key, values) in entries {
        w.start_object();
        if let Some(k) = key {
            w.name("key");
            k.write(&mut w, Style::Plain);
        }
        w.name("values");
        w.start_array();
        for (cpu, v) in values.iter().enumerate() {
            w.start_object();
            w.name("cpu");
            w.raw(&cpu.to_string());
            w.name("value");
            v.write(&mut w, Style::Plain);
            w.end_object();
        }
        w.end_array();
        w.end_object();
    }
    w.end_array();
    let mut s = w.into_string();
    s.push('\n');
    s
}

/// Prints values of the types of one [`Btf`] (bpftool's `struct btf_dumper`).
pub struct ValuePrinter<'a> {
    btf: &'a Btf,
    prog_names: Option<&'a dyn Fn(u32) -> Option<String>>,
}

/// Per-call state: the buffer and the node budget.
struct Walk<'d> {
    data: &'d [u8],
    top: TypeId,
    nodes: usize,
}

impl Walk<'_> {
    fn bytes(&self, type_id: TypeId, offset: usize, need: usize) -> Result<&[u8], ValueError> {
        offset
            .checked_add(need)
            .and_then(|end| self.data.get(offset..end))
            .ok_or(ValueError::Truncated {
                type_id,
                offset,
                need,
                have: self.data.len(),
            })
    }

    fn le(&self, type_id: TypeId, offset: usize, n: usize) -> Result<u64, ValueError> {
        let b = self.bytes(type_id, offset, n)?;
        let mut buf = [0u8; 8];
        for (d, s) in buf.iter_mut().zip(b) {
            *d = *s;
        }
        Ok(u64::from_le_bytes(buf))
    }

    fn tick(&mut self) -> Result<(), ValueError> {
        self.nodes += 1;
        if self.nodes > MAX_VALUE_NODES {
            return Err(ValueError::TooLarge {
                type_id: self.top,
                limit: MAX_VALUE_NODES,
            });
        }
        Ok(())
    }
}

fn sign_extend(v: u64, bytes: usize) -> i64 {
    let shift = 64 - 8 * bytes.clamp(1, 8) as u32;
    ((v << shift) as i64) >> shift
}

impl<'a> ValuePrinter<'a> {
    /// A printer for types of `btf`.
    pub fn new(btf: &'a Btf) -> ValuePrinter<'a> {
        ValuePrinter {
            btf,
            prog_names: None,
        }
    }

    /// Prints function pointers as bpftool's struct_ops dump does
    /// (`prog_id_as_func_ptr`): the value is a program id, shown after the pointer's
    /// signature as `name/prog_id:N` (or `0`), with `prog_name` naming programs.
    pub fn with_prog_id_func_ptrs(mut self, prog_name: &'a dyn Fn(u32) -> Option<String>) -> Self {
        self.prog_names = Some(prog_name);
        self
    }

    fn ty(&self, id: TypeId) -> Result<&'a Type, ValueError> {
        self.btf
            .types()
            .get(id as usize)
            .ok_or(ValueError::NoSuchType { type_id: id })
    }

    fn name(&self, off: u32) -> String {
        let tail = self.btf.strings().get(off as usize..).unwrap_or(&[]);
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        String::from_utf8_lossy(tail.get(..end).unwrap_or(&[])).into_owned()
    }

    /// Formats `data` as a value of type `type_id` (`btf_dumper_type`).
    pub fn format(&self, type_id: TypeId, data: &[u8]) -> Result<Formatted, ValueError> {
        if let Ok(size) = self.btf.size_of(type_id)
            && size as usize > data.len()
        {
            return Err(ValueError::Truncated {
                type_id,
                offset: 0,
                need: size as usize,
                have: data.len(),
            });
        }
        let mut walk = Walk {
            data,
            top: type_id,
            nodes: 0,
        };
        self.value(&mut walk, type_id, 0, 0, 0)
    }

    /// `btf__resolve_type`: follows modifiers, typedefs and vars; `void` is an error.
    fn resolve(&self, start: TypeId) -> Result<TypeId, ValueError> {
        let mut id = start;
        for _ in 0..MAX_RESOLVE_DEPTH {
            let t = self.ty(id)?;
            match t.kind {
                TypeKind::Void => {
                    return Err(ValueError::BadType {
                        type_id: start,
                        reason: "resolves to void",
                    });
                }
                TypeKind::Typedef { target }
                | TypeKind::Const { target }
                | TypeKind::Volatile { target }
                | TypeKind::Restrict { target }
                | TypeKind::TypeTag { target, .. }
                | TypeKind::Var { ty: target, .. } => id = target,
                _ => return Ok(id),
            }
        }
        Err(ValueError::TooDeep {
            type_id: start,
            limit: MAX_RESOLVE_DEPTH,
        })
    }

    /// `btf_dumper_do_type`.
    fn value(
        &self,
        w: &mut Walk<'_>,
        id: TypeId,
        bit_off: u8,
        off: usize,
        depth: usize,
    ) -> Result<Formatted, ValueError> {
        if depth > MAX_VALUE_DEPTH {
            return Err(ValueError::TooDeep {
                type_id: id,
                limit: MAX_VALUE_DEPTH,
            });
        }
        w.tick()?;
        let t = self.ty(id)?;
        match &t.kind {
            TypeKind::Void => Ok(Formatted::Unknown),
            TypeKind::Int { .. } => self.int(w, id, t, bit_off, off),
            TypeKind::Struct(c) | TypeKind::Union(c) => {
                let mut members = Vec::with_capacity(c.members.len());
                for m in &c.members {
                    let bit = m.bit_offset(c.kflag);
                    let bitfield = m.bitfield_size(c.kflag);
                    let moff = off.saturating_add((bit / 8) as usize);
                    let v = if bitfield != 0 {
                        w.tick()?;
                        bitfield_value(w, id, bitfield, (bit % 8) as u8, moff)?
                    } else {
                        self.value(w, m.ty, (bit % 8) as u8, moff, depth + 1)?
                    };
                    members.push((self.name(m.name_off), v));
                }
                Ok(Formatted::Object(members))
            }
            TypeKind::Array { elem, len, .. } => self.array(w, *elem, *len, off, depth),
            TypeKind::Enum(e) => {
                let n = e.size as usize;
                if !matches!(n, 1 | 2 | 4 | 8) {
                    return Err(ValueError::BadType {
                        type_id: id,
                        reason: "enum size is not 1, 2, 4 or 8",
                    });
                }
                let v = sign_extend(w.le(id, off, n)?, n);
                let hit = e
                    .values
                    .iter()
                    .find(|x| i64::from(x.value as u32 as i32) == v);
                Ok(match hit {
                    Some(x) => Formatted::Str(self.name(x.name_off)),
                    None => Formatted::Signed(v),
                })
            }
            TypeKind::Enum64(e) => {
                let v = w.le(id, off, 8)?;
                Ok(match e.values.iter().find(|x| x.value == v) {
                    Some(x) => Formatted::Str(self.name(x.name_off)),
                    None => Formatted::Signed(v as i64),
                })
            }
            TypeKind::Ptr { target } => {
                let v = w.le(id, off, 8)?;
                if let Some(names) = self.prog_names
                    && v <= u64::from(u32::MAX)
                    && let Some(s) = self.func_ptr_as_prog(*target, v as u32, names)
                {
                    return Ok(Formatted::Str(s));
                }
                Ok(Formatted::Pointer(v))
            }
            TypeKind::Typedef { .. }
            | TypeKind::Const { .. }
            | TypeKind::Volatile { .. }
            | TypeKind::Restrict { .. }
            | TypeKind::TypeTag { .. } => {
                let rid = self.resolve(id)?;
                self.value(w, rid, bit_off, off, depth + 1)
            }
            TypeKind::Var { ty, .. } => {
                let v = self.value(w, *ty, bit_off, off, depth + 1)?;
                Ok(Formatted::Object(vec![(self.name(t.name_off), v)]))
            }
            TypeKind::Datasec { vars, .. } => {
                let mut items = Vec::with_capacity(vars.len());
                for v in vars {
                    let voff = off.saturating_add(v.offset as usize);
                    items.push(self.value(w, v.ty, 0, voff, depth + 1)?);
                }
                Ok(Formatted::Object(vec![(
                    self.name(t.name_off),
                    Formatted::Array(items),
                )]))
            }
            TypeKind::Float { size } => float_value(w, id, *size, off),
            TypeKind::Fwd { .. }
            | TypeKind::Func { .. }
            | TypeKind::FuncProto { .. }
            | TypeKind::DeclTag { .. } => Err(ValueError::Unsupported {
                type_id: id,
                kind: t.kind(),
            }),
        }
    }

    /// `btf_dumper_int`.
    fn int(
        &self,
        w: &mut Walk<'_>,
        id: TypeId,
        t: &Type,
        bit_off: u8,
        off: usize,
    ) -> Result<Formatted, ValueError> {
        let TypeKind::Int {
            encoding,
            offset: int_off,
            bits,
            ..
        } = t.kind
        else {
            return Err(ValueError::BadType {
                type_id: id,
                reason: "not an int",
            });
        };
        let irregular = || {
            let total = u32::from(bit_off) + u32::from(int_off);
            bitfield_value(
                w,
                id,
                u32::from(bits),
                (total % 8) as u8,
                off.saturating_add((total / 8) as usize),
            )
        };
        if bit_off != 0 || int_off != 0 || bits % 8 != 0 {
            return irregular();
        }
        if bits == 128 {
            let b = w.bytes(id, off, 16)?;
            let v = u128::from_le_bytes(b.try_into().unwrap_or([0; 16]));
            return Ok(Formatted::Hex {
                hi: (v >> 64) as u64,
                lo: v as u64,
            });
        }
        let width = usize::from(bits / 8);
        match encoding {
            0 | INT_SIGNED if matches!(bits, 8 | 16 | 32 | 64) => {
                let v = w.le(id, off, width)?;
                Ok(if encoding == 0 {
                    Formatted::Unsigned(v)
                } else {
                    Formatted::Signed(sign_extend(v, width))
                })
            }
            0 | INT_SIGNED => irregular(),
            INT_CHAR => Ok(Formatted::Char(w.le(id, off, 1)? as u8)),
            INT_BOOL => Ok(Formatted::Bool(w.le(id, off, 1)? != 0)),
            _ => Err(ValueError::BadType {
                type_id: id,
                reason: "int encoding has several flags",
            }),
        }
    }

    /// `btf_dumper_array`, with `is_str_array`.
    fn array(
        &self,
        w: &mut Walk<'_>,
        elem: TypeId,
        len: u32,
        off: usize,
        depth: usize,
    ) -> Result<Formatted, ValueError> {
        if let Some(s) = self.str_array(w, elem, len, off)? {
            return Ok(Formatted::Str(s));
        }
        let elem_size = self.btf.size_of(elem).map_err(|_| ValueError::BadType {
            type_id: elem,
            reason: "array element has no size",
        })? as usize;
        let mut items = Vec::new();
        for i in 0..len as usize {
            let eoff = off.saturating_add(i.saturating_mul(elem_size));
            items.push(self.value(w, elem, 0, eoff, depth + 1)?);
        }
        Ok(Formatted::Array(items))
    }

    /// `is_str_array`: a non-empty array of 1-byte `char` (by encoding or by name) holding
    /// printable ASCII up to a NUL.
    fn str_array(
        &self,
        w: &Walk<'_>,
        elem: TypeId,
        len: u32,
        off: usize,
    ) -> Result<Option<String>, ValueError> {
        if len == 0 {
            return Ok(None);
        }
        let mut id = elem;
        let mut et = self.ty(id)?;
        let mut hops = 0;
        while et.is_modifier() {
            hops += 1;
            if hops > MAX_RESOLVE_DEPTH {
                return Ok(None);
            }
            id = et.target().unwrap_or(0);
            et = self.ty(id)?;
        }
        let TypeKind::Int {
            size: 1, encoding, ..
        } = et.kind
        else {
            return Ok(None);
        };
        if encoding != INT_CHAR && self.name(et.name_off) != "char" {
            return Ok(None);
        }
        for i in 0..len as usize {
            let c = w
                .bytes(elem, off.saturating_add(i), 1)?
                .first()
                .copied()
                .unwrap_or(0);
            if c == 0 {
                let s = w.bytes(elem, off, i)?;
                return Ok(Some(s.iter().map(|&b| char::from(b)).collect()));
            }
            if !c_isprint(c) {
                return Ok(None);
            }
        }
        Ok(None)
    }

    /// `dump_prog_id_as_func_ptr`: `None` when the pointer is not to a prototype or its
    /// signature does not fit bpftool's buffer (then the pointer prints as a number).
    fn func_ptr_as_prog(
        &self,
        target: TypeId,
        prog_id: u32,
        names: &dyn Fn(u32) -> Option<String>,
    ) -> Option<String> {
        let rid = self.resolve(target).ok()?;
        let TypeKind::FuncProto { ret, params } = &self.ty(rid).ok()?.kind else {
            return None;
        };
        let mut sig = String::new();
        self.func_sig(&mut sig, *ret, params, None, 0).ok()?;
        let suffix = if prog_id == 0 {
            " 0".to_string()
        } else {
            match names(prog_id) {
                Some(n) => format!(" {n}/prog_id:{prog_id}"),
                None => format!(" <unknown_prog_name>/prog_id:{prog_id}"),
            }
        };
        sig.push_str(&suffix);
        // snprintf into the 1024-byte buffer keeps at most 1023 bytes.
        while sig.len() > FUNC_SIG_SIZE - 1 {
            sig.pop();
        }
        Some(sig)
    }

    fn push_sig(out: &mut String, s: &str) -> Result<(), ()> {
        out.push_str(s);
        if out.len() >= FUNC_SIG_SIZE {
            Err(())
        } else {
            Ok(())
        }
    }

    /// `btf_dump_func`.
    fn func_sig(
        &self,
        out: &mut String,
        ret: TypeId,
        params: &[Param],
        func: Option<&Type>,
        depth: usize,
    ) -> Result<(), ()> {
        self.type_only(out, ret, depth + 1)?;
        match func {
            Some(f) => Self::push_sig(out, &format!("{}(", self.name(f.name_off)))?,
            None => Self::push_sig(out, "(")?,
        }
        for (i, p) in params.iter().enumerate() {
            if i > 0 {
                Self::push_sig(out, ", ")?;
            }
            if p.ty != 0 {
                self.type_only(out, p.ty, depth + 1)?;
                if p.name_off != 0 {
                    Self::push_sig(out, &self.name(p.name_off))?;
                } else if out.ends_with(' ') {
                    out.pop();
                }
            } else {
                Self::push_sig(out, "...")?;
            }
        }
        Self::push_sig(out, ")")
    }

    /// `__btf_dumper_type_only`: a C-like spelling of a type for signatures.
    fn type_only(&self, out: &mut String, id: TypeId, depth: usize) -> Result<(), ()> {
        if depth > MAX_RESOLVE_DEPTH {
            return Err(());
        }
        if id == 0 {
            return Self::push_sig(out, "void ");
        }
        let t = self.ty(id).map_err(|_| ())?;
        let name = self.name(t.name_off);
        match &t.kind {
            TypeKind::Int { .. } | TypeKind::Typedef { .. } | TypeKind::Float { .. } => {
                Self::push_sig(out, &format!("{name} "))
            }
            TypeKind::Struct(_) => Self::push_sig(out, &format!("struct {name} ")),
            TypeKind::Union(_) => Self::push_sig(out, &format!("union {name} ")),
            TypeKind::Enum(_) | TypeKind::Enum64(_) => {
                Self::push_sig(out, &format!("enum {name} "))
            }
            TypeKind::Array { elem, len, .. } => {
                self.type_only(out, *elem, depth + 1)?;
                Self::push_sig(out, &format!("[{}]", *len as i32))
            }
            TypeKind::Ptr { target } => {
                self.type_only(out, *target, depth + 1)?;
                Self::push_sig(out, "* ")
            }
            TypeKind::Fwd { union } => Self::push_sig(
                out,
                &format!("{} {name} ", if *union { "union" } else { "struct" }),
            ),
            TypeKind::Volatile { target } => {
                Self::push_sig(out, "volatile ")?;
                self.type_only(out, *target, depth + 1)
            }
            TypeKind::Const { target } => {
                Self::push_sig(out, "const ")?;
                self.type_only(out, *target, depth + 1)
            }
            TypeKind::Restrict { target } => {
                Self::push_sig(out, "restrict ")?;
                self.type_only(out, *target, depth + 1)
            }
            TypeKind::FuncProto { ret, params } => self.func_sig(out, *ret, params, None, depth),
            TypeKind::Func { proto, .. } => {
                let pt = self.ty(*proto).map_err(|_| ())?;
                let TypeKind::FuncProto { ret, params } = &pt.kind else {
                    return Err(());
                };
                self.func_sig(out, *ret, params, Some(t), depth)
            }
            TypeKind::Var { ty, linkage } => {
                if *linkage == Linkage::Static {
                    Self::push_sig(out, "static ")?;
                }
                self.type_only(out, *ty, depth + 1)?;
                Self::push_sig(out, &format!(" {name}"))
            }
            TypeKind::Datasec { .. } => Self::push_sig(out, &format!("section (\"{name}\") ")),
            TypeKind::Void | TypeKind::DeclTag { .. } | TypeKind::TypeTag { .. } => Err(()),
        }
    }
}

/// `btf_dumper_bitfield`: `nr_bits` bits starting `bit_off` bits into the bytes at `off`.
fn bitfield_value(
    w: &Walk<'_>,
    id: TypeId,
    nr_bits: u32,
    bit_off: u8,
    off: usize,
) -> Result<Formatted, ValueError> {
    let bits_to_copy = u32::from(bit_off) + nr_bits;
    if bits_to_copy > 128 {
        return Err(ValueError::BadType {
            type_id: id,
            reason: "bitfield spans more than 128 bits",
        });
    }
    let n = bits_to_copy.div_ceil(8) as usize;
    let b = w.bytes(id, off, n)?;
    let mut buf = [0u8; 16];
    for (d, s) in buf.iter_mut().zip(b) {
        *d = *s;
    }
    let raw = u128::from_le_bytes(buf);
    let v = if nr_bits == 0 {
        0
    } else {
        let mask = if nr_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << nr_bits) - 1
        };
        (raw >> bit_off) & mask
    };
    Ok(Formatted::Hex {
        hi: (v >> 64) as u64,
        lo: v as u64,
    })
}

/// A `FLOAT` (which bpftool 6.1 cannot print).
fn float_value(w: &Walk<'_>, id: TypeId, size: u32, off: usize) -> Result<Formatted, ValueError> {
    let n = size as usize;
    let b = w.bytes(id, off, n)?;
    Ok(match b {
        [a, b2] => Formatted::Float(f16_to_f64(u16::from_le_bytes([*a, *b2]))),
        [a, b2, c, d] => Formatted::Float(f64::from(f32::from_le_bytes([*a, *b2, *c, *d]))),
        _ if n == 8 => {
            let mut x = [0u8; 8];
            x.copy_from_slice(b);
            Formatted::Float(f64::from_le_bytes(x))
        }
        _ if n == 12 || n == 16 => {
            let mut x = [0u8; 16];
            for (d, s) in x.iter_mut().zip(b) {
                *d = *s;
            }
            let v = u128::from_le_bytes(x);
            Formatted::Hex {
                hi: (v >> 64) as u64,
                lo: v as u64,
            }
        }
        _ => {
            return Err(ValueError::BadType {
                type_id: id,
                reason: "float size is not 2, 4, 8, 12 or 16",
            });
        }
    })
}

/// IEEE 754 half precision to `f64`.
fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f64::from(h & 0x3ff);
    match exp {
        0 => sign * frac * 2f64.powi(-24),
        0x1f if frac == 0.0 => sign * f64::INFINITY,
        0x1f => f64::NAN,
        e => sign * (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

/// One element of `bpftool -j map dump`: the raw key and value as `"0x.."` byte strings,
/// plus `"formatted"` when the map has BTF (`print_entry_json` for non-per-CPU maps).
pub fn map_entry_json(
    key: &[u8],
    value: &[u8],
    formatted: Option<(Option<&Formatted>, &Formatted)>,
) -> serde_json::Value {
    let hex = |b: &[u8]| {
        serde_json::Value::Array(
            b.iter()
                .map(|x| serde_json::Value::String(format!("0x{x:02x}")))
                .collect(),
        )
    };
    let mut m = serde_json::Map::new();
    m.insert("key".into(), hex(key));
    m.insert("value".into(), hex(value));
    if let Some((k, v)) = formatted {
        let mut f = serde_json::Map::new();
        if let Some(k) = k {
            f.insert("key".into(), k.to_json());
        }
        f.insert("value".into(), v.to_json());
        m.insert("formatted".into(), serde_json::Value::Object(f));
    }
    serde_json::Value::Object(m)
}

#[cfg(test)]
mod tests;
