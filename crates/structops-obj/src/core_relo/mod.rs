//! CO-RE ("compile once, run everywhere") relocation as pure functions: libbpf's
//! `relo_core.c` and its candidate search in `libbpf.c`, reproduced for every relocation
//! kind.
//!
//! A BPF object's `.BTF.ext` carries [`CoreRelo`] records: "instruction N uses aspect K
//! of type T (in the object's own BTF) reached through access string `0:1:2`". Resolving
//! one means finding the types in the target BTF (the host's, e.g. vmlinux) whose name
//! agrees modulo a `___flavor` suffix, matching the access path against each, computing
//! the relocated value (an offset, a size, an existence bit, an enumerator value, ...)
//! and patching it into the instruction.
//!
//! - [`CoreTarget`] indexes a target BTF by essential name once; create one per target.
//! - [`CoreRelocator`] resolves the relocations of one object against one target,
//!   caching (and, like libbpf, narrowing) the candidates of each local type.
//! - [`patch`] applies a [`ReloResult`] to the program's instructions.
//!
//! ```
//! use structops_btf::{Btf, BtfBuilder, INT_SIGNED};
//! use structops_btf::ext::{CoreRelo, CoreReloKind};
//! use structops_isa::Insn;
//! use structops_obj::core_relo::{CoreRelocator, CoreTarget, PatchOutcome, patch};
//!
//! // The program was compiled against `struct task___v1 { int x; int pid; }`...
//! let mut l = BtfBuilder::new();
//! let int = l.add_int("int", 4, INT_SIGNED);
//! let local_task = l.add_struct("task___v1", 8, &[("x", int, 0), ("pid", int, 32)]);
//! let access = l.add_string("0:1");
//! let local = l.build();
//! // ...and runs on a host where `pid` moved to byte 16.
//! let mut t = BtfBuilder::new();
//! let int = t.add_int("int", 4, INT_SIGNED);
//! let long = t.add_int("long", 8, INT_SIGNED);
//! t.add_struct("task", 24, &[("y", long, 0), ("x", int, 64), ("pid", int, 128)]);
//! let target = t.build();
//!
//! let target = CoreTarget::new(&target);
//! let mut relocator = CoreRelocator::new(&local, &target);
//! let relo = CoreRelo {
//!     insn_off: 0,
//!     type_id: local_task,
//!     access_str_off: access,
//!     kind: CoreReloKind::FieldByteOffset,
//! };
//! let res = relocator.resolve(&relo)?;
//! assert_eq!((res.values.orig_val, res.values.new_val), (4, 16));
//!
//! // r0 = *(u32 *)(r1 + 4)  becomes  r0 = *(u32 *)(r1 + 16)
//! let mut insns = [Insn::new(0x61, 0, 1, 4, 0)];
//! let outcome = patch(&mut insns, 0, &res.values)?;
//! assert!(matches!(outcome, PatchOutcome::Patched { new: 16, .. }));
//! assert_eq!(insns[0].off, 16);
//! # Ok::<(), structops_obj::core_relo::CoreError>(())
//! ```

mod calc;
mod compat;
mod error;
mod matching;
mod patch;
mod spec;

use std::collections::HashMap;
use std::sync::Arc;

use structops_btf::ext::{CoreRelo, CoreReloKind};
use structops_btf::{Btf, TypeId};
use structops_isa::Insn;

pub use calc::ReloValues;
pub use error::{CoreError, E2BIG, EINVAL, ERANGE, Result};
pub use patch::{
    POISON_IMM, PatchOutcome, PatchedField, PoisonReason, check_insn, patch, relo_insn_index,
};
pub use spec::{Accessor, SPEC_MAX_LEN, Spec, parse_spec};

use compat::kind_core_compat;

/// A target BTF (the host's, e.g. vmlinux with ~150k types) indexed for CO-RE candidate
/// search. Build it once per target and share it between objects and relocations.
///
/// Candidates for a local type are the target types of a compatible kind (same kind, or
/// enum/enum64) whose *essential* name (the name up to a final `___flavor` suffix,
/// [`Btf::essential_name`]) equals the local type's essential name, in id order
/// (`bpf_core_add_cands`). The index reuses the BTF's own name index
/// ([`Btf::ids_by_name`]) for unflavored names and keeps a small extra map for the
/// flavored ones.
#[derive(Debug)]
pub struct CoreTarget<'t> {
    btf: &'t Btf,
    /// Essential name → ids of target types whose name carries a flavor suffix.
    flavored: Arc<FlavorIndex>,
}

/// The part of a [`CoreTarget`] index that takes a pass over every type of the target:
/// target types whose name carries a `___flavor` suffix, by essential name. A host
/// whose target BTF does not change (the running kernel's, or its own) builds it once
/// and shares it between loads ([`CoreTarget::with_index`]): for vmlinux that pass is
/// most of the cost of CO-RE.
#[derive(Debug, Default)]
pub struct FlavorIndex(HashMap<Box<str>, Vec<TypeId>>);

