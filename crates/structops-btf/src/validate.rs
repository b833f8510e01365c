//! Kernel-exact BTF validation: the checks `BPF_BTF_LOAD` runs (`btf_parse` in
//! `kernel/bpf/btf.c`, Linux 6.12), with the kernel's errno and log text.
//!
//! [`Btf::parse`] is lenient the way libbpf is. [`Btf::parse_for_load`] instead accepts
//! exactly what the kernel accepts: it mirrors `btf_parse_hdr` and `btf_check_sec_info`
//! (no gaps, overlaps or trailing data), `btf_parse_str_sec`, `btf_check_all_metas` (each
//! kind's `check_meta`), `btf_check_all_types` (the iterative resolver with its 32-deep
//! stack, loop detection and per-type memoized sizes, plus `btf_func_proto_check`) and
//! `btf_check_type_tags`. [`Btf::validate`] runs the same checks on an already parsed or
//! built [`Btf`], as if its encoding were loaded.
//!
//! A rejection is a [`BtfLoadError`]: the errno the syscall would return and the log
//! lines the kernel writes for that error. [`Btf::parse_for_load_with_log`] additionally
//! produces the whole level-1 verifier log (`btf_log_level = 1`), byte for byte what the
//! kernel writes into `btf_log_buf`.
//!
//! Not reproduced: `btf_parse_struct_metas` (the extra checks on structs that embed
//! `bpf_spin_lock`, `bpf_list_head`, `bpf_rb_root`, `bpf_refcount` or `__kptr` fields),
//! and the log buffer's size limits (`ENOSPC`).

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use crate::Btf;
use crate::error::BtfError;
use crate::parse::{
    BTF_MAGIC, BTF_MAX_NAME_OFFSET, BTF_MAX_SIZE, BTF_MAX_TYPE, BTF_VERSION, Endian,
};
use crate::types::*;

/// A Linux error number, as `BPF_BTF_LOAD` returns it (positive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    /// `E2BIG`: too large, or a resolve chain deeper than the kernel's stack.
    pub const E2BIG: Errno = Errno(7);
    /// `ENOMEM`.
    pub const ENOMEM: Errno = Errno(12);
    /// `EEXIST`: the resolver found a loop.
    pub const EEXIST: Errno = Errno(17);
    /// `EINVAL`: most rejections.
    pub const EINVAL: Errno = Errno(22);
    /// `ELOOP`: a modifier chain too long or cyclic (`btf_check_type_tags`).
    pub const ELOOP: Errno = Errno(40);
    /// `ENOTSUPP` (kernel-internal 524): unsupported version, flags or int encoding.
    pub const ENOTSUPP: Errno = Errno(524);

    /// The symbolic name (`"EINVAL"`), or `"E?"` for numbers this crate does not produce.
    pub fn name(self) -> &'static str {
        match self.0 {
            7 => "E2BIG",
            12 => "ENOMEM",
            17 => "EEXIST",
            22 => "EINVAL",
            40 => "ELOOP",
            524 => "ENOTSUPP",
            _ => "E?",
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

/// Why the kernel would refuse a BTF blob in `BPF_BTF_LOAD`.
///
/// `log` holds the lines the kernel writes for the error, without the trailing newline:
/// one line for most errors (`[5] STRUCT foo size=8 vlen=2 Invalid name`), two for an
/// error in a member or a `DATASEC` entry (the owning type's line, then the entry's line
/// with the message), and the bare message for header and string section errors
/// (`Invalid magic`). It is empty when the kernel logs nothing (`E2BIG` for a blob over
/// 16 MiB).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("BTF rejected with {errno} at type [{type_id}]: {log}")]
pub struct BtfLoadError {
    /// The errno `BPF_BTF_LOAD` returns.
    pub errno: Errno,
    /// The type the kernel was checking (0 for header, string section and whole-table
    /// errors).
    pub type_id: TypeId,
    /// The kernel's log lines for this error.
    pub log: String,
}

impl From<BtfLoadError> for BtfError {
    fn from(e: BtfLoadError) -> BtfError {
        BtfError::Rejected {
            errno: e.errno.0,
            id: e.type_id,
            log: e.log,
        }
    }
}

/// `sizeof(struct btf_type)`.
const TYPE_HDR: u32 = 12;
/// `BTF_INFO_MASK`: the bits of `btf_type.info` that may be set.
const INFO_MASK: u32 = 0x9f00_ffff;
/// `BTF_INT_MASK`: the bits of an `INT`'s data word that may be set.
const INT_MASK: u32 = 0x0fff_ffff;
/// The kernel's `KSYM_NAME_LEN`, the longest name it checks character by character.
const KSYM_NAME_LEN: usize = 512;
/// The kernel's `MAX_RESOLVE_DEPTH`: the resolver's stack size.
const MAX_RESOLVE_DEPTH: usize = 32;
/// `BITS_PER_U128`.
const BITS_PER_U128: u32 = 128;
/// Size of `struct btf_header` as this kernel knows it.
const KERNEL_HDR_LEN: usize = 24;

fn roundup_bytes(bits: u32) -> u32 {
    (bits >> 3) + u32::from(bits & 7 != 0)
}

// ---------------------------------------------------------------------------------------
// Character classes of the kernel's `lib/ctype.c` (Latin-1, unlike Rust's ASCII ones).

fn k_isalpha(c: u8) -> bool {
    c.is_ascii_alphabetic() || (c >= 192 && c != 215 && c != 247)
}

fn k_isalnum(c: u8) -> bool {
    k_isalpha(c) || c.is_ascii_digit()
}

fn k_isprint(c: u8) -> bool {
    (32..=126).contains(&c) || c >= 160
}

fn name_char_ok(c: u8, first: bool) -> bool {
    let class_ok = if first { k_isalpha(c) } else { k_isalnum(c) };
    class_ok || c == b'_' || c == b'.'
}

/// The string section as the kernel sees it: NUL-terminated C strings.
#[derive(Clone, Copy)]
struct Strings<'a>(&'a [u8]);

impl<'a> Strings<'a> {
    /// `btf_name_offset_valid`.
    fn offset_valid(self, off: u32) -> bool {
        off <= BTF_MAX_NAME_OFFSET && (off as usize) < self.0.len()
    }

    /// The C string at `off` (empty when out of range; callers check validity first).
    fn cstr(self, off: u32) -> &'a [u8] {
        let tail = self.0.get(off as usize..).unwrap_or(&[]);
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        tail.get(..end).unwrap_or(&[])
    }

    /// The bytes the kernel's name checks may look at: up to `KSYM_NAME_LEN` characters
    /// and the byte after them.
    fn window(self, off: u32) -> &'a [u8] {
        let tail = self.0.get(off as usize..).unwrap_or(&[]);
        tail.get(..=KSYM_NAME_LEN).unwrap_or(tail)
    }

    /// `btf_name_valid_identifier` (the offset must already be valid).
    fn valid_identifier(self, off: u32) -> bool {
        let w = self.window(off);
        let Some((&first, rest)) = w.split_first() else {
            return false;
        };
        if !name_char_ok(first, true) {
            return false;
        }
        // Characters 1..KSYM_NAME_LEN, then the terminator must follow.
        for (i, &c) in rest.iter().enumerate() {
            if c == 0 {
                return true;
            }
            if i + 1 == KSYM_NAME_LEN {
                return false;
            }
            if !name_char_ok(c, false) {
                return false;
            }
        }
        false
    }

    /// `btf_name_valid_section`: any printable characters.
    fn valid_section(self, off: u32) -> bool {
        let w = self.window(off);
        if w.first().is_none_or(|&c| c == 0) {
            return false;
        }
        for (i, &c) in w.iter().enumerate() {
            if c == 0 {
                return true;
            }
            if i == KSYM_NAME_LEN || !k_isprint(c) {
                return false;
            }
        }
        false
    }

    /// `__btf_name_by_offset`, as the log prints names.
    fn log_name(self, off: u32) -> Cow<'a, str> {
        if off == 0 {
            Cow::Borrowed("(anon)")
        } else if (off as usize) < self.0.len() {
            String::from_utf8_lossy(self.cstr(off))
        } else {
            Cow::Borrowed("(invalid-name-offset)")
        }
    }
}

/// The fixed part of a type record (`struct btf_type`) with `info` split up.
#[derive(Clone, Copy, Debug)]
struct Hdr {
    name_off: u32,
    kind: u32,
    vlen: u32,
    kflag: bool,
    size_or_type: u32,
    /// An `INT`'s data word as read, when read from bytes: bits 8-15 are ignored by the
    /// kernel and not kept in [`TypeKind::Int`], but it prints them in errors.
    raw_int: Option<u32>,
}

impl Hdr {
    fn from_raw(name_off: u32, info: u32, size_or_type: u32) -> Hdr {
        Hdr {
            name_off,
            kind: (info >> 24) & 0x1f,
            vlen: info & 0xffff,
            kflag: info >> 31 != 0,
            size_or_type,
            raw_int: None,
        }
    }

    /// The record `t` would be encoded with.
    fn of(t: &Type) -> Hdr {
        let size_or_type = match &t.kind {
            TypeKind::Void | TypeKind::Array { .. } | TypeKind::Fwd { .. } => 0,
            TypeKind::Int { size, .. }
            | TypeKind::Float { size }
            | TypeKind::Datasec { size, .. } => *size,
            TypeKind::Struct(c) | TypeKind::Union(c) => c.size,
            TypeKind::Enum(e) | TypeKind::Enum64(e) => e.size,
            TypeKind::FuncProto { ret, .. } => *ret,
            _ => t.target().unwrap_or(0),
        };
        Hdr {
            name_off: t.name_off,
            kind: t.kind() as u32,
            vlen: u32::try_from(t.vlen()).unwrap_or(u32::MAX),
            kflag: t.kflag(),
            size_or_type,
            raw_int: None,
        }
    }

    fn kind_str(&self) -> &'static str {
        Kind::from_raw(self.kind).map_or("UNKNOWN", Kind::as_str)
    }
}

