//! BTF as a compilable C header, with the semantics of libbpf's `btf_dump` (what `bpftool
//! btf dump file vmlinux format c` prints): types are ordered so that every type is
//! defined before it is embedded, structs reached only through pointers get forward
//! declarations, anonymous types are written inline, duplicate names get `___N`
//! suffixes, and padding, bitfields and `packed` reproduce each layout exactly.
//!
//! Beyond libbpf 1.1 (bpftool 7.1), so that every layout compiles exactly (the tests check
//! all of vmlinux's against clang-19), it also:
//! - fixes the size of enums whose BTF size is not the compiler's default (`mode(byte)`,
//!   `mode(HI)`, `mode(word)`, as newer libbpf does for two of them);
//! - treats a bitfield that straddles its storage unit as a sign of packing, and packs
//!   unions whose size is not a multiple of their alignment;
//! - writes old-style bitfields (an `INT` with fewer bits than its size, in a composite
//!   without the kind flag) as bitfields;
//! - gives a union larger than its largest member the strongest `aligned(N)` that yields
//!   its size, or failing that a `char __pad_<id>[size]` member;
//! - writes padding gaps over 512 bytes as a `char __pad_<id>_<n>[bytes]` member instead
//!   of thousands of `long: 64;` lines;
//! - spells out the type behind a `__builtin_va_list` typedef instead of leaving the
//!   compiler's (x86-64's 24-byte `struct __va_list_tag[1]` is not the BPF target's
//!   pointer), so `va_list` members keep their size;
//! - marks anonymous enums used as a function's return type as referenced (libbpf marks
//!   only parameters), so they are written inline and not also at top level.
//!
//! Hostile BTF gets a [`DumpError`]: reference cycles C cannot express, chains deeper than
//! [`MAX_DEPTH`], more work than a budget proportional to the type count, or a single
//! type's output past 64 MiB.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;

use super::DumpError;
use super::fmt::{Sink, put_i64, put_u64};
use crate::Btf;
use crate::types::*;

/// How deeply the dumper recurses (nested anonymous types, declarator chains, typedef
/// and modifier chains) before it gives up with [`DumpError::TooDeep`].
const MAX_DEPTH: usize = 256;

/// Size of a pointer (and of `long`) on the BPF target.
const PTR_BITS: i64 = 64;

/// Work allowed per type id in the whole dump (plus [`BASE_STEPS`]): real BTF needs a
/// few steps per type (vmlinux about 6), hostile BTF could need exponentially many.
const STEPS_PER_TYPE: u64 = 256;

/// Work allowed regardless of the number of types.
const BASE_STEPS: u64 = 1 << 20;

/// The most bytes one [`CDumper::dump_type`] call may write (vmlinux's largest single
/// type with all it needs is a few hundred kilobytes).
const OUT_LIMIT: usize = 64 << 20;

/// Padding gaps longer than this many bits are written as a `char` array member rather
/// than a run of `long: 64;` lines, so output stays proportional to the BTF.
const BIG_GAP_BITS: i64 = 64 * 64;

/// The longest indentation written, as libbpf caps it.
const MAX_INDENT: usize = 13;

/// What bpftool writes before the types.
const PROLOGUE: &str = "#ifndef __VMLINUX_H__\n\
#define __VMLINUX_H__\n\
\n\
#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n\
#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)\n\
#endif\n\n";

/// What bpftool writes after the types.
const EPILOGUE: &str = "#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n\
#pragma clang attribute pop\n\
#endif\n\
\n\
#endif /* __VMLINUX_H__ */\n";

/// Writes a C header defining every type of `btf`, wrapped like bpftool's (`__VMLINUX_H__`
/// guard, `preserve_access_index` applied to every record unless
/// `BPF_NO_PRESERVE_ACCESS_INDEX` is defined).
///
/// ```
/// use structops_btf::{BtfBuilder, dump};
///
/// let mut b = BtfBuilder::new();
/// let u32t = b.add_int("unsigned int", 4, 0);
/// let typedef = b.add_typedef("u32", u32t);
/// b.add_struct("stamp", 8, &[("lo", typedef, 0), ("hi", typedef, 32)]);
/// let mut out = Vec::new();
/// dump::c_header(&b.build(), &mut out)?;
/// let text = String::from_utf8(out)?;
/// assert!(text.starts_with("#ifndef __VMLINUX_H__\n#define __VMLINUX_H__\n"));
/// assert!(text.contains("typedef unsigned int u32;\n"), "{text}");
/// assert!(text.contains("struct stamp {\n\tu32 lo;\n\tu32 hi;\n};\n"), "{text}");
/// assert!(text.ends_with("#endif /* __VMLINUX_H__ */\n"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn c_header<W: Write + ?Sized>(btf: &Btf, out: &mut W) -> Result<(), DumpError> {
    c_header_types(btf, 1..btf.len(), out)
}

