//! Typed pointers into host structs (`PTR_TO_BTF_ID`) and the struct_ops
//! program rules: `btf_struct_walk` / `btf_struct_access`,
//! `check_ptr_to_btf_access`, `btf_ctx_access` and
//! `check_struct_ops_btf_id`.

use structops_btf::{Btf, Kind, TypeKind};

use crate::env::{CtxField, FieldTrust, ReturnRule, StructOpsType};
use crate::error::{EACCES, EFAULT, EINVAL, ENOTSUPP, EPERM, Reject};
use crate::mem::{Access, tnum_text};
use crate::state::{Reg, RegFlags, RegType};
use crate::verifier::{Res, Verifier};

/// `MAX_BPF_FUNC_ARGS`: the context of a struct_ops program is at most
/// this many 8-byte argument slots.
const MAX_BPF_FUNC_ARGS: i32 = 12;

/// What one step of the struct walk found (`enum bpf_struct_walk_result`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Walk {
    /// Bytes of a scalar member.
    Scalar,
    /// A pointer member to struct `id`, named `field`.
    Ptr { id: u32, field: String },
    /// The start of nested struct `id`: walk on inside it at offset 0.
    Struct { id: u32 },
}

/// What a load through a `PTR_TO_BTF_ID` produces (`btf_struct_access`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Loaded {
    /// An unknown scalar.
    Scalar,
    /// A pointer to struct `id` with the walk's flags, from member `field`.
    Ptr {
        id: u32,
        flags: RegFlags,
        field: String,
    },
}

/// The attach facts `check_struct_ops_btf_id` establishes for the walk.
pub(crate) struct StructOpsCtx<'a> {
    /// The ops type's hooks.
    pub ops: &'a dyn StructOpsType,
    /// Member index.
    pub member_idx: u32,
    /// The member's `FUNC_PROTO` (`attach_func_proto`).
    pub proto: u32,
    /// Per argument: the stub function's parameter is `__nullable`.
    pub nullable: Vec<bool>,
    /// Per argument: the stub function's parameter is `__ref` (the program
    /// owns a reference it must release).
    pub refcounted: Vec<bool>,
    /// Per argument: the reference id acquired at entry for `__ref`
    /// arguments (0 for others).
    pub arg_refs: Vec<u32>,
}

fn name_of(btf: &Btf, id: u32) -> String {
    btf.ty(id)
        .ok()
        .and_then(|t| btf.name(t.name_off).ok())
        .unwrap_or("")
        .to_owned()
}

/// `__btf_resolve_size`: the size of a member type, following modifiers,
/// typedefs and (nested) arrays. Returns `(type after modifiers, its id,
/// size in bytes, element type id, element count, first array's elem id)`.
struct Resolved {
    /// The resolved type id (the first array for arrays).
    id: u32,
    size: u32,
    elem: u32,
    nelems: u32,
    array: bool,
    /// `array_type->type`: the first array's element id.
    array_elem_id: u32,
}

fn resolve_size(btf: &Btf, start: u32) -> Option<Resolved> {
    let mut id = start;
    let mut nelems: u32 = 1;
    let mut first_array: Option<(u32, u32)> = None;
    for _ in 0..32 {
        let t = btf.ty(id).ok()?;
        let size = match &t.kind {
            TypeKind::Int { size, .. } | TypeKind::Float { size } => *size,
            TypeKind::Struct(c) | TypeKind::Union(c) => c.size,
            TypeKind::Enum(e) | TypeKind::Enum64(e) => e.size,
            TypeKind::Ptr { .. } => 8,
            TypeKind::Typedef { target }
            | TypeKind::Volatile { target }
            | TypeKind::Const { target }
            | TypeKind::Restrict { target }
            | TypeKind::TypeTag { target, .. } => {
                id = *target;
                continue;
            }
            TypeKind::Array { elem, len, .. } => {
                if first_array.is_none() {
                    first_array = Some((id, *elem));
                }
                if nelems != 0 && *len > u32::MAX / nelems {
                    return None;
                }
                nelems *= *len;
                id = *elem;
                continue;
            }
            _ => return None,
        };
        if nelems != 0 && size > u32::MAX / nelems {
            return None;
        }
        return Some(match first_array {
            Some((aid, aelem)) => Resolved {
                id: aid,
                size: nelems * size,
                elem: id,
                nelems,
                array: true,
                array_elem_id: aelem,
            },
            None => Resolved {
                id,
                size,
                elem: id,
                nelems: 1,
                array: false,
                array_elem_id: 0,
            },
        });
    }
    None
}

