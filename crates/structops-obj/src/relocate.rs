//! Load-time transforms, each a function of the object and the host facts it is given:
//! extern resolution, struct_ops binding, CO-RE, and the final relocation of each entry
//! program (`bpf_object__relocate` in libbpf 1.5).

use structops_btf::ext::{CoreRelo, FuncInfo, LineInfo};
use structops_btf::{Btf, Kind, TypeKind};
use structops_isa::Insn;
use structops_isa::opcode::{
    CALL_CODE, K, LD_IMM64, PSEUDO_BTF_ID, PSEUDO_CALL, PSEUDO_FUNC, PSEUDO_KFUNC_CALL,
    PSEUDO_MAP_FD, PSEUDO_MAP_VALUE, class, op, src,
};

use std::cell::RefCell;

use crate::core_relo::{
    CandidateCache, CoreTarget, check_insn, patch as core_patch, resolve as core_resolve,
};
use crate::error::{CoreError, Error, RelocError, StructOpsError};
use crate::externs::{self, ExternHost, ExternKind};
use crate::object::{INSN_SZ, Object, find_prog_by_sec_insn};
use crate::program::{RelocKind, Relocation, find_relo, sort_relos};
use crate::struct_ops::{KernStructOps, find_kern_types, skip_mods};
use crate::types::{AttachType, ProgType};

/// `POISON_LDIMM64_MAP_BASE`: a map load of a map that is not created becomes two
/// calls of helper `2001000000 + map index`.
pub const POISON_LDIMM64_MAP_BASE: i32 = 2_001_000_000;
/// `POISON_CALL_KFUNC_BASE`: an unresolved weak kfunc call becomes a call of helper
/// `2002000000 + extern index`.
pub const POISON_CALL_KFUNC_BASE: i32 = 2_002_000_000;

/// An entry program ready for `BPF_PROG_LOAD`: its code with the used subprograms
/// appended and every reference patched, and its `.BTF.ext` info in kernel form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkedProgram {
    /// Index of the program in [`Object::programs`].
    pub program: usize,
    /// Its name.
    pub name: String,
    /// The final instructions.
    pub insns: Vec<Insn>,
    /// func_info, `insn_off` in instructions from the start of `insns`; `None` when
    /// the object has none for this program.
    pub func_info: Option<Vec<FuncInfo>>,
    /// Record size of `func_info` in the object.
    pub func_info_rec_size: u32,
    /// line_info, `insn_off` in instructions; `None` when absent.
    pub line_info: Option<Vec<LineInfo>>,
    /// Record size of `line_info` in the object.
    pub line_info_rec_size: u32,
    /// The relocations applied, in the final program's frame of reference.
    pub relocations: Vec<Relocation>,
}

/// Applies one CO-RE relocation: `structops-obj` finds the records and the
/// instructions they belong to (as libbpf's `bpf_object__relocate_core` does); the
/// resolver computes and patches.
pub trait CoreResolver {
    /// Resolves `relo` (record `relo_idx` of its section) against the target and patches
    /// `insns[insn_idx]` (the program's own instructions) in place.
    fn apply(
        &self,
        prog_name: &str,
        local: &Btf,
        relo: &CoreRelo,
        relo_idx: usize,
        insns: &mut [Insn],
        insn_idx: usize,
    ) -> Result<(), crate::core_relo::CoreError>;
}

/// The [`CoreResolver`] of this crate's [`crate::core_relo`] engine: one target BTF,
/// with libbpf's per-object candidate cache.
#[derive(Debug)]
pub struct CoreEngine<'t> {
    target: &'t CoreTarget<'t>,
    cache: RefCell<CandidateCache>,
}

impl<'t> CoreEngine<'t> {
    /// An engine resolving against `target`; use one per object.
    pub fn new(target: &'t CoreTarget<'t>) -> CoreEngine<'t> {
        CoreEngine {
            target,
            cache: RefCell::new(CandidateCache::new()),
        }
    }
}

impl CoreResolver for CoreEngine<'_> {
    fn apply(
        &self,
        _prog_name: &str,
        local: &Btf,
        relo: &CoreRelo,
        _relo_idx: usize,
        insns: &mut [Insn],
        insn_idx: usize,
    ) -> Result<(), crate::core_relo::CoreError> {
        check_insn(insns, insn_idx)?;
        let res = core_resolve(local, self.target, &mut self.cache.borrow_mut(), relo)?;
        core_patch(insns, insn_idx, &res.values)?;
        Ok(())
    }
}

fn is_ldimm64(i: &Insn) -> bool {
    i.code == LD_IMM64
}

