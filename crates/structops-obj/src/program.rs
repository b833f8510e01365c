//! Programs: the functions of executable sections, with their instructions, relocation
//! records and `.BTF.ext` info (libbpf's `struct bpf_program`).

use structops_btf::ext::{CoreRelo, FuncInfo, LineInfo};
use structops_isa::Insn;

use crate::section::SecDef;
use crate::types::{AttachType, ProgType};

/// The `R_BPF_*` relocation types clang emits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RelocType {
    /// `R_BPF_NONE`.
    None,
    /// `R_BPF_64_64`: `ld_imm64` of a map or global.
    Bpf64_64,
    /// `R_BPF_64_ABS64`: a 64-bit data word.
    Abs64,
    /// `R_BPF_64_ABS32`: a 32-bit data word.
    Abs32,
    /// `R_BPF_64_NODYLD32`: a 32-bit word of `.BTF`/`.BTF.ext`.
    NoDyld32,
    /// `R_BPF_64_32`: a call's `imm`.
    Bpf64_32,
    /// Anything else.
    Other(u32),
}

impl RelocType {
    /// Decodes `ELF64_R_TYPE`.
    pub fn from_raw(raw: u32) -> RelocType {
        match raw {
            0 => RelocType::None,
            1 => RelocType::Bpf64_64,
            2 => RelocType::Abs64,
            3 => RelocType::Abs32,
            4 => RelocType::NoDyld32,
            10 => RelocType::Bpf64_32,
            n => RelocType::Other(n),
        }
    }
}

/// One `.rel<section>` record that applies to a program, as it is in the ELF file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ElfReloc {
    /// Instruction index, relative to the program's first instruction.
    pub insn_idx: usize,
    /// Symbol index.
    pub symbol: u32,
    /// Relocation type.
    pub r_type: RelocType,
}

/// What a relocation does, as libbpf classifies it (`enum reloc_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelocKind {
    /// `RELO_LD64`: `ld_imm64` of a BTF-defined map (becomes `BPF_PSEUDO_MAP_FD`).
    Map {
        /// Map index.
        map: usize,
    },
    /// `RELO_CALL`: a BPF-to-BPF call.
    Call {
        /// `st_value` of the target symbol.
        sym_off: u64,
    },
    /// `RELO_DATA`: `ld_imm64` of a global variable (becomes `BPF_PSEUDO_MAP_VALUE`).
    Data {
        /// Map index.
        map: usize,
        /// `st_value` of the symbol (added to the instruction's own offset).
        sym_off: u64,
    },
    /// `RELO_EXTERN_LD64`: `ld_imm64` of an extern variable.
    ExternLd64 {
        /// Extern index.
        ext: usize,
    },
    /// `RELO_EXTERN_CALL`: a kfunc call.
    ExternCall {
        /// Extern index.
        ext: usize,
    },
    /// `RELO_SUBPROG_ADDR`: `ld_imm64` of a subprogram's address (callbacks).
    SubprogAddr {
        /// `st_value` of the target symbol.
        sym_off: u64,
    },
    /// `RELO_CORE`: a CO-RE relocation recorded by [`crate::Object::relocate_core`].
    Core {
        /// The record.
        relo: CoreRelo,
    },
}

impl RelocKind {
    /// libbpf's ordering of relocation types (for sorting ties at one instruction).
    pub(crate) fn order(&self) -> u8 {
        match self {
            RelocKind::Map { .. } => 0,
            RelocKind::Call { .. } => 1,
            RelocKind::Data { .. } => 2,
            RelocKind::ExternLd64 { .. } => 3,
            RelocKind::ExternCall { .. } => 4,
            RelocKind::SubprogAddr { .. } => 5,
            RelocKind::Core { .. } => 6,
        }
    }
}

/// A classified relocation of one instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Relocation {
    /// Instruction index, relative to the program's first instruction.
    pub insn_idx: usize,
    /// What to do.
    pub kind: RelocKind,
}

/// A function of an executable section.
#[derive(Clone, Debug)]
pub struct Program {
    pub(crate) name: String,
    pub(crate) section: String,
    pub(crate) section_index: usize,
    pub(crate) insn_off: usize,
    pub(crate) insns: Vec<Insn>,
    pub(crate) elf_relocs: Vec<ElfReloc>,
    pub(crate) relos: Vec<Relocation>,
    pub(crate) sec_def: Option<&'static SecDef>,
    pub(crate) prog_type: ProgType,
    pub(crate) expected_attach_type: AttachType,
    pub(crate) autoload: bool,
    pub(crate) autoattach: bool,
    pub(crate) sym_global: bool,
    pub(crate) mark_btf_static: bool,
    pub(crate) is_subprog: bool,
    pub(crate) attach_btf_id: u32,
    pub(crate) attach_btf_obj_fd: i32,
    pub(crate) func_info: Vec<FuncInfo>,
    pub(crate) line_info: Vec<LineInfo>,
    pub(crate) core_relos: Vec<CoreRelo>,
}