/// The kernel's `btf_type_skip_modifiers` (its modifiers include typedefs).
fn skip_mods(btf: &Btf, id: u32) -> u32 {
    btf.resolve(id).unwrap_or(id)
}

fn is_struct(btf: &Btf, id: u32) -> bool {
    btf.ty(id).is_ok_and(|t| t.is_composite())
}

/// `btf_struct_walk`: one level of the walk of `size` bytes at `off` in
/// struct `id`.
fn struct_walk(
    btf: &Btf,
    id: u32,
    off: u32,
    size: u32,
    flag: &mut RegFlags,
    log: &mut String,
) -> Result<Walk, Reject> {
    let mut id = id;
    let mut off = off;
    'again: loop {
        id = skip_mods(btf, id);
        let tname = name_of(btf, id);
        let Ok(t) = btf.ty(id) else {
            return Err(Reject::new(
                EINVAL,
                format!("Type '{tname}' is not a struct"),
            ));
        };
        let Some(c) = t.composite() else {
            return Err(Reject::new(
                EINVAL,
                format!("Type '{tname}' is not a struct"),
            ));
        };
        if t.kind() == Kind::Union && c.members.len() != 1 && !flag.has(RegFlags::UNTRUSTED) {
            // Walking a union yields untrusted pointers.
            *flag = flag.with(RegFlags::UNTRUSTED);
        }
        let beyond = || {
            Reject::new(
                EACCES,
                format!("access beyond struct {tname} at off {off} size {size}"),
            )
        };
        if u64::from(off) + u64::from(size) > u64::from(c.size) {
            // A flexible array at the end may be walked past the size.
            let Some(last) = c.members.last() else {
                return Err(beyond());
            };
            let mt = skip_mods(btf, last.ty);
            let Ok(TypeKind::Array { elem, len: 0, .. }) = btf.ty(mt).map(|t| &t.kind) else {
                return Err(beyond());
            };
            let moff = last.bit_offset(c.kflag) / 8;
            if off < moff {
                return Err(beyond());
            }
            let et = skip_mods(btf, *elem);
            let Ok(ety) = btf.ty(et) else {
                return Err(beyond());
            };
            if ety.kind() == Kind::Int {
                return Ok(Walk::Scalar);
            }
            let esize = ety.composite().map_or(0, |c| c.size);
            if esize == 0 {
                return Err(beyond());
            }
            off = (off - moff) % esize;
            id = et;
            continue 'again;
        }
        for m in &c.members {
            let bit = m.bit_offset(c.kflag);
            let mut moff = bit / 8;
            if u64::from(off) + u64::from(size) <= u64::from(moff) {
                break;
            }
            let bsize = m.bitfield_size(c.kflag);
            if bsize != 0 {
                let end_bit = bit + bsize;
                if off <= moff && end_bit.div_ceil(8) <= off + size {
                    return Ok(Walk::Scalar);
                }
                continue;
            }
            if off < moff {
                break;
            }
            let mname = btf.name(m.name_off).unwrap_or("").to_owned();
            let Some(r) = resolve_size(btf, m.ty) else {
                return Err(Reject::new(
                    EFAULT,
                    format!("field {mname} doesn't have size"),
                ));
            };
            let mtrue_end = moff + r.size;
            if off >= mtrue_end {
                continue;
            }
            let mut mid = r.id;
            let mut msize = r.size;
            if r.array {
                if moff == mtrue_end {
                    continue;
                }
                msize /= r.nelems.max(1);
                if msize == 0 {
                    continue;
                }
                let idx = (off - moff) / msize;
                moff += idx * msize;
                mid = r.elem;
                // The walk continues with the first array's element id.
                let _ = r.array_elem_id;
            }
            let mtype = btf.ty(mid).ok();
            if mtype.is_some_and(|t| t.is_composite()) {
                if off == moff {
                    let next = if r.array { r.array_elem_id } else { mid };
                    return Ok(Walk::Struct { id: next });
                }
                off -= moff;
                id = mid;
                continue 'again;
            }
            if let Some(TypeKind::Ptr { target }) = mtype.map(|t| &t.kind) {
                if msize != size || off != moff {
                    return Err(Reject::new(
                        EACCES,
                        format!(
                            "cannot access ptr member {mname} with moff {moff} in struct {tname} with off {off} size {size}"
                        ),
                    ));
                }
                let mut tmp = RegFlags::NONE;
                if let Ok(tt) = btf.ty(*target)
                    && tt.kind() == Kind::TypeTag
                {
                    match btf.name(tt.name_off).unwrap_or("") {
                        "user" => tmp = RegFlags::USER,
                        "percpu" => tmp = RegFlags::PERCPU,
                        "rcu" => tmp = RegFlags::RCU,
                        _ => {}
                    }
                }
                let sid = skip_mods(btf, *target);
                if is_struct(btf, sid) {
                    *flag = flag.with(tmp);
                    return Ok(Walk::Ptr {
                        id: sid,
                        field: mname,
                    });
                }
            }
            if off + size > mtrue_end && !flag.has(RegFlags::UNTRUSTED) {
                return Err(Reject::new(
                    EACCES,
                    format!(
                        "access beyond the end of member {mname} (mend:{mtrue_end}) in struct {tname} with off {off} size {size}"
                    ),
                ));
            }
            return Ok(Walk::Scalar);
        }
        let _ = log;
        return Err(Reject::new(
            EINVAL,
            format!("struct {tname} doesn't have field at offset {off}"),
        ));
    }
}