/// Like [`c_header`], but defines only the types `roots` and what they need, as bpftool
/// does for a map's key and value. Find the id of a type by name with
/// [`Btf::find_by_name_kind`] or [`Btf::ids_by_name`].
pub fn c_header_types<W, I>(btf: &Btf, roots: I, out: &mut W) -> Result<(), DumpError>
where
    W: Write + ?Sized,
    I: IntoIterator<Item = TypeId>,
{
    let mut sink = Sink::new(out);
    sink.buf.extend_from_slice(PROLOGUE.as_bytes());
    let mut d = CDumper::new(btf);
    for id in roots {
        d.dump_type(id, &mut sink.buf)?;
        sink.maybe_flush()?;
    }
    sink.buf.extend_from_slice(EPILOGUE.as_bytes());
    sink.finish()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Order {
    #[default]
    No,
    /// On the DFS stack: meeting it again is a cycle.
    Ordering,
    Done,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Emit {
    #[default]
    No,
    /// Being defined: meeting it again needs a forward declaration.
    Emitting,
    Done,
}

/// Per-type bookkeeping (libbpf's `btf_dump_type_aux_state`).
#[derive(Clone, Copy, Debug, Default)]
struct State {
    order: Order,
    emit: Emit,
    /// A forward declaration (or, for a typedef, the typedef itself) was written.
    fwd_emitted: bool,
    /// Its unique name is settled (see `CDumper::name`).
    name_resolved: bool,
    /// Some other type refers to it: an anonymous enum that nothing refers to is a
    /// top-level declaration of constants.
    referenced: bool,
}

/// The two C namespaces names are made unique in: tags (struct, union, enum) and
/// ordinary identifiers (typedef names and enumerators).
#[derive(Clone, Copy)]
enum Ns {
    Tag,
    Ident,
}

/// Writes C definitions of BTF types, remembering what it already wrote, like libbpf's
/// `struct btf_dump`: each [`CDumper::dump_type`] call writes a type and whatever it
/// needs that earlier calls did not write.
pub struct CDumper<'a> {
    btf: &'a Btf,
    state: Vec<State>,
    /// Names changed by de-duplication (`foo___2`), by type id.
    renamed: HashMap<TypeId, Box<str>>,
    tag_names: HashMap<&'a str, usize>,
    ident_names: HashMap<&'a str, usize>,
    /// Layout decisions for composites, by type id, once computed.
    layouts: Vec<Option<Layout>>,
    queue: Vec<TypeId>,
    /// Steps taken so far and the most allowed.
    steps: u64,
    budget: u64,
    /// Output length at which the current `dump_type` call fails.
    out_limit_at: usize,
}

/// How a struct or union is written so that the compiler reproduces its BTF layout.
#[derive(Clone, Copy, Debug)]
struct Layout {
    /// Written `__attribute__((packed))`.
    packed: bool,
    /// Its alignment as the compiler will see it, attributes included.
    align: u32,
    /// A union written `__attribute__((aligned(N)))` to reach its BTF size.
    aligned: Option<u32>,
    /// A union that needs a padding member to reach its BTF size.
    pad_member: bool,
}

/// Indentation: `lvl` tabs, at most [`MAX_INDENT`].
fn pfx(b: &mut Vec<u8>, lvl: usize) {
    for _ in 0..lvl.min(MAX_INDENT) {
        b.push(b'\t');
    }
}

fn roundup(x: i64, y: i64) -> i64 {
    if y <= 0 { x } else { (x + y - 1) / y * y }
}

fn roundup_u(x: u64, y: u64) -> u64 {
    if y == 0 { x } else { x.div_ceil(y) * y }
}

impl<'a> CDumper<'a> {
    /// A dumper for `btf` that has written nothing yet.
    pub fn new(btf: &'a Btf) -> CDumper<'a> {
        let n = btf.types().len();
        let mut state = vec![State::default(); n];
        if let Some(void) = state.first_mut() {
            void.order = Order::Done;
            void.emit = Emit::Done;
        }
        let mut mark = |id: TypeId| {
            if let Some(s) = state.get_mut(id as usize) {
                s.referenced = true;
            }
        };
        for t in btf.types().iter().skip(1) {
            match &t.kind {
                TypeKind::Array { elem, index, .. } => {
                    mark(*elem);
                    mark(*index);
                }
                TypeKind::Struct(c) | TypeKind::Union(c) => {
                    c.members.iter().for_each(|m| mark(m.ty));
                }
                TypeKind::FuncProto { ret, params } => {
                    // libbpf marks only the parameters; an anonymous enum returned by a
                    // function is referenced too, and so is written inline only.
                    mark(*ret);
                    params.iter().for_each(|p| mark(p.ty));
                }
                TypeKind::Datasec { vars, .. } => vars.iter().for_each(|v| mark(v.ty)),
                _ => {
                    if let Some(target) = t.target() {
                        mark(target);
                    }
                }
            }
        }
        CDumper {
            btf,
            state,
            renamed: HashMap::new(),
            tag_names: HashMap::new(),
            ident_names: HashMap::new(),
            layouts: vec![None; n],
            queue: Vec::new(),
            steps: 0,
            budget: BASE_STEPS.saturating_add(STEPS_PER_TYPE.saturating_mul(n as u64)),
            out_limit_at: OUT_LIMIT,
        }
    }

    /// Appends to `out` the C definition of type `id` preceded by every type it needs
    /// that this dumper has not written yet (libbpf's `btf_dump__dump_type`). Kinds that
    /// define nothing in C (`FUNC`, `VAR`, `DATASEC`, `DECL_TAG`) write nothing.
    pub fn dump_type(&mut self, id: TypeId, out: &mut Vec<u8>) -> Result<(), DumpError> {
        self.ty(id)?;
        self.out_limit_at = out.len().saturating_add(OUT_LIMIT);
        self.queue.clear();
        self.order_type(id, false, 0)?;
        let queue = std::mem::take(&mut self.queue);
        for &q in &queue {
            self.emit_type(q, 0, out, 0)?;
        }
        self.queue = queue;
        Ok(())
    }

    fn ty(&self, id: TypeId) -> Result<&'a Type, DumpError> {
        self.btf
            .types()
            .get(id as usize)
            .ok_or(DumpError::NoSuchType {
                id,
                count: self.btf.len(),
            })
    }

    fn st(&mut self, id: TypeId) -> Result<&mut State, DumpError> {
        let count = self.btf.len();
        self.state
            .get_mut(id as usize)
            .ok_or(DumpError::NoSuchType { id, count })
    }

    fn raw_name(&self, id: TypeId, off: u32) -> Result<&'a str, DumpError> {
        self.btf
            .name(off)
            .map_err(|source| DumpError::Name { id, source })
    }

    /// Counts one step of work and checks the output size, failing past either limit.
    fn tick(&mut self, id: TypeId, b: &[u8]) -> Result<(), DumpError> {
        self.steps += 1;
        if self.steps > self.budget {
            return Err(DumpError::TooComplex {
                id,
                budget: self.budget,
            });
        }
        if b.len() > self.out_limit_at {
            return Err(DumpError::TooLarge {
                id,
                limit: OUT_LIMIT,
            });
        }
        Ok(())
    }

    fn depth_check(id: TypeId, depth: usize, what: &'static str) -> Result<(), DumpError> {
        if depth > MAX_DEPTH {
            Err(DumpError::TooDeep {
                id,
                what,
                limit: MAX_DEPTH,
            })
        } else {
            Ok(())
        }
    }

    /// Counts one more use of `name` in `ns` and returns the count (libbpf's
    /// `btf_dump_name_dups`).
    fn name_dups(&mut self, ns: Ns, name: &'a str) -> usize {
        let map = match ns {
            Ns::Tag => &mut self.tag_names,
            Ns::Ident => &mut self.ident_names,
        };
        let n = map.entry(name).or_insert(0);
        *n += 1;
        *n
    }

    /// The name type `id` is written with: its own, or `name___N` for the N-th distinct
    /// type using the same name in the same namespace. Forward declarations (and enums
    /// without values) keep their names, since repeating them is harmless.
    fn name(&mut self, id: TypeId, ns: Ns) -> Result<Cow<'a, str>, DumpError> {
        let t = self.ty(id)?;
        if t.name_off == 0 {
            return Ok(Cow::Borrowed(""));
        }
        let orig = self.raw_name(id, t.name_off)?;
        if self.st(id)?.name_resolved {
            return Ok(match self.renamed.get(&id) {
                Some(n) => Cow::Owned(n.to_string()),
                None => Cow::Borrowed(orig),
            });
        }
        self.st(id)?.name_resolved = true;
        let keep = match &t.kind {
            TypeKind::Fwd { .. } => true,
            TypeKind::Enum(e) => e.values.is_empty(),
            _ => false,
        };
        if keep {
            return Ok(Cow::Borrowed(orig));
        }
        let dups = self.name_dups(ns, orig);
        if dups > 1 {
            let n = format!("{orig}___{dups}");
            self.renamed.insert(id, n.clone().into_boxed_str());
            return Ok(Cow::Owned(n));
        }
        Ok(Cow::Borrowed(orig))
    }

    /// `__builtin_va_list` is the compiler's own; defining it breaks compilation.
    fn is_blacklisted(&self, id: TypeId) -> Result<bool, DumpError> {
        let t = self.ty(id)?;
        Ok(t.name_off != 0 && self.raw_name(id, t.name_off)? == "__builtin_va_list")
    }

    /// Topological ordering (libbpf's `btf_dump_order_type`): queues the named
    /// definitions `id` needs, dependencies first. Returns whether the link to `id` is
    /// strong (it must be fully defined first) rather than satisfiable by a forward
    /// declaration.
    fn order_type(
        &mut self,
        id: TypeId,
        through_ptr: bool,
        depth: usize,
    ) -> Result<bool, DumpError> {
        Self::depth_check(id, depth, "type ordering")?;
        self.tick(id, &[])?;
        let t = self.ty(id)?;
        let order = self.st(id)?.order;
        if order == Order::Done {
            return Ok(true);
        }
        if order == Order::Ordering {
            // A loop is fine only through a pointer to a named struct or union.
            if t.is_composite() && through_ptr && t.name_off != 0 {
                return Ok(false);
            }
            return Err(DumpError::Cycle { id });
        }
        match &t.kind {
            TypeKind::Void => Ok(true),
            TypeKind::Int { .. } | TypeKind::Float { .. } => {
                self.st(id)?.order = Order::Done;
                Ok(false)
            }
            TypeKind::Ptr { target } => {
                let strong = self.order_type(*target, true, depth + 1)?;
                self.st(id)?.order = Order::Done;
                Ok(strong)
            }
            TypeKind::Array { elem, .. } => self.order_type(*elem, false, depth + 1),
            TypeKind::Struct(c) | TypeKind::Union(c) => {
                // Only embedding, or being anonymous (defined inline even behind a
                // pointer), makes a struct a strong dependency.
                if through_ptr && t.name_off != 0 {
                    return Ok(false);
                }
                self.st(id)?.order = Order::Ordering;
                for m in &c.members {
                    self.order_type(m.ty, false, depth + 1)?;
                }
                if t.name_off != 0 {
                    self.queue.push(id);
                }
                self.st(id)?.order = Order::Done;
                Ok(true)
            }
            TypeKind::Enum(_) | TypeKind::Enum64(_) | TypeKind::Fwd { .. } => {
                if t.name_off != 0 || !self.st(id)?.referenced {
                    self.queue.push(id);
                }
                self.st(id)?.order = Order::Done;
                Ok(true)
            }
            TypeKind::Typedef { target } => {
                let strong = self.order_type(*target, through_ptr, depth + 1)?;
                if through_ptr && !strong {
                    return Ok(false);
                }
                self.queue.push(id);
                self.st(id)?.order = Order::Done;
                Ok(true)
            }
            TypeKind::Volatile { target }
            | TypeKind::Const { target }
            | TypeKind::Restrict { target }
            | TypeKind::TypeTag { target, .. } => self.order_type(*target, through_ptr, depth + 1),
            TypeKind::FuncProto { ret, params } => {
                let mut strong = self.order_type(*ret, through_ptr, depth + 1)?;
                for p in params {
                    strong |= self.order_type(p.ty, through_ptr, depth + 1)?;
                }
                Ok(strong)
            }
            TypeKind::Func { .. }
            | TypeKind::Var { .. }
            | TypeKind::Datasec { .. }
            | TypeKind::DeclTag { .. } => {
                self.st(id)?.order = Order::Done;
                Ok(false)
            }
        }
    }

    /// Writes what `id` needs and, at top level (`cont_id` 0), its definition (libbpf's
    /// `btf_dump_emit_type`). `cont_id` is the named struct being defined, whose
    /// self-references need no forward declaration.
    fn emit_type(
        &mut self,
        id: TypeId,
        cont_id: TypeId,
        b: &mut Vec<u8>,
        depth: usize,
    ) -> Result<(), DumpError> {
        Self::depth_check(id, depth, "type emission")?;
        self.tick(id, b)?;
        let top_level = cont_id == 0;
        let t = self.ty(id)?;
        let st = *self.st(id)?;
        if st.emit == Emit::Done {
            return Ok(());
        }
        if st.emit == Emit::Emitting {
            if st.fwd_emitted {
                return Ok(());
            }
            match &t.kind {
                TypeKind::Struct(_) | TypeKind::Union(_) => {
                    // Referring to the struct being defined, or an anonymous loop that
                    // ordering already rejected: nothing to declare.
                    if id == cont_id || t.name_off == 0 {
                        return Ok(());
                    }
                    self.struct_fwd(id, t, b)?;
                    b.extend_from_slice(b";\n\n");
                    self.st(id)?.fwd_emitted = true;
                }
                TypeKind::Typedef { target } => {
                    // A typedef written now serves pointers to it; it cannot be embedded
                    // until its target is complete.
                    if !self.is_blacklisted(id)? {
                        self.typedef_def(id, *target, 0, b, depth + 1)?;
                        b.extend_from_slice(b";\n\n");
                    }
                    self.st(id)?.fwd_emitted = true;
                }
                _ => {}
            }
            return Ok(());
        }
        match &t.kind {
            TypeKind::Int { .. } => {
                self.missing_alias(id, b)?;
                self.st(id)?.emit = Emit::Done;
            }
            TypeKind::Enum(_) | TypeKind::Enum64(_) => {
                if top_level {
                    self.enum_def(id, t, 0, b)?;
                    b.extend_from_slice(b";\n\n");
                }
                self.st(id)?.emit = Emit::Done;
            }
            TypeKind::Ptr { target }
            | TypeKind::Volatile { target }
            | TypeKind::Const { target }
            | TypeKind::Restrict { target }
            | TypeKind::TypeTag { target, .. } => self.emit_type(*target, cont_id, b, depth + 1)?,
            TypeKind::Array { elem, .. } => self.emit_type(*elem, cont_id, b, depth + 1)?,
            TypeKind::Fwd { .. } => {
                self.fwd_def(id, t, b)?;
                b.extend_from_slice(b";\n\n");
                self.st(id)?.emit = Emit::Done;
            }
            TypeKind::Typedef { target } => {
                self.st(id)?.emit = Emit::Emitting;
                self.emit_type(*target, id, b, depth + 1)?;
                if !self.st(id)?.fwd_emitted && !self.is_blacklisted(id)? {
                    self.typedef_def(id, *target, 0, b, depth + 1)?;
                    b.extend_from_slice(b";\n\n");
                }
                self.st(id)?.emit = Emit::Done;
            }
            TypeKind::Struct(c) | TypeKind::Union(c) => {
                self.st(id)?.emit = Emit::Emitting;
                // A definition (top level, or inline because anonymous) spells out every
                // member's type, so those need declaring first.
                if top_level || t.name_off == 0 {
                    let new_cont = if t.name_off == 0 { cont_id } else { id };
                    for m in &c.members {
                        self.emit_type(m.ty, new_cont, b, depth + 1)?;
                    }
                } else if !self.st(id)?.fwd_emitted && id != cont_id {
                    self.struct_fwd(id, t, b)?;
                    b.extend_from_slice(b";\n\n");
                    self.st(id)?.fwd_emitted = true;
                }
                if top_level {
                    self.struct_def(id, t, c, 0, b, depth + 1)?;
                    b.extend_from_slice(b";\n\n");
                    self.st(id)?.emit = Emit::Done;
                } else {
                    self.st(id)?.emit = Emit::No;
                }
            }
            TypeKind::FuncProto { ret, params } => {
                self.emit_type(*ret, cont_id, b, depth + 1)?;
                for p in params {
                    self.emit_type(p.ty, cont_id, b, depth + 1)?;
                }
            }
            TypeKind::Void
            | TypeKind::Func { .. }
            | TypeKind::Var { .. }
            | TypeKind::Datasec { .. }
            | TypeKind::Float { .. }
            | TypeKind::DeclTag { .. } => {}
        }
        Ok(())
    }

    /// GCC's internal ARM SIMD types that BTF can name but C compilers do not know.
    fn missing_alias(&mut self, id: TypeId, b: &mut Vec<u8>) -> Result<(), DumpError> {
        const ALIASES: [(&str, &str); 4] = [
            ("__Poly8_t", "unsigned char"),
            ("__Poly16_t", "unsigned short"),
            ("__Poly64_t", "unsigned long long"),
            ("__Poly128_t", "unsigned __int128"),
        ];
        let t = self.ty(id)?;
        let name = self.raw_name(id, t.name_off)?;
        if let Some((_, base)) = ALIASES.iter().find(|(n, _)| *n == name) {
            b.extend_from_slice(b"typedef ");
            b.extend_from_slice(base.as_bytes());
            b.push(b' ');
            b.extend_from_slice(name.as_bytes());
            b.extend_from_slice(b";\n\n");
        }
        Ok(())
    }

    /// Natural alignment of `id` in bytes as a C compiler for the BPF target lays it out,
    /// or 1 for a composite whose BTF layout shows it is packed; 0 when the type has no
    /// alignment (`void`, functions, forward declarations).
    fn align_of(&mut self, id: TypeId, depth: usize) -> Result<u32, DumpError> {
        Self::depth_check(id, depth, "alignment")?;
        let t = self.ty(id)?;
        Ok(match &t.kind {
            TypeKind::Int { size, .. } | TypeKind::Float { size } => {
                // __int128 is 16-byte aligned on x86-64 and on the BPF target alike.
                if *size == 16 { 16 } else { (*size).clamp(1, 8) }
            }
            TypeKind::Enum(e) | TypeKind::Enum64(e) => e.size.clamp(1, 8),
            TypeKind::Ptr { .. } => 8,
            TypeKind::Array { elem, .. } => self.align_of(*elem, depth + 1)?,
            TypeKind::Typedef { target }
            | TypeKind::Volatile { target }
            | TypeKind::Const { target }
            | TypeKind::Restrict { target }
            | TypeKind::TypeTag { target, .. } => self.align_of(*target, depth + 1)?,
            TypeKind::Struct(c) | TypeKind::Union(c) => self.layout(id, t, c, depth)?.align,
            _ => 0,
        })
    }

    /// The bitfield width and bit offset of member `m`: from the kind flag, or for an
    /// old-style bitfield (no kind flag) from its `INT` type's `nr_bits`/`bits_offset`.
    fn member_bits(&self, c: &Composite, m: &Member) -> Result<(u32, u32), DumpError> {
        if c.kflag {
            return Ok((m.bitfield_size(true), m.bit_offset(true)));
        }
        let resolved = self.btf.resolve(m.ty).ok().and_then(|r| self.ty(r).ok());
        if let Some(Type {
            kind: TypeKind::Int {
                size, offset, bits, ..
            },
            ..
        }) = resolved
            && (*offset != 0 || u64::from(*bits) != u64::from(*size) * 8)
            && *bits != 0
        {
            return Ok((
                u32::from(*bits),
                m.offset.saturating_add(u32::from(*offset)),
            ));
        }
        Ok((0, m.offset))
    }

    /// How composite `id` must be written (cached). It is packed when a member sits at an
    /// offset its alignment does not divide, a bitfield straddles its storage unit, or
    /// the size is not a multiple of the largest member alignment (libbpf's
    /// `btf_is_struct_packed`, plus the bitfield rule). A union larger than its largest
    /// member rounded up to its alignment gets a stronger alignment when one gives the
    /// exact size, else a padding member.
    fn layout(
        &mut self,
        id: TypeId,
        t: &Type,
        c: &Composite,
        depth: usize,
    ) -> Result<Layout, DumpError> {
        if let Some(Some(l)) = self.layouts.get(id as usize) {
            return Ok(*l);
        }
        Self::depth_check(id, depth, "layout")?;
        let mut max: u32 = 1;
        let mut packed = false;
        let mut largest: u64 = 0;
        for m in &c.members {
            let a = self.align_of(m.ty, depth + 1)?;
            let (bits, off) = self.member_bits(c, m)?;
            let off = u64::from(off);
            let size_bits = u64::from(self.btf.size_of(m.ty).unwrap_or(0)) * 8;
            if bits == 0 {
                if a != 0 && !off.is_multiple_of(8 * u64::from(a)) {
                    packed = true;
                }
                largest = largest.max(off + size_bits);
            } else {
                let bits = u64::from(bits);
                if size_bits != 0 && off / size_bits != (off + bits - 1) / size_bits {
                    packed = true;
                }
                largest = largest.max(off + bits);
            }
            max = max.max(a);
        }
        if !c.size.is_multiple_of(max) {
            packed = true;
        }
        let mut align = if packed { 1 } else { max };
        let mut aligned = None;
        let mut pad_member = false;
        let size_bits = u64::from(c.size) * 8;
        if t.kind() == Kind::Union && roundup_u(largest, u64::from(align) * 8) < size_bits {
            // The strongest alignment that gives the size: unions are usually made larger
            // by an alignment attribute (a cacheline, say) on the union itself.
            let fits = (1..=12u32)
                .rev()
                .map(|p| 1u32 << p)
                .find(|&n| n > align && roundup_u(largest, u64::from(n) * 8) == size_bits);
            match fits {
                Some(n) => {
                    aligned = Some(n);
                    align = n;
                }
                None => pad_member = true,
            }
        }
        let l = Layout {
            packed,
            align,
            aligned,
            pad_member,
        };
        if let Some(slot) = self.layouts.get_mut(id as usize) {
            *slot = Some(l);
        }
        Ok(l)
    }

    fn struct_fwd(&mut self, id: TypeId, t: &Type, b: &mut Vec<u8>) -> Result<(), DumpError> {
        b.extend_from_slice(if t.kind() == Kind::Union {
            b"union"
        } else {
            b"struct"
        });
        if t.name_off != 0 {
            b.push(b' ');
        }
        let name = self.name(id, Ns::Tag)?;
        b.extend_from_slice(name.as_bytes());
        Ok(())
    }

    fn struct_def(
        &mut self,
        id: TypeId,
        t: &Type,
        c: &Composite,
        lvl: usize,
        b: &mut Vec<u8>,
        depth: usize,
    ) -> Result<(), DumpError> {
        Self::depth_check(id, depth, "struct definition")?;
        let is_struct = t.kind() == Kind::Struct;
        let layout = self.layout(id, t, c, depth)?;
        let packed = layout.packed;
        self.struct_fwd(id, t, b)?;
        b.extend_from_slice(b" {");
        let mut off: i64 = 0;
        let mut prev_bitfield = false;
        let mut pads = 0;
        for m in &c.members {
            self.tick(id, b)?;
            let fname = self.raw_name(id, m.name_off)?;
            let (m_sz, m_off) = self.member_bits(c, m)?;
            let m_align = if packed {
                1
            } else {
                self.align_of(m.ty, depth + 1)?
            };
            let in_bitfield = prev_bitfield && m_sz != 0;
            let gap = Gap {
                id,
                cur: off,
                next: i64::from(m_off),
                next_align: i64::from(m_align),
                in_bitfield,
                lvl: lvl + 1,
            };
            gap.write(b, &mut pads);
            b.push(b'\n');
            pfx(b, lvl + 1);
            self.type_decl(m.ty, fname, lvl + 1, b, depth + 1)?;
            let end = if m_sz != 0 {
                b.extend_from_slice(b": ");
                put_u64(b, u64::from(m_sz));
                prev_bitfield = true;
                i64::from(m_off) + i64::from(m_sz)
            } else {
                prev_bitfield = false;
                i64::from(m_off) + i64::from(self.btf.size_of(m.ty).unwrap_or(0)) * 8
            };
            off = end;
            b.push(b';');
        }
        if is_struct {
            let gap = Gap {
                id,
                cur: off,
                next: i64::from(c.size) * 8,
                next_align: i64::from(layout.align),
                in_bitfield: false,
                lvl: lvl + 1,
            };
            gap.write(b, &mut pads);
        } else if layout.pad_member {
            // An unnamed bitfield cannot be wider than its type, so a union reaches a
            // size no alignment gives with a named byte array.
            b.push(b'\n');
            pfx(b, lvl + 1);
            b.extend_from_slice(b"char __pad_");
            put_u64(b, u64::from(id));
            b.push(b'[');
            put_u64(b, u64::from(c.size));
            b.extend_from_slice(b"];");
        }
        if !c.members.is_empty() || c.size != 0 {
            b.push(b'\n');
            pfx(b, lvl);
        }
        b.push(b'}');
        if packed {
            b.extend_from_slice(b" __attribute__((packed))");
        }
        if let Some(n) = layout.aligned {
            b.extend_from_slice(b" __attribute__((aligned(");
            put_u64(b, u64::from(n));
            b.extend_from_slice(b")))");
        }
        Ok(())
    }

    fn enum_fwd(&mut self, id: TypeId, b: &mut Vec<u8>) -> Result<(), DumpError> {
        b.extend_from_slice(b"enum ");
        let name = self.name(id, Ns::Tag)?;
        b.extend_from_slice(name.as_bytes());
        Ok(())
    }

    fn enum_def(
        &mut self,
        id: TypeId,
        t: &Type,
        lvl: usize,
        b: &mut Vec<u8>,
    ) -> Result<(), DumpError> {
        b.extend_from_slice(b"enum");
        if t.name_off != 0 {
            b.push(b' ');
        }
        let name = self.name(id, Ns::Tag)?;
        b.extend_from_slice(name.as_bytes());
        let Some(e) = t.enum_body() else {
            return Ok(());
        };
        if e.values.is_empty() {
            return Ok(());
        }
        let wide = t.kind() == Kind::Enum64;
        b.extend_from_slice(b" {");
        for v in &e.values {
            self.tick(id, b)?;
            let vname = self.raw_name(id, v.name_off)?;
            // Enumerators share the ordinary identifier namespace with typedefs.
            let dups = self.name_dups(Ns::Ident, vname);
            b.push(b'\n');
            pfx(b, lvl + 1);
            b.extend_from_slice(vname.as_bytes());
            if dups > 1 {
                b.extend_from_slice(b"___");
                put_u64(b, dups as u64);
            }
            b.extend_from_slice(b" = ");
            match (wide, e.signed) {
                (false, true) => put_i64(b, i64::from(v.value as u32 as i32)),
                (false, false) => put_u64(b, u64::from(v.value as u32)),
                (true, true) => {
                    put_i64(b, v.value as i64);
                    b.extend_from_slice(b"LL");
                }
                (true, false) => {
                    put_u64(b, v.value);
                    b.extend_from_slice(b"ULL");
                }
            }
            b.push(b',');
        }
        b.push(b'\n');
        pfx(b, lvl);
        b.push(b'}');
        // The compiler sizes an enum by its values (int, or 8 bytes when a value needs
        // it); any other BTF size is forced with a machine mode.
        let needs_64 = e.values.iter().any(|v| {
            if e.signed {
                let s = if wide {
                    v.value as i64
                } else {
                    i64::from(v.value as u32 as i32)
                };
                i32::try_from(s).is_err()
            } else if wide {
                v.value > u64::from(u32::MAX)
            } else {
                false
            }
        });
        let mode: Option<&[u8]> = match e.size {
            1 => Some(b"byte"),
            2 => Some(b"HI"),
            8 if !needs_64 => Some(b"word"),
            _ => None,
        };
        if let Some(mode) = mode {
            b.extend_from_slice(b" __attribute__((mode(");
            b.extend_from_slice(mode);
            b.extend_from_slice(b")))");
        }
        Ok(())
    }

    fn fwd_def(&mut self, id: TypeId, t: &Type, b: &mut Vec<u8>) -> Result<(), DumpError> {
        b.extend_from_slice(if t.kflag() { b"union " } else { b"struct " });
        let name = self.name(id, Ns::Tag)?;
        b.extend_from_slice(name.as_bytes());
        Ok(())
    }

    fn typedef_def(
        &mut self,
        id: TypeId,
        target: TypeId,
        lvl: usize,
        b: &mut Vec<u8>,
        depth: usize,
    ) -> Result<(), DumpError> {
        let name = self.name(id, Ns::Ident)?.into_owned();
        // Old GCC describes __gnuc_va_list as a typedef of void.
        if target == 0 && name == "__gnuc_va_list" {
            b.extend_from_slice(b"typedef __builtin_va_list __gnuc_va_list");
            return Ok(());
        }
        b.extend_from_slice(b"typedef ");
        self.type_decl(target, &name, lvl, b, depth + 1)
    }

    /// Writes a declaration of `fname` with type `id` in C declarator syntax (libbpf's
    /// `btf_dump_emit_type_decl`): the chain of pointers, modifiers, arrays and function
    /// prototypes down to a named or inline-defined type.
    fn type_decl(
        &mut self,
        id: TypeId,
        fname: &str,
        lvl: usize,
        b: &mut Vec<u8>,
        depth: usize,
    ) -> Result<(), DumpError> {
        Self::depth_check(id, depth, "declaration")?;
        self.tick(id, b)?;
        let mut stack = Vec::with_capacity(4);
        let mut cur = id;
        for step in 0usize.. {
            stack.push(cur);
            if step > MAX_DEPTH {
                return Err(DumpError::TooDeep {
                    id,
                    what: "declarator chain",
                    limit: MAX_DEPTH,
                });
            }
            if cur == 0 {
                break;
            }
            match &self.ty(cur)?.kind {
                TypeKind::Ptr { target }
                | TypeKind::Volatile { target }
                | TypeKind::Const { target }
                | TypeKind::Restrict { target }
                | TypeKind::TypeTag { target, .. } => cur = *target,
                TypeKind::FuncProto { ret, .. } => cur = *ret,
                TypeKind::Array { elem, .. } => cur = *elem,
                // `__builtin_va_list` is not (re)defined, so it is spelled out: the BTF
                // target's layout (x86-64: `struct __va_list_tag[1]`, 24 bytes) is not the
                // BPF target's (a pointer).
                TypeKind::Typedef { target } if *target != 0 && self.is_blacklisted(cur)? => {
                    stack.pop();
                    cur = *target;
                }
                _ => break,
            }
        }
        self.type_chain(&mut stack, fname, lvl, b, depth + 1)
    }

    /// Writes and pops the leading `const`/`volatile`/`restrict` of a declarator chain.
    fn mods(&self, decls: &mut Vec<TypeId>, b: &mut Vec<u8>) {
        while let Some(&id) = decls.last() {
            let s: &[u8] = match self.ty(id).map(|t| t.kind()) {
                Ok(Kind::Volatile) => b"volatile ",
                Ok(Kind::Const) => b"const ",
                Ok(Kind::Restrict) => b"restrict ",
                _ => return,
            };
            b.extend_from_slice(s);
            decls.pop();
        }
    }

    /// Pops modifiers that C cannot express where they stand (on arrays and functions).
    fn drop_mods(&self, decls: &mut Vec<TypeId>) {
        while let Some(&id) = decls.last() {
            match self.ty(id) {
                Ok(t) if t.is_modifier() => {
                    decls.pop();
                }
                _ => return,
            }
        }
    }

    fn type_chain(
        &mut self,
        decls: &mut Vec<TypeId>,
        fname: &str,
        lvl: usize,
        b: &mut Vec<u8>,
        depth: usize,
    ) -> Result<(), DumpError> {
        Self::depth_check(decls.last().copied().unwrap_or(0), depth, "declaration")?;
        // Whether the last thing written was `*`, so that `int **p` has no inner spaces.
        let mut last_was_ptr = true;
        while let Some(id) = decls.pop() {
            self.tick(id, b)?;
            if id == 0 {
                self.mods(decls, b);
                b.extend_from_slice(b"void");
                last_was_ptr = false;
                continue;
            }
            let t = self.ty(id)?;
            match &t.kind {
                TypeKind::Int { .. } | TypeKind::Float { .. } => {
                    self.mods(decls, b);
                    b.extend_from_slice(self.raw_name(id, t.name_off)?.as_bytes());
                }
                TypeKind::Struct(c) | TypeKind::Union(c) => {
                    self.mods(decls, b);
                    if t.name_off == 0 {
                        self.struct_def(id, t, c, lvl, b, depth + 1)?;
                    } else {
                        self.struct_fwd(id, t, b)?;
                    }
                }
                TypeKind::Enum(_) | TypeKind::Enum64(_) => {
                    self.mods(decls, b);
                    if t.name_off == 0 {
                        self.enum_def(id, t, lvl, b)?;
                    } else {
                        self.enum_fwd(id, b)?;
                    }
                }
                TypeKind::Fwd { .. } => {
                    self.mods(decls, b);
                    self.fwd_def(id, t, b)?;
                }
                TypeKind::Typedef { .. } => {
                    self.mods(decls, b);
                    let name = self.name(id, Ns::Ident)?;
                    b.extend_from_slice(name.as_bytes());
                }
                TypeKind::Ptr { .. } => {
                    b.extend_from_slice(if last_was_ptr { b"*" } else { b" *" });
                }
                TypeKind::Volatile { .. } => b.extend_from_slice(b" volatile"),
                TypeKind::Const { .. } => b.extend_from_slice(b" const"),
                TypeKind::Restrict { .. } => b.extend_from_slice(b" restrict"),
                TypeKind::TypeTag { .. } => {
                    self.mods(decls, b);
                    b.extend_from_slice(b" __attribute__((btf_type_tag(\"");
                    b.extend_from_slice(self.raw_name(id, t.name_off)?.as_bytes());
                    b.extend_from_slice(b"\")))");
                }
                TypeKind::Array { len, .. } => {
                    // Qualifiers on an array (a GCC quirk) mean nothing in C.
                    self.drop_mods(decls);
                    let Some(&next) = decls.last() else {
                        name_after(b, fname, last_was_ptr);
                        array_dim(b, *len);
                        return Ok(());
                    };
                    let multidim = self.ty(next)?.kind() == Kind::Array;
                    if !fname.is_empty() && !last_was_ptr {
                        b.push(b' ');
                    }
                    if !multidim {
                        b.push(b'(');
                    }
                    self.type_chain(decls, fname, lvl, b, depth + 1)?;
                    if !multidim {
                        b.push(b')');
                    }
                    array_dim(b, *len);
                    return Ok(());
                }
                TypeKind::FuncProto { params, .. } => {
                    self.drop_mods(decls);
                    if decls.is_empty() {
                        name_after(b, fname, last_was_ptr);
                    } else {
                        b.extend_from_slice(b" (");
                        self.type_chain(decls, fname, lvl, b, depth + 1)?;
                        b.push(b')');
                    }
                    b.push(b'(');
                    // Clang writes `f(void)` as one parameter of type void.
                    match params.as_slice() {
                        [] => {
                            b.extend_from_slice(b"void)");
                            return Ok(());
                        }
                        [p] if p.ty == 0 => {
                            b.extend_from_slice(b"void)");
                            return Ok(());
                        }
                        _ => {}
                    }
                    for (i, p) in params.iter().enumerate() {
                        if i > 0 {
                            b.extend_from_slice(b", ");
                        }
                        // A trailing void parameter means varargs.
                        if i + 1 == params.len() && p.ty == 0 {
                            b.extend_from_slice(b"...");
                            break;
                        }
                        let pname = self.raw_name(id, p.name_off)?;
                        self.type_decl(p.ty, pname, lvl, b, depth + 1)?;
                    }
                    b.push(b')');
                    return Ok(());
                }
                // Not a declarator: malformed BTF. Stop here, as libbpf does.
                TypeKind::Void
                | TypeKind::Func { .. }
                | TypeKind::Var { .. }
                | TypeKind::Datasec { .. }
                | TypeKind::DeclTag { .. } => return Ok(()),
            }
            last_was_ptr = t.kind() == Kind::Ptr;
        }
        name_after(b, fname, last_was_ptr);
        Ok(())
    }
}

