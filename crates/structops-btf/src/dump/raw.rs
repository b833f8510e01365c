//! bpftool's `format raw` listing, plain and JSON (mirrors `dump_btf_type` and
//! `dump_btf_raw` in bpftool 7.1's `btf.c`, and its `json_writer.c`).

use std::io::Write;

use super::DumpError;
use super::fmt::{Sink, put_i64, put_u64};
use crate::Btf;
use crate::types::*;

/// The output form of a raw dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawFormat {
    /// One line per type plus one tab-indented line per member, enumerator, parameter or
    /// section variable (`bpftool btf dump ... format raw`).
    Text,
    /// `{"types":[...]}` (`bpftool -j ...`); `pretty` indents it (`bpftool -p ...`).
    Json {
        /// Indent the JSON as `bpftool -p` does.
        pretty: bool,
    },
}

/// Writes every type of `btf`, in id order, as `bpftool btf dump file FILE format raw`
/// prints it.
pub fn raw<W: Write + ?Sized>(btf: &Btf, out: &mut W) -> Result<(), DumpError> {
    raw_ids(btf, 1..btf.len(), RawFormat::Text, out)
}

/// Writes every type of `btf` as `bpftool -j btf dump file FILE format raw` prints it
/// (`pretty`: as `bpftool -p` does). The output ends with a newline, as bpftool's does.
pub fn raw_json<W: Write + ?Sized>(btf: &Btf, pretty: bool, out: &mut W) -> Result<(), DumpError> {
    raw_ids(btf, 1..btf.len(), RawFormat::Json { pretty }, out)
}

/// Writes the types `ids`, in the order given, in `format` (what bpftool prints for the
/// root types of a map's key and value). Id 0 prints as bpftool prints `void`.
pub fn raw_ids<W, I>(btf: &Btf, ids: I, format: RawFormat, out: &mut W) -> Result<(), DumpError>
where
    W: Write + ?Sized,
    I: IntoIterator<Item = TypeId>,
{
    let mut sink = Sink::new(out);
    match format {
        RawFormat::Text => {
            for id in ids {
                text_type(btf, id, &mut sink)?;
                sink.maybe_flush()?;
            }
        }
        RawFormat::Json { pretty } => {
            let mut j = Json::new(pretty);
            j.begin(&mut sink.buf, b'{');
            j.name(&mut sink.buf, b"types");
            j.begin(&mut sink.buf, b'[');
            for id in ids {
                json_type(btf, id, &mut j, &mut sink)?;
                sink.maybe_flush()?;
            }
            j.end(&mut sink.buf, b']');
            j.end(&mut sink.buf, b'}');
            // bpftool's writer ends its output with a newline when it is destroyed.
            sink.buf.push(b'\n');
        }
    }
    sink.finish()
}

fn lookup(btf: &Btf, id: TypeId) -> Result<&Type, DumpError> {
    btf.types().get(id as usize).ok_or(DumpError::NoSuchType {
        id,
        count: btf.len(),
    })
}

/// A name as bpftool's `btf_str` shows it: `(anon)` for offset 0, `(invalid)` past the
/// string section, else the raw bytes up to the NUL.
fn str_at(btf: &Btf, off: u32) -> &[u8] {
    if off == 0 {
        return b"(anon)";
    }
    let strings = btf.strings();
    match strings.get(off as usize..) {
        Some(s) if !s.is_empty() => match s.iter().position(|&b| b == 0) {
            Some(end) => &s[..end],
            None => s,
        },
        _ => b"(invalid)",
    }
}

/// `btf_int_enc_str`: only a single known flag has a name.
fn int_encoding(encoding: u8) -> &'static [u8] {
    match encoding {
        0 => b"(none)",
        INT_SIGNED => b"SIGNED",
        INT_CHAR => b"CHAR",
        INT_BOOL => b"BOOL",
        _ => b"UNKN",
    }
}