/// `btf_struct_access`: what `size` bytes at `off` in struct `id` are.
pub(crate) fn struct_access(btf: &Btf, id: u32, off: u32, size: u32) -> Result<Loaded, Reject> {
    let mut id = id;
    let mut off = off;
    let mut flag = RegFlags::NONE;
    let mut log = String::new();
    // Each step descends one nesting level; BTF depth is bounded, but a
    // malformed self-containing struct must not loop forever.
    for _ in 0..64 {
        match struct_walk(btf, id, off, size, &mut flag, &mut log)? {
            Walk::Scalar => return Ok(Loaded::Scalar),
            Walk::Ptr { id, field } => {
                return Ok(Loaded::Ptr {
                    id,
                    flags: flag,
                    field,
                });
            }
            Walk::Struct { id: next } => {
                id = next;
                off = 0;
            }
        }
    }
    Err(Reject::new(EINVAL, "struct walk too deep"))
}

/// `btf_struct_ids_match`: is a pointer to struct `id` at `off` usable as
/// a pointer to struct `want` (the same type, or `want` found at offset 0
/// of nested first members unless `strict`)?
pub(crate) fn struct_ids_match(btf: &Btf, id: u32, off: i32, want: u32, strict: bool) -> bool {
    let want = skip_mods(btf, want);
    let mut id = skip_mods(btf, id);
    let Ok(mut off) = u32::try_from(off) else {
        return false;
    };
    for _ in 0..64 {
        if off == 0 && id == want {
            return true;
        }
        if strict {
            return false;
        }
        let mut flag = RegFlags::NONE;
        let mut log = String::new();
        match struct_walk(btf, id, off, 1, &mut flag, &mut log) {
            Ok(Walk::Struct { id: next }) => {
                id = skip_mods(btf, next);
                off = 0;
            }
            _ => return false,
        }
    }
    false
}