fn int_data(encoding: u8, offset: u8, bits: u8) -> u32 {
    u32::from(encoding) << 24 | u32::from(offset) << 16 | u32::from(bits)
}

fn int_encoding_str(enc: u32) -> &'static str {
    match enc {
        0 => "(none)",
        1 => "SIGNED",
        2 => "CHAR",
        4 => "BOOL",
        _ => "UNKN",
    }
}

/// Which verifier phase is running; member errors log differently in each.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    CheckMeta,
    CheckType,
}

/// An error on its way out: the errno and the kernel's lines for it.
#[derive(Debug)]
struct Fail {
    errno: Errno,
    type_id: TypeId,
    log: String,
}

/// The verifier log: the error lines of the current failure, and optionally the full
/// level-1 log.
struct Log<'a> {
    full: Option<&'a mut String>,
    phase: Phase,
}

impl Log<'_> {
    fn emit(&mut self, s: &str) {
        if let Some(full) = self.full.as_deref_mut() {
            full.push_str(s);
        }
    }

    fn verbose(&self) -> bool {
        self.full.is_some()
    }
}

/// Formats `log_details` of a type.
fn details(out: &mut String, strings: Strings<'_>, h: &Hdr, t: &Type) {
    let _ = match &t.kind {
        TypeKind::Int {
            encoding,
            offset,
            bits,
            ..
        } => {
            let data = int_data(*encoding, *offset, *bits);
            write!(
                out,
                "size={} bits_offset={} nr_bits={} encoding={}",
                h.size_or_type,
                (data >> 16) & 0xff,
                data & 0xff,
                int_encoding_str((data >> 24) & 0x0f)
            )
        }
        TypeKind::Ptr { .. }
        | TypeKind::Typedef { .. }
        | TypeKind::Volatile { .. }
        | TypeKind::Const { .. }
        | TypeKind::Restrict { .. }
        | TypeKind::TypeTag { .. }
        | TypeKind::Func { .. } => write!(out, "type_id={}", h.size_or_type),
        TypeKind::Fwd { .. } => out.write_str(if h.kflag { "union" } else { "struct" }),
        TypeKind::Array { elem, index, len } => {
            write!(out, "type_id={elem} index_type_id={index} nr_elems={len}")
        }
        TypeKind::Struct(_)
        | TypeKind::Union(_)
        | TypeKind::Enum(_)
        | TypeKind::Enum64(_)
        | TypeKind::Datasec { .. } => write!(out, "size={} vlen={}", h.size_or_type, h.vlen),
        TypeKind::FuncProto { ret, params } => {
            let _ = write!(out, "return={ret} args=(");
            match params.as_slice() {
                [] => out.push_str("void"),
                [only] if only.ty == 0 => out.push_str("vararg"),
                [first, rest @ ..] => {
                    let _ = write!(out, "{} {}", first.ty, strings.log_name(first.name_off));
                    if let [middle @ .., last] = rest {
                        for p in middle {
                            let _ = write!(out, ", {} {}", p.ty, strings.log_name(p.name_off));
                        }
                        if last.ty != 0 {
                            let _ =
                                write!(out, ", {} {}", last.ty, strings.log_name(last.name_off));
                        } else {
                            out.push_str(", vararg");
                        }
                    }
                }
            }
            out.write_str(")")
        }
        TypeKind::Var { ty, linkage } => write!(out, "type_id={ty} linkage={}", linkage.raw()),
        TypeKind::Float { size } => write!(out, "size={size}"),
        TypeKind::DeclTag {
            target,
            component_idx,
            ..
        } => write!(out, "type={target} component_idx={component_idx}"),
        TypeKind::Void => Ok(()),
    };
}

/// `__btf_verifier_log_type` without the newline: `[id] KIND name[ details][ msg]`.
fn type_line(
    strings: Strings<'_>,
    id: TypeId,
    h: &Hdr,
    body: Option<&Type>,
    msg: Option<&str>,
) -> String {
    let mut s = format!("[{id}] {} {}", h.kind_str(), strings.log_name(h.name_off));
    if let Some(t) = body {
        s.push(' ');
        details(&mut s, strings, h, t);
    }
    if let Some(m) = msg.filter(|m| !m.is_empty()) {
        s.push(' ');
        s.push_str(m);
    }
    s
}

/// `btf_verifier_log_member`'s own line, without the newline.
fn member_line(strings: Strings<'_>, kflag: bool, m: &Member, msg: Option<&str>) -> String {
    let mut s = if kflag {
        format!(
            "\t{} type_id={} bitfield_size={} bits_offset={}",
            strings.log_name(m.name_off),
            m.ty,
            m.offset >> 24,
            m.offset & 0x00ff_ffff
        )
    } else {
        format!(
            "\t{} type_id={} bits_offset={}",
            strings.log_name(m.name_off),
            m.ty,
            m.offset
        )
    };
    if let Some(msg) = msg.filter(|m| !m.is_empty()) {
        s.push(' ');
        s.push_str(msg);
    }
    s
}

/// `btf_verifier_log_vsi`'s own line, without the newline.
fn vsi_line(v: &VarSecInfo, msg: Option<&str>) -> String {
    let mut s = format!("\t type_id={} offset={} size={}", v.ty, v.offset, v.size);
    if let Some(msg) = msg.filter(|m| !m.is_empty()) {
        s.push(' ');
        s.push_str(msg);
    }
    s
}

/// The type-level context for logging: id, record header and (once decoded) body.
#[derive(Clone, Copy)]
struct At<'t> {
    id: TypeId,
    hdr: Hdr,
    body: Option<&'t Type>,
}

/// Logging helpers shared by both phases.
struct Logger<'a, 's> {
    log: Log<'a>,
    strings: Strings<'s>,
}

impl Logger<'_, '_> {
    /// `btf_verifier_log` with a free-form message and no newline.
    fn plain(&mut self, type_id: TypeId, errno: Errno, msg: String) -> Fail {
        self.log.emit(&msg);
        Fail {
            errno,
            type_id,
            log: msg,
        }
    }

    /// `btf_verifier_log_type` (details) or `btf_verifier_log_basic` (no details).
    fn ty(&mut self, at: At<'_>, with_details: bool, msg: &str) -> Fail {
        let body = if with_details { at.body } else { None };
        let line = type_line(self.strings, at.id, &at.hdr, body, Some(msg));
        self.log.emit(&line);
        self.log.emit("\n");
        Fail {
            errno: Errno::EINVAL,
            type_id: at.id,
            log: line,
        }
    }

    /// Logs a successfully checked type (`btf_verifier_log_type(env, t, NULL)`).
    fn ok_type(&mut self, at: At<'_>) {
        if self.log.verbose() {
            let line = type_line(self.strings, at.id, &at.hdr, at.body, None);
            self.log.emit(&line);
            self.log.emit("\n");
        }
    }

    /// `btf_verifier_log_member` with a message.
    fn member(&mut self, at: At<'_>, m: &Member, msg: &str) -> Fail {
        let ctx = type_line(self.strings, at.id, &at.hdr, at.body, None);
        let line = member_line(self.strings, at.hdr.kflag, m, Some(msg));
        if self.log.phase == Phase::CheckType {
            self.log.emit(&ctx);
            self.log.emit("\n");
        }
        self.log.emit(&line);
        self.log.emit("\n");
        Fail {
            errno: Errno::EINVAL,
            type_id: at.id,
            log: format!("{ctx}\n{line}"),
        }
    }

