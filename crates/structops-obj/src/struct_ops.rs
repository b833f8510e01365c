//! struct_ops maps: the variables of `.struct_ops` / `.struct_ops.link`, their member →
//! program bindings, and the kernel-side value (`kern_vdata`) laid out for a target BTF.
//!
//! Mirrors libbpf's `init_struct_ops_maps`, `bpf_object__collect_st_ops_relos`,
//! `find_struct_ops_kern_types` and `bpf_map__init_kern_struct_ops`.

use structops_btf::{Btf, Kind, TypeId, TypeKind};

use crate::error::StructOpsError;

/// Prefix of the kernel's struct_ops map value types (`bpf_struct_ops_<name>`).
pub const VALUE_PREFIX: &str = "bpf_struct_ops_";

/// One struct_ops map's local view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StructOps {
    pub(crate) type_id: TypeId,
    pub(crate) type_name: String,
    pub(crate) kernel_type_name: String,
    pub(crate) data: Vec<u8>,
    /// The current binding of each member (libbpf's shadow type value).
    pub(crate) progs: Vec<Option<usize>>,
    /// libbpf's `st_ops->progs`: the bindings from relocations, updated by
    /// [`crate::Object::init_struct_ops`].
    pub(crate) declared: Vec<Option<usize>>,
    pub(crate) kern: Option<KernStructOps>,
}

/// The kernel-side layout of a struct_ops map value, computed against a target BTF by
/// [`crate::Object::init_struct_ops`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernStructOps {
    /// Id of the kernel ops type (for example `tcp_congestion_ops`) in the target BTF;
    /// programs bound to members get it as `attach_btf_id`.
    pub type_id: TypeId,
    /// Id of `bpf_struct_ops_<name>` in the target BTF (the map's
    /// `btf_vmlinux_value_type_id`).
    pub value_type_id: TypeId,
    /// Byte offset of the ops struct (the `data` member) inside the value type.
    pub data_offset: u32,
    /// The value bytes: zeroes except the copied non-function members.
    pub vdata: Vec<u8>,
    /// Per local member: where its program handle goes in `vdata` (`kern_func_off`),
    /// for members bound to a program.
    pub func_offsets: Vec<Option<u32>>,
    /// Per local member: the index of the kernel member matched by name, if any.
    pub kernel_members: Vec<Option<u32>>,
}

impl StructOps {
    /// The BTF id of the local ops type (the variable's type) in the object's BTF.
    pub fn type_id(&self) -> TypeId {
        self.type_id
    }

    /// The local type name, possibly with a `___flavor` suffix.
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// The kernel type name: the local name without its flavor suffix.
    pub fn kernel_type_name(&self) -> &str {
        &self.kernel_type_name
    }

    /// The variable's bytes as compiled (function pointer slots are zero).
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Per member of the local type: the index of the program bound to it (the
    /// current value of libbpf's shadow type).
    pub fn programs(&self) -> &[Option<usize>] {
        &self.progs
    }

    /// Per member: the program libbpf records for it (`st_ops->progs`): from the
    /// relocations, then as [`crate::Object::init_struct_ops`] settled it.
    pub fn declared_programs(&self) -> &[Option<usize>] {
        &self.declared
    }

    /// Binds member `member` to program `prog` (or clears it), as writing the shadow
    /// type of `bpf_map__initial_value` does in libbpf. Returns false when there is no
    /// such member.
    pub fn set_program(&mut self, member: usize, prog: Option<usize>) -> bool {
        match self.progs.get_mut(member) {
            Some(slot) => {
                *slot = prog;
                true
            }
            None => false,
        }
    }

    /// The kernel-side layout, once computed.
    pub fn kern(&self) -> Option<&KernStructOps> {
        self.kern.as_ref()
    }

    /// The value to write into the kernel map: `vdata` with each bound member's program
    /// handle stored as a native 8-byte word, as libbpf's `bpf_map_prepare_vdata` does.
    pub fn kern_value(&self, prog_handle: &dyn Fn(usize) -> i64) -> Option<Vec<u8>> {
        let kern = self.kern.as_ref()?;
        let mut v = kern.vdata.clone();
        for (i, prog) in self.declared.iter().enumerate() {
            let (Some(p), Some(Some(off))) = (prog, kern.func_offsets.get(i)) else {
                continue;
            };
            let off = *off as usize;
            if let Some(slot) = v.get_mut(off..off + 8) {
                slot.copy_from_slice(&prog_handle(*p).to_ne_bytes());
            }
        }
        Some(v)
    }
}

/// libbpf's `btf__resolve_type`: follow typedefs, modifiers and `VAR`s.
pub(crate) fn resolve_type(btf: &Btf, mut id: TypeId) -> Option<TypeId> {
    for _ in 0..64 {
        let t = btf.ty(id).ok()?;
        match t.kind {
            TypeKind::Typedef { target }
            | TypeKind::Const { target }
            | TypeKind::Volatile { target }
            | TypeKind::Restrict { target }
            | TypeKind::TypeTag { target, .. }
            | TypeKind::Var { ty: target, .. } => id = target,
            _ => return Some(id),
        }
    }
    None
}

/// libbpf's `skip_mods_and_typedefs`, returning the resolved id and kind.
pub(crate) fn skip_mods(btf: &Btf, id: TypeId) -> Option<(TypeId, Kind)> {
    let (rid, t) = btf.resolved_ty(id).ok()?;
    Some((rid, t.kind()))
}

/// libbpf's `resolve_func_ptr`: does `id` resolve to a pointer to a function prototype?
pub(crate) fn is_func_ptr(btf: &Btf, id: TypeId) -> bool {
    matches!(btf.func_ptr_proto(id), Ok(Some(_)))
}

/// The kernel types a struct_ops map binds to: `(type_id, value_type_id, data member
/// byte offset)`, as `find_struct_ops_kern_types` finds them.
pub(crate) fn find_kern_types(
    target: &Btf,
    kernel_type_name: &str,
) -> Result<(TypeId, TypeId, u32), StructOpsError> {
    let vname = format!("{VALUE_PREFIX}{kernel_type_name}");
    let vtype_id = target
        .find_by_name_kind(&vname, Kind::Struct)
        .ok_or_else(|| StructOpsError::KernelTypeMissing {
            name: vname.clone(),
        })?;
    let type_id = target
        .find_by_name_kind(kernel_type_name, Kind::Struct)
        .ok_or_else(|| StructOpsError::KernelTypeMissing {
            name: kernel_type_name.to_string(),
        })?;
    let vt = target
        .ty(vtype_id)
        .ok()
        .and_then(|t| t.composite())
        .ok_or_else(|| StructOpsError::KernelTypeMissing {
            name: vname.clone(),
        })?;
    let data_member =
        vt.members
            .iter()
            .find(|m| m.ty == type_id)
            .ok_or(StructOpsError::NoDataMember {
                value_type: vname.clone(),
            })?;
    // libbpf divides the raw member offset, ignoring the kind flag.
    Ok((type_id, vtype_id, data_member.offset / 8))
}