fn is_subprog_call(i: &Insn) -> bool {
    class(i.code) == structops_isa::opcode::JMP
        && op(i.code) == structops_isa::opcode::CALL
        && src(i.code) == K
        && i.src_reg() == PSEUDO_CALL
        && i.dst_reg() == 0
        && i.off == 0
}

fn is_pseudo_func(i: &Insn) -> bool {
    is_ldimm64(i) && i.src_reg() == PSEUDO_FUNC
}

/// State of one `.BTF.ext` info kind while linking a main program.
struct ExtAcc<T> {
    records: Option<Vec<T>>,
    rec_size: u32,
}

/// How an info record's offset is read and rewritten.
trait InsnOff: Copy {
    fn off(&self) -> u32;
    fn set_off(&mut self, v: u32);
}

impl InsnOff for FuncInfo {
    fn off(&self) -> u32 {
        self.insn_off
    }
    fn set_off(&mut self, v: u32) {
        self.insn_off = v;
    }
}

impl InsnOff for LineInfo {
    fn off(&self) -> u32 {
        self.insn_off
    }
    fn set_off(&mut self, v: u32) {
        self.insn_off = v;
    }
}

/// libbpf's `adjust_prog_btf_ext_info`: append `prog`'s records (a contiguous run of
/// its section's records) with offsets converted to instructions in the main program.
/// `Err(())` is libbpf's `-ENOENT`.
#[expect(
    clippy::too_many_arguments,
    reason = "one info kind's state, as libbpf passes it"
)]
fn adjust_ext<T: InsnOff>(
    secs: &[structops_btf::ext::SecInfo<T>],
    sec_idxs: &[usize],
    prog_sec: usize,
    prog_off: usize,
    prog_cnt: usize,
    sub_off: usize,
    acc: &mut ExtAcc<T>,
    rec_size: u32,
) -> Result<(), ()> {
    for (sec, &idx) in secs.iter().zip(sec_idxs) {
        if idx != prog_sec {
            continue;
        }
        let mut first = None;
        let mut last = 0;
        for (i, r) in sec.records.iter().enumerate() {
            let off = r.off() as usize / INSN_SZ;
            if off < prog_off {
                continue;
            }
            if off >= prog_off + prog_cnt {
                break;
            }
            first.get_or_insert(i);
            last = i;
        }
        let Some(first) = first else {
            return Err(());
        };
        let adj = sub_off as i64 - prog_off as i64;
        let out = acc.records.get_or_insert_with(Vec::new);
        for r in sec.records.get(first..=last).unwrap_or(&[]) {
            let mut r = *r;
            r.set_off(((i64::from(r.off()) / INSN_SZ as i64) + adj) as u32);
            out.push(r);
        }
        acc.rec_size = rec_size;
        return Ok(());
    }
    Err(())
}

/// One main program being linked.
struct Link<'o> {
    obj: &'o Object,
    base: &'o [Vec<Insn>],
    main: usize,
    insns: Vec<Insn>,
    relos: Vec<Relocation>,
    sub_off: Vec<usize>,
    func: ExtAcc<FuncInfo>,
    line: ExtAcc<LineInfo>,
}

