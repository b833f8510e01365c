//! Calls to host functions (kfuncs): the declaration checks of
//! `add_kfunc_call` and the call checks of `check_kfunc_call` /
//! `check_kfunc_args`, against the function's BTF prototype and its
//! `KF_*` flags.

use structops_btf::{Btf, Kind, Param, TypeKind};
use structops_isa::{CallTarget, Op};

use crate::btf_ptr::{is_trusted_reg, struct_ids_match};
use crate::env::{KfuncDesc, KfuncFlags};
use crate::error::{EACCES, EINVAL, ENOTSUPP, Reject};
use crate::iter::IterArg;
use crate::proto::Arg;
use crate::state::{RefState, Reg, RegFlags, RegType};
use crate::verifier::{Flow, Res, Verifier};

/// `MAX_BPF_FUNC_REG_ARGS`.
const MAX_REG_ARGS: usize = 5;

fn type_name(btf: &Btf, id: u32) -> &str {
    btf.ty(id)
        .ok()
        .and_then(|t| btf.name(t.name_off).ok())
        .unwrap_or("")
}

/// `btf_type_str`.
fn kind_str(btf: &Btf, id: u32) -> &'static str {
    btf.ty(id).map_or("UNKNOWN", |t| t.kind().as_str())
}

fn skip_mods(btf: &Btf, id: u32) -> u32 {
    btf.resolve(id).unwrap_or(id)
}

/// `btf_type_is_scalar`: int or enum.
fn is_scalar(btf: &Btf, id: u32) -> bool {
    btf.ty(id)
        .is_ok_and(|t| matches!(t.kind(), Kind::Int | Kind::Enum | Kind::Enum64))
}

fn param_has_suffix(btf: &Btf, p: &Param, suffix: &str) -> bool {
    btf.name(p.name_off).is_ok_and(|n| n.ends_with(suffix))
}

/// `__btf_type_is_scalar_struct`: a struct made (recursively) of scalars
/// and arrays of them.
fn is_scalar_struct(btf: &Btf, id: u32, depth: u32) -> bool {
    if depth > 3 {
        return false;
    }
    let Some(c) = btf.ty(id).ok().and_then(|t| t.composite()) else {
        return false;
    };
    c.members.iter().all(|m| {
        let mut mid = skip_mods(btf, m.ty);
        if let Ok(TypeKind::Array { elem, .. }) = btf.ty(mid).map(|t| &t.kind) {
            mid = skip_mods(btf, *elem);
        }
        is_scalar(btf, mid) || is_scalar_struct(btf, mid, depth + 1)
    })
}