    /// `btf_verifier_log_vsi` with a message.
    fn vsi(&mut self, at: At<'_>, v: &VarSecInfo, msg: &str) -> Fail {
        let ctx = type_line(self.strings, at.id, &at.hdr, at.body, None);
        let line = vsi_line(v, Some(msg));
        if self.log.phase == Phase::CheckType {
            self.log.emit(&ctx);
            self.log.emit("\n");
        }
        self.log.emit(&line);
        self.log.emit("\n");
        Fail {
            errno: Errno::EINVAL,
            type_id: at.id,
            log: format!("{ctx}\n{line}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// CHECK_META: one record at a time (`btf_check_meta` and each kind's `check_meta`).

/// Bytes of trailing records a kind needs (`meta_needed`).
fn meta_needed(h: &Hdr) -> u32 {
    match Kind::from_raw(h.kind) {
        Some(Kind::Int | Kind::Var | Kind::DeclTag) => 4,
        Some(Kind::Array) => 12,
        Some(Kind::Struct | Kind::Union | Kind::Enum64 | Kind::Datasec) => h.vlen * 12,
        Some(Kind::Enum | Kind::FuncProto) => h.vlen * 8,
        _ => 0,
    }
}

/// The checks `btf_check_meta` does before the kind's own (kind and name offset; the
/// info mask and record length are checked by the caller when reading raw bytes).
fn check_meta_common(lg: &mut Logger<'_, '_>, id: TypeId, h: &Hdr) -> Result<(), Fail> {
    if h.kind == 0 || Kind::from_raw(h.kind).is_none() {
        return Err(lg.plain(id, Errno::EINVAL, format!("[{id}] Invalid kind:{}", h.kind)));
    }
    if !lg.strings.offset_valid(h.name_off) {
        return Err(lg.plain(
            id,
            Errno::EINVAL,
            format!("[{id}] Invalid name_offset:{}", h.name_off),
        ));
    }
    Ok(())
}

fn valid_type_id(id: u32) -> bool {
    id <= BTF_MAX_TYPE
}

/// The kind-specific `check_meta` of a decoded record (after its length was checked).
fn check_meta_kind(lg: &mut Logger<'_, '_>, id: TypeId, h: &Hdr, t: &Type) -> Result<(), Fail> {
    let at = At {
        id,
        hdr: *h,
        body: Some(t),
    };
    let strings = lg.strings;
    let ident = |off: u32| strings.valid_identifier(off);
    macro_rules! bail {
        ($e:expr) => {
            return Err($e)
        };
    }
    match &t.kind {
        TypeKind::Void => {
            bail!(lg.plain(id, Errno::EINVAL, format!("[{id}] Invalid kind:0")))
        }
        TypeKind::Int {
            encoding,
            offset,
            bits,
            ..
        } => {
            if h.vlen != 0 {
                bail!(lg.ty(at, true, "vlen != 0"));
            }
            if h.kflag {
                bail!(lg.ty(at, true, "Invalid btf_info kind_flag"));
            }
            let data = h.raw_int.unwrap_or(int_data(*encoding, *offset, *bits));
            if data & !INT_MASK != 0 {
                bail!(lg.ty(at, false, &format!("Invalid int_data:{data:x}")));
            }
            let nr_bits = u32::from(*bits) + u32::from(*offset);
            if nr_bits > BITS_PER_U128 {
                bail!(lg.ty(at, true, "nr_bits exceeds 128"));
            }
            if roundup_bytes(nr_bits) > h.size_or_type {
                bail!(lg.ty(at, true, "nr_bits exceeds type_size"));
            }
            let enc = data >> 24 & 0x0f;
            if enc != 0 && enc != 1 && enc != 2 && enc != 4 {
                let mut f = lg.ty(at, true, "Unsupported encoding");
                f.errno = Errno::ENOTSUPP;
                bail!(f);
            }
        }
        TypeKind::Ptr { .. }
        | TypeKind::Typedef { .. }
        | TypeKind::Volatile { .. }
        | TypeKind::Const { .. }
        | TypeKind::Restrict { .. }
        | TypeKind::TypeTag { .. } => {
            if h.vlen != 0 {
                bail!(lg.ty(at, true, "vlen != 0"));
            }
            let is_tag = matches!(t.kind, TypeKind::TypeTag { .. });
            if h.kflag && !(is_tag && KFLAG_ON_TAGS) {
                bail!(lg.ty(at, true, "Invalid btf_info kind_flag"));
            }
            if !valid_type_id(h.size_or_type) {
                bail!(lg.ty(at, true, "Invalid type_id"));
            }
            let name_ok = match t.kind {
                TypeKind::Typedef { .. } => h.name_off != 0 && ident(h.name_off),
                TypeKind::TypeTag { .. } => !strings.cstr(h.name_off).is_empty(),
                _ => h.name_off == 0,
            };
            if !name_ok {
                bail!(lg.ty(at, true, "Invalid name"));
            }
        }
        TypeKind::Fwd { .. } => {
            if h.vlen != 0 {
                bail!(lg.ty(at, true, "vlen != 0"));
            }
            if h.size_or_type != 0 {
                bail!(lg.ty(at, true, "type != 0"));
            }
            if h.name_off == 0 || !ident(h.name_off) {
                bail!(lg.ty(at, true, "Invalid name"));
            }
        }
        TypeKind::Array { elem, index, .. } => {
            if h.name_off != 0 {
                bail!(lg.ty(at, true, "Invalid name"));
            }
            if h.vlen != 0 {
                bail!(lg.ty(at, true, "vlen != 0"));
            }
            if h.kflag {
                bail!(lg.ty(at, true, "Invalid btf_info kind_flag"));
            }
            if h.size_or_type != 0 {
                bail!(lg.ty(at, true, "size != 0"));
            }
            if *elem == 0 || !valid_type_id(*elem) {
                bail!(lg.ty(at, true, "Invalid elem"));
            }
            if *index == 0 || !valid_type_id(*index) {
                bail!(lg.ty(at, true, "Invalid index"));
            }
        }
        TypeKind::Struct(c) | TypeKind::Union(c) => {
            let is_union = matches!(t.kind, TypeKind::Union(_));
            if h.name_off != 0 && !ident(h.name_off) {
                bail!(lg.ty(at, true, "Invalid name"));
            }
            lg.ok_type(at);
            let mut last_offset = 0u32;
            for m in &c.members {
                if !strings.offset_valid(m.name_off) {
                    bail!(lg.member(at, m, &format!("Invalid member name_offset:{}", m.name_off)));
                }
                if m.name_off != 0 && !ident(m.name_off) {
                    bail!(lg.member(at, m, "Invalid name"));
                }
                if m.ty == 0 || !valid_type_id(m.ty) {
                    bail!(lg.member(at, m, "Invalid type_id"));
                }
                let offset = m.bit_offset(h.kflag);
                if is_union && offset != 0 {
                    bail!(lg.member(at, m, "Invalid member bits_offset"));
                }
                if last_offset > offset {
                    bail!(lg.member(at, m, "Invalid member bits_offset"));
                }
                if roundup_bytes(offset) > h.size_or_type {
                    bail!(lg.member(at, m, "Member bits_offset exceeds its struct size"));
                }
                if lg.log.verbose() {
                    let line = member_line(strings, h.kflag, m, None);
                    lg.log.emit(&line);
                    lg.log.emit("\n");
                }
                last_offset = offset;
            }
            return Ok(());
        }
        TypeKind::Enum(e) | TypeKind::Enum64(e) => {
            let is64 = matches!(t.kind, TypeKind::Enum64(_));
            if h.size_or_type > 8 || !h.size_or_type.is_power_of_two() {
                bail!(lg.ty(at, true, "Unexpected size"));
            }
            if h.name_off != 0 && !ident(h.name_off) {
                bail!(lg.ty(at, true, "Invalid name"));
            }
            lg.ok_type(at);
            for v in &e.values {
                if !strings.offset_valid(v.name_off) {
                    let ctx = type_line(strings, id, h, Some(t), None);
                    let msg = format!("\tInvalid name_offset:{}", v.name_off);
                    lg.log.emit(&msg);
                    bail!(Fail {
                        errno: Errno::EINVAL,
                        type_id: id,
                        log: format!("{ctx}\n{msg}"),
                    });
                }
                if v.name_off == 0 || !ident(v.name_off) {
                    bail!(lg.ty(at, true, "Invalid name"));
                }
                if lg.log.verbose() {
                    let name = strings.log_name(v.name_off);
                    let line = match (is64, h.kflag) {
                        (false, false) => format!("\t{name} val={}\n", v.value as u32),
                        (false, true) => format!("\t{name} val={}\n", v.value as u32 as i32),
                        (true, false) => format!("\t{name} val={}\n", v.value),
                        (true, true) => format!("\t{name} val={}\n", v.value as i64),
                    };
                    lg.log.emit(&line);
                }
            }
            return Ok(());
        }
        TypeKind::FuncProto { .. } => {
            if h.name_off != 0 {
                bail!(lg.ty(at, true, "Invalid name"));
            }
            if h.kflag {
                bail!(lg.ty(at, true, "Invalid btf_info kind_flag"));
            }
        }
        TypeKind::Func { .. } => {
            if h.name_off == 0 || !ident(h.name_off) {
                bail!(lg.ty(at, true, "Invalid name"));
            }
            if h.vlen > 1 {
                bail!(lg.ty(at, true, "Invalid func linkage"));
            }
            if h.kflag {
                bail!(lg.ty(at, true, "Invalid btf_info kind_flag"));
            }
        }
        TypeKind::Var { linkage, .. } => {
            if h.vlen != 0 {
                bail!(lg.ty(at, true, "vlen != 0"));
            }
            if h.kflag {
                bail!(lg.ty(at, true, "Invalid btf_info kind_flag"));
            }
            if h.name_off == 0 || !ident(h.name_off) {
                bail!(lg.ty(at, true, "Invalid name"));
            }
            if h.size_or_type == 0 || !valid_type_id(h.size_or_type) {
                bail!(lg.ty(at, true, "Invalid type_id"));
            }
            if linkage.raw() > 1 {
                bail!(lg.ty(at, true, "Linkage not supported"));
            }
        }
        TypeKind::Datasec { size, vars } => {
            if *size == 0 {
                bail!(lg.ty(at, true, "size == 0"));
            }
            if h.kflag {
                bail!(lg.ty(at, true, "Invalid btf_info kind_flag"));
            }
            if h.name_off == 0 || !strings.valid_section(h.name_off) {
                bail!(lg.ty(at, true, "Invalid name"));
            }
            lg.ok_type(at);
            let mut last_end: u64 = 0;
            let mut sum: u64 = 0;
            for v in vars {
                if v.ty == 0 || !valid_type_id(v.ty) {
                    bail!(lg.vsi(at, v, "Invalid type_id"));
                }
                if u64::from(v.offset) < last_end || v.offset >= *size {
                    bail!(lg.vsi(at, v, "Invalid offset"));
                }
                if v.size == 0 || v.size > *size {
                    bail!(lg.vsi(at, v, "Invalid size"));
                }
                // The kernel adds in 32 bits before widening.
                last_end = u64::from(v.offset.wrapping_add(v.size));
                if last_end > u64::from(*size) {
                    bail!(lg.vsi(at, v, "Invalid offset+size"));
                }
                if lg.log.verbose() {
                    let line = vsi_line(v, None);
                    lg.log.emit(&line);
                    lg.log.emit("\n");
                }
                sum += u64::from(v.size);
            }
            if u64::from(*size) < sum {
                bail!(lg.ty(at, true, "Invalid btf_info size"));
            }
            return Ok(());
        }
        TypeKind::Float { size } => {
            if h.vlen != 0 {
                bail!(lg.ty(at, true, "vlen != 0"));
            }
            if h.kflag {
                bail!(lg.ty(at, true, "Invalid btf_info kind_flag"));
            }
            if !matches!(size, 2 | 4 | 8 | 12 | 16) {
                bail!(lg.ty(at, true, "Invalid type_size"));
            }
        }
        TypeKind::DeclTag { component_idx, .. } => {
            if strings.cstr(h.name_off).is_empty() {
                bail!(lg.ty(at, true, "Invalid value"));
            }
            if h.vlen != 0 {
                bail!(lg.ty(at, true, "vlen != 0"));
            }
            if h.kflag && !KFLAG_ON_TAGS {
                bail!(lg.ty(at, true, "Invalid btf_info kind_flag"));
            }
            if *component_idx < -1 {
                bail!(lg.ty(at, true, "Invalid component_idx"));
            }
        }
    }
    lg.ok_type(at);
    Ok(())
}

/// Whether the kind flag is allowed on `DECL_TAG` and `TYPE_TAG` (it marks tags that are
/// attributes). Linux 6.12 rejects it; later kernels, including the 6.18 this project
/// tests against, accept it.
const KFLAG_ON_TAGS: bool = true;

/// Reads a little-endian `u32` at `off`, if present.
fn le32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Decodes the kind-specific part of a record whose length was already checked.
fn decode_body(data: &[u8], off: usize, h: &Hdr) -> Option<TypeKind> {
    let vlen = h.vlen as usize;
    let sot = h.size_or_type;
    Some(match Kind::from_raw(h.kind)? {
        Kind::Void => return None,
        Kind::Int => {
            let v = le32(data, off)?;
            TypeKind::Int {
                size: sot,
                encoding: (v >> 24) as u8,
                offset: (v >> 16) as u8,
                bits: v as u8,
            }
        }
        Kind::Ptr => TypeKind::Ptr { target: sot },
        Kind::Typedef => TypeKind::Typedef { target: sot },
        Kind::Volatile => TypeKind::Volatile { target: sot },
        Kind::Const => TypeKind::Const { target: sot },
        Kind::Restrict => TypeKind::Restrict { target: sot },
        Kind::TypeTag => TypeKind::TypeTag {
            target: sot,
            kflag: h.kflag,
        },
        Kind::Array => TypeKind::Array {
            elem: le32(data, off)?,
            index: le32(data, off + 4)?,
            len: le32(data, off + 8)?,
        },
        Kind::Struct | Kind::Union => {
            let mut members = Vec::with_capacity(vlen);
            for i in 0..vlen {
                let o = off + i * 12;
                members.push(Member {
                    name_off: le32(data, o)?,
                    ty: le32(data, o + 4)?,
                    offset: le32(data, o + 8)?,
                });
            }
            let c = Composite {
                size: sot,
                kflag: h.kflag,
                members,
            };
            if h.kind == Kind::Struct as u32 {
                TypeKind::Struct(c)
            } else {
                TypeKind::Union(c)
            }
        }
        Kind::Enum => {
            let mut values = Vec::with_capacity(vlen);
            for i in 0..vlen {
                let o = off + i * 8;
                values.push(Enumerator {
                    name_off: le32(data, o)?,
                    value: u64::from(le32(data, o + 4)?),
                });
            }
            TypeKind::Enum(EnumBody {
                size: sot,
                signed: h.kflag,
                values,
            })
        }
        Kind::Enum64 => {
            let mut values = Vec::with_capacity(vlen);
            for i in 0..vlen {
                let o = off + i * 12;
                let lo = u64::from(le32(data, o + 4)?);
                let hi = u64::from(le32(data, o + 8)?);
                values.push(Enumerator {
                    name_off: le32(data, o)?,
                    value: hi << 32 | lo,
                });
            }
            TypeKind::Enum64(EnumBody {
                size: sot,
                signed: h.kflag,
                values,
            })
        }
        Kind::Fwd => TypeKind::Fwd { union: h.kflag },
        Kind::Func => TypeKind::Func {
            proto: sot,
            linkage: Linkage::from_raw(h.vlen),
        },
        Kind::FuncProto => {
            let mut params = Vec::with_capacity(vlen);
            for i in 0..vlen {
                let o = off + i * 8;
                params.push(Param {
                    name_off: le32(data, o)?,
                    ty: le32(data, o + 4)?,
                });
            }
            TypeKind::FuncProto { ret: sot, params }
        }
        Kind::Var => TypeKind::Var {
            ty: sot,
            linkage: Linkage::from_raw(le32(data, off)?),
        },
        Kind::Datasec => {
            let mut vars = Vec::with_capacity(vlen);
            for i in 0..vlen {
                let o = off + i * 12;
                vars.push(VarSecInfo {
                    ty: le32(data, o)?,
                    offset: le32(data, o + 4)?,
                    size: le32(data, o + 8)?,
                });
            }
            TypeKind::Datasec { size: sot, vars }
        }
        Kind::Float => TypeKind::Float { size: sot },
        Kind::DeclTag => TypeKind::DeclTag {
            target: sot,
            component_idx: le32(data, off)? as i32,
            kflag: h.kflag,
        },
    })
}

/// Adds a checked type as `btf_add_type` does: past `BTF_MAX_TYPE` ids the kernel logs
/// and drops the type (and, in 6.12, carries on).
fn add_type(lg: &mut Logger<'_, '_>, types: &mut Vec<Type>, t: Type) {
    if types.len() >= BTF_MAX_TYPE as usize {
        lg.log.emit("Exceeded max num of types");
        return;
    }
    types.push(t);
}

/// `btf_check_all_metas` over a raw type section.
fn check_all_metas_raw(lg: &mut Logger<'_, '_>, sec: &[u8]) -> Result<Vec<Type>, Fail> {
    let mut types = Vec::with_capacity(1 + sec.len() / 16);
    types.push(Type {
        name_off: 0,
        kind: TypeKind::Void,
    });
    let end = sec.len();
    let mut cur = 0usize;
    let mut id: TypeId = 1;
    while cur < end {
        let meta_left = (end - cur) as u32;
        let (Some(name_off), Some(info), Some(sot)) =
            (le32(sec, cur), le32(sec, cur + 4), le32(sec, cur + 8))
        else {
            return Err(lg.plain(
                id,
                Errno::EINVAL,
                format!("[{id}] meta_left:{meta_left} meta_needed:{TYPE_HDR}"),
            ));
        };
        if info & !INFO_MASK != 0 {
            return Err(lg.plain(
                id,
                Errno::EINVAL,
                format!("[{id}] Invalid btf_info:{info:x}"),
            ));
        }
        let mut h = Hdr::from_raw(name_off, info, sot);
        check_meta_common(lg, id, &h)?;
        let need = meta_needed(&h);
        let left = meta_left - TYPE_HDR;
        if left < need {
            let at = At {
                id,
                hdr: h,
                body: None,
            };
            return Err(lg.ty(at, false, &format!("meta_left:{left} meta_needed:{need}")));
        }
        let body_off = cur + TYPE_HDR as usize;
        if h.kind == Kind::Int as u32 {
            h.raw_int = le32(sec, body_off);
        }
        let Some(kind) = decode_body(sec, body_off, &h) else {
            return Err(lg.plain(
                id,
                Errno::EINVAL,
                format!("[{id}] meta_left:{left} meta_needed:{need}"),
            ));
        };
        let t = Type { name_off, kind };
        check_meta_kind(lg, id, &h, &t)?;
        add_type(lg, &mut types, t);
        cur = body_off + need as usize;
        id = id.wrapping_add(1);
    }
    Ok(types)
}

/// `btf_check_all_metas` over an already decoded type table.
fn check_all_metas_model(lg: &mut Logger<'_, '_>, types: &[Type]) -> Result<(), Fail> {
    for (id, t) in types.iter().enumerate().skip(1) {
        let id = id as TypeId;
        let h = Hdr::of(t);
        check_meta_common(lg, id, &h)?;
        check_meta_kind(lg, id, &h, t)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// CHECK_TYPE: resolution (`btf_check_all_types`, `btf_resolve` and each kind's `resolve`).

#[derive(Clone, Copy, PartialEq, Eq)]
enum Visit {
    NotVisited,
    Visited,
    Resolved,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Tbd,
    Ptr,
    StructOrArray,
}

#[derive(Clone, Copy, Default)]
struct Vertex {
    id: TypeId,
    next_member: u32,
}

/// The kernel's kind groups, by kind.
fn is_modifier(k: Kind) -> bool {
    matches!(
        k,
        Kind::Typedef | Kind::Volatile | Kind::Const | Kind::Restrict | Kind::TypeTag
    )
}

fn is_struct(k: Kind) -> bool {
    matches!(k, Kind::Struct | Kind::Union)
}

fn needs_resolve(k: Kind) -> bool {
    is_modifier(k)
        || matches!(
            k,
            Kind::Ptr
                | Kind::Struct
                | Kind::Union
                | Kind::Array
                | Kind::Var
                | Kind::Func
                | Kind::DeclTag
                | Kind::Datasec
        )
}

fn is_source_only(k: Kind) -> bool {
    matches!(k, Kind::Var | Kind::DeclTag | Kind::Datasec)
}

/// `btf_type_nosize`: void, forward declarations, functions, prototypes, decl tags.
fn is_nosize(k: Kind) -> bool {
    matches!(
        k,
        Kind::Void | Kind::Fwd | Kind::Func | Kind::FuncProto | Kind::DeclTag
    )
}

fn has_size(k: Kind) -> bool {
    matches!(
        k,
        Kind::Int
            | Kind::Struct
            | Kind::Union
            | Kind::Enum
            | Kind::Datasec
            | Kind::Float
            | Kind::Enum64
    )
}

/// `t->size` for the kinds that have one.
fn size_field(t: &Type) -> u32 {
    match &t.kind {
        TypeKind::Int { size, .. } | TypeKind::Float { size } | TypeKind::Datasec { size, .. } => {
            *size
        }
        TypeKind::Struct(c) | TypeKind::Union(c) => c.size,
        TypeKind::Enum(e) | TypeKind::Enum64(e) => e.size,
        _ => 0,
    }
}

/// `t->type` for the kinds that refer through it.
fn type_field(t: &Type) -> u32 {
    match &t.kind {
        TypeKind::FuncProto { ret, .. } => *ret,
        _ => t.target().unwrap_or(0),
    }
}

/// `btf_type_int_is_regular`: a whole u8/u16/u32/u64/u128 with no bit offset.
fn int_is_regular(t: &Type) -> bool {
    match t.kind {
        TypeKind::Int { offset, bits, .. } => {
            let bytes = roundup_bytes(u32::from(bits));
            bits & 7 == 0 && offset == 0 && matches!(bytes, 1 | 2 | 4 | 8 | 16)
        }
        _ => false,
    }
}

/// The resolver's state (`struct btf_verifier_env` plus the btf's resolved arrays).
struct Env<'a, 't, 's> {
    lg: Logger<'a, 's>,
    types: &'t [Type],
    resolved_ids: Vec<u32>,
    resolved_sizes: Vec<u32>,
    visit: Vec<Visit>,
    stack: [Vertex; MAX_RESOLVE_DEPTH],
    top: usize,
    mode: Mode,
    log_type_id: TypeId,
}

impl<'t> Env<'_, 't, '_> {
    fn ty(&self, id: TypeId) -> Option<&'t Type> {
        self.types.get(id as usize)
    }

    fn kind(&self, id: TypeId) -> Option<Kind> {
        self.ty(id).map(Type::kind)
    }

    fn at(&self, id: TypeId) -> At<'t> {
        match self.ty(id) {
            Some(t) => At {
                id: self.log_type_id,
                hdr: Hdr::of(t),
                body: Some(t),
            },
            None => At {
                id: self.log_type_id,
                hdr: Hdr::from_raw(0, 0, 0),
                body: None,
            },
        }
    }

    /// Logs `msg` against type `id` (`btf_verifier_log_type(env, t, msg)`), where the
    /// bracketed id is `log_type_id`, as in the kernel.
    fn err_type(&mut self, id: TypeId, msg: &str) -> Fail {
        let at = self.at(id);
        self.lg.ty(at, true, msg)
    }

    fn err_member(&mut self, struct_id: TypeId, m: &Member, msg: &str) -> Fail {
        let at = self.at(struct_id);
        self.lg.member(at, m, msg)
    }

    fn err_vsi(&mut self, sec_id: TypeId, v: &VarSecInfo, msg: &str) -> Fail {
        let at = self.at(sec_id);
        self.lg.vsi(at, v, msg)
    }

    fn resolved(&self, id: TypeId) -> bool {
        self.visit.get(id as usize) == Some(&Visit::Resolved)
    }

    fn resolved_id(&self, id: TypeId) -> u32 {
        self.resolved_ids.get(id as usize).copied().unwrap_or(0)
    }

    fn resolved_size(&self, id: TypeId) -> u32 {
        self.resolved_sizes.get(id as usize).copied().unwrap_or(0)
    }

    /// `env_type_is_resolve_sink`.
    fn is_sink(&self, k: Kind) -> bool {
        match self.mode {
            Mode::Tbd => !needs_resolve(k),
            Mode::Ptr => !is_modifier(k) && k != Kind::Ptr,
            Mode::StructOrArray => !is_modifier(k) && k != Kind::Array && !is_struct(k),
        }
    }

    /// `env_stack_push`: fails with `E2BIG` when full and `EEXIST` on a revisit (a loop).
    fn push(&mut self, id: TypeId) -> Result<(), Fail> {
        if self.top == MAX_RESOLVE_DEPTH {
            return Err(Fail {
                errno: Errno::E2BIG,
                type_id: id,
                log: String::new(),
            });
        }
        match self.visit.get_mut(id as usize) {
            Some(v @ Visit::NotVisited) => *v = Visit::Visited,
            _ => {
                return Err(Fail {
                    errno: Errno::EEXIST,
                    type_id: id,
                    log: String::new(),
                });
            }
        }
        if let Some(slot) = self.stack.get_mut(self.top) {
            *slot = Vertex { id, next_member: 0 };
        }
        self.top += 1;
        if self.mode == Mode::Tbd {
            match self.kind(id) {
                Some(Kind::Ptr) => self.mode = Mode::Ptr,
                Some(k) if is_struct(k) || k == Kind::Array => self.mode = Mode::StructOrArray,
                _ => {}
            }
        }
        Ok(())
    }

    fn set_next_member(&mut self, next: u32) {
        if let Some(v) = self.top.checked_sub(1).and_then(|i| self.stack.get_mut(i)) {
            v.next_member = next;
        }
    }

    /// `env_stack_pop_resolved`.
    fn pop_resolved(&mut self, resolved_id: u32, resolved_size: u32) {
        let Some(i) = self.top.checked_sub(1) else {
            return;
        };
        self.top = i;
        let id = self.stack.get(i).map_or(0, |v| v.id) as usize;
        if let (Some(rs), Some(ri), Some(vs)) = (
            self.resolved_sizes.get_mut(id),
            self.resolved_ids.get_mut(id),
            self.visit.get_mut(id),
        ) {
            *rs = resolved_size;
            *ri = resolved_id;
            *vs = Visit::Resolved;
        }
    }

    /// `btf_type_id_size`: the id and byte size a type resolves to, if it has a size.
    fn id_size(&self, id: TypeId) -> Option<(TypeId, u32)> {
        let t = self.ty(id)?;
        let k = t.kind();
        if is_nosize(k) {
            return None;
        }
        if has_size(k) {
            return Some((id, size_field(t)));
        }
        match k {
            Kind::Array => return Some((id, self.resolved_size(id))),
            Kind::Ptr => return Some((id, 8)),
            _ => {}
        }
        if !is_modifier(k) && k != Kind::Var {
            return None;
        }
        let rid = self.resolved_id(id);
        let rt = self.ty(rid)?;
        let rk = rt.kind();
        if is_nosize(rk) {
            None
        } else if has_size(rk) {
            Some((rid, size_field(rt)))
        } else if rk == Kind::Array {
            Some((rid, self.resolved_size(rid)))
        } else if rk == Kind::Ptr {
            Some((rid, 8))
        } else {
            None
        }
    }

    /// One step of resolving the vertex on top of the stack (`btf_kind_operations.resolve`).
    fn resolve_step(&mut self, v: Vertex) -> Result<(), Fail> {
        let Some(t) = self.ty(v.id) else {
            return Err(Fail {
                errno: Errno::EINVAL,
                type_id: v.id,
                log: String::new(),
            });
        };
        match &t.kind {
            TypeKind::Typedef { target }
            | TypeKind::Volatile { target }
            | TypeKind::Const { target }
            | TypeKind::Restrict { target }
            | TypeKind::TypeTag { target, .. } => self.resolve_modifier(v.id, *target),
            TypeKind::Ptr { target } => self.resolve_ptr(v.id, *target),
            TypeKind::Var { ty, .. } => self.resolve_var(v.id, *ty),
            TypeKind::Array { elem, index, len } => self.resolve_array(v.id, *elem, *index, *len),
            TypeKind::Struct(c) | TypeKind::Union(c) => self.resolve_struct(v, c),
            TypeKind::Datasec { vars, .. } => self.resolve_datasec(v, vars),
            TypeKind::DeclTag {
                target,
                component_idx,
                ..
            } => self.resolve_decl_tag(v.id, *target, *component_idx),
            TypeKind::Func { proto, .. } => {
                self.func_check(v.id, *proto)?;
                self.pop_resolved(*proto, 0);
                Ok(())
            }
            _ => {
                let at = self.at(v.id);
                Err(self.lg.ty(at, false, "Unsupported resolve"))
            }
        }
    }

    /// Pushes `next` unless it is a sink for the current mode or already resolved.
    /// Returns `Some(result)` when the caller must return.
    fn maybe_push(&mut self, next: TypeId, k: Kind) -> Option<Result<(), Fail>> {
        if !self.is_sink(k) && !self.resolved(next) {
            return Some(self.push(next));
        }
        None
    }

    fn resolve_modifier(&mut self, id: TypeId, next: TypeId) -> Result<(), Fail> {
        let Some(nk) = self.kind(next).filter(|k| !is_source_only(*k)) else {
            return Err(self.err_type(id, "Invalid type_id"));
        };
        if let Some(r) = self.maybe_push(next, nk) {
            return r;
        }
        let mut next_id = next;
        match self.id_size(next) {
            Some((sid, _)) => next_id = sid,
            None => {
                let mut nk = Some(nk);
                if self.resolved(next_id) {
                    next_id = self.resolved_id(next_id);
                    nk = self.kind(next_id);
                }
                if !(next_id == 0 || matches!(nk, Some(Kind::Fwd | Kind::FuncProto))) {
                    return Err(self.err_type(id, "Invalid type_id"));
                }
            }
        }
        self.pop_resolved(next_id, 0);
        Ok(())
    }

    /// The part `btf_var_resolve` and `btf_ptr_resolve` share: a modifier that resolved
    /// to a pointer during struct resolution must have that pointer resolved too.
    fn push_ptr_behind_modifier(&mut self, next: TypeId, nk: Kind) -> Option<Result<(), Fail>> {
        if is_modifier(nk) {
            let rid = self.resolved_id(next);
            if let Some(rk) = self.kind(rid)
                && rk == Kind::Ptr
                && !self.is_sink(rk)
                && !self.resolved(rid)
            {
                return Some(self.push(rid));
            }
        }
        None
    }

    fn resolve_var(&mut self, id: TypeId, next: TypeId) -> Result<(), Fail> {
        let Some(nk) = self.kind(next).filter(|k| !is_source_only(*k)) else {
            return Err(self.err_type(id, "Invalid type_id"));
        };
        if let Some(r) = self.maybe_push(next, nk) {
            return r;
        }
        if let Some(r) = self.push_ptr_behind_modifier(next, nk) {
            return r;
        }
        let Some((sid, _)) = self.id_size(next) else {
            return Err(self.err_type(id, "Invalid type_id"));
        };
        self.pop_resolved(sid, 0);
        Ok(())
    }

    fn resolve_ptr(&mut self, id: TypeId, next: TypeId) -> Result<(), Fail> {
        let Some(nk) = self.kind(next).filter(|k| !is_source_only(*k)) else {
            return Err(self.err_type(id, "Invalid type_id"));
        };
        if let Some(r) = self.maybe_push(next, nk) {
            return r;
        }
        if let Some(r) = self.push_ptr_behind_modifier(next, nk) {
            return r;
        }
        let mut next_id = next;
        match self.id_size(next) {
            Some((sid, _)) => next_id = sid,
            None => {
                let mut nk = Some(nk);
                if self.resolved(next_id) {
                    next_id = self.resolved_id(next_id);
                    nk = self.kind(next_id);
                }
                if !(next_id == 0 || matches!(nk, Some(Kind::Fwd | Kind::FuncProto))) {
                    return Err(self.err_type(id, "Invalid type_id"));
                }
            }
        }
        self.pop_resolved(next_id, 0);
        Ok(())
    }

    fn resolve_array(
        &mut self,
        id: TypeId,
        elem: TypeId,
        index: TypeId,
        len: u32,
    ) -> Result<(), Fail> {
        let ik = match self.kind(index) {
            Some(k) if !is_nosize(k) && !is_source_only(k) => k,
            _ => return Err(self.err_type(id, "Invalid index")),
        };
        if let Some(r) = self.maybe_push(index, ik) {
            return r;
        }
        match self.id_size(index).and_then(|(sid, _)| self.ty(sid)) {
            Some(it) if int_is_regular(it) => {}
            _ => return Err(self.err_type(id, "Invalid index")),
        }
        let ek = match self.kind(elem) {
            Some(k) if !is_nosize(k) && !is_source_only(k) => k,
            _ => return Err(self.err_type(id, "Invalid elem")),
        };
        if let Some(r) = self.maybe_push(elem, ek) {
            return r;
        }
        let Some((eid, esize)) = self.id_size(elem) else {
            return Err(self.err_type(id, "Invalid elem"));
        };
        if let Some(et) = self.ty(eid)
            && et.kind() == Kind::Int
            && !int_is_regular(et)
        {
            return Err(self.err_type(id, "Invalid array of int"));
        }
        if len != 0 && esize > u32::MAX / len {
            return Err(self.err_type(id, "Array size overflows U32_MAX"));
        }
        self.pop_resolved(eid, esize.wrapping_mul(len));
        Ok(())
    }

    fn resolve_struct(&mut self, v: Vertex, c: &'t Composite) -> Result<(), Fail> {
        let sid = v.id;
        if v.next_member > 0 {
            let Some(last) = c.members.get(v.next_member as usize - 1) else {
                return Err(Fail {
                    errno: Errno::EINVAL,
                    type_id: sid,
                    log: String::new(),
                });
            };
            if !self.resolved(last.ty) {
                // The kernel WARNs here; it cannot happen after a successful push.
                return Err(Fail {
                    errno: Errno::EINVAL,
                    type_id: sid,
                    log: String::new(),
                });
            }
            self.check_member(sid, c, *last, last.ty)?;
        }
        for (i, m) in c.members.iter().enumerate().skip(v.next_member as usize) {
            let mk = match self.kind(m.ty) {
                Some(k) if !is_nosize(k) && !is_source_only(k) => k,
                _ => return Err(self.err_member(sid, m, "Invalid member")),
            };
            if !self.is_sink(mk) && !self.resolved(m.ty) {
                self.set_next_member(i as u32 + 1);
                return self.push(m.ty);
            }
            self.check_member(sid, c, *m, m.ty)?;
        }
        self.pop_resolved(0, 0);
        Ok(())
    }

    /// Dispatches to the member type's `check_member` or `check_kflag_member`.
    fn check_member(
        &mut self,
        sid: TypeId,
        c: &Composite,
        m: Member,
        mty: TypeId,
    ) -> Result<(), Fail> {
        let Some(mt) = self.ty(mty) else {
            return Err(self.err_member(sid, &m, "Invalid member"));
        };
        let k = mt.kind();
        let ssize = c.size;
        let kflag = c.kflag;
        if is_modifier(k) {
            let Some((rid, _)) = self.id_size(mty) else {
                return Err(self.err_member(sid, &m, "Invalid member"));
            };
            let rm = Member { ty: rid, ..m };
            return self.check_member(sid, c, rm, rid);
        }
        if kflag {
            match k {
                Kind::Int => return self.int_check_kflag_member(sid, ssize, &m, mt),
                Kind::Enum | Kind::Enum64 => {
                    return self.enum_check_kflag_member(sid, ssize, &m);
                }
                Kind::Ptr | Kind::Array | Kind::Struct | Kind::Union | Kind::Float => {
                    if m.offset >> 24 != 0 {
                        return Err(self.err_member(sid, &m, "Invalid member bitfield_size"));
                    }
                }
                _ => {
                    let at = self.at(sid);
                    return Err(self.lg.ty(at, false, "Unsupported check_kflag_member"));
                }
            }
        }
        let off = m.offset;
        let bytes_offset = off >> 3;
        match k {
            Kind::Int => {
                let TypeKind::Int { offset, bits, .. } = mt.kind else {
                    return Ok(());
                };
                let Some(bits_off) = off.checked_add(u32::from(offset)) else {
                    return Err(self.err_member(sid, &m, "bits_offset exceeds U32_MAX"));
                };
                let bytes_offset = bits_off >> 3;
                let nr_copy_bits = u32::from(bits) + (bits_off & 7);
                if nr_copy_bits > BITS_PER_U128 {
                    return Err(self.err_member(sid, &m, "nr_copy_bits exceeds 128"));
                }
                if ssize < bytes_offset || ssize - bytes_offset < roundup_bytes(nr_copy_bits) {
                    return Err(self.err_member(sid, &m, "Member exceeds struct_size"));
                }
                Ok(())
            }
            Kind::Ptr => {
                if off & 7 != 0 {
                    return Err(self.err_member(sid, &m, "Member is not byte aligned"));
                }
                if ssize.wrapping_sub(bytes_offset) < 8 {
                    return Err(self.err_member(sid, &m, "Member exceeds struct_size"));
                }
                Ok(())
            }
            Kind::Array => {
                if off & 7 != 0 {
                    return Err(self.err_member(sid, &m, "Member is not byte aligned"));
                }
                let asize = self.id_size(mty).map_or(0, |(_, s)| s);
                if ssize.wrapping_sub(bytes_offset) < asize {
                    return Err(self.err_member(sid, &m, "Member exceeds struct_size"));
                }
                Ok(())
            }
            Kind::Struct | Kind::Union | Kind::Enum | Kind::Enum64 => {
                if off & 7 != 0 {
                    return Err(self.err_member(sid, &m, "Member is not byte aligned"));
                }
                if ssize.wrapping_sub(bytes_offset) < size_field(mt) {
                    return Err(self.err_member(sid, &m, "Member exceeds struct_size"));
                }
                Ok(())
            }
            Kind::Float => {
                let fsize = u64::from(size_field(mt));
                let align_bits = fsize.min(8) * 8;
                let misaligned = match u64::from(off).checked_rem(align_bits) {
                    Some(r) => r != 0,
                    // The kernel divides by zero here; a zero-sized float never passes
                    // check_meta, so this is unreachable.
                    None => true,
                };
                if misaligned {
                    return Err(self.err_member(sid, &m, "Member is not properly aligned"));
                }
                let end = u64::from(off / 8) + fsize;
                if end > u64::from(ssize) {
                    return Err(self.err_member(sid, &m, "Member exceeds struct_size"));
                }
                Ok(())
            }
            _ => {
                let at = self.at(sid);
                Err(self.lg.ty(at, false, "Unsupported check_member"))
            }
        }
    }

    fn int_check_kflag_member(
        &mut self,
        sid: TypeId,
        ssize: u32,
        m: &Member,
        mt: &Type,
    ) -> Result<(), Fail> {
        if !int_is_regular(mt) {
            return Err(self.err_member(sid, m, "Invalid member base type"));
        }
        let TypeKind::Int { bits, .. } = mt.kind else {
            return Ok(());
        };
        let mut nr_bits = m.offset >> 24;
        let bit_off = m.offset & 0x00ff_ffff;
        let int_bits = u32::from(bits);
        if nr_bits == 0 {
            if bit_off & 7 != 0 {
                return Err(self.err_member(sid, m, "Invalid member offset"));
            }
            nr_bits = int_bits;
        } else if nr_bits > int_bits {
            return Err(self.err_member(sid, m, "Invalid member bitfield_size"));
        }
        let bytes_offset = bit_off >> 3;
        let nr_copy_bits = nr_bits + (bit_off & 7);
        if nr_copy_bits > BITS_PER_U128 {
            return Err(self.err_member(sid, m, "nr_copy_bits exceeds 128"));
        }
        if ssize < bytes_offset || ssize - bytes_offset < roundup_bytes(nr_copy_bits) {
            return Err(self.err_member(sid, m, "Member exceeds struct_size"));
        }
        Ok(())
    }

    fn enum_check_kflag_member(&mut self, sid: TypeId, ssize: u32, m: &Member) -> Result<(), Fail> {
        let bit_off = m.offset & 0x00ff_ffff;
        let mut nr_bits = m.offset >> 24;
        if nr_bits == 0 {
            if bit_off & 7 != 0 {
                return Err(self.err_member(sid, m, "Member is not byte aligned"));
            }
            nr_bits = 32;
        } else if nr_bits > 32 {
            return Err(self.err_member(sid, m, "Invalid member bitfield_size"));
        }
        if ssize < roundup_bytes(bit_off + nr_bits) {
            return Err(self.err_member(sid, m, "Member exceeds struct_size"));
        }
        Ok(())
    }

    fn resolve_datasec(&mut self, v: Vertex, vars: &'t [VarSecInfo]) -> Result<(), Fail> {
        self.mode = Mode::Tbd;
        for (i, vsi) in vars.iter().enumerate().skip(v.next_member as usize) {
            let var_kind = self.kind(vsi.ty);
            if var_kind != Some(Kind::Var) {
                return Err(self.err_vsi(v.id, vsi, "Not a VAR kind member"));
            }
            if !self.is_sink(Kind::Var) && !self.resolved(vsi.ty) {
                self.set_next_member(i as u32 + 1);
                return self.push(vsi.ty);
            }
            let var_ty = self.ty(vsi.ty).map_or(0, type_field);
            let Some((_, size)) = self.id_size(var_ty) else {
                return Err(self.err_vsi(v.id, vsi, "Invalid type"));
            };
            if vsi.size < size {
                return Err(self.err_vsi(v.id, vsi, "Invalid size"));
            }
        }
        self.pop_resolved(0, 0);
        Ok(())
    }

    fn resolve_decl_tag(
        &mut self,
        id: TypeId,
        next: TypeId,
        component_idx: i32,
    ) -> Result<(), Fail> {
        let nk = match self.kind(next) {
            Some(k @ (Kind::Func | Kind::Struct | Kind::Union | Kind::Var | Kind::Typedef)) => k,
            _ => return Err(self.err_type(id, "Invalid type_id")),
        };
        if let Some(r) = self.maybe_push(next, nk) {
            return r;
        }
        if component_idx != -1 {
            if matches!(nk, Kind::Var | Kind::Typedef) {
                return Err(self.err_type(id, "Invalid component_idx"));
            }
            let vlen = match self.ty(next).map(|t| &t.kind) {
                Some(TypeKind::Struct(c) | TypeKind::Union(c)) => c.members.len(),
                Some(TypeKind::Func { proto, .. }) => self.ty(*proto).map_or(0, Type::vlen),
                _ => 0,
            };
            if component_idx as u32 as usize >= vlen {
                return Err(self.err_type(id, "Invalid component_idx"));
            }
        }
        self.pop_resolved(next, 0);
        Ok(())
    }

    /// `btf_func_check`: a `FUNC` must point at a prototype whose parameters are named.
    fn func_check(&mut self, id: TypeId, proto: TypeId) -> Result<(), Fail> {
        let Some(TypeKind::FuncProto { params, .. }) = self.ty(proto).map(|t| &t.kind) else {
            return Err(self.err_type(id, "Invalid type_id"));
        };
        for (i, p) in params.iter().enumerate() {
            if p.name_off == 0 && p.ty != 0 {
                return Err(self.err_type(id, &format!("Invalid arg#{}", i + 1)));
            }
        }
        Ok(())
    }

    /// `btf_resolve`: resolves `id` and everything it needs, with the explicit stack.
    fn resolve(&mut self, id: TypeId) -> Result<(), Fail> {
        let saved = self.log_type_id;
        self.mode = Mode::Tbd;
        let _ = self.push(id);
        let mut result = Ok(());
        while let Some(v) = self
            .top
            .checked_sub(1)
            .and_then(|i| self.stack.get(i))
            .copied()
        {
            self.log_type_id = v.id;
            if let Err(e) = self.resolve_step(v) {
                result = Err(e);
                break;
            }
        }
        self.log_type_id = id;
        if let Err(e) = &mut result {
            if e.errno == Errno::E2BIG {
                let f = self.err_type(
                    id,
                    &format!("Exceeded max resolving depth:{MAX_RESOLVE_DEPTH}"),
                );
                e.log = f.log;
                e.type_id = id;
            } else if e.errno == Errno::EEXIST {
                let f = self.err_type(id, "Loop detected");
                e.log = f.log;
                e.type_id = id;
            }
        }
        if result.is_ok() && !self.resolve_valid(id) {
            result = Err(self.err_type(id, "Invalid resolve state"));
        }
        self.log_type_id = saved;
        result
    }

    /// `btf_resolve_valid`: the final sanity check of a resolved type.
    fn resolve_valid(&self, id: TypeId) -> bool {
        if !self.resolved(id) {
            return false;
        }
        let Some(t) = self.ty(id) else {
            return false;
        };
        let k = t.kind();
        if is_struct(k) || k == Kind::Datasec {
            return self.resolved_id(id) == 0 && self.resolved_size(id) == 0;
        }
        if k == Kind::DeclTag || k == Kind::Func {
            return self.resolved_id(id) != 0 && self.resolved_size(id) == 0;
        }
        if is_modifier(k) || k == Kind::Ptr || k == Kind::Var {
            return match self.kind(self.resolved_id(id)) {
                Some(rk) => !is_modifier(rk) && rk != Kind::Var && rk != Kind::Datasec,
                None => false,
            };
        }
        if let TypeKind::Array { elem, len, .. } = t.kind {
            return match self.id_size(elem) {
                Some((eid, esize)) => {
                    self.kind(eid).is_some_and(|ek| !is_modifier(ek))
                        && len.wrapping_mul(esize) == self.resolved_size(id)
                }
                None => false,
            };
        }
        false
    }

    /// `btf_func_proto_check`: return and parameter types exist, have sizes, and
    /// parameters have valid names.
    fn func_proto_check(&mut self, id: TypeId, ret: TypeId, params: &[Param]) -> Result<(), Fail> {
        if ret != 0 {
            let rk = match self.kind(ret) {
                Some(k) if !is_source_only(k) => k,
                _ => return Err(self.err_type(id, "Invalid return type")),
            };
            if needs_resolve(rk) && !self.resolved(ret) {
                self.resolve(ret)?;
            }
            if self.id_size(ret).is_none() {
                return Err(self.err_type(id, "Invalid return type"));
            }
        }
        let mut args = params;
        if let [head @ .., last] = params
            && last.ty == 0
        {
            if last.name_off != 0 {
                return Err(self.err_type(id, &format!("Invalid arg#{}", params.len())));
            }
            args = head;
        }
        for (i, p) in args.iter().enumerate() {
            let msg = || format!("Invalid arg#{}", i + 1);
            let ak = match self.kind(p.ty) {
                Some(k) if !is_source_only(k) => k,
                _ => return Err(self.err_type(id, &msg())),
            };
            let strings = self.lg.strings;
            if p.name_off != 0
                && (!strings.offset_valid(p.name_off) || !strings.valid_identifier(p.name_off))
            {
                return Err(self.err_type(id, &msg()));
            }
            if needs_resolve(ak) && !self.resolved(p.ty) {
                self.resolve(p.ty)?;
            }
            if self.id_size(p.ty).is_none() {
                return Err(self.err_type(id, &msg()));
            }
        }
        Ok(())
    }

    /// `btf_check_all_types`.
    fn check_all_types(&mut self) -> Result<(), Fail> {
        self.lg.log.phase = Phase::CheckType;
        let types = self.types;
        for (i, t) in types.iter().enumerate().skip(1) {
            let id = i as TypeId;
            self.log_type_id = id;
            if needs_resolve(t.kind()) && !self.resolved(id) {
                self.resolve(id)?;
            }
            if let TypeKind::FuncProto { ret, params } = &t.kind {
                self.func_proto_check(id, *ret, params)?;
            }
        }
        Ok(())
    }

    /// `btf_check_type_tags`: type tags come before other modifiers in every chain, and
    /// chains are at most 32 long.
    fn check_type_tags(&mut self) -> Result<(), Fail> {
        let mut good_id: u32 = 0;
        for i in 1..self.types.len() as u32 {
            let Some(mut t) = self.ty(i) else {
                return Err(Fail {
                    errno: Errno::EINVAL,
                    type_id: i,
                    log: String::new(),
                });
            };
            if !is_modifier(t.kind()) {
                continue;
            }
            let mut chain_limit = 32;
            let mut cur = i;
            let mut in_tags = t.kind() == Kind::TypeTag;
            while is_modifier(t.kind()) {
                if chain_limit == 0 {
                    return Err(self.lg.plain(
                        i,
                        Errno::ELOOP,
                        "Max chain length or cycle detected".into(),
                    ));
                }
                chain_limit -= 1;
                if t.kind() == Kind::TypeTag {
                    if !in_tags {
                        return Err(self.lg.plain(
                            i,
                            Errno::EINVAL,
                            "Type tags don't precede modifiers".into(),
                        ));
                    }
                } else {
                    in_tags = false;
                }
                if cur <= good_id {
                    break;
                }
                cur = type_field(t);
                t = match self.ty(cur) {
                    Some(t) => t,
                    None => {
                        return Err(Fail {
                            errno: Errno::EINVAL,
                            type_id: i,
                            log: String::new(),
                        });
                    }
                };
            }
            good_id = i;
        }
        Ok(())
    }
}

/// Runs CHECK_TYPE and the type tag checks over `types` (CHECK_META already passed).
fn check_types<'a>(lg: Logger<'a, '_>, types: &[Type]) -> Result<(), Fail> {
    let n = types.len();
    let mut env = Env {
        lg,
        types,
        resolved_ids: vec![0; n],
        resolved_sizes: vec![0; n],
        visit: vec![Visit::NotVisited; n],
        stack: [Vertex::default(); MAX_RESOLVE_DEPTH],
        top: 0,
        mode: Mode::Tbd,
        log_type_id: 0,
    };
    env.check_all_types()?;
    env.check_type_tags()
}

/// `btf_parse_str_sec`'s content checks.
fn check_str_sec(lg: &mut Logger<'_, '_>, s: &[u8]) -> Result<(), Fail> {
    let bad = match (s.first(), s.last()) {
        (Some(&first), Some(&last)) => {
            s.len() - 1 > BTF_MAX_NAME_OFFSET as usize || last != 0 || first != 0
        }
        _ => true,
    };
    if bad {
        return Err(lg.plain(0, Errno::EINVAL, "Invalid string section".into()));
    }
    Ok(())
}

/// The header as the kernel copies it: `min(hdr_len, 24)` bytes over a zeroed struct.
struct KHeader {
    magic: u16,
    version: u8,
    flags: u8,
    hdr_len: u32,
    type_off: u32,
    type_len: u32,
    str_off: u32,
    str_len: u32,
}

/// `btf_parse_hdr` and `btf_check_sec_info`.
fn parse_hdr(lg: &mut Logger<'_, '_>, data: &[u8]) -> Result<KHeader, Fail> {
    let size = data.len() as u32;
    let Some(raw_hdr_len) = le32(data, 4) else {
        return Err(lg.plain(0, Errno::EINVAL, "hdr_len not found".into()));
    };
    if size < raw_hdr_len {
        return Err(lg.plain(0, Errno::EINVAL, "btf_header not found".into()));
    }
    let hdr_bytes = data.get(..raw_hdr_len as usize).unwrap_or(&[]);
    if hdr_bytes
        .get(KERNEL_HDR_LEN..)
        .is_some_and(|tail| tail.iter().any(|&b| b != 0))
    {
        return Err(lg.plain(0, Errno::E2BIG, "Unsupported btf_header".into()));
    }
    let mut copy = [0u8; KERNEL_HDR_LEN];
    let n = (raw_hdr_len as usize).min(KERNEL_HDR_LEN);
    if let (Some(dst), Some(src)) = (copy.get_mut(..n), data.get(..n)) {
        dst.copy_from_slice(src);
    }
    let f = |o: usize| le32(&copy, o).unwrap_or(0);
    let h = KHeader {
        magic: u16::from_le_bytes([copy[0], copy[1]]),
        version: copy[2],
        flags: copy[3],
        hdr_len: f(4),
        type_off: f(8),
        type_len: f(12),
        str_off: f(16),
        str_len: f(20),
    };
    if lg.log.verbose() {
        let dump = format!(
            "magic: 0x{:x}\nversion: {}\nflags: 0x{:x}\nhdr_len: {}\ntype_off: {}\ntype_len: {}\nstr_off: {}\nstr_len: {}\nbtf_total_size: {}\n",
            h.magic,
            h.version,
            h.flags,
            h.hdr_len,
            h.type_off,
            h.type_len,
            h.str_off,
            h.str_len,
            size
        );
        lg.log.emit(&dump);
    }
    if h.magic != BTF_MAGIC {
        return Err(lg.plain(0, Errno::EINVAL, "Invalid magic".into()));
    }
    if h.version != BTF_VERSION {
        return Err(lg.plain(0, Errno::ENOTSUPP, "Unsupported version".into()));
    }
    if h.flags != 0 {
        return Err(lg.plain(0, Errno::ENOTSUPP, "Unsupported flags".into()));
    }
    if size == h.hdr_len {
        return Err(lg.plain(0, Errno::EINVAL, "No data".into()));
    }
    // btf_check_sec_info: the two sections, sorted by the kernel's comparator (which
    // subtracts in 32 bits), must tile the data after the header exactly.
    let cmp = |a: (u32, u32), b: (u32, u32)| -> i32 {
        match a.0.wrapping_sub(b.0) as i32 {
            0 => a.1.wrapping_sub(b.1) as i32,
            d => d,
        }
    };
    let t = (h.type_off, h.type_len);
    let s = (h.str_off, h.str_len);
    // The kernel's heapsort leaves two elements in order only when the first compares
    // below the second.
    let secs = if cmp(t, s) < 0 { [t, s] } else { [s, t] };
    let expected_total = size.wrapping_sub(h.hdr_len);
    let mut total: u32 = 0;
    for (off, len) in secs {
        if expected_total < off {
            return Err(lg.plain(0, Errno::EINVAL, "Invalid section offset".into()));
        }
        if total < off {
            return Err(lg.plain(0, Errno::EINVAL, "Unsupported section found".into()));
        }
        if total > off {
            return Err(lg.plain(0, Errno::EINVAL, "Section overlap found".into()));
        }
        if expected_total - total < len {
            return Err(lg.plain(0, Errno::EINVAL, "Total section length too long".into()));
        }
        total += len;
    }
    if expected_total != total {
        return Err(lg.plain(0, Errno::EINVAL, "Unsupported section found".into()));
    }
    Ok(h)
}

fn into_error(f: Fail) -> BtfLoadError {
    BtfLoadError {
        errno: f.errno,
        type_id: f.type_id,
        log: f.log,
    }
}

/// The whole `btf_parse` pipeline on raw bytes.
fn load(data: &[u8], full: Option<&mut String>) -> Result<Btf, Fail> {
    if data.len() > BTF_MAX_SIZE {
        return Err(Fail {
            errno: Errno::E2BIG,
            type_id: 0,
            log: String::new(),
        });
    }
    // Every section is inside `data` once the header checks pass; keep the slicing
    // checked all the same.
    let empty: &[u8] = &[];
    let mut lg = Logger {
        log: Log {
            full,
            phase: Phase::CheckMeta,
        },
        strings: Strings(empty),
    };
    let h = parse_hdr(&mut lg, data)?;
    let body_start = h.hdr_len as u64;
    let str_start = body_start + u64::from(h.str_off);
    let str_end = str_start + u64::from(h.str_len);
    if str_end != data.len() as u64 {
        return Err(lg.plain(0, Errno::EINVAL, "String section is not at the end".into()));
    }
    let strings = data.get(str_start as usize..).unwrap_or(&[]);
    check_str_sec(&mut lg, strings)?;
    lg.strings = Strings(strings);
    if h.type_off & 3 != 0 {
        return Err(lg.plain(0, Errno::EINVAL, "Unaligned type_off".into()));
    }
    if h.type_len == 0 {
        return Err(lg.plain(0, Errno::EINVAL, "No type found".into()));
    }
    let type_start = body_start + u64::from(h.type_off);
    let type_end = type_start + u64::from(h.type_len);
    let sec = data
        .get(type_start as usize..type_end as usize)
        .ok_or_else(|| lg.plain(0, Errno::EINVAL, "Invalid section offset".into()))?;
    let types = check_all_metas_raw(&mut lg, sec)?;
    let lg = Logger {
        log: lg.log,
        strings: Strings(strings),
    };
    check_types(lg, &types)?;
    Ok(Btf::from_parts(types, strings.to_vec(), Endian::Little))
}

/// Size in bytes of the wire encoding of `types` (ids from 1) and `strings`.
fn encoded_len(types: &[Type], strings: &[u8]) -> usize {
    let mut n = KERNEL_HDR_LEN + strings.len();
    for t in types.iter().skip(1) {
        let h = Hdr::of(t);
        n += TYPE_HDR as usize + meta_needed(&h) as usize;
    }
    n
}

impl Btf {
    /// Parses `data` exactly as the kernel's `BPF_BTF_LOAD` does (`btf_parse` in
    /// `kernel/bpf/btf.c`), accepting only what the kernel accepts, and on rejection
    /// returning the kernel's errno and log lines.
    ///
    /// Unlike the libbpf-lenient [`Btf::parse`], this checks: the header and section
    /// layout (`btf_parse_hdr`, `btf_check_sec_info`: no gaps, overlaps or trailing
    /// bytes, strings last), the string section, every record's `check_meta` (names,
    /// `vlen` and kind flag rules, `INT` encodings and widths, member offsets, enum sizes,
    /// `FUNC` and `VAR` linkage, sorted in-bounds `DATASEC` entries, `DECL_TAG` component
    /// indexes), then resolution of every type with the kernel's iterative 32-deep
    /// resolver (missing ids, loops, sizes, members and bitfields that fit, array
    /// overflow, prototypes and functions), and the type tag ordering. The blob is read
    /// little-endian, as a little-endian kernel reads it.
    ///
    /// The kind flag on `DECL_TAG`/`TYPE_TAG` is accepted, as kernels after 6.12 do. Not
    /// reproduced: the checks `btf_parse_struct_metas` makes on structs embedding
    /// `bpf_spin_lock`, `bpf_list_head`, `bpf_rb_root`, `bpf_refcount` or `__kptr`
    /// fields (some depend on the running kernel's own BTF).
    pub fn parse_for_load(data: &[u8]) -> Result<Btf, BtfLoadError> {
        load(data, None).map_err(into_error)
    }

    /// [`Btf::parse_for_load`], also appending to `log` the level-1 verifier log the
    /// kernel would write into `btf_log_buf` (header dump, one line per type, member and
    /// enumerator lines, then the error).
    pub fn parse_for_load_with_log(data: &[u8], log: &mut String) -> Result<Btf, BtfLoadError> {
        load(data, Some(log)).map_err(into_error)
    }

    /// Runs the kernel's `BPF_BTF_LOAD` checks on this BTF as if its encoding
    /// ([`Btf::encode`]) were loaded, returning the kernel's errno and log on rejection.
    ///
    /// A table that cannot be encoded at all (more than 65535 members, enumerators,
    /// parameters or section entries in one type) is reported as `EINVAL` with a log line
    /// saying so, since the kernel would see a different, truncated table.
    pub fn check_load(&self) -> Result<(), BtfLoadError> {
        let types = self.types();
        let strings = self.strings();
        if encoded_len(types, strings) > BTF_MAX_SIZE {
            return Err(BtfLoadError {
                errno: Errno::E2BIG,
                type_id: 0,
                log: String::new(),
            });
        }
        for (id, t) in types.iter().enumerate().skip(1) {
            let records = matches!(
                t.kind(),
                Kind::Struct
                    | Kind::Union
                    | Kind::Enum
                    | Kind::Enum64
                    | Kind::FuncProto
                    | Kind::Datasec
            );
            if records && t.vlen() > 0xffff {
                return Err(BtfLoadError {
                    errno: Errno::EINVAL,
                    type_id: id as TypeId,
                    log: format!("[{id}] {} vlen {} exceeds 65535", t.kind(), t.vlen()),
                });
            }
        }
        let mut lg = Logger {
            log: Log {
                full: None,
                phase: Phase::CheckMeta,
            },
            strings: Strings(strings),
        };
        check_str_sec(&mut lg, strings).map_err(into_error)?;
        if types.len() <= 1 {
            return Err(into_error(lg.plain(
                0,
                Errno::EINVAL,
                "No type found".into(),
            )));
        }
        let n = types.len().min(BTF_MAX_TYPE as usize);
        let kept = types.get(..n).unwrap_or(types);
        check_all_metas_model(&mut lg, kept).map_err(into_error)?;
        check_types(lg, kept).map_err(into_error)
    }

    /// Runs the kernel's `BPF_BTF_LOAD` checks on this BTF (see [`Btf::check_load`]); a
    /// rejection becomes [`BtfError::Rejected`].
    pub fn validate(&self) -> Result<(), BtfError> {
        self.check_load().map_err(BtfError::from)
    }
}

#[cfg(test)]
mod tests;