impl Link<'_> {
    fn err(&self, source: RelocError) -> Error {
        Error::Link {
            program: self
                .obj
                .programs
                .get(self.main)
                .map(|p| p.name.clone())
                .unwrap_or_default(),
            source,
        }
    }

    /// libbpf's `reloc_prog_func_and_line_info`.
    fn ext_info(&mut self, prog: usize) -> Result<(), Error> {
        let Some(ext) = &self.obj.btf_ext else {
            return Ok(());
        };
        let Some(p) = self.obj.programs.get(prog) else {
            return Ok(());
        };
        let sub = self.sub_off.get(prog).copied().unwrap_or(0);
        let is_main = prog == self.main;
        if is_main || self.func.records.is_some() {
            let had = self.func.records.is_some();
            let r = adjust_ext(
                &ext.func_info,
                &self.obj.ext_secs.func,
                p.section_index,
                p.insn_off,
                p.insns.len(),
                sub,
                &mut self.func,
                ext.func_info_rec_size,
            );
            if r.is_err() && had {
                return Err(self.err(RelocError::MissingExtInfo { what: "function" }));
            }
        }
        if is_main || self.line.records.is_some() {
            let had = self.line.records.is_some();
            let r = adjust_ext(
                &ext.line_info,
                &self.obj.ext_secs.line,
                p.section_index,
                p.insn_off,
                p.insns.len(),
                sub,
                &mut self.line,
                ext.line_info_rec_size,
            );
            if r.is_err() && had {
                return Err(self.err(RelocError::MissingExtInfo { what: "line" }));
            }
        }
        Ok(())
    }

    /// `bpf_object__append_subprog_code`.
    fn append(&mut self, sub: usize) {
        let off = self.insns.len();
        if let Some(s) = self.sub_off.get_mut(sub) {
            *s = off;
        }
        if let Some(code) = self.base.get(sub) {
            self.insns.extend_from_slice(code);
        }
        if let Some(p) = self.obj.programs.get(sub) {
            self.relos.extend(p.relos.iter().map(|r| Relocation {
                insn_idx: r.insn_idx + off,
                kind: r.kind,
            }));
        }
    }

    /// `bpf_object__reloc_code`, iteratively (a hostile object cannot exhaust the
    /// stack): each frame walks one (sub)program's calls, descending into a subprogram
    /// the first time it is called.
    fn reloc_code(&mut self, start: usize) -> Result<(), Error> {
        let text = self.obj.text_shndx;
        // (program, next instruction, subprogram whose appending is pending)
        let mut stack: Vec<(usize, usize, Option<usize>)> = vec![(start, 0, None)];
        self.ext_info(start)?;
        while let Some(frame) = stack.last_mut() {
            let (prog, idx, pending) = *frame;
            let Some(p) = self.obj.programs.get(prog) else {
                stack.pop();
                continue;
            };
            let base = self.sub_off.get(prog).copied().unwrap_or(0);
            if let Some(sub) = pending {
                frame.2 = None;
                frame.1 += 1;
                let target = self.sub_off.get(sub).copied().unwrap_or(0);
                if let Some(insn) = self.insns.get_mut(base + idx) {
                    insn.imm = (target as i64 - (base + idx) as i64 - 1) as i32;
                }
                continue;
            }
            if idx >= p.insns.len() {
                stack.pop();
                continue;
            }
            let Some(insn) = self.insns.get(base + idx).copied() else {
                return Err(self.err(RelocError::InsnOutOfRange { insn: base + idx }));
            };
            if !is_subprog_call(&insn) && !is_pseudo_func(&insn) {
                frame.1 += 1;
                continue;
            }
            let relo = find_relo(&p.relos, idx);
            let sub_insn_idx: i64 = match relo.map(|r| r.kind) {
                Some(RelocKind::ExternCall { .. }) => {
                    frame.1 += 1;
                    continue;
                }
                Some(RelocKind::Call { sym_off }) => {
                    (sym_off / INSN_SZ as u64) as i64 + i64::from(insn.imm) + 1
                }
                Some(RelocKind::SubprogAddr { sym_off }) => {
                    (sym_off as i64 + i64::from(insn.imm)) / INSN_SZ as i64
                }
                Some(_) => return Err(self.err(RelocError::UnexpectedRelo { insn: idx })),
                None if is_pseudo_func(&insn) => {
                    return Err(self.err(RelocError::MissingSubprogAddr { insn: idx }));
                }
                None => (p.insn_off + idx) as i64 + i64::from(insn.imm) + 1,
            };
            let sub = match (text, usize::try_from(sub_insn_idx)) {
                (Some(t), Ok(s)) => find_prog_by_sec_insn(&self.obj.programs, t, s),
                _ => None,
            }
            .ok_or_else(|| self.err(RelocError::NoSubprog { insn: idx }))?;
            frame.2 = Some(sub);
            if self.sub_off.get(sub).copied().unwrap_or(0) == 0 {
                self.append(sub);
                self.ext_info(sub)?;
                stack.push((sub, 0, None));
            }
        }
        Ok(())
    }

    /// `bpf_prog_assign_exc_cb`: the subprogram named by an `exception_callback:`
    /// decl tag on the main program.
    fn exception_callback(&self) -> Result<Option<usize>, Error> {
        let obj = self.obj;
        let Some(btf) = &obj.btf else { return Ok(None) };
        let Some(main) = obj.programs.get(self.main) else {
            return Ok(None);
        };
        let mut found: Option<usize> = None;
        for t in btf.types().iter().skip(1) {
            let TypeKind::DeclTag {
                target,
                component_idx: -1,
                ..
            } = t.kind
            else {
                continue;
            };
            let Ok(tag) = btf.name(t.name_off) else {
                continue;
            };
            let Some(cb_name) = tag.strip_prefix("exception_callback:") else {
                continue;
            };
            let func = btf.ty(target).ok();
            let is_global_func = matches!(
                func.map(|f| &f.kind),
                Some(TypeKind::Func {
                    linkage: structops_btf::Linkage::Global,
                    ..
                })
            );
            if !is_global_func {
                return Err(self.err(RelocError::ExceptionCallback {
                    reason: "exception_callback:<value> decl tag not applied to the main program"
                        .into(),
                }));
            }
            if func.and_then(|f| btf.name(f.name_off).ok()) != Some(main.name.as_str()) {
                continue;
            }
            if found.is_some() {
                // Several callbacks for one program: libbpf leaves it to the verifier.
                return Ok(None);
            }
            if cb_name.is_empty() {
                return Err(self.err(RelocError::ExceptionCallback {
                    reason: "decl tag contains empty value".into(),
                }));
            }
            let sub = obj
                .programs
                .iter()
                .position(|p| p.is_subprog && p.name == cb_name)
                .ok_or_else(|| {
                    self.err(RelocError::ExceptionCallback {
                        reason: format!("cannot find exception callback '{cb_name}'"),
                    })
                })?;
            let sp = obj.programs.get(sub);
            if sp.is_none_or(|s| !s.sym_global || s.mark_btf_static) {
                return Err(self.err(RelocError::ExceptionCallback {
                    reason: format!(
                        "exception callback {cb_name} must be a global non-hidden function"
                    ),
                }));
            }
            found = Some(sub);
        }
        Ok(found)
    }

    /// `bpf_object__relocate_data`.
    fn relocate_data(&mut self, map_handle: &dyn Fn(usize) -> i32) -> Result<(), Error> {
        let obj = self.obj;
        for r in self.relos.clone() {
            let i = r.insn_idx;
            let poison_map = |insns: &mut [Insn], map: usize| {
                for k in 0..2 {
                    if let Some(x) = insns.get_mut(i + k) {
                        *x = Insn::new(
                            CALL_CODE,
                            0,
                            0,
                            0,
                            POISON_LDIMM64_MAP_BASE.wrapping_add(map as i32),
                        );
                    }
                }
            };
            let need = match r.kind {
                RelocKind::Map { .. } | RelocKind::Data { .. } | RelocKind::ExternLd64 { .. } => 2,
                _ => 1,
            };
            if i + need > self.insns.len() {
                return Err(self.err(RelocError::InsnOutOfRange { insn: i }));
            }
            match r.kind {
                RelocKind::Map { map } => {
                    let create = obj.maps.get(map).is_some_and(|m| m.autocreate);
                    if create {
                        if let Some(x) = self.insns.get_mut(i) {
                            x.set_src_reg(PSEUDO_MAP_FD);
                            x.imm = map_handle(map);
                        }
                    } else {
                        poison_map(&mut self.insns, map);
                    }
                }
                RelocKind::Data { map, sym_off } => {
                    let imm0 = self.insns.get(i).map_or(0, |x| x.imm);
                    if let Some(x) = self.insns.get_mut(i + 1) {
                        x.imm = imm0.wrapping_add(sym_off as i32);
                    }
                    let create = obj.maps.get(map).is_some_and(|m| m.autocreate);
                    if create {
                        if let Some(x) = self.insns.get_mut(i) {
                            x.set_src_reg(PSEUDO_MAP_VALUE);
                            x.imm = map_handle(map);
                        }
                    } else {
                        poison_map(&mut self.insns, map);
                    }
                }
                RelocKind::ExternLd64 { ext } => {
                    let Some(e) = obj.externs.get(ext) else {
                        continue;
                    };
                    match e.kind {
                        ExternKind::Kconfig(k) => {
                            let h = obj.kconfig_map.map_or(-1, map_handle);
                            if let Some(x) = self.insns.get_mut(i) {
                                x.set_src_reg(PSEUDO_MAP_VALUE);
                                x.imm = h;
                            }
                            if let Some(x) = self.insns.get_mut(i + 1) {
                                x.imm = k.data_off as i32;
                            }
                        }
                        ExternKind::Ksym(k) => {
                            if k.type_id != 0 && e.is_set {
                                if let Some(x) = self.insns.get_mut(i) {
                                    x.set_src_reg(PSEUDO_BTF_ID);
                                    x.imm = k.kernel_btf_id as i32;
                                }
                                if let Some(x) = self.insns.get_mut(i + 1) {
                                    x.imm = k.kernel_btf_obj_fd;
                                }
                            } else {
                                if let Some(x) = self.insns.get_mut(i) {
                                    x.imm = k.addr as u32 as i32;
                                }
                                if let Some(x) = self.insns.get_mut(i + 1) {
                                    x.imm = (k.addr >> 32) as u32 as i32;
                                }
                            }
                        }
                    }
                }
                RelocKind::ExternCall { ext } => {
                    let Some(e) = obj.externs.get(ext) else {
                        continue;
                    };
                    let k = e.ksym().copied().unwrap_or_default();
                    if let Some(x) = self.insns.get_mut(i) {
                        if e.is_set {
                            x.set_src_reg(PSEUDO_KFUNC_CALL);
                            x.imm = k.kernel_btf_id as i32;
                            x.off = k.btf_fd_idx;
                        } else {
                            *x = Insn::new(
                                CALL_CODE,
                                0,
                                0,
                                0,
                                POISON_CALL_KFUNC_BASE.wrapping_add(ext as i32),
                            );
                        }
                    }
                }
                RelocKind::SubprogAddr { .. } => {
                    if self.insns.get(i).map(|x| x.src_reg()) != Some(PSEUDO_FUNC) {
                        return Err(self.err(RelocError::BadPseudoFunc { insn: i }));
                    }
                }
                RelocKind::Call { .. } | RelocKind::Core { .. } => {}
            }
        }
        Ok(())
    }
}

