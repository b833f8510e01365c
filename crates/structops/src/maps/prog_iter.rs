//! Program-side iteration over a map's elements, for `bpf_for_each_map_elem`
//! (`bpf_for_each_array_elem` and `bpf_for_each_hash_elem` in the kernel).

use std::ptr::NonNull;

use crossbeam_epoch::Guard;

use super::hash::NodeVal;
use super::{Map, MapImpl, MapType};
use crate::errno::Errno;

impl Map {
    /// Calls `f(key, value)` for every element, with the calling CPU's copy of per-CPU
    /// values, until `f` returns false; returns how many elements `f` was called for
    /// (the one that stopped the walk included), as the kernel's helper counts them.
    ///
    /// Arrays visit every index (keys are native-endian `u32`s); hash maps visit their
    /// elements in bucket order. Value pointers stay valid while `guard` is held. Other
    /// map types are `EINVAL` (the verifier refuses the call for them).
    pub fn for_each_elem(
        &self,
        guard: &Guard,
        mut f: impl FnMut(&[u8], NonNull<u8>) -> bool,
    ) -> Result<u32, Errno> {
        let cpu = self.prog_cpu();
        let mut n = 0u32;
        match (&self.imp, self.map_type) {
            (MapImpl::Array(a), MapType::Array | MapType::PercpuArray) => {
                for i in 0..self.max_entries {
                    let Some(p) = a.elem_ptr(i, cpu).and_then(NonNull::new) else {
                        break;
                    };
                    n += 1;
                    if !f(&i.to_ne_bytes(), p) {
                        break;
                    }
                }
            }
            (
                MapImpl::Hash(h),
                MapType::Hash | MapType::PercpuHash | MapType::LruHash | MapType::LruPercpuHash,
            ) => {
                h.for_each(guard, |node| {
                    if let NodeVal::Map(_) = node.val() {
                        return true;
                    }
                    let Some(p) = NonNull::new(h.value_ptr(node, cpu)) else {
                        return true;
                    };
                    n += 1;
                    f(node.key(), p)
                });
            }
            _ => return Err(Errno::EINVAL),
        }
        Ok(n)
    }
}