fn linkage_str(l: Linkage) -> &'static [u8] {
    match l {
        Linkage::Static => b"static",
        Linkage::Global => b"global",
        Linkage::Extern => b"extern",
        Linkage::Other(_) => b"(unknown)",
    }
}

fn enc_str(signed: bool) -> &'static [u8] {
    if signed { b"SIGNED" } else { b"UNSIGNED" }
}

fn kflag_fields(c: &Composite, m: &Member) -> (u32, u32) {
    (m.bit_offset(c.kflag), m.bitfield_size(c.kflag))
}

fn text_type<W: Write + ?Sized>(
    btf: &Btf,
    id: TypeId,
    sink: &mut Sink<'_, W>,
) -> Result<(), DumpError> {
    let t = lookup(btf, id)?;
    let b = &mut sink.buf;
    b.push(b'[');
    put_u64(b, id as u64);
    b.extend_from_slice(b"] ");
    b.extend_from_slice(t.kind().as_str().as_bytes());
    b.extend_from_slice(b" '");
    b.extend_from_slice(str_at(btf, t.name_off));
    b.push(b'\'');
    match &t.kind {
        TypeKind::Void => {}
        TypeKind::Int {
            size,
            encoding,
            offset,
            bits,
        } => {
            b.extend_from_slice(b" size=");
            put_u64(b, *size as u64);
            b.extend_from_slice(b" bits_offset=");
            put_u64(b, *offset as u64);
            b.extend_from_slice(b" nr_bits=");
            put_u64(b, *bits as u64);
            b.extend_from_slice(b" encoding=");
            b.extend_from_slice(int_encoding(*encoding));
        }
        TypeKind::Ptr { target }
        | TypeKind::Const { target }
        | TypeKind::Volatile { target }
        | TypeKind::Restrict { target }
        | TypeKind::Typedef { target }
        | TypeKind::TypeTag { target, .. } => {
            b.extend_from_slice(b" type_id=");
            put_u64(b, *target as u64);
        }
        TypeKind::Array { elem, index, len } => {
            b.extend_from_slice(b" type_id=");
            put_u64(b, *elem as u64);
            b.extend_from_slice(b" index_type_id=");
            put_u64(b, *index as u64);
            b.extend_from_slice(b" nr_elems=");
            put_u64(b, *len as u64);
        }
        TypeKind::Struct(c) | TypeKind::Union(c) => {
            b.extend_from_slice(b" size=");
            put_u64(b, c.size as u64);
            b.extend_from_slice(b" vlen=");
            put_u64(b, c.members.len() as u64);
            for m in &c.members {
                sink.maybe_flush()?;
                let b = &mut sink.buf;
                let (off, bits) = kflag_fields(c, m);
                b.extend_from_slice(b"\n\t'");
                b.extend_from_slice(str_at(btf, m.name_off));
                b.extend_from_slice(b"' type_id=");
                put_u64(b, m.ty as u64);
                b.extend_from_slice(b" bits_offset=");
                put_u64(b, off as u64);
                if bits != 0 {
                    b.extend_from_slice(b" bitfield_size=");
                    put_u64(b, bits as u64);
                }
            }
        }
        TypeKind::Enum(e) => {
            enum_header(b, e);
            for v in &e.values {
                sink.maybe_flush()?;
                let b = &mut sink.buf;
                b.extend_from_slice(b"\n\t'");
                b.extend_from_slice(str_at(btf, v.name_off));
                b.extend_from_slice(b"' val=");
                // `btf_enum.val` is an `__s32`; bpftool prints it with %d or %u.
                if e.signed {
                    put_i64(b, v.value as u32 as i32 as i64);
                } else {
                    put_u64(b, v.value as u32 as u64);
                }
            }
        }
        TypeKind::Enum64(e) => {
            enum_header(b, e);
            for v in &e.values {
                sink.maybe_flush()?;
                let b = &mut sink.buf;
                b.extend_from_slice(b"\n\t'");
                b.extend_from_slice(str_at(btf, v.name_off));
                b.extend_from_slice(b"' val=");
                if e.signed {
                    put_i64(b, v.value as i64);
                    b.extend_from_slice(b"LL");
                } else {
                    put_u64(b, v.value);
                    b.extend_from_slice(b"ULL");
                }
            }
        }
        TypeKind::Fwd { union } => {
            b.extend_from_slice(if *union {
                b" fwd_kind=union"
            } else {
                b" fwd_kind=struct"
            });
        }
        TypeKind::Func { proto, linkage } => {
            b.extend_from_slice(b" type_id=");
            put_u64(b, *proto as u64);
            b.extend_from_slice(b" linkage=");
            b.extend_from_slice(linkage_str(*linkage));
        }
        TypeKind::FuncProto { ret, params } => {
            b.extend_from_slice(b" ret_type_id=");
            put_u64(b, *ret as u64);
            b.extend_from_slice(b" vlen=");
            put_u64(b, params.len() as u64);
            for p in params {
                sink.maybe_flush()?;
                let b = &mut sink.buf;
                b.extend_from_slice(b"\n\t'");
                b.extend_from_slice(str_at(btf, p.name_off));
                b.extend_from_slice(b"' type_id=");
                put_u64(b, p.ty as u64);
            }
        }
        TypeKind::Var { ty, linkage } => {
            // bpftool prints a comma here, and only here.
            b.extend_from_slice(b" type_id=");
            put_u64(b, *ty as u64);
            b.extend_from_slice(b", linkage=");
            b.extend_from_slice(linkage_str(*linkage));
        }
        TypeKind::Datasec { size, vars } => {
            b.extend_from_slice(b" size=");
            put_u64(b, *size as u64);
            b.extend_from_slice(b" vlen=");
            put_u64(b, vars.len() as u64);
            for v in vars {
                sink.maybe_flush()?;
                let b = &mut sink.buf;
                b.extend_from_slice(b"\n\ttype_id=");
                put_u64(b, v.ty as u64);
                b.extend_from_slice(b" offset=");
                put_u64(b, v.offset as u64);
                b.extend_from_slice(b" size=");
                put_u64(b, v.size as u64);
                if let Some(vt) = btf.types().get(v.ty as usize) {
                    b.extend_from_slice(b" (");
                    b.extend_from_slice(vt.kind().as_str().as_bytes());
                    b.extend_from_slice(b" '");
                    b.extend_from_slice(str_at(btf, vt.name_off));
                    b.extend_from_slice(b"')");
                }
            }
        }
        TypeKind::Float { size } => {
            b.extend_from_slice(b" size=");
            put_u64(b, *size as u64);
        }
        TypeKind::DeclTag {
            target,
            component_idx,
            ..
        } => {
            b.extend_from_slice(b" type_id=");
            put_u64(b, *target as u64);
            b.extend_from_slice(b" component_idx=");
            put_i64(b, *component_idx as i64);
        }
    }
    sink.buf.push(b'\n');
    Ok(())
}