impl<'a> Verifier<'a> {
    /// The host BTF, or the error for a program that needs it.
    pub(crate) fn host_btf(&self) -> Res<&'a Btf> {
        self.env
            .host_btf()
            .ok_or_else(|| Reject::new(EINVAL, "host BTF is required for typed pointers"))
    }

    /// `check_struct_ops_btf_id`: the member this program implements.
    pub(crate) fn check_struct_ops(&mut self) -> Res<()> {
        let Some(attach) = self.info.struct_ops else {
            return Ok(());
        };
        if !self.info.gpl_compatible {
            return Err(Reject::new(
                EINVAL,
                "struct ops programs must have a GPL compatible license",
            ));
        }
        if attach.btf_id == 0 {
            return Err(Reject::new(ENOTSUPP, ""));
        }
        let env = self.env;
        let (Some(ops), Some(btf)) = (env.struct_ops_type(attach.btf_id), env.host_btf()) else {
            return Err(Reject::new(
                ENOTSUPP,
                format!("attach_btf_id {} is not a supported struct", attach.btf_id),
            ));
        };
        let sname = ops.name().to_owned();
        let Some(c) = btf.ty(attach.btf_id).ok().and_then(|t| t.composite()) else {
            return Err(Reject::new(
                ENOTSUPP,
                format!("attach_btf_id {} is not a supported struct", attach.btf_id),
            ));
        };
        let Some(member) = c.members.get(attach.member_idx as usize) else {
            return Err(Reject::new(
                EINVAL,
                format!(
                    "attach to invalid member idx {} of struct {sname}",
                    attach.member_idx
                ),
            ));
        };
        let mname = btf.name(member.name_off).unwrap_or("").to_owned();
        let Some(proto) = btf.func_ptr_proto(member.ty).ok().flatten() else {
            return Err(Reject::new(
                EINVAL,
                format!(
                    "attach to invalid member {mname}(@idx {}) of struct {sname}",
                    attach.member_idx
                ),
            ));
        };
        let moff = member.bit_offset(c.kflag) / 8;
        let unsupported = || format!("attach to unsupported member {mname} of struct {sname}");
        if !ops.member_supported(moff) {
            return Err(Reject::new(ENOTSUPP, unsupported()));
        }
        if let Err(errno) = ops.check_member(attach.member_idx, moff, self.info.sleepable) {
            return Err(Reject::new(errno, unsupported()));
        }
        let nparams = btf.func_proto(proto).map_or(0, |(_, p)| p.len());
        let mut nullable = vec![false; nparams];
        let mut refcounted = vec![false; nparams];
        // prepare_arg_info: the stub function `<ops>__<member>` names its
        // parameters with the __nullable / __ref suffixes.
        let stub = format!("{sname}__{mname}");
        if let Some(fid) = btf.find_by_name_kind(&stub, Kind::Func)
            && let Ok((_, params)) = btf.func_proto(fid)
        {
            for (i, p) in params.iter().enumerate().take(nparams) {
                let n = btf.name(p.name_off).unwrap_or("");
                nullable[i] = n.ends_with("__nullable");
                refcounted[i] = n.ends_with("__ref");
            }
        }
        for i in 0..nparams {
            let (n, r) = ops.arg_marks(attach.member_idx, i as u32);
            nullable[i] |= n;
            refcounted[i] |= r;
        }
        self.struct_ops = Some(StructOpsCtx {
            ops,
            member_idx: attach.member_idx,
            proto,
            arg_refs: vec![0; nullable.len()],
            nullable,
            refcounted,
        });
        Ok(())
    }

    /// At entry, a struct_ops program owns a reference for each `__ref`
    /// argument (`do_check_common`).
    pub(crate) fn acquire_struct_ops_refs(&mut self) {
        let n = self.struct_ops.as_ref().map_or(0, |so| so.refcounted.len());
        for i in 0..n {
            if self.struct_ops.as_ref().is_some_and(|so| so.refcounted[i]) {
                let id = self.next_id();
                self.cur.refs.push(crate::state::RefState { id, insn: 0 });
                if let Some(so) = self.struct_ops.as_mut() {
                    so.arg_refs[i] = id;
                }
            }
        }
    }

    /// The reference a `__ref` context argument at `off` carries; an error
    /// once the program released it.
    pub(crate) fn struct_ops_arg_ref(&self, off: i32) -> Res<u32> {
        let Some(so) = self.struct_ops.as_ref() else {
            return Ok(0);
        };
        let id = so.arg_refs.get((off / 8) as usize).copied().unwrap_or(0);
        if id != 0 && !self.cur.refs.iter().any(|r| r.id == id) {
            return Err(Reject::new(
                EACCES,
                format!("invalid bpf_context access off={off}. Reference may already be released"),
            ));
        }
        Ok(id)
    }

    /// The exit rule of a struct_ops program: nothing for `void` members.
    pub(crate) fn struct_ops_return_rule(&self) -> Option<ReturnRule> {
        let so = self.struct_ops.as_ref()?;
        let btf = self.env.host_btf()?;
        let (ret, _) = btf.func_proto(so.proto).ok()?;
        Some(if ret == 0 {
            ReturnRule::Void
        } else {
            ReturnRule::Any
        })
    }

    /// `bpf_tracing_btf_ctx_access` + `btf_ctx_access` for a struct_ops
    /// program: the context is the member's arguments, 8 bytes each.
    /// `None` when the access is not allowed.
    pub(crate) fn struct_ops_ctx_access(
        &mut self,
        off: i32,
        size: u32,
        write: bool,
    ) -> Option<CtxField> {
        let so = self.struct_ops.as_ref()?;
        let btf = self.env.host_btf()?;
        if write || !(0..8 * MAX_BPF_FUNC_ARGS).contains(&off) || size == 0 {
            return None;
        }
        if off % size as i32 != 0 || off % 8 != 0 {
            return None;
        }
        let (_, params) = btf.func_proto(so.proto).ok()?;
        // get_ctx_arg_idx: pointers take 8 bytes, other arguments their
        // size rounded up to 8.
        let mut arg = params.len();
        let mut slot: i64 = 0;
        for (i, p) in params.iter().enumerate() {
            let pt = skip_mods(btf, p.ty);
            let is_ptr = btf.ty(pt).is_ok_and(|t| t.kind() == Kind::Ptr);
            let sz = if is_ptr {
                8
            } else {
                u64::from(btf.size_of(pt).unwrap_or(0)).div_ceil(8) as i64 * 8
            };
            slot += sz;
            if i64::from(off) < slot {
                arg = i;
                break;
            }
        }
        if arg >= params.len() {
            return None;
        }
        let tid = skip_mods(btf, params[arg].ty);
        let t = btf.ty(tid).ok()?;
        match &t.kind {
            TypeKind::Int { size, .. } if *size <= 8 => return Some(CtxField::Scalar),
            TypeKind::Enum(_) | TypeKind::Enum64(_) | TypeKind::Struct(_) | TypeKind::Union(_) => {
                return Some(CtxField::Scalar);
            }
            TypeKind::Ptr { .. } => {}
            _ => return None,
        }
        if size != 8 {
            return None;
        }
        let TypeKind::Ptr { target } = t.kind else {
            return None;
        };
        if target == 0 {
            // void *: a scalar as far as safety goes.
            return Some(CtxField::Scalar);
        }
        let pointee = skip_mods(btf, target);
        let pt = btf.ty(pointee).ok()?;
        if pt.kind() == Kind::Int {
            return Some(CtxField::Scalar);
        }
        if let Ok(tt) = btf.ty(target)
            && tt.kind() == Kind::TypeTag
            && matches!(btf.name(tt.name_off), Ok("user" | "percpu"))
        {
            // __user / __percpu arguments cannot be dereferenced; we model
            // them as not accessible at all rather than as tagged pointers.
            return None;
        }
        if !pt.is_composite() {
            return None;
        }
        let nullable = so.nullable.get(arg).copied().unwrap_or(false)
            || btf
                .name(params[arg].name_off)
                .is_ok_and(|n| n.ends_with("__nullable"));
        let btf_id = so.ops.ctx_arg_btf_id(pointee);
        Some(CtxField::BtfId {
            btf_id,
            maybe_null: nullable,
            trusted: true,
        })
    }

    /// `check_ptr_to_btf_access`: a load or store through a non-NULL
    /// `PTR_TO_BTF_ID` in register `r`, at `off` (fixed offset included).
    pub(crate) fn check_ptr_to_btf_access(
        &mut self,
        r: usize,
        off: i32,
        size: u32,
        t: Access,
        value: Option<usize>,
    ) -> Res<()> {
        let btf = self.host_btf()?;
        let reg = self.reg(r).clone();
        let tname = name_of(btf, reg.btf_id);
        if !self.privileges().allow_ptr_leaks {
            return Err(Reject::new(
                EPERM,
                format!("'struct {tname}' access is allowed only to CAP_PERFMON and CAP_SYS_ADMIN"),
            ));
        }
        if !self.info.gpl_compatible {
            return Err(Reject::new(
                EINVAL,
                format!("Cannot access kernel 'struct {tname}' from non-GPL compatible program"),
            ));
        }
        if off < 0 {
            return Err(Reject::new(
                EACCES,
                format!("R{r} is ptr_{tname} invalid negative access: off={off}"),
            ));
        }
        if !reg.v.var_off.is_const() || reg.v.var_off.value() != 0 {
            return Err(Reject::new(
                EACCES,
                format!(
                    "R{r} is ptr_{tname} invalid variable offset: off={off}, var_off={}",
                    tnum_text(reg.v.var_off)
                ),
            ));
        }
        if reg.flags.has(RegFlags::USER) {
            return Err(Reject::new(
                EACCES,
                format!("R{r} is ptr_{tname} access user memory: off={off}"),
            ));
        }
        if reg.flags.has(RegFlags::PERCPU) {
            return Err(Reject::new(
                EACCES,
                format!("R{r} is ptr_{tname} access percpu memory: off={off}"),
            ));
        }
        // The kernel lets the ops type's hook allow writes through any pointer of the
        // right struct, trusting kernel pointers to point at live objects. A host's
        // pointer members carry no such promise (a load through one is a probe), so a
        // write needs a pointer the host vouches for: a member argument, a referenced
        // object, or a field the ops type declares trusted.
        if t == Access::Write && !is_trusted_reg(&reg) {
            return Err(Reject::new(EACCES, "only read is supported"));
        }
        if t == Access::Write {
            // Only the ops type's btf_struct_access hook may allow a write.
            let hook = self
                .struct_ops
                .as_ref()
                .and_then(|so| so.ops.struct_write(btf, reg.btf_id, off, size));
            return match hook {
                Some(Ok(())) => Ok(()),
                Some(Err(e)) => Err(Reject::new(e.errno, e.message)),
                None => Err(Reject::new(EACCES, "only read is supported")),
            };
        }
        let loaded = struct_access(btf, reg.btf_id, off as u32, size)?;
        let Some(v) = value else {
            return Ok(());
        };
        let nr = match loaded {
            Loaded::Scalar => Reg::unknown(),
            Loaded::Ptr { id, flags, field } => {
                let flags = self.derive_trust(&reg, flags, &field);
                let mut p = Reg::ptr(RegType::BtfId);
                p.btf_id = id;
                p.flags = flags;
                if flags.has(RegFlags::MAYBE_NULL) {
                    p.id = self.next_id();
                }
                p
            }
        };
        *self.reg_mut(v) = nr;
        Ok(())
    }

    /// `check_ptr_to_map_access`: a load or store through a non-NULL
    /// `CONST_PTR_TO_MAP` in register `r` at `off`. Privileged programs may
    /// read the map's kernel struct (`map->ops->map_btf_id` in the host BTF)
    /// as if through an untyped `PTR_TO_BTF_ID`; the load is recorded as a
    /// [`crate::MapPtrLoad`] for the runtime.
    #[expect(
        clippy::too_many_arguments,
        reason = "mirrors the kernel's check_ptr_to_map_access"
    )]
    pub(crate) fn check_ptr_to_map_access(
        &mut self,
        pc: usize,
        r: usize,
        reg: &Reg,
        off: i32,
        size: u32,
        t: Access,
        value: Option<usize>,
    ) -> Res<()> {
        let Some(btf) = self.env.host_btf() else {
            return Err(Reject::new(
                ENOTSUPP,
                "map_ptr access not supported without CONFIG_DEBUG_INFO_BTF",
            ));
        };
        let map_type = self.maps.get(reg.map as usize).map_or(0, |m| m.map_type);
        let Some(sid) = crate::env::map_btf_struct_name(map_type)
            .and_then(|n| btf.find_by_name_kind(n, Kind::Struct))
        else {
            return Err(Reject::new(
                ENOTSUPP,
                format!("map_ptr access not supported for map type {map_type}"),
            ));
        };
        let tname = name_of(btf, sid);
        if !self.privileges().allow_ptr_leaks {
            return Err(Reject::new(
                EPERM,
                format!("'struct {tname}' access is allowed only to CAP_PERFMON and CAP_SYS_ADMIN"),
            ));
        }
        if off < 0 {
            return Err(Reject::new(
                EACCES,
                format!("R{r} is {tname} invalid negative access: off={off}"),
            ));
        }
        if t != Access::Read {
            return Err(Reject::new(
                EACCES,
                format!("only read from {tname} is supported"),
            ));
        }
        // The walk of an untyped PTR_TO_BTF_ID of the map's struct; its flags
        // go to the loaded pointer unchanged (mark_btf_ld_reg).
        let loaded = struct_access(btf, sid, off as u32, size)?;
        let map = self.map_ref_of(reg.map);
        let site = self
            .map_ptr_loads
            .entry(pc)
            .or_insert_with(|| crate::env::MapPtrLoad {
                pc,
                off,
                size,
                maps: Vec::new(),
            });
        if !site.maps.contains(&map) {
            site.maps.push(map);
        }
        let Some(v) = value else {
            return Ok(());
        };
        let nr = match loaded {
            Loaded::Scalar => Reg::unknown(),
            Loaded::Ptr { id, flags, .. } => {
                let mut p = Reg::ptr(RegType::BtfId);
                p.btf_id = id;
                p.flags = flags;
                if flags.has(RegFlags::MAYBE_NULL) {
                    p.id = self.next_id();
                }
                p
            }
        };
        *self.reg_mut(v) = nr;
        Ok(())
    }

    /// The trust of a pointer read through `reg` from member `field`
    /// (the flag rules of `check_ptr_to_btf_access`).
    fn derive_trust(&self, reg: &Reg, walk: RegFlags, field: &str) -> RegFlags {
        let trusted_mods = RegFlags::TRUSTED;
        let clear = |f: RegFlags| f.without(trusted_mods).without(RegFlags::RCU);
        if reg.flags.has(RegFlags::UNTRUSTED) {
            return RegFlags::UNTRUSTED;
        }
        if !(is_trusted_reg(reg) || reg.flags.has(RegFlags::RCU)) {
            return clear(walk);
        }
        let in_rcu_cs = !self.info.sleepable;
        let trust = self.env.field_trust(reg.btf_id, field);
        match trust {
            FieldTrust::Trusted => return walk.with(RegFlags::TRUSTED),
            FieldTrust::TrustedOrNull => {
                return walk.with(RegFlags::TRUSTED).with(RegFlags::MAYBE_NULL);
            }
            _ => {}
        }
        if !in_rcu_cs || reg.maybe_null() {
            return RegFlags::UNTRUSTED;
        }
        if trust == FieldTrust::Rcu {
            return walk.with(RegFlags::RCU);
        }
        if walk.has(RegFlags::RCU) || trust == FieldTrust::RcuOrNull {
            let mut f = walk.with(RegFlags::RCU).with(RegFlags::MAYBE_NULL);
            if trust == FieldTrust::RcuOrNull {
                f = f.without(RegFlags::UNTRUSTED);
            }
            return f;
        }
        if walk.has(RegFlags::PERCPU) || walk.has(RegFlags::USER) {
            return walk;
        }
        clear(walk)
    }
}

/// `is_trusted_reg`: a referenced pointer, or one flagged trusted without
/// unsafe modifiers.
pub(crate) fn is_trusted_reg(reg: &Reg) -> bool {
    if reg.ref_obj_id != 0 {
        return true;
    }
    reg.flags.has(RegFlags::TRUSTED)
        && !reg.flags.has(RegFlags::UNTRUSTED)
        && !reg.flags.has(RegFlags::USER)
        && !reg.flags.has(RegFlags::PERCPU)
}