impl Program {
    /// `bpf_program__name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `bpf_program__section_name` (without a leading `?`).
    pub fn section_name(&self) -> &str {
        &self.section
    }

    /// The ELF section index.
    pub fn section_index(&self) -> usize {
        self.section_index
    }

    /// The program's first instruction's index within its section.
    pub fn section_insn_offset(&self) -> usize {
        self.insn_off
    }

    /// `bpf_program__type`.
    pub fn prog_type(&self) -> ProgType {
        self.prog_type
    }

    /// `bpf_program__set_type`.
    pub fn set_prog_type(&mut self, ty: ProgType) {
        self.prog_type = ty;
    }

    /// `bpf_program__expected_attach_type` (for struct_ops programs: the member index,
    /// once [`crate::Object::init_struct_ops`] has run).
    pub fn expected_attach_type(&self) -> AttachType {
        self.expected_attach_type
    }

    /// `bpf_program__set_expected_attach_type`.
    pub fn set_expected_attach_type(&mut self, ty: AttachType) {
        self.expected_attach_type = ty;
    }

    /// The matching entry of libbpf's section table, if any.
    pub fn sec_def(&self) -> Option<&'static SecDef> {
        self.sec_def
    }

    /// The `BPF_PROG_LOAD` flags the section implies (sleepable, XDP frags).
    pub fn prog_flags(&self) -> u32 {
        self.sec_def.map_or(0, |d| d.prog_flags())
    }

    /// `bpf_program__insn_cnt` before relocation: the program's own instructions.
    pub fn insn_cnt(&self) -> usize {
        self.insns.len()
    }

    /// The program's own instructions (after [`crate::Object::relocate_core`], with
    /// CO-RE applied).
    pub fn insns(&self) -> &[Insn] {
        &self.insns
    }

    /// `bpf_program__autoload`.
    pub fn autoload(&self) -> bool {
        self.autoload
    }

    /// `bpf_program__set_autoload`.
    pub fn set_autoload(&mut self, autoload: bool) {
        self.autoload = autoload;
    }

    /// `bpf_program__autoattach`.
    pub fn autoattach(&self) -> bool {
        self.autoattach
    }

    /// Is this a subprogram (a function of `.text`), never loaded on its own?
    pub fn is_subprog(&self) -> bool {
        self.is_subprog
    }

    /// Is the function symbol global or weak?
    pub fn is_global(&self) -> bool {
        self.sym_global
    }

    /// Is it global but hidden, so libbpf marks its BTF `FUNC` static?
    pub fn is_hidden(&self) -> bool {
        self.mark_btf_static
    }

    /// For struct_ops programs after [`crate::Object::init_struct_ops`]: the kernel ops
    /// type id.
    pub fn attach_btf_id(&self) -> u32 {
        self.attach_btf_id
    }

    /// The BTF object fd of [`Program::attach_btf_id`] (0 for vmlinux).
    pub fn attach_btf_obj_fd(&self) -> i32 {
        self.attach_btf_obj_fd
    }

    /// The raw `.rel<section>` records of this program.
    pub fn elf_relocations(&self) -> &[ElfReloc] {
        &self.elf_relocs
    }

    /// The classified relocations, sorted by instruction.
    pub fn relocations(&self) -> &[Relocation] {
        &self.relos
    }

    /// `.BTF.ext` func_info records of this program (offsets in bytes from the start of
    /// the section, as in the file).
    pub fn func_info(&self) -> &[FuncInfo] {
        &self.func_info
    }

    /// `.BTF.ext` line_info records of this program (section byte offsets).
    pub fn line_info(&self) -> &[LineInfo] {
        &self.line_info
    }

    /// `.BTF.ext` CO-RE relocation records of this program (section byte offsets).
    pub fn core_relos(&self) -> &[CoreRelo] {
        &self.core_relos
    }

    /// Does section instruction index `idx` belong to this program?
    pub(crate) fn contains(&self, idx: usize) -> bool {
        idx >= self.insn_off && idx < self.insn_off + self.insns.len()
    }
}

/// Binary search over relocations sorted by instruction index.
pub(crate) fn find_relo(relos: &[Relocation], idx: usize) -> Option<&Relocation> {
    let i = relos.partition_point(|r| r.insn_idx < idx);
    relos.get(i).filter(|r| r.insn_idx == idx)
}

/// Sorts relocations as libbpf's `cmp_relocs` does (instruction, then type).
pub(crate) fn sort_relos(relos: &mut [Relocation]) {
    relos.sort_by_key(|r| (r.insn_idx, r.kind.order()));
}