/// The host facts for [`Object::load`]: everything libbpf's `bpf_object__load` reads
/// from the running kernel before it creates anything.
#[derive(Clone, Copy)]
pub struct LoadHost<'a> {
    /// The kernel's BTF (vmlinux): struct_ops types and the CO-RE target.
    pub target_btf: &'a Btf,
    /// Extern resolution facts.
    pub externs: ExternHost<'a>,
    /// CO-RE engine.
    pub core: &'a dyn CoreResolver,
    /// The handle (fd) each map gets, by map index.
    pub map_handle: &'a dyn Fn(usize) -> i32,
}

impl std::fmt::Debug for LoadHost<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadHost")
            .field("externs", &self.externs)
            .finish_non_exhaustive()
    }
}

impl Object {
    /// Resolves externs (libbpf's `bpf_object__resolve_externs`): writes kconfig values
    /// into the `.kconfig` map's initial value and records what each `__ksym` resolved
    /// to. Fails on a strong extern left unresolved.
    pub fn resolve_externs(&mut self, host: &ExternHost<'_>) -> Result<(), Error> {
        let kcfg = self
            .kconfig_map
            .and_then(|i| self.maps.get_mut(i))
            .map(|m| &mut m.data);
        externs::resolve(&mut self.externs, kcfg, host).map_err(|source| Error::Extern { source })
    }

