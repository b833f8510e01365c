//! Loads, stores and atomics (`check_mem_access` and the stack rules).

use structops_isa::{AtomicOp, Source, Width};

use crate::env::{CtxField, SockPtr};
use crate::error::{EACCES, EINVAL, Reject, eacces, einval};
use crate::liveness::Loc;
use crate::state::{IterSlot, Reg, RegFlags, RegType, SlotType, StackSlot};
use crate::verifier::{MAX_BPF_STACK, MAX_VAR_OFF, Res, Verifier, width_bytes};

/// Read or write.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Access {
    Read,
    Write,
}

/// Who accesses memory: an instruction or a helper (for messages).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Src {
    Direct,
    Helper,
}

impl Verifier<'_> {
    /// `check_load_mem`.
    pub(crate) fn check_load(
        &mut self,
        pc: usize,
        width: Width,
        d: usize,
        s: usize,
        off: i16,
        sx: bool,
    ) -> Res<()> {
        self.check_src(s)?;
        self.check_dst(d)?;
        let src_ty = self.reg(s).ty;
        self.check_mem_access(
            pc,
            s,
            i32::from(off),
            width_bytes(width),
            Access::Read,
            Some(d),
            sx,
            None,
        )?;
        self.save_aux_ptr_type(pc, src_ty)
    }

    /// `check_store_reg` and `BPF_ST`.
    pub(crate) fn check_store(
        &mut self,
        pc: usize,
        width: Width,
        d: usize,
        off: i16,
        src: Source,
    ) -> Res<()> {
        let value = match src {
            Source::Reg(r) => {
                self.check_src(r.index())?;
                Some(r.index())
            }
            Source::Imm(_) => None,
        };
        self.check_src(d)?;
        let dst_ty = self.reg(d).ty;
        let imm = match src {
            Source::Imm(i) => Some(i),
            Source::Reg(_) => None,
        };
        self.check_mem_access(
            pc,
            d,
            i32::from(off),
            width_bytes(width),
            Access::Write,
            value,
            false,
            imm,
        )?;
        self.save_aux_ptr_type(pc, dst_ty)
    }

    /// `check_atomic`: a read and a write of the same location.
    pub(crate) fn check_atomic(
        &mut self,
        pc: usize,
        width: Width,
        op: AtomicOp,
        d: usize,
        off: i16,
        s: usize,
    ) -> Res<()> {
        if !matches!(width, Width::W | Width::DW) {
            return einval!("invalid atomic operand size");
        }
        self.check_src(s)?;
        self.check_src(d)?;
        if op == AtomicOp::CmpXchg {
            self.check_src(0)?;
            if self.is_pointer_value(0) {
                return eacces!("R0 leaks addr into mem");
            }
        }
        if self.is_pointer_value(s) {
            return eacces!("R{s} leaks addr into mem");
        }
        let dr = self.reg(d).clone();
        if matches!(dr.ty, RegType::Ctx | RegType::Packet | RegType::PacketMeta)
            || (dr.ty.is_sk_pointer() && !dr.maybe_null())
            || dr.flags.has(RegFlags::RDONLY)
        {
            return eacces!(
                "BPF_ATOMIC stores into R{d} {} is not allowed",
                dr.type_str()
            );
        }
        let size = width_bytes(width);
        let load_reg = if op == AtomicOp::CmpXchg {
            Some(0)
        } else if op.fetches() {
            Some(s)
        } else {
            None
        };
        // Strict alignment for atomics.
        self.check_alignment(d, i32::from(off), size, true)?;
        let err = self.check_mem_access(
            pc,
            d,
            i32::from(off),
            size,
            Access::Read,
            load_reg,
            false,
            None,
        );
        err?;
        if let Some(r) = load_reg {
            // The fetched value is loaded; a spilled pointer would leak.
            if self.reg(r).is_pointer() && !self.privileges().allow_ptr_leaks {
                return eacces!("R{r} leaks addr into mem");
            }
        }
        self.check_mem_access(
            pc,
            d,
            i32::from(off),
            size,
            Access::Write,
            None,
            false,
            None,
        )?;
        if let Some(r) = load_reg
            && self.reg(r).ty != RegType::Scalar
        {
            *self.reg_mut(r) = Reg::unknown();
        }
        Ok(())
    }

    fn save_aux_ptr_type(&mut self, pc: usize, ty: RegType) -> Res<()> {
        let Some(aux) = self.aux.get_mut(pc) else {
            return Ok(());
        };
        match aux.ptr_type {
            None => aux.ptr_type = Some(ty),
            Some(prev) => {
                let ok = |t: RegType| !matches!(t, RegType::Ctx | RegType::BtfId);
                if prev != ty && (!ok(prev) || !ok(ty)) {
                    return einval!("same insn cannot be used with different pointers");
                }
            }
        }
        Ok(())
    }

    /// `check_ptr_alignment`.
    fn check_alignment(&self, r: usize, off: i32, size: u32, strict_once: bool) -> Res<()> {
        let reg = self.reg(r);
        let (desc, strict) = match reg.ty {
            RegType::Packet | RegType::PacketMeta => {
                if !strict_once || size == 1 {
                    return Ok(());
                }
                let t = reg.v.var_off.add(crate::tnum::Tnum::constant(
                    (2 + i64::from(reg.off) + i64::from(off)) as u64,
                ));
                if !t.is_aligned(u64::from(size)) {
                    return eacces!(
                        "misaligned packet access off 2+{}+{}+{} size {}",
                        tnum_text(reg.v.var_off),
                        reg.off,
                        off,
                        size
                    );
                }
                return Ok(());
            }
            RegType::MapKey => ("key ", strict_once),
            RegType::MapValue => ("value ", strict_once),
            RegType::Ctx => ("context ", strict_once),
            RegType::Stack => ("stack ", true),
            _ => ("", strict_once),
        };
        if !strict || size == 1 {
            return Ok(());
        }
        let t = reg.v.var_off.add(crate::tnum::Tnum::constant(
            (i64::from(reg.off) + i64::from(off)) as u64,
        ));
        if !t.is_aligned(u64::from(size)) {
            return eacces!(
                "misaligned {desc}access off {}+{}+{} size {}",
                tnum_text(reg.v.var_off),
                reg.off,
                off,
                size
            );
        }
        Ok(())
    }

    /// `check_mem_access`: `size` bytes at `reg + off`, loading into or
    /// storing from `value` (or an immediate store of `imm`).
    #[expect(
        clippy::too_many_arguments,
        reason = "mirrors the kernel's check_mem_access"
    )]
    pub(crate) fn check_mem_access(
        &mut self,
        pc: usize,
        r: usize,
        off: i32,
        size: u32,
        t: Access,
        value: Option<usize>,
        sx: bool,
        imm: Option<i32>,
    ) -> Res<()> {
        self.check_alignment(r, off, size, false)?;
        let reg = self.reg(r).clone();
        let off = off + reg.off;
        let leaks = self.privileges().allow_ptr_leaks;
        let value_is_ptr = |v: &Verifier<'_>| {
            t == Access::Write && value.is_some_and(|x| !leaks && v.reg(x).is_pointer())
        };
        let tstr = reg.type_str();
        match reg.ty {
            RegType::MapKey if !reg.maybe_null() => {
                if t == Access::Write {
                    return eacces!("write to change key R{r} not allowed");
                }
                let ks = self.maps.get(reg.map as usize).map_or(0, |m| m.key_size);
                self.check_mem_region(r, off, size, ks, false)?;
                if let Some(v) = value {
                    *self.reg_mut(v) = Reg::unknown();
                }
            }
            RegType::MapValue if !reg.maybe_null() => {
                if value_is_ptr(self) {
                    let v = value.unwrap_or(0);
                    return eacces!("R{v} leaks addr into map");
                }
                let Some(map) = self.maps.get(reg.map as usize).cloned() else {
                    return Err(Reject::new(EINVAL, "map pointer without a map"));
                };
                if t == Access::Write && map.rdonly_prog {
                    return eacces!(
                        "write into map forbidden, value_size={} off={} size={}",
                        map.value_size,
                        off,
                        size
                    );
                }
                if t == Access::Read && map.wronly_prog {
                    return eacces!(
                        "read from map forbidden, value_size={} off={} size={}",
                        map.value_size,
                        off,
                        size
                    );
                }
                self.check_mem_region(r, off, size, map.value_size, false)?;
                if t == Access::Read
                    && let Some(v) = value
                {
                    let constant = match (&map.frozen_value, reg.v.var_off.is_const()) {
                        (Some(bytes), true) => {
                            let start = (i64::from(off) + reg.v.var_off.value() as i64) as usize;
                            bytes.get(start..start + size as usize).map(|b| {
                                let mut buf = [0u8; 8];
                                buf[..b.len()].copy_from_slice(b);
                                u64::from_le_bytes(buf)
                            })
                        }
                        _ => None,
                    };
                    *self.reg_mut(v) = match constant {
                        Some(c) => {
                            let c = if sx { sign_extend(c, size) } else { c };
                            Reg::known(c)
                        }
                        None => Reg::unknown(),
                    };
                }
            }
            RegType::Mem if !reg.maybe_null() => {
                let rdonly = reg.flags.has(RegFlags::RDONLY);
                if t == Access::Write && rdonly {
                    return eacces!("R{r} cannot write into {tstr}");
                }
                if value_is_ptr(self) {
                    let v = value.unwrap_or(0);
                    return eacces!("R{v} leaks addr into mem");
                }
                self.check_mem_region(r, off, size, reg.mem_size, false)?;
                if let Some(v) = value
                    && (t == Access::Read || rdonly)
                {
                    *self.reg_mut(v) = Reg::unknown();
                }
            }
            RegType::Ctx => {
                if value_is_ptr(self) {
                    let v = value.unwrap_or(0);
                    return eacces!("R{v} leaks addr into ctx");
                }
                self.check_ptr_off_reg(r, &reg, false)?;
                let field = if self.struct_ops.is_some() {
                    self.struct_ops_ctx_access(off, size, t == Access::Write)
                } else {
                    self.env.ctx_access(off, size, t == Access::Write)
                };
                let Some(field) = field else {
                    return eacces!("invalid bpf_context access off={off} size={size}");
                };
                if let Some(aux) = self.aux.get_mut(pc) {
                    aux.ctx = Some(crate::env::CtxAccess {
                        off,
                        size,
                        write: t == Access::Write,
                        field,
                    });
                }
                if t == Access::Read
                    && let Some(v) = value
                {
                    let nr = match field {
                        CtxField::Scalar => Reg::unknown(),
                        CtxField::PacketData => Reg::ptr(RegType::Packet),
                        CtxField::PacketEnd => Reg::ptr(RegType::PacketEnd),
                        CtxField::PacketMeta => Reg::ptr(RegType::PacketMeta),
                        CtxField::BtfId {
                            btf_id,
                            maybe_null,
                            trusted,
                        } => {
                            let mut p = Reg::ptr(RegType::BtfId);
                            p.btf_id = btf_id;
                            if trusted {
                                p.flags = p.flags.with(RegFlags::TRUSTED);
                            }
                            if maybe_null {
                                p.flags = p.flags.with(RegFlags::MAYBE_NULL);
                                p.id = self.next_id();
                            }
                            let ref_id = self.struct_ops_arg_ref(off)?;
                            if ref_id != 0 {
                                p.ref_obj_id = ref_id;
                            }
                            p
                        }
                        CtxField::Sock { kind, maybe_null } => {
                            let mut p = Reg::ptr(sock_reg_type(kind));
                            if maybe_null {
                                p.flags = RegFlags::MAYBE_NULL;
                                p.id = self.next_id();
                            }
                            p
                        }
                    };
                    *self.reg_mut(v) = nr;
                }
            }
            RegType::Stack => {
                self.check_stack_bounds(r, off, size, Src::Direct, t)?;
                match t {
                    Access::Read => self.check_stack_read(r, off, size, value)?,
                    Access::Write => self.check_stack_write(r, off, size, value, imm)?,
                }
            }
            RegType::Packet | RegType::PacketMeta => {
                use crate::env::PacketAccess;
                let pa = self.env.packet_access();
                if t == Access::Write && pa != PacketAccess::ReadWrite {
                    return eacces!("cannot write into packet");
                }
                if value_is_ptr(self) {
                    let v = value.unwrap_or(0);
                    return eacces!("R{v} leaks addr into packet");
                }
                self.check_packet_access(r, off, size, false)?;
                if t == Access::Read
                    && let Some(v) = value
                {
                    *self.reg_mut(v) = Reg::unknown();
                }
            }
            RegType::BtfId if !reg.maybe_null() => {
                self.check_ptr_to_btf_access(r, off, size, t, value)?;
                if t == Access::Read
                    && value.is_some()
                    && !crate::btf_ptr::is_trusted_reg(&reg)
                    && let Some(aux) = self.aux.get_mut(pc)
                {
                    aux.probe_mem = true;
                }
            }
            RegType::ConstMap if !reg.maybe_null() => {
                self.check_ptr_to_map_access(pc, r, &reg, off, size, t, value)?;
            }
            ty if ty.is_sk_pointer() && !reg.maybe_null() => {
                if t == Access::Write {
                    return eacces!("R{r} cannot write into {tstr}");
                }
                // check_sock_access
                if reg.v.smin < 0 {
                    return eacces!(
                        "R{r} min value is negative, either use unsigned index or do a if (index >=0) check."
                    );
                }
                let kind = match ty {
                    RegType::Socket => SockPtr::Socket,
                    RegType::TcpSock => SockPtr::TcpSock,
                    RegType::XdpSock => SockPtr::XdpSock,
                    _ => SockPtr::SockCommon,
                };
                if !crate::sock::valid_access(kind, off, size) {
                    return eacces!("R{r} invalid {tstr} access off={off} size={size}");
                }
                if let Some(v) = value {
                    *self.reg_mut(v) = Reg::unknown();
                }
            }
            _ => {
                return eacces!("R{r} invalid mem access '{tstr}'");
            }
        }
        // Narrow loads zero- or sign-extend.
        if t == Access::Read
            && let Some(v) = value
            && size < 8
            && self.reg(v).ty == RegType::Scalar
        {
            let mut sv = self.reg(v).v;
            if sx {
                sv.coerce_to_size_sx(size);
            } else {
                sv.coerce_to_size(size);
            }
            let reg = self.reg_mut(v);
            if reg.v != sv {
                reg.id = 0;
            }
            reg.v = sv;
        }
        Ok(())
    }

    /// `__check_ptr_off_reg`: the pointer must be unmodified (except a
    /// fixed offset where allowed).
    pub(crate) fn check_ptr_off_reg(&self, r: usize, reg: &Reg, fixed_off_ok: bool) -> Res<()> {
        let tstr = reg.type_str();
        if reg.off < 0 {
            return eacces!("negative offset {tstr} ptr R{r} off={} disallowed", reg.off);
        }
        if !fixed_off_ok && reg.off != 0 {
            return eacces!(
                "dereference of modified {tstr} ptr R{r} off={} disallowed",
                reg.off
            );
        }
        if !reg.v.var_off.is_const() || reg.v.var_off.value() != 0 {
            return eacces!(
                "variable {tstr} access var_off={} disallowed",
                reg.v.var_off
            );
        }
        Ok(())
    }

    /// `__check_mem_access`.
    fn mem_access_msg(
        &self,
        r: usize,
        off: i64,
        size: u32,
        mem_size: u32,
        zero_ok: bool,
    ) -> Res<()> {
        let size_ok = size > 0 || zero_ok;
        if off >= 0 && size_ok && (off as u64) + u64::from(size) <= u64::from(mem_size) {
            return Ok(());
        }
        let reg = self.reg(r);
        let off = off as i32;
        match reg.ty {
            RegType::MapKey => {
                eacces!("invalid access to map key, key_size={mem_size} off={off} size={size}")
            }
            RegType::MapValue => {
                eacces!("invalid access to map value, value_size={mem_size} off={off} size={size}")
            }
            RegType::Packet | RegType::PacketMeta | RegType::PacketEnd => eacces!(
                "invalid access to packet, off={off} size={size}, R{r}(id={},off={off},r={mem_size})",
                reg.id
            ),
            _ => eacces!("invalid access to memory, mem_size={mem_size} off={off} size={size}"),
        }
    }

    /// `check_mem_region_access`: variable offsets within `mem_size`.
    pub(crate) fn check_mem_region(
        &mut self,
        r: usize,
        off: i32,
        size: u32,
        mem_size: u32,
        zero_ok: bool,
    ) -> Res<()> {
        let reg = self.reg(r).clone();
        let smin = reg.v.smin;
        let off64 = i64::from(off);
        if smin < 0
            && (smin == i64::MIN
                || off64
                    .checked_add(smin)
                    .is_none_or(|x| x != i64::from(x as i32))
                || smin + off64 < 0)
        {
            return eacces!(
                "R{r} min value is negative, either use unsigned index or do a if (index >=0) check."
            );
        }
        if let Err(e) = self.mem_access_msg(r, smin + off64, size, mem_size, zero_ok) {
            self.verbose(&format!("{}\n", e.message));
            return eacces!("R{r} min value is outside of the allowed memory range");
        }
        if reg.v.umax >= MAX_VAR_OFF as u64 {
            return eacces!(
                "R{r} unbounded memory access, make sure to bounds check any such access"
            );
        }
        if let Err(e) = self.mem_access_msg(r, reg.v.umax as i64 + off64, size, mem_size, zero_ok) {
            self.verbose(&format!("{}\n", e.message));
            return eacces!("R{r} max value is outside of the allowed memory range");
        }
        Ok(())
    }

    /// `check_packet_access`.
    pub(crate) fn check_packet_access(
        &mut self,
        r: usize,
        off: i32,
        size: u32,
        zero_ok: bool,
    ) -> Res<()> {
        let reg = self.reg(r).clone();
        if reg.v.smin < 0 {
            return eacces!(
                "R{r} min value is negative, either use unsigned index or do a if (index >=0) check."
            );
        }
        let res = if reg.range < 0 {
            Err(Reject::new(EINVAL, ""))
        } else {
            self.mem_access_msg(r, i64::from(off), size, reg.range as u32, zero_ok)
        };
        if let Err(e) = res {
            if !e.message.is_empty() {
                self.verbose(&format!("{}\n", e.message));
            }
            return Err(Reject::new(
                e.errno,
                format!("R{r} offset is outside of the packet"),
            ));
        }
        Ok(())
    }

    /// The frame a stack pointer points into.
    fn stack_frame(&self, r: usize) -> usize {
        self.reg(r).frameno as usize
    }

    /// `check_stack_access_within_bounds`.
    pub(crate) fn check_stack_bounds(
        &mut self,
        r: usize,
        off: i32,
        size: u32,
        src: Src,
        t: Access,
    ) -> Res<()> {
        let reg = self.reg(r).clone();
        // Linux 6.18 words helper accesses by direction too (no "indirect access to").
        let _ = src;
        let extra = match t {
            Access::Read => " read from",
            Access::Write => " write to",
        };
        let (min_off, max_off) = if reg.v.var_off.is_const() {
            let m = reg.v.var_off.value() as i64 + i64::from(off);
            (m, m + i64::from(size))
        } else {
            if reg.v.smax >= MAX_VAR_OFF || reg.v.smin <= -MAX_VAR_OFF {
                return eacces!("invalid unbounded variable-offset{extra} stack R{r}");
            }
            (
                reg.v.smin + i64::from(off),
                reg.v.smax + i64::from(off) + i64::from(size),
            )
        };
        let fi = self.stack_frame(r);
        let allocated = self.cur.frames.get(fi).map_or(0, |f| f.allocated()) as i64;
        let min_valid = if t == Access::Write || self.privileges().allow_uninit_stack {
            -MAX_BPF_STACK
        } else {
            -allocated
        };
        // check_stack_slot_within_bounds is EACCES; running past the frame pointer
        // (into non-negative offsets) is EINVAL.
        let errno = if min_off < min_valid || min_off > -1 {
            Some(EACCES)
        } else if max_off > 0 {
            Some(EINVAL)
        } else {
            None
        };
        if let Some(errno) = errno {
            let msg = if reg.v.var_off.is_const() {
                format!("invalid{extra} stack R{r} off={off} size={size}")
            } else {
                format!(
                    "invalid variable-offset{extra} stack R{r} var_off={} off={off} size={size}",
                    reg.v.var_off
                )
            };
            return Err(Reject::new(errno, msg));
        }
        let need = (-min_off) as usize;
        if let Some(f) = self.cur.frames.get_mut(fi) {
            f.grow(need);
        }
        let sub = self.cur.frames.get(fi).map_or(0, |f| f.subprog);
        if let Some(d) = self.stack_depth.get_mut(sub) {
            *d = (*d).max(need);
        }
        Ok(())
    }

    /// Marks the slots holding bytes `min..max` (offsets from the frame
    /// pointer) of `frame` read.
    fn mark_stack_range_read(&mut self, frame: usize, min: i64, max: i64) {
        if min >= max || min >= 0 {
            return;
        }
        let first = ((-max).max(0) / 8) as usize;
        let last = ((-min - 1) / 8) as usize;
        for spi in first..=last {
            self.mark_read(frame, Loc::Slot(spi));
        }
    }

    fn slot_mut(&mut self, frame: usize, spi: usize) -> Option<&mut StackSlot> {
        self.cur
            .frames
            .get_mut(frame)
            .and_then(|f| f.stack.get_mut(spi))
    }

    /// `check_stack_write_fixed_off` / `_var_off`.
    fn check_stack_write(
        &mut self,
        r: usize,
        off: i32,
        size: u32,
        value: Option<usize>,
        imm: Option<i32>,
    ) -> Res<()> {
        let reg = self.reg(r).clone();
        let fi = reg.frameno as usize;
        let cur_frame = self.cur.curframe();
        if !reg.v.var_off.is_const() {
            // Variable offset: every byte it may touch becomes unknown data.
            let min = reg.v.smin + i64::from(off);
            let max = reg.v.smax + i64::from(off) + i64::from(size);
            let value_reg = value.map(|v| self.reg(v).clone());
            let zero = value_reg.as_ref().is_some_and(Reg::is_null) || imm == Some(0);
            if let Some(v) = &value_reg
                && v.is_pointer()
                && !self.privileges().allow_ptr_leaks
            {
                return eacces!("R{} leaks addr into stack", value.unwrap_or(0));
            }
            if let Some(v) = value
                && value_reg.as_ref().is_some_and(Reg::is_null)
            {
                // STACK_ZERO keeps the register's zero: it must stay zero.
                self.mark_precise(v)?;
            }
            for o in min..max {
                let slot = (-o - 1) as usize;
                let (spi, idx) = (slot / 8, slot % 8);
                let Some(s) = self.slot_mut(fi, spi) else {
                    continue;
                };
                if s.is_spill() && s.spilled.ty != RegType::Scalar {
                    // Corrupting a spilled pointer: it becomes unknown data.
                    for b in s.slot_type.iter_mut() {
                        *b = SlotType::Misc;
                    }
                }
                if s.is_spill() {
                    for b in s.slot_type.iter_mut() {
                        if *b == SlotType::Spill {
                            *b = SlotType::Misc;
                        }
                    }
                    s.spilled = Reg::default();
                }
                let new = if zero && s.slot_type[idx] == SlotType::Zero {
                    SlotType::Zero
                } else {
                    SlotType::Misc
                };
                s.slot_type[idx] = new;
            }
            return Ok(());
        }
        let off = off + reg.v.var_off.value() as i32;
        let slot = (-off - 1) as usize;
        let spi = slot / 8;
        let value_reg = value.map(|v| self.reg(v).clone());
        let leaks = self.privileges().allow_ptr_leaks;
        // Precision backtracking follows spills and fills through this slot;
        // a full 8-byte write screens older reads of it.
        self.record_stack_access(fi, spi);
        if size == 8 && off % 8 == 0 {
            self.mark_written(fi, Loc::Slot(spi));
        }
        {
            let Some(s) = self.slot_mut(fi, spi) else {
                return Err(Reject::new(EACCES, "stack slot out of range"));
            };
            if !leaks && s.is_spill() && s.spilled.ty != RegType::Scalar && size != 8 {
                return eacces!("attempt to corrupt spilled pointer on stack");
            }
        }
        let bpf_capable = self.privileges().bpf_capable;
        let aligned = off % 8 == 0;
        let spill = |s: &mut StackSlot, reg: Reg, size: u32| {
            s.spilled = reg;
            s.iter = IterSlot::default();
            for i in (8 - size as usize)..8 {
                s.slot_type[i] = SlotType::Spill;
            }
            // save_register_state: below a narrow spill, bytes become misc
            // unless zero or never written (mark_stack_slot_misc).
            for i in 0..(8 - size as usize) {
                let keep = matches!(s.slot_type[i], SlotType::Zero | SlotType::Invalid);
                if !keep {
                    s.slot_type[i] = SlotType::Misc;
                }
            }
        };
        match &value_reg {
            Some(v) if aligned && v.ty == RegType::Scalar && bpf_capable => {
                let mut v = v.clone();
                let width = 64 - v.v.umax.leading_zeros();
                let fits = width <= 8 * size;
                if fits && v.id == 0 && !v.v.var_off.is_const() {
                    let id = self.next_id();
                    if let Some(src) = value {
                        self.reg_mut(src).id = id;
                    }
                    v.id = id;
                }
                if !fits {
                    v.id = 0;
                }
                if let Some(s) = self.slot_mut(fi, spi) {
                    spill(s, v, size);
                }
            }
            None if aligned && imm.is_some() && bpf_capable => {
                let k = imm.unwrap_or(0);
                let v = Reg::known(k as i64 as u64);
                if let Some(s) = self.slot_mut(fi, spi) {
                    spill(s, v, size);
                }
            }
            Some(v) if v.is_pointer() => {
                if size != 8 {
                    return eacces!("invalid size of register spill");
                }
                if fi != cur_frame && v.ty == RegType::Stack {
                    return einval!(
                        "cannot spill pointers to stack into stack frame of the caller"
                    );
                }
                let v = v.clone();
                if let Some(s) = self.slot_mut(fi, spi) {
                    spill(s, v, 8);
                }
            }
            _ => {
                let zero = value_reg.as_ref().is_some_and(Reg::is_null)
                    || (value_reg.is_none() && imm == Some(0));
                if let Some(v) = value
                    && zero
                {
                    // STACK_ZERO keeps the register's zero: it must stay zero.
                    self.mark_precise(v)?;
                }
                let ty = if zero { SlotType::Zero } else { SlotType::Misc };
                if let Some(s) = self.slot_mut(fi, spi) {
                    // A data write destroys a spilled register or an iterator.
                    s.scrub_special();
                    for i in 0..size as usize {
                        s.slot_type[(slot - i) % 8] = ty;
                    }
                }
            }
        }
        Ok(())
    }

    /// `check_stack_read_fixed_off` / `_var_off`.
    fn check_stack_read(&mut self, r: usize, off: i32, size: u32, dst: Option<usize>) -> Res<()> {
        let reg = self.reg(r).clone();
        let fi = reg.frameno as usize;
        let allow_uninit = self.privileges().allow_uninit_stack;
        if !reg.v.var_off.is_const() {
            let min = reg.v.smin + i64::from(off);
            let max = reg.v.smax + i64::from(off) + i64::from(size);
            self.mark_stack_range_read(fi, min, max);
            let mut all_zero = true;
            for o in min..max {
                let slot = (-o - 1) as usize;
                let (spi, idx) = (slot / 8, slot % 8);
                let s = self.cur.frames.get(fi).and_then(|f| f.stack.get(spi));
                let ty = s.map_or(SlotType::Invalid, |s| s.slot_type[idx]);
                match ty {
                    SlotType::Zero => {}
                    SlotType::Misc => all_zero = false,
                    SlotType::Spill => {
                        let s = s.map(|s| &s.spilled);
                        if s.is_some_and(|x| x.ty == RegType::Scalar)
                            || self.privileges().allow_ptr_leaks
                        {
                            all_zero = false;
                        } else {
                            return eacces!(
                                "invalid read from stack R{r} var_off {}+{} size {}",
                                reg.v.var_off,
                                off,
                                size
                            );
                        }
                    }
                    SlotType::Invalid | SlotType::Iter => {
                        if !allow_uninit || ty == SlotType::Iter {
                            return eacces!(
                                "invalid read from stack R{r} var_off {}+{} size {}",
                                reg.v.var_off,
                                off,
                                size
                            );
                        }
                        all_zero = false;
                    }
                }
            }
            if let Some(d) = dst {
                *self.reg_mut(d) = if all_zero {
                    Reg::known(0)
                } else {
                    Reg::unknown()
                };
            }
            return Ok(());
        }
        let off = off + reg.v.var_off.value() as i32;
        let slot = (-off - 1) as usize;
        let spi = slot / 8;
        self.mark_stack_range_read(fi, i64::from(off), i64::from(off) + i64::from(size));
        self.record_stack_access(fi, spi);
        let Some(s) = self
            .cur
            .frames
            .get(fi)
            .and_then(|f| f.stack.get(spi))
            .cloned()
        else {
            return Err(Reject::new(
                EACCES,
                format!("invalid read from stack off {off}+0 size {size}"),
            ));
        };
        if s.is_spill() {
            let mut spill_size = 1usize;
            let mut i = 7;
            while i > 0 && s.slot_type[i - 1] == SlotType::Spill {
                spill_size += 1;
                i -= 1;
            }
            if size != 8 || spill_size != 8 {
                if s.spilled.ty != RegType::Scalar {
                    return eacces!("invalid size of register fill");
                }
                let Some(d) = dst else {
                    return Ok(());
                };
                // bpf_stack_narrow_access_ok: the low bytes of the spill.
                let narrow_ok = off.rem_euclid(8) == 0;
                if (size as usize) <= spill_size && narrow_ok {
                    let mut nr = s.spilled.clone();
                    let width = 64 - nr.v.umax.leading_zeros();
                    if width > size * 8 {
                        nr.id = 0;
                    }
                    *self.reg_mut(d) = nr;
                } else {
                    let mut spill_cnt = 0;
                    let mut zero_cnt = 0;
                    for i in 0..size as usize {
                        let idx = (slot - i) % 8;
                        match s.slot_type[idx] {
                            SlotType::Spill => spill_cnt += 1,
                            SlotType::Misc => {}
                            SlotType::Zero => zero_cnt += 1,
                            SlotType::Invalid if allow_uninit => {}
                            SlotType::Invalid | SlotType::Iter => {
                                return eacces!(
                                    "invalid read from stack off {off}+{i} size {size}"
                                );
                            }
                        }
                    }
                    *self.reg_mut(d) = if (spill_cnt == size as usize
                        && s.spilled.v.var_off.equals_const(0))
                        || zero_cnt == size as usize
                    {
                        Reg::known(0)
                    } else {
                        Reg::unknown()
                    };
                }
                return Ok(());
            }
            if let Some(d) = dst {
                *self.reg_mut(d) = s.spilled.clone();
            } else if s.spilled.is_pointer() && !self.privileges().allow_ptr_leaks {
                return eacces!("leaking pointer from stack off {off}");
            }
            return Ok(());
        }
        let mut all_zero = true;
        for i in 0..size as usize {
            let idx = (slot - i) % 8;
            match s.slot_type[idx] {
                SlotType::Misc => all_zero = false,
                SlotType::Zero => {}
                SlotType::Invalid if allow_uninit => all_zero = false,
                _ => return eacces!("invalid read from stack off {off}+{i} size {size}"),
            }
        }
        if let Some(d) = dst {
            *self.reg_mut(d) = if all_zero {
                Reg::known(0)
            } else {
                Reg::unknown()
            };
        }
        Ok(())
    }

    /// `check_stack_range_initialized` for helper arguments: `size` bytes
    /// at `reg + off`; with `write` the helper fills them (`MEM_UNINIT`).
    pub(crate) fn check_stack_range(
        &mut self,
        r: usize,
        off: i32,
        size: u32,
        zero_ok: bool,
        write: bool,
        dir_write: bool,
    ) -> Res<()> {
        let reg = self.reg(r).clone();
        if size == 0 && !zero_ok {
            return eacces!("invalid zero-sized read");
        }
        let t = if (write || dir_write) && reg.v.var_off.is_const() {
            Access::Write
        } else {
            Access::Read
        };
        self.check_stack_bounds(r, off, size, Src::Helper, t)?;
        let fi = reg.frameno as usize;
        let (min_off, max_off) = if reg.v.var_off.is_const() {
            let m = i64::from(off) + reg.v.var_off.value() as i64;
            (m, m)
        } else {
            (reg.v.smin + i64::from(off), reg.v.smax + i64::from(off))
        };
        let write = write && reg.v.var_off.is_const();
        if write {
            // The helper writes the bytes: they become unknown data.
            for o in min_off..min_off + i64::from(size) {
                let slot = (-o - 1) as usize;
                let (spi, idx) = (slot / 8, slot % 8);
                if let Some(s) = self.slot_mut(fi, spi) {
                    s.scrub_special();
                    s.slot_type[idx] = SlotType::Misc;
                }
            }
            return Ok(());
        }
        let leaks = self.privileges().allow_ptr_leaks;
        let allow_uninit = self.privileges().allow_uninit_stack;
        self.mark_stack_range_read(fi, min_off, max_off + i64::from(size));
        for o in min_off..max_off + i64::from(size) {
            let slot = (-o - 1) as usize;
            let (spi, idx) = (slot / 8, slot % 8);
            let s = self.cur.frames.get(fi).and_then(|f| f.stack.get(spi));
            let ok = match s {
                None => allow_uninit,
                Some(s) => match s.slot_type[idx] {
                    SlotType::Misc | SlotType::Zero => true,
                    SlotType::Spill => s.spilled.ty == RegType::Scalar || leaks,
                    SlotType::Invalid => allow_uninit,
                    SlotType::Iter => false,
                },
            };
            if !ok {
                let i = o - min_off;
                return if reg.v.var_off.is_const() {
                    eacces!(
                        "invalid indirect read from stack R{r} off {}+{} size {}",
                        min_off,
                        i,
                        size
                    )
                } else {
                    eacces!(
                        "invalid indirect read from stack R{r} var_off {}+{} size {}",
                        reg.v.var_off,
                        off,
                        size
                    )
                };
            }
        }
        Ok(())
    }
}

fn sign_extend(v: u64, size: u32) -> u64 {
    let bits = size * 8;
    if bits >= 64 {
        return v;
    }
    let shift = 64 - bits;
    (((v << shift) as i64) >> shift) as u64
}

/// `tnum_strn` as Linux 6.18 prints it: a constant as its value, else
/// `(value; mask)`.
pub(crate) fn tnum_text(t: crate::tnum::Tnum) -> String {
    if t.is_const() {
        format!("{}", t.value() as i64)
    } else {
        format!("{t}")
    }
}

/// The register type of a socket pointer view.
pub(crate) fn sock_reg_type(kind: SockPtr) -> RegType {
    match kind {
        SockPtr::Socket => RegType::Socket,
        SockPtr::SockCommon => RegType::SockCommon,
        SockPtr::TcpSock => RegType::TcpSock,
        SockPtr::XdpSock => RegType::XdpSock,
    }
}