fn enum_header(b: &mut Vec<u8>, e: &EnumBody) {
    b.extend_from_slice(b" encoding=");
    b.extend_from_slice(enc_str(e.signed));
    b.extend_from_slice(b" size=");
    put_u64(b, e.size as u64);
    b.extend_from_slice(b" vlen=");
    put_u64(b, e.values.len() as u64);
}

/// The state of bpftool's `json_writer`: nesting depth, whether pretty-printing, and
/// whether a comma is due before the next element.
struct Json {
    depth: usize,
    pretty: bool,
    comma: bool,
}

impl Json {
    fn new(pretty: bool) -> Json {
        Json {
            depth: 0,
            pretty,
            comma: false,
        }
    }

    /// `jsonw_eor`: a separator before any element but the first at its level.
    fn eor(&mut self, b: &mut Vec<u8>) {
        if self.comma {
            b.push(b',');
        }
        self.comma = true;
    }

    /// `jsonw_eol`: a newline and indentation, when pretty.
    fn eol(&self, b: &mut Vec<u8>) {
        if self.pretty {
            b.push(b'\n');
            for _ in 0..self.depth {
                b.extend_from_slice(b"    ");
            }
        }
    }

    fn begin(&mut self, b: &mut Vec<u8>, c: u8) {
        self.eor(b);
        b.push(c);
        self.depth += 1;
        self.comma = false;
    }