    /// Binds every struct_ops map that will be created to its kernel type in `target`
    /// (libbpf's `bpf_object__init_kern_struct_ops_maps`), then adjusts the autoload
    /// flags of struct_ops programs (`bpf_object_adjust_struct_ops_autoload`).
    ///
    /// Members are matched by name; each bound program gets `attach_btf_id` = the
    /// kernel ops type's id and `expected_attach_type` = the kernel member's index.
    /// Data members are copied into the kernel value with a size check; members the
    /// kernel lacks must be zero.
    pub fn init_struct_ops(&mut self, target: &Btf) -> Result<(), Error> {
        for mi in 0..self.maps.len() {
            let create = self
                .maps
                .get(mi)
                .is_some_and(|m| m.autocreate && m.struct_ops.is_some());
            if create {
                self.init_kern_struct_ops(mi, target)?;
            }
        }
        self.adjust_struct_ops_autoload();
        Ok(())
    }

    fn adjust_struct_ops_autoload(&mut self) {
        for pi in 0..self.programs.len() {
            if self.programs.get(pi).map(|p| p.prog_type) != Some(ProgType::STRUCT_OPS) {
                continue;
            }
            let mut uses = 0;
            let mut load = false;
            for m in &self.maps {
                let Some(st) = &m.struct_ops else { continue };
                for p in &st.declared {
                    if *p == Some(pi) {
                        uses += 1;
                        load |= m.autocreate;
                    }
                }
            }
            if uses > 0
                && let Some(p) = self.programs.get_mut(pi)
            {
                p.autoload = load;
            }
        }
    }

