//! BTF objects: loaded program BTF (`BPF_BTF_LOAD`) and the host's own BTF, which plays
//! the role of the kernel's vmlinux BTF.

use std::sync::Arc;

use structops_btf::Btf;

use crate::object::{Handle, KernelObject, ObjHeader, ObjKind};

/// A BTF object in the runtime.
#[derive(Debug)]
pub struct BtfObject {
    header: ObjHeader,
    btf: Arc<Btf>,
    raw: Box<[u8]>,
    name: String,
    kernel_btf: bool,
    /// The CO-RE flavor index of `btf`, built on the first load that relocates
    /// against it and shared by later ones.
    core_index: std::sync::OnceLock<Arc<structops_obj::core_relo::FlavorIndex>>,
}

/// A user reference to a BTF object (the analog of a BTF fd).
pub type BtfHandle = Handle<BtfObject>;

impl BtfObject {
    pub(crate) fn new(
        header: ObjHeader,
        btf: Arc<Btf>,
        raw: Box<[u8]>,
        name: String,
        kernel_btf: bool,
    ) -> BtfObject {
        BtfObject {
            header,
            btf,
            raw,
            name,
            kernel_btf,
            core_index: std::sync::OnceLock::new(),
        }
    }

    /// The CO-RE flavor index of the types, built once.
    pub(crate) fn core_index(&self) -> Arc<structops_obj::core_relo::FlavorIndex> {
        self.core_index
            .get_or_init(|| Arc::new(structops_obj::core_relo::FlavorIndex::new(&self.btf)))
            .clone()
    }

    /// The object's id.
    pub fn id(&self) -> u32 {
        self.header.id()
    }

    /// The parsed types.
    pub fn btf(&self) -> &Arc<Btf> {
        &self.btf
    }

    /// The raw bytes, as loaded (what `bpf_btf_info.btf` receives).
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// Is this the host's BTF (`btf_is_kernel`)?
    pub fn is_kernel(&self) -> bool {
        self.kernel_btf
    }

    /// `BPF_OBJ_GET_INFO_BY_FD` on a BTF object.
    pub fn info(&self) -> BtfInfo {
        BtfInfo {
            id: self.id(),
            name: self.name.clone(),
            btf_size: self.raw.len() as u32,
            kernel_btf: self.kernel_btf,
        }
    }
}

impl KernelObject for BtfObject {
    const KIND: ObjKind = ObjKind::Btf;
    fn header(&self) -> &ObjHeader {
        &self.header
    }
}

/// The useful subset of `struct bpf_btf_info`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BtfInfo {
    /// `id`.
    pub id: u32,
    /// `name`: `"vmlinux"` for the host BTF, empty for loaded BTF.
    pub name: String,
    /// `btf_size`: bytes of raw BTF.
    pub btf_size: u32,
    /// `kernel_btf`.
    pub kernel_btf: bool,
}