    fn end(&mut self, b: &mut Vec<u8>, c: u8) {
        self.depth = self.depth.saturating_sub(1);
        if self.comma {
            self.eol(b);
        }
        b.push(c);
        self.comma = true;
    }

    fn name(&mut self, b: &mut Vec<u8>, name: &[u8]) {
        self.eor(b);
        self.eol(b);
        self.comma = false;
        put_json_str(b, name);
        b.push(b':');
        if self.pretty {
            b.push(b' ');
        }
    }

    fn uint(&mut self, b: &mut Vec<u8>, name: &[u8], v: u64) {
        self.name(b, name);
        self.eor(b);
        put_u64(b, v);
    }

    fn int(&mut self, b: &mut Vec<u8>, name: &[u8], v: i64) {
        self.name(b, name);
        self.eor(b);
        put_i64(b, v);
    }

    fn string(&mut self, b: &mut Vec<u8>, name: &[u8], v: &[u8]) {
        self.name(b, name);
        self.eor(b);
        put_json_str(b, v);
    }
}

/// `jsonw_puts`: quotes a string escaping only what bpftool's writer escapes. Its
/// backslash case writes `\n` instead of `\\`; that is kept so output stays identical.
fn put_json_str(b: &mut Vec<u8>, s: &[u8]) {
    b.push(b'"');
    for &c in s {
        match c {
            b'\t' => b.extend_from_slice(b"\\t"),
            b'\n' | b'\\' => b.extend_from_slice(b"\\n"),
            b'\r' => b.extend_from_slice(b"\\r"),
            0x0c => b.extend_from_slice(b"\\f"),
            0x08 => b.extend_from_slice(b"\\b"),
            b'"' => b.extend_from_slice(b"\\\""),
            _ => b.push(c),
        }
    }
    b.push(b'"');
}