    /// `bpf_map__init_kern_struct_ops`.
    fn init_kern_struct_ops(&mut self, mi: usize, target: &Btf) -> Result<(), Error> {
        let Some(map) = self.maps.get(mi) else {
            return Ok(());
        };
        let map_name = map.name.clone();
        let so_err = |source| Error::StructOps {
            map: map_name.clone(),
            source,
        };
        let btf = self
            .btf
            .as_ref()
            .ok_or_else(|| so_err(StructOpsError::NoBtf))?;
        let Some(st) = map.struct_ops.clone() else {
            return Ok(());
        };
        let (kern_type_id, vtype_id, data_off) =
            find_kern_types(target, &st.kernel_type_name).map_err(so_err)?;
        let vsize = target
            .ty(vtype_id)
            .ok()
            .and_then(|t| t.composite())
            .map_or(0, |c| c.size);
        let kern_comp = target
            .ty(kern_type_id)
            .ok()
            .and_then(|t| t.composite())
            .cloned()
            .ok_or_else(|| {
                so_err(StructOpsError::KernelTypeMissing {
                    name: st.kernel_type_name.clone(),
                })
            })?;
        let local = btf
            .ty(st.type_id)
            .ok()
            .and_then(|t| t.composite())
            .cloned()
            .ok_or_else(|| {
                so_err(StructOpsError::NotStruct {
                    name: st.type_name.clone(),
                })
            })?;
        if let Some(m) = self.maps.get_mut(mi) {
            m.value_size = vsize;
            m.btf_vmlinux_value_type_id = vtype_id;
        }
        let mut vdata = vec![0u8; vsize as usize];
        let mut func_offsets = vec![None; local.members.len()];
        let mut kernel_members = vec![None; local.members.len()];
        let mut declared = st.declared.clone();
        let mut autoload_off: Vec<usize> = Vec::new();
        let mut attach: Vec<(usize, u32)> = Vec::new();

        for (i, m) in local.members.iter().enumerate() {
            let mname = btf.name(m.name_off).unwrap_or("").to_string();
            let moff = (m.offset / 8) as usize;
            let msize = btf.size_of(m.ty).map_err(|_| {
                so_err(StructOpsError::MemberSize {
                    member: mname.clone(),
                })
            })? as usize;
            let mdata = st.data.get(moff..moff + msize);
            let bound = st.progs.get(i).copied().flatten();
            let data_zero = mdata.is_some_and(|d| d.iter().all(|&b| b == 0));
            let Some((kidx, km)) = kern_comp
                .members
                .iter()
                .enumerate()
                .find(|(_, km)| target.name(km.name_off) == Ok(mname.as_str()))
            else {
                if !data_zero || bound.is_some() {
                    return Err(so_err(StructOpsError::MemberMissing { member: mname }));
                }
                if let Some(Some(p)) = declared.get(i).copied() {
                    autoload_off.push(p);
                    if let Some(d) = declared.get_mut(i) {
                        *d = None;
                    }
                }
                continue;
            };
            if m.bitfield_size(local.kflag) != 0 || km.bitfield_size(kern_comp.kflag) != 0 {
                return Err(so_err(StructOpsError::Bitfield { member: mname }));
            }
            let kern_moff = (km.offset / 8) as usize;
            let (_, mkind) = skip_mods(btf, m.ty).unwrap_or((0, Kind::Void));
            let (kmtype, kmkind) = skip_mods(target, km.ty).unwrap_or((0, Kind::Void));
            if mkind != kmkind {
                return Err(so_err(StructOpsError::KindMismatch {
                    member: mname,
                    local: mkind,
                    kernel: kmkind,
                }));
            }
            kernel_members[i] = Some(kidx as u32);
            if mkind == Kind::Ptr {
                let prog = match bound {
                    Some(p) => Some(p),
                    None if !data_zero => {
                        return Err(so_err(StructOpsError::NotStructOpsProgram {
                            member: mname,
                        }));
                    }
                    None => None,
                };
                if let Some(Some(old)) = declared.get(i).copied()
                    && Some(old) != prog
                {
                    autoload_off.push(old);
                }
                if let Some(d) = declared.get_mut(i) {
                    *d = prog;
                }
                let Some(p) = prog else { continue };
                let prog_ref = self
                    .programs
                    .get(p)
                    .filter(|pr| pr.prog_type == ProgType::STRUCT_OPS)
                    .ok_or_else(|| {
                        so_err(StructOpsError::NotStructOpsProgram {
                            member: mname.clone(),
                        })
                    })?;
                let target_ptr = match target.ty(kmtype).map(|t| &t.kind) {
                    Ok(TypeKind::Ptr { target: t }) => *t,
                    _ => 0,
                };
                if skip_mods(target, target_ptr).map(|x| x.1) != Some(Kind::FuncProto) {
                    return Err(so_err(StructOpsError::KernelNotFuncPtr { member: mname }));
                }
                // A program already bound elsewhere (earlier in this map or another).
                let prev = attach.iter().find(|(q, _)| *q == p).map(|x| x.1);
                let (cur_id, cur_eat) = match prev {
                    Some(e) => (kern_type_id, e),
                    None if prog_ref.attach_btf_id == 0 => (kern_type_id, kidx as u32),
                    None => (prog_ref.attach_btf_id, prog_ref.expected_attach_type.0),
                };
                if cur_id != kern_type_id || cur_eat != kidx as u32 {
                    return Err(so_err(StructOpsError::ProgramReuse {
                        member: mname,
                        program: prog_ref.name.clone(),
                    }));
                }
                if prev.is_none() {
                    attach.push((p, kidx as u32));
                }
                func_offsets[i] = Some(data_off + kern_moff as u32);
                continue;
            }
            let ksize = target.size_of(kmtype).ok();
            if ksize != Some(msize as u32) {
                return Err(so_err(StructOpsError::SizeMismatch {
                    member: mname,
                    local: msize as u32,
                    kernel: ksize.unwrap_or(0),
                }));
            }
            let dst = data_off as usize + kern_moff;
            match (vdata.get_mut(dst..dst + msize), mdata) {
                (Some(d), Some(s)) => d.copy_from_slice(s),
                _ => {
                    return Err(so_err(StructOpsError::SizeMismatch {
                        member: mname,
                        local: msize as u32,
                        kernel: ksize.unwrap_or(0),
                    }));
                }
            }
        }
        for p in autoload_off {
            if let Some(pr) = self.programs.get_mut(p) {
                pr.autoload = false;
            }
        }
        for (p, eat) in attach {
            if let Some(pr) = self.programs.get_mut(p) {
                pr.attach_btf_id = kern_type_id;
                pr.expected_attach_type = AttachType(eat);
            }
        }
        if let Some(so) = self.maps.get_mut(mi).and_then(|m| m.struct_ops.as_mut()) {
            so.declared = declared;
            so.kern = Some(KernStructOps {
                type_id: kern_type_id,
                value_type_id: vtype_id,
                data_offset: data_off,
                vdata,
                func_offsets,
                kernel_members,
            });
        }
        Ok(())
    }