/// The declared name, separated by a space unless it follows a `*`.
fn name_after(b: &mut Vec<u8>, fname: &str, last_was_ptr: bool) {
    if !fname.is_empty() && !last_was_ptr {
        b.push(b' ');
    }
    b.extend_from_slice(fname.as_bytes());
}

fn array_dim(b: &mut Vec<u8>, len: u32) {
    b.push(b'[');
    put_u64(b, u64::from(len));
    b.push(b']');
}

/// A gap between members to fill with padding.
struct Gap {
    /// The composite, to name a padding array.
    id: TypeId,
    /// Bit where the previous member ends.
    cur: i64,
    /// Bit where the next member (or the end) is.
    next: i64,
    /// The next member's alignment in bytes.
    next_align: i64,
    /// Inside a run of bitfields, where padding must be bit-exact.
    in_bitfield: bool,
    /// Indentation.
    lvl: usize,
}

impl Gap {
    fn line(&self, b: &mut Vec<u8>, name: &[u8], bits: i64) {
        b.push(b'\n');
        pfx(b, self.lvl);
        b.extend_from_slice(name);
        b.extend_from_slice(b": ");
        put_i64(b, bits);
        b.push(b';');
    }

    /// Writes unnamed bitfields so the compiler places the next member at `next`
    /// (libbpf's `btf_dump_emit_bit_padding`): first up to the largest of
    /// long/int/short/char boundaries that fits, then whole units, then the smallest type
    /// that holds the rest. Gaps longer than [`BIG_GAP_BITS`] become a `char` array
    /// (numbered by `pads`) between bit-exact edges.
    fn write(&self, b: &mut Vec<u8>, pads: &mut u32) {
        const PADS: [(&[u8], i64); 4] = [
            (b"long", PTR_BITS),
            (b"int", 32),
            (b"short", 16),
            (b"char", 8),
        ];
        let next = self.next;
        let mut cur = self.cur;
        if cur >= next {
            return;
        }
        let mut in_bitfield = self.in_bitfield;
        if next - cur > BIG_GAP_BITS {
            let start = roundup(cur, 8);
            if start > cur {
                self.line(b, b"char", start - cur);
            }
            let end = next - next % 8;
            b.push(b'\n');
            pfx(b, self.lvl);
            b.extend_from_slice(b"char __pad_");
            put_u64(b, u64::from(self.id));
            b.push(b'_');
            put_u64(b, u64::from(*pads));
            b.push(b'[');
            put_i64(b, (end - start) / 8);
            b.extend_from_slice(b"];");
            *pads += 1;
            cur = end;
            // What is left is under a byte, before a bitfield: pad it exactly.
            in_bitfield = true;
            if cur >= next {
                return;
            }
        }
        let (mut pad_type, mut pad_bits, mut new_off) = (PADS[3].0, PADS[3].1, 0);
        for (name, bits) in PADS {
            pad_type = name;
            pad_bits = bits;
            new_off = roundup(cur, bits);
            if new_off <= next {
                break;
            }
        }
        if new_off > cur && new_off <= next {
            // An explicit `type: 0` is needed when the compiler would not align the next
            // member to new_off by itself, or when a `type: N` would fit in the hole and
            // so be placed without moving to new_off.
            if in_bitfield
                || (new_off == next && roundup(cur, self.next_align.max(1) * 8) != new_off)
                || (new_off != next && next - new_off <= new_off - cur)
            {
                self.line(b, pad_type, if in_bitfield { new_off - cur } else { 0 });
            }
            cur = new_off;
        }
        while cur < next {
            let bits = (next - cur).min(pad_bits);
            if bits == pad_bits {
                self.line(b, pad_type, pad_bits);
                cur += bits;
                continue;
            }
            // The remainder: the smallest type that can hold it.
            let (name, _) = PADS
                .iter()
                .rev()
                .find(|(_, pb)| *pb >= bits)
                .copied()
                .unwrap_or(PADS[0]);
            self.line(b, name, bits);
            cur += bits;
        }
    }
}