fn json_type<W: Write + ?Sized>(
    btf: &Btf,
    id: TypeId,
    j: &mut Json,
    sink: &mut Sink<'_, W>,
) -> Result<(), DumpError> {
    let t = lookup(btf, id)?;
    let b = &mut sink.buf;
    j.begin(b, b'{');
    j.uint(b, b"id", id as u64);
    j.string(b, b"kind", t.kind().as_str().as_bytes());
    j.string(b, b"name", str_at(btf, t.name_off));
    match &t.kind {
        TypeKind::Void => {}
        TypeKind::Int {
            size,
            encoding,
            offset,
            bits,
        } => {
            j.uint(b, b"size", *size as u64);
            j.uint(b, b"bits_offset", *offset as u64);
            j.uint(b, b"nr_bits", *bits as u64);
            j.string(b, b"encoding", int_encoding(*encoding));
        }
        TypeKind::Ptr { target }
        | TypeKind::Const { target }
        | TypeKind::Volatile { target }
        | TypeKind::Restrict { target }
        | TypeKind::Typedef { target }
        | TypeKind::TypeTag { target, .. } => j.uint(b, b"type_id", *target as u64),
        TypeKind::Array { elem, index, len } => {
            j.uint(b, b"type_id", *elem as u64);
            j.uint(b, b"index_type_id", *index as u64);
            j.uint(b, b"nr_elems", *len as u64);
        }
        TypeKind::Struct(c) | TypeKind::Union(c) => {
            j.uint(b, b"size", c.size as u64);
            j.uint(b, b"vlen", c.members.len() as u64);
            j.name(b, b"members");
            j.begin(b, b'[');
            for m in &c.members {
                sink.maybe_flush()?;
                let b = &mut sink.buf;
                let (off, bits) = kflag_fields(c, m);
                j.begin(b, b'{');
                j.string(b, b"name", str_at(btf, m.name_off));
                j.uint(b, b"type_id", m.ty as u64);
                j.uint(b, b"bits_offset", off as u64);
                if bits != 0 {
                    j.uint(b, b"bitfield_size", bits as u64);
                }
                j.end(b, b'}');
            }
            j.end(&mut sink.buf, b']');
        }
        TypeKind::Enum(e) | TypeKind::Enum64(e) => {
            let wide = t.kind() == Kind::Enum64;
            j.string(b, b"encoding", enc_str(e.signed));
            j.uint(b, b"size", e.size as u64);
            j.uint(b, b"vlen", e.values.len() as u64);
            j.name(b, b"values");
            j.begin(b, b'[');
            for v in &e.values {
                sink.maybe_flush()?;
                let b = &mut sink.buf;
                j.begin(b, b'{');
                j.string(b, b"name", str_at(btf, v.name_off));
                // An ENUM value is an `__s32` widened to bpftool's 64-bit JSON integer,
                // so an unsigned value of 2^31 or more comes out sign-extended.
                let signed = if wide {
                    v.value as i64
                } else {
                    v.value as u32 as i32 as i64
                };
                if e.signed {
                    j.int(b, b"val", signed);
                } else if wide {
                    j.uint(b, b"val", v.value);
                } else {
                    j.uint(b, b"val", signed as u64);
                }
                j.end(b, b'}');
            }
            j.end(&mut sink.buf, b']');
        }
        TypeKind::Fwd { union } => {
            j.string(b, b"fwd_kind", if *union { b"union" } else { b"struct" });
        }
        TypeKind::Func { proto, linkage } => {
            j.uint(b, b"type_id", *proto as u64);
            j.string(b, b"linkage", linkage_str(*linkage));
        }
        TypeKind::FuncProto { ret, params } => {
            j.uint(b, b"ret_type_id", *ret as u64);
            j.uint(b, b"vlen", params.len() as u64);
            j.name(b, b"params");
            j.begin(b, b'[');
            for p in params {
                sink.maybe_flush()?;
                let b = &mut sink.buf;
                j.begin(b, b'{');
                j.string(b, b"name", str_at(btf, p.name_off));
                j.uint(b, b"type_id", p.ty as u64);
                j.end(b, b'}');
            }
            j.end(&mut sink.buf, b']');
        }
        TypeKind::Var { ty, linkage } => {
            j.uint(b, b"type_id", *ty as u64);
            j.string(b, b"linkage", linkage_str(*linkage));
        }
        TypeKind::Datasec { size, vars } => {
            j.uint(b, b"size", *size as u64);
            j.uint(b, b"vlen", vars.len() as u64);
            j.name(b, b"vars");
            j.begin(b, b'[');
            for v in vars {
                sink.maybe_flush()?;
                let b = &mut sink.buf;
                j.begin(b, b'{');
                j.uint(b, b"type_id", v.ty as u64);
                j.uint(b, b"offset", v.offset as u64);
                j.uint(b, b"size", v.size as u64);
                j.end(b, b'}');
            }
            j.end(&mut sink.buf, b']');
        }
        TypeKind::Float { size } => j.uint(b, b"size", *size as u64),
        TypeKind::DeclTag {
            target,
            component_idx,
            ..
        } => {
            j.uint(b, b"type_id", *target as u64);
            j.int(b, b"component_idx", *component_idx as i64);
        }
    }
    j.end(&mut sink.buf, b'}');
    Ok(())
}