    /// Applies CO-RE relocations against `target` (see [`Object::relocate_core_with`]).
    /// Indexing a target BTF costs time: to relocate several objects against the same
    /// kernel, build one [`CoreTarget`] and use [`CoreEngine`] instead.
    pub fn relocate_core(&mut self, target: &Btf) -> Result<(), Error> {
        let t = CoreTarget::new(target);
        self.relocate_core_with(&CoreEngine::new(&t))
    }

    /// Records and applies CO-RE relocations with `resolver` (libbpf's
    /// `bpf_object__relocate_core`): for every `.BTF.ext` CO-RE record of a program
    /// that will be loaded, in section order.
    pub fn relocate_core_with(&mut self, resolver: &dyn CoreResolver) -> Result<(), Error> {
        let Some(ext) = self.btf_ext.take() else {
            return Ok(());
        };
        let r = self.relocate_core_inner(&ext, resolver);
        self.btf_ext = Some(ext);
        r
    }

    fn relocate_core_inner(
        &mut self,
        ext: &structops_btf::ext::BtfExt,
        resolver: &dyn CoreResolver,
    ) -> Result<(), Error> {
        if ext.core_relos.is_empty() {
            return Ok(());
        }
        let Some(btf) = self.btf.take() else {
            return Err(Error::Core {
                program: String::new(),
                index: 0,
                source: CoreError::NoBtf,
            });
        };
        let result = (|| {
            for (sec, &sec_idx) in ext.core_relos.iter().zip(&self.ext_secs.core) {
                let sec_name = btf.name(sec.sec_name_off).unwrap_or("");
                if sec_name.is_empty() {
                    return Err(Error::Core {
                        program: String::new(),
                        index: 0,
                        source: CoreError::NoSectionName,
                    });
                }
                for (i, rec) in sec.records.iter().enumerate() {
                    let cerr = |program: &str, source| Error::Core {
                        program: program.to_string(),
                        index: i,
                        source,
                    };
                    if !(rec.insn_off as usize).is_multiple_of(INSN_SZ) {
                        return Err(cerr(
                            sec_name,
                            CoreError::BadOffset {
                                offset: rec.insn_off,
                            },
                        ));
                    }
                    let idx = rec.insn_off as usize / INSN_SZ;
                    let Some(pi) = find_prog_by_sec_insn(&self.programs, sec_idx, idx) else {
                        continue;
                    };
                    let Some(p) = self.programs.get_mut(pi) else {
                        continue;
                    };
                    if !p.autoload {
                        continue;
                    }
                    let local = idx - p.insn_off;
                    let Some(insn) = p.insns.get(local) else {
                        return Err(cerr(&p.name, CoreError::InsnOutOfRange { insn: local }));
                    };
                    if is_ldimm64(insn) && local + 1 >= p.insns.len() {
                        return Err(cerr(&p.name, CoreError::TruncatedLdimm64 { insn: local }));
                    }
                    p.relos.push(Relocation {
                        insn_idx: local,
                        kind: RelocKind::Core { relo: *rec },
                    });
                    resolver
                        .apply(&p.name, &btf, rec, i, &mut p.insns, local)
                        .map_err(|source| cerr(&p.name, CoreError::Resolve { source }))?;
                }
            }
            Ok(())
        })();
        self.btf = Some(btf);
        for p in &mut self.programs {
            sort_relos(&mut p.relos);
        }
        result
    }