impl FlavorIndex {
    /// Indexes `btf` (one pass over its names).
    pub fn new(btf: &Btf) -> FlavorIndex {
        let mut flavored: HashMap<Box<str>, Vec<TypeId>> = HashMap::new();
        for (id, t) in btf.types().iter().enumerate().skip(1) {
            if t.name_off == 0 {
                continue;
            }
            let Ok(name) = btf.name(t.name_off) else {
                continue;
            };
            let ess = Btf::essential_name(name);
            if ess.len() != name.len() {
                flavored.entry(ess.into()).or_default().push(id as TypeId);
            }
        }
        FlavorIndex(flavored)
    }
}

impl<'t> CoreTarget<'t> {
    /// Indexes `btf` (one pass over its names).
    pub fn new(btf: &'t Btf) -> CoreTarget<'t> {
        CoreTarget::with_index(btf, Arc::new(FlavorIndex::new(btf)))
    }

    /// A target over `btf` with its prebuilt flavor index (which must have been built
    /// from this `btf`).
    pub fn with_index(btf: &'t Btf, flavored: Arc<FlavorIndex>) -> CoreTarget<'t> {
        // Build the BTF's own name index now rather than during the first relocation.
        let _ = btf.ids_by_name("");
        CoreTarget { btf, flavored }
    }

    /// The target BTF.
    pub fn btf(&self) -> &'t Btf {
        self.btf
    }

    /// Target type ids named `ess` modulo flavor, in id order.
    fn ids_by_essential_name(&self, ess: &str) -> Vec<TypeId> {
        // Types named exactly `ess` count only if `ess` itself has no flavor suffix
        // (a type named `a___b` has essential name `a`, not `a___b`).
        let plain: &[TypeId] = if Btf::essential_name(ess).len() == ess.len() {
            self.btf.ids_by_name(ess)
        } else {
            &[]
        };
        let flavored = self.flavored.0.get(ess).map_or(&[][..], |v| v.as_slice());
        let mut out = Vec::with_capacity(plain.len() + flavored.len());
        let (mut i, mut j) = (0, 0);
        while let (Some(&a), Some(&b)) = (plain.get(i), flavored.get(j)) {
            if a < b {
                out.push(a);
                i += 1;
            } else {
                out.push(b);
                j += 1;
            }
        }
        out.extend(plain.iter().skip(i));
        out.extend(flavored.iter().skip(j));
        out
    }

    /// The candidates for local type `local_id` of `local` (`bpf_core_find_cands` over a
    /// single target): same essential name, compatible kind, in id order. The local type
    /// must be named.
    pub fn candidates(&self, local: &Btf, local_id: TypeId) -> Result<Vec<TypeId>> {
        let lt = local.ty(local_id).map_err(CoreError::btf(local_id))?;
        let name = local.name(lt.name_off).map_err(CoreError::btf(local_id))?;
        if name.is_empty() {
            return Err(CoreError::AnonymousType {
                type_id: local_id,
                kind: lt_kind_name(lt),
            });
        }
        let ess = Btf::essential_name(name);
        Ok(self
            .ids_by_essential_name(ess)
            .into_iter()
            .filter(|&id| self.btf.ty(id).is_ok_and(|t| kind_core_compat(t, lt)))
            .collect())
    }
}

fn lt_kind_name(t: &structops_btf::Type) -> &'static str {
    spec::kind_name(t.kind())
}

/// Candidate lists per local root type id, shared by all relocations of one object
/// against one target. After a relocation matched some candidates, only those are kept
/// for later relocations of the same type, as libbpf does.
#[derive(Clone, Debug, Default)]
pub struct CandidateCache {
    by_local_id: HashMap<TypeId, Vec<TypeId>>,
}

impl CandidateCache {
    /// An empty cache.
    pub fn new() -> CandidateCache {
        CandidateCache::default()
    }

    /// The cached candidates of local type `local_id`, if it was looked up.
    pub fn get(&self, local_id: TypeId) -> Option<&[TypeId]> {
        self.by_local_id.get(&local_id).map(Vec::as_slice)
    }
}

/// A resolved relocation: the values to patch plus how they were found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReloResult {
    /// The relocation kind.
    pub kind: CoreReloKind,
    /// The values to hand to [`patch`].
    pub values: ReloValues,
    /// The access path against the local BTF.
    pub local_spec: Spec,
    /// The access path against the first matching candidate, or `None` if none matched
    /// (or for `TYPE_ID_LOCAL`, which needs no target).
    pub target_spec: Option<Spec>,
    /// Every matching candidate (target type ids, in id order); all agreed on the value.
    pub matched: Vec<TypeId>,
}