impl Verifier<'_> {
    /// `add_kfunc_call` for every kfunc call, before the walk: the
    /// program may call host functions at all, and each named id is a
    /// function with a prototype.
    pub(crate) fn check_kfunc_decls(&mut self) -> Res<()> {
        for i in 0..self.ops.len() {
            let Some(Ok(Op::Call(CallTarget::Kfunc { btf_id, btf_fd_idx }))) = self.ops[i] else {
                continue;
            };
            let Some(btf) = self.env.host_btf() else {
                return Err(Reject::new(
                    ENOTSUPP,
                    "calling kernel function is not supported without CONFIG_DEBUG_INFO_BTF",
                ));
            };
            if !self.info.gpl_compatible {
                return Err(Reject::new(
                    EINVAL,
                    "cannot call kernel function from non-GPL compatible program",
                ));
            }
            if btf_fd_idx != 0 {
                return Err(Reject::new(
                    EINVAL,
                    "failed to find BTF for kernel function",
                ));
            }
            let is_func = btf.ty(btf_id).is_ok_and(|t| t.kind() == Kind::Func);
            if !is_func {
                return Err(Reject::new(
                    EINVAL,
                    format!("kernel btf_id {btf_id} is not a function"),
                ));
            }
            if btf.func_proto(btf_id).is_err() {
                return Err(Reject::new(
                    EINVAL,
                    format!("kernel function btf_id {btf_id} does not have a valid func_proto"),
                ));
            }
        }
        Ok(())
    }

    /// `check_kfunc_call`.
    pub(crate) fn check_kfunc_call(&mut self, pc: usize, btf_id: u32) -> Res<Flow> {
        let btf = self.host_btf()?;
        let fname = type_name(btf, btf_id).to_owned();
        let Some(desc) = self.env.kfunc(btf_id) else {
            return Err(Reject::new(
                EACCES,
                format!("calling kernel function {fname} is not allowed"),
            ));
        };
        if desc.flags.has(KfuncFlags::SLEEPABLE) && !self.info.sleepable {
            return Err(Reject::new(
                EACCES,
                format!("program must be sleepable to call sleepable kfunc {fname}"),
            ));
        }
        let Ok((ret, params)) = btf.func_proto(btf_id) else {
            return Err(Reject::new(
                EINVAL,
                format!("kernel function btf_id {btf_id} does not have a valid func_proto"),
            ));
        };
        let params = params.to_vec();
        let meta = self.check_kfunc_args(btf, &desc, &fname, &params, pc)?;
        if desc.flags.has(KfuncFlags::RELEASE) {
            let Some((ref_id, regno)) = meta.release else {
                return Err(Reject::new(
                    EINVAL,
                    format!("release kernel function {fname} expects refcounted PTR_TO_BTF_ID"),
                ));
            };
            self.release_reference(ref_id, regno)?;
        }
        for r in 0..=5 {
            *self.reg_mut(r) = Reg::not_init();
        }
        let rt = skip_mods(btf, ret);
        let ret_struct_ptr = match btf.ty(rt).map(|t| &t.kind) {
            Ok(TypeKind::Ptr { target }) => {
                let pt = skip_mods(btf, *target);
                btf.ty(pt).is_ok_and(|t| t.is_composite()).then_some(pt)
            }
            _ => None,
        };
        if desc.flags.has(KfuncFlags::ACQUIRE) && ret_struct_ptr.is_none() {
            return Err(Reject::new(
                EINVAL,
                "acquire kernel function does not return PTR_TO_BTF_ID",
            ));
        }
        if rt == 0 {
            return self.kfunc_done(pc, meta.iter_next);
        }
        if is_scalar(btf, rt) {
            *self.reg_mut(0) = Reg::unknown();
            return self.kfunc_done(pc, meta.iter_next);
        }
        let mut r0 = match ret_struct_ptr {
            Some(pointee) => {
                let mut r0 = Reg::ptr(RegType::BtfId);
                r0.btf_id = pointee;
                if desc.flags.has(KfuncFlags::RCU_PROTECTED) {
                    r0.flags = r0.flags.with(RegFlags::RCU);
                } else if meta.iter_next.is_some() {
                    // An iterator's element is trusted for the iteration.
                    r0.flags = r0.flags.with(RegFlags::TRUSTED);
                }
                r0
            }
            None => {
                let pt = match btf.ty(rt).map(|t| &t.kind) {
                    Ok(TypeKind::Ptr { target }) => Some(skip_mods(btf, *target)),
                    _ => None,
                };
                if pt == Some(0) {
                    // `void *` is just a number to the program.
                    *self.reg_mut(0) = Reg::unknown();
                    return self.kfunc_done(pc, meta.iter_next);
                }
                // A pointer to a sized non-struct type: read-only memory
                // of that size (the `int *` of `bpf_iter_num_next`).
                let size = pt.and_then(|pt| btf.size_of(pt).ok()).unwrap_or(0);
                if size == 0 {
                    let (k, n) = match pt {
                        Some(pt) => (kind_str(btf, pt), type_name(btf, pt).to_owned()),
                        None => (kind_str(btf, rt), type_name(btf, rt).to_owned()),
                    };
                    return Err(Reject::new(
                        EINVAL,
                        format!(
                            "kernel function {fname} returns pointer type {k} {n} is not supported"
                        ),
                    ));
                }
                let mut r0 = Reg::ptr(RegType::Mem);
                r0.flags = RegFlags::RDONLY;
                r0.mem_size = size;
                // Memory of a referenced object dies with the reference.
                r0.ref_obj_id = meta.ref_obj_id;
                r0
            }
        };
        if desc.flags.has(KfuncFlags::RET_NULL) {
            r0.flags = r0.flags.with(RegFlags::MAYBE_NULL);
            r0.id = self.next_id();
        }
        if desc.flags.has(KfuncFlags::ACQUIRE) {
            let id = self.next_id();
            self.cur.refs.push(RefState { id, insn: pc });
            if desc.flags.has(KfuncFlags::RET_NULL) {
                r0.id = id;
            }
            r0.ref_obj_id = id;
        }
        *self.reg_mut(0) = r0;
        self.kfunc_done(pc, meta.iter_next)
    }

    /// The end of `check_kfunc_call`: an iterator's `next` forks the path.
    fn kfunc_done(&mut self, pc: usize, iter_next: Option<IterArg>) -> Res<Flow> {
        if let Some(it) = iter_next {
            self.process_iter_next_call(pc, it)?;
        }
        Ok(Flow::Next(pc + 1))
    }

    /// `check_kfunc_args`: what the arguments tell the rest of the call.
    fn check_kfunc_args(
        &mut self,
        btf: &Btf,
        desc: &KfuncDesc,
        fname: &str,
        params: &[Param],
        pc: usize,
    ) -> Res<ArgMeta> {
        let nargs = params.len();
        if nargs > MAX_REG_ARGS {
            return Err(Reject::new(
                EINVAL,
                format!("Function {fname} has {nargs} > {MAX_REG_ARGS} args"),
            ));
        }
        let trusted_args = desc.flags.has(KfuncFlags::TRUSTED_ARGS);
        let rcu = desc.flags.has(KfuncFlags::RCU);
        let is_release = desc.flags.has(KfuncFlags::RELEASE);
        let mut release: Option<(u32, usize)> = None;
        let mut meta = ArgMeta::default();
        let is_iter_kfunc = desc.flags.has(KfuncFlags::ITER_NEW)
            || desc.flags.has(KfuncFlags::ITER_NEXT)
            || desc.flags.has(KfuncFlags::ITER_DESTROY);
        let mut i = 0;
        while i < nargs {
            let p = params[i];
            let regno = i + 1;
            let t = skip_mods(btf, p.ty);
            if param_has_suffix(btf, &p, "__ign") {
                i += 1;
                continue;
            }
            self.check_src(regno)?;
            let reg = self.reg(regno).clone();
            if is_scalar(btf, t) {
                if reg.ty != RegType::Scalar {
                    return Err(Reject::new(EINVAL, format!("R{regno} is not a scalar")));
                }
                if param_has_suffix(btf, &p, "__k") && !reg.v.var_off.is_const() {
                    return Err(Reject::new(
                        EINVAL,
                        format!("R{regno} must be a known constant"),
                    ));
                }
                if param_has_suffix(btf, &p, "__k") {
                    // Pruning must not merge other constants into it.
                    self.mark_precise(regno)?;
                }
                i += 1;
                continue;
            }
            let Ok(TypeKind::Ptr { target }) = btf.ty(t).map(|t| &t.kind) else {
                return Err(Reject::new(
                    EINVAL,
                    format!("Unrecognized arg#{i} type {}", kind_str(btf, t)),
                ));
            };
            let nullable = param_has_suffix(btf, &p, "__nullable");
            if (trusted_args || rcu) && (reg.is_null() || reg.maybe_null()) && !nullable {
                return Err(Reject::new(
                    EACCES,
                    format!("Possibly NULL pointer passed to trusted arg{i}"),
                ));
            }
            if reg.ref_obj_id != 0 {
                if is_release && release.is_some() {
                    return Err(Reject::new(
                        crate::error::EFAULT,
                        format!(
                            "verifier internal error: more than one arg with ref_obj_id R{regno}"
                        ),
                    ));
                }
                release = Some((reg.ref_obj_id, regno));
                meta.ref_obj_id = reg.ref_obj_id;
            }
            let ref_t = skip_mods(btf, *target);
            let ref_tname = type_name(btf, ref_t).to_owned();
            if nullable && reg.is_null() {
                i += 1;
                continue;
            }
            // is_kfunc_arg_iter: the first argument of an iterator kfunc,
            // or any argument named `*__iter`.
            let is_iter_arg = if is_iter_kfunc {
                i == 0
            } else {
                param_has_suffix(btf, &p, "__iter")
            };
            if is_iter_arg {
                let flags = if is_iter_kfunc {
                    desc.flags
                } else {
                    KfuncFlags::NONE
                };
                if let Some(it) = self.process_iter_arg(btf, params, i, flags, pc)? {
                    meta.ref_obj_id = it.ref_obj_id;
                    if desc.flags.has(KfuncFlags::ITER_NEXT) && is_iter_kfunc {
                        meta.iter_next = Some(it);
                    }
                }
                i += 1;
                continue;
            }
            if reg.ty == RegType::BtfId {
                if !btf.ty(ref_t).is_ok_and(|t| t.is_composite()) {
                    return Err(Reject::new(
                        EINVAL,
                        format!(
                            "kernel function {fname} args#{i} pointer type {} {ref_tname} is not supported",
                            kind_str(btf, ref_t)
                        ),
                    ));
                }
                if (trusted_args || rcu) && !is_trusted_reg(&reg) {
                    if !rcu {
                        return Err(Reject::new(
                            EINVAL,
                            format!("R{regno} must be referenced or trusted"),
                        ));
                    }
                    if !reg.flags.has(RegFlags::RCU) {
                        return Err(Reject::new(
                            EINVAL,
                            format!("R{regno} must be a rcu pointer"),
                        ));
                    }
                }
                let releasing = is_release && reg.ref_obj_id != 0;
                if releasing && (reg.off != 0 || !reg.v.var_off.equals_const(0)) {
                    return Err(Reject::new(
                        EACCES,
                        format!(
                            "R{regno} must have zero offset when passed to release func or trusted arg to kfunc"
                        ),
                    ));
                }
                self.check_ptr_off_reg(regno, &reg, true)?;
                if !struct_ids_match(btf, reg.btf_id, reg.off, ref_t, releasing) {
                    return Err(Reject::new(
                        EINVAL,
                        format!(
                            "kernel function {fname} args#{i} expected pointer to {} {ref_tname} but R{regno} has a pointer to {} {}",
                            kind_str(btf, ref_t),
                            kind_str(btf, reg.btf_id),
                            type_name(btf, reg.btf_id)
                        ),
                    ));
                }
                i += 1;
                continue;
            }
            // Memory: a pointer to a scalar or scalar-only struct, or
            // (with a following `__sz` argument) any memory of that size.
            let sized = params.get(i + 1).is_some_and(|n| {
                param_has_suffix(btf, n, "__sz") || param_has_suffix(btf, n, "__szk")
            });
            let void = ref_t == 0;
            if !(is_scalar(btf, ref_t) || is_scalar_struct(btf, ref_t, 0) || (sized && void)) {
                return Err(Reject::new(
                    EINVAL,
                    format!(
                        "arg#{i} pointer type {} {ref_tname} must point to {}scalar, or struct with scalar",
                        kind_str(btf, ref_t),
                        if sized { "void, " } else { "" }
                    ),
                ));
            }
            if sized {
                self.check_mem_size_reg(regno + 1, false, &Arg::DONTCARE)?;
                i += 2;
                continue;
            }
            let size = btf.size_of(ref_t).unwrap_or(0);
            self.check_helper_mem_access(regno, u64::from(size), false, false, false)?;
            i += 1;
        }
        meta.release = if is_release { release } else { None };
        Ok(meta)
    }
}

/// What `check_kfunc_args` learned (the parts of `bpf_kfunc_call_arg_meta`
/// the call needs afterwards).
#[derive(Default)]
struct ArgMeta {
    /// The reference a release kfunc drops and the register carrying it.
    release: Option<(u32, usize)>,
    /// A reference the arguments carry (`meta.ref_obj_id`): memory the
    /// call returns lives as long as it.
    ref_obj_id: u32,
    /// The iterator of an iterator `next` call.
    iter_next: Option<IterArg>,
}