    /// The final instructions of every entry program that will be loaded (libbpf's
    /// `bpf_object__relocate` after CO-RE): used subprograms appended in first-use
    /// order, calls and callback addresses fixed, func/line info rebased, and map,
    /// global data, extern and kfunc references patched. `map_handle` gives the `imm`
    /// of each map reference (libbpf: the map fd), by map index.
    pub fn relocate(&self, map_handle: &dyn Fn(usize) -> i32) -> Result<Vec<LinkedProgram>, Error> {
        // Mark ld_imm64 of subprogram addresses, so calls and callbacks look alike.
        let base: Vec<Vec<Insn>> = self
            .programs
            .iter()
            .map(|p| {
                let mut code = p.insns.clone();
                for r in &p.relos {
                    if let RelocKind::SubprogAddr { .. } = r.kind
                        && let Some(i) = code.get_mut(r.insn_idx)
                    {
                        i.set_src_reg(PSEUDO_FUNC);
                    }
                }
                code
            })
            .collect();
        let mut links = Vec::new();
        for (pi, p) in self.programs.iter().enumerate() {
            if p.is_subprog || !p.autoload {
                continue;
            }
            let mut link = Link {
                obj: self,
                base: &base,
                main: pi,
                insns: base.get(pi).cloned().unwrap_or_default(),
                relos: p.relos.clone(),
                sub_off: vec![0; self.programs.len()],
                func: ExtAcc {
                    records: None,
                    rec_size: 0,
                },
                line: ExtAcc {
                    records: None,
                    rec_size: 0,
                },
            };
            link.reloc_code(pi)?;
            if let Some(cb) = link.exception_callback()?
                && link.sub_off.get(cb).copied().unwrap_or(0) == 0
            {
                link.append(cb);
                link.reloc_code(cb)?;
            }
            links.push(link);
        }
        let mut out = Vec::with_capacity(links.len());
        for mut link in links {
            link.relocate_data(map_handle)?;
            out.push(LinkedProgram {
                program: link.main,
                name: self
                    .programs
                    .get(link.main)
                    .map(|p| p.name.clone())
                    .unwrap_or_default(),
                insns: link.insns,
                func_info: link.func.records,
                func_info_rec_size: link.func.rec_size,
                line_info: link.line.records,
                line_info_rec_size: link.line.rec_size,
                relocations: link.relos,
            });
        }
        Ok(out)
    }

    /// The checks libbpf's `bpf_object_load_prog` makes before `BPF_PROG_LOAD`: a
    /// program type is known, and a struct_ops program is bound to some map.
    pub fn check_loadable(&self, prog: usize) -> Result<(), Error> {
        let Some(p) = self.programs.get(prog) else {
            return Ok(());
        };
        let err = |source| Error::Link {
            program: p.name.clone(),
            source,
        };
        match p.prog_type {
            ProgType::UNSPEC => Err(err(RelocError::NoProgType {
                section: p.section.clone(),
            })),
            ProgType::STRUCT_OPS if p.attach_btf_id == 0 => {
                Err(err(RelocError::UnreferencedStructOps))
            }
            _ => Ok(()),
        }
    }

    /// Every load-time step in libbpf's order (`bpf_object_load` up to, not including,
    /// creating maps and loading programs): resolve externs, bind struct_ops maps,
    /// CO-RE, relocate, then the per-program checks for the programs to be loaded.
    pub fn load(&mut self, host: &LoadHost<'_>) -> Result<Vec<LinkedProgram>, Error> {
        self.resolve_externs(&host.externs)?;
        self.init_struct_ops(host.target_btf)?;
        self.relocate_core_with(host.core)?;
        let linked = self.relocate(host.map_handle)?;
        for l in &linked {
            self.check_loadable(l.program)?;
        }
        Ok(linked)
    }
}