/// Resolves one relocation of an object whose BTF is `local` against `target`
/// (`bpf_core_resolve_relo` + `bpf_core_calc_relo_insn`). The access string is read from
/// `local`'s strings at `relo.access_str_off`. `cache` must be used for one (object,
/// target) pair only.
///
/// No matching candidate is not an error: existence and type relocations then give 0,
/// other field and enumerator relocations ask for the instruction to be poisoned
/// ([`ReloValues::poison`]). Candidates that match but disagree are an error.
pub fn resolve(
    local: &Btf,
    target: &CoreTarget<'_>,
    cache: &mut CandidateCache,
    relo: &CoreRelo,
) -> Result<ReloResult> {
    let local_id = relo.type_id;
    let lt = local.ty(local_id).map_err(CoreError::btf(local_id))?;
    let local_name = local.name(lt.name_off).map_err(CoreError::btf(local_id))?;

    let mut cands = Vec::new();
    if relo.kind != CoreReloKind::TypeIdLocal {
        cands = match cache.by_local_id.get(&local_id) {
            Some(c) => c.clone(),
            None => {
                let c = target.candidates(local, local_id)?;
                cache.by_local_id.insert(local_id, c.clone());
                c
            }
        };
    }

    let access = local
        .name(relo.access_str_off)
        .map_err(|_| CoreError::InvalidAccessString {
            type_id: local_id,
            access: String::new(),
            reason: "access string offset is not a string",
        })?;
    let local_spec = parse_spec(local, local_id, relo.kind, access)?;

    if relo.kind == CoreReloKind::TypeIdLocal {
        // The type id may change when objects are linked, so it is not checked.
        let values = ReloValues {
            orig_val: u64::from(local_id),
            new_val: u64::from(local_id),
            validate: false,
            ..ReloValues::default()
        };
        return Ok(ReloResult {
            kind: relo.kind,
            values,
            local_spec,
            target_spec: None,
            matched: Vec::new(),
        });
    }
    if local_name.is_empty() {
        return Err(CoreError::AnonymousType {
            type_id: local_id,
            kind: relo.kind.as_str(),
        });
    }

    let targ = target.btf();
    let mut best: Option<(ReloValues, Spec)> = None;
    let mut matched = Vec::new();
    for &cand in &cands {
        let Some(cand_spec) = matching::spec_match(local, &local_spec, targ, cand)? else {
            continue;
        };
        let values = calc::calc_relo(local, &local_spec, Some((targ, &cand_spec)))?;
        match &best {
            None => best = Some((values, cand_spec)),
            Some((first, first_spec)) => {
                if cand_spec.bit_offset != first_spec.bit_offset {
                    return Err(CoreError::FieldOffsetAmbiguity {
                        type_id: local_id,
                        first: first_spec.bit_offset,
                        other: cand_spec.bit_offset,
                    });
                }
                if values.poison != first.poison || values.new_val != first.new_val {
                    return Err(CoreError::DecisionAmbiguity {
                        type_id: local_id,
                        first_poison: first.poison,
                        first_val: first.new_val,
                        other_poison: values.poison,
                        other_val: values.new_val,
                    });
                }
            }
        }
        matched.push(cand);
    }
    if !matched.is_empty() {
        cache.by_local_id.insert(local_id, matched.clone());
    }
    let (values, target_spec) = match best {
        Some((values, spec)) => (values, Some(spec)),
        None => (calc::calc_relo(local, &local_spec, None)?, None),
    };
    Ok(ReloResult {
        kind: relo.kind,
        values,
        local_spec,
        target_spec,
        matched,
    })
}

/// Resolves and applies the CO-RE relocations of one object against one target, with a
/// shared candidate cache (what libbpf's `bpf_object__relocate_core` does per object).
#[derive(Debug)]
pub struct CoreRelocator<'a> {
    local: &'a Btf,
    target: &'a CoreTarget<'a>,
    cache: CandidateCache,
}

impl<'a> CoreRelocator<'a> {
    /// A relocator for an object with BTF `local` against `target`.
    pub fn new(local: &'a Btf, target: &'a CoreTarget<'a>) -> CoreRelocator<'a> {
        CoreRelocator {
            local,
            target,
            cache: CandidateCache::new(),
        }
    }

    /// Resolves one relocation (see [`resolve`]).
    pub fn resolve(&mut self, relo: &CoreRelo) -> Result<ReloResult> {
        resolve(self.local, self.target, &mut self.cache, relo)
    }

    /// Checks the instruction, resolves `relo` and patches instruction `insn_idx` of
    /// `insns` (the program's instructions; `insn_idx` is `relo.insn_off / 8` minus the
    /// program's first instruction in its section).
    pub fn relocate(
        &mut self,
        insns: &mut [Insn],
        insn_idx: usize,
        relo: &CoreRelo,
    ) -> Result<(ReloResult, PatchOutcome)> {
        check_insn(insns, insn_idx)?;
        let res = self.resolve(relo)?;
        let outcome = patch(insns, insn_idx, &res.values)?;
        Ok((res, outcome))
    }

    /// The candidate cache (for inspection).
    pub fn cache(&self) -> &CandidateCache {
        &self.cache
    }
}

#[cfg(test)]
mod tests;
