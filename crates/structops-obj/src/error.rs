//! Errors, one enum per stage, and [`Error`], which adds the context (section, map,
//! program, extern) the stage ran in.
//!
//! [`Error::libbpf_errno`] gives the (positive) error code libbpf 1.5 returns for the
//! same input, so differential tests can compare failures too.

use structops_btf::{BtfError, Kind};

use crate::types::MapType;

/// `EPERM`... the errno values libbpf returns here.
pub mod errno {
    /// `ENOENT`.
    pub const ENOENT: i32 = 2;
    /// `ESRCH`.
    pub const ESRCH: i32 = 3;
    /// `ENOMEM`.
    pub const ENOMEM: i32 = 12;
    /// `EINVAL`.
    pub const EINVAL: i32 = 22;
    /// `ERANGE`.
    pub const ERANGE: i32 = 34;
    /// `E2BIG`.
    pub const E2BIG: i32 = 7;
    /// `EOPNOTSUPP` (= `ENOTSUP` on Linux).
    pub const EOPNOTSUPP: i32 = 95;
    /// `LIBBPF_ERRNO__LIBELF`.
    pub const LIBELF: i32 = 4000;
    /// `LIBBPF_ERRNO__FORMAT`.
    pub const FORMAT: i32 = 4001;
    /// `LIBBPF_ERRNO__ENDIAN`.
    pub const ENDIAN: i32 = 4003;
    /// `LIBBPF_ERRNO__RELOC`.
    pub const RELOC: i32 = 4005;
}

/// Reading the ELF container.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    /// No ELF magic.
    #[error("not an ELF file")]
    NotElf,
    /// An ELF32 (or unknown class) file.
    #[error("not a 64-bit ELF object (class {class})")]
    Not64Bit {
        /// `EI_CLASS`.
        class: u8,
    },
    /// The file header could not be read.
    #[error("bad ELF header: {reason}")]
    BadHeader {
        /// What the reader said.
        reason: String,
    },
    /// Not a relocatable object for `EM_BPF` (or `EM_NONE`, which old LLVM wrote).
    #[error("not a BPF relocatable object (e_type {e_type}, e_machine {machine})")]
    NotBpf {
        /// `e_type`.
        e_type: u16,
        /// `e_machine`.
        machine: u16,
    },
    /// The section header table could not be read.
    #[error("bad section header table: {reason}")]
    BadSectionTable {
        /// What the reader said.
        reason: String,
    },
    /// The section-name string table is missing or has no data.
    #[error("no section name string table")]
    NoSectionNames,
    /// A section's name offset is invalid.
    #[error("section {index}: bad name")]
    BadSectionName {
        /// Section index.
        index: usize,
    },
    /// No `SHT_SYMTAB` (a stripped object).
    #[error("no symbol table (stripped object?)")]
    NoSymbolTable,
    /// More than one `SHT_SYMTAB`.
    #[error("multiple symbol tables (sections {first} and {second})")]
    MultipleSymbolTables {
        /// First symbol table.
        first: usize,
        /// Second symbol table.
        second: usize,
    },
    /// The symbol table's string table link is invalid.
    #[error("symbol string table (section {index}) missing or invalid")]
    BadStrtab {
        /// The `sh_link` of the symbol table.
        index: usize,
    },
    /// A section's bytes lie outside the file.
    #[error("section {index}: data outside the file")]
    SectionData {
        /// Section index.
        index: usize,
    },
    /// A malformed `SHT_REL` section.
    #[error("relocation section {index}: {reason}")]
    BadRelSection {
        /// Section index.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Splitting executable sections into programs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProgramError {
    /// A function symbol without a readable name.
    #[error("symbol at offset {offset} has no name")]
    NoName {
        /// Byte offset in the section.
        offset: u64,
    },
    /// The function extends past its section.
    #[error("program at offset {offset} (size {size}) crosses the section boundary")]
    CrossesSection {
        /// Byte offset.
        offset: u64,
        /// Byte size.
        size: u64,
    },
    /// A static function outside `.text`: libbpf refuses it.
    #[error("static programs are not supported")]
    Static,
    /// Empty, or not a whole number of instructions.
    #[error("corrupted program: offset {offset}, size {size}")]
    Corrupted {
        /// Byte offset.
        offset: u64,
        /// Byte size.
        size: u64,
    },
}

/// Decoding map definitions and creating internal maps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// A BTF query failed.
    #[error("attr '{attr}': {source}")]
    Btf {
        /// The attribute being decoded.
        attr: String,
        /// The BTF error.
        source: BtfError,
    },
    /// An attribute had the wrong BTF kind.
    #[error("attr '{attr}': expected {expected}, got {actual}")]
    AttrKind {
        /// Attribute name.
        attr: String,
        /// Expected kind.
        expected: &'static str,
        /// Kind found.
        actual: Kind,
    },
    /// `__ulong` attribute is not a one-enumerator enum.
    #[error("attr '{attr}': invalid __ulong")]
    InvalidUlong {
        /// Attribute name.
        attr: String,
    },
    /// A definition member without a readable name.
    #[error("invalid field #{index}")]
    BadField {
        /// Member index.
        index: usize,
    },
    /// Two attributes disagree on a size.
    #[error("conflicting {what} size {old} != {new}")]
    ConflictingSize {
        /// `key` or `value`.
        what: &'static str,
        /// Size set first.
        old: u32,
        /// Conflicting size.
        new: u32,
    },
    /// An inner map definition has its own `values`.
    #[error("multi-level inner maps not supported")]
    NestedInnerMap,
    /// `values` is not the last member.
    #[error("'values' member should be last")]
    ValuesNotLast,
    /// `values` on a map that is neither map-in-map nor a program array.
    #[error("'values' on map type {map_type}: should be map-in-map or prog-array")]
    ValuesWrongMapType {
        /// The map's type.
        map_type: MapType,
    },
    /// `values` is not a zero-sized array.
    #[error("'values' spec is not a zero-sized array")]
    ValuesNotZeroArray,
    /// The inner map definition is bad.
    #[error("inner map: {source}")]
    Inner {
        /// The inner error.
        source: Box<MapError>,
    },
    /// An inner map with `pinning`.
    #[error("inner def can't be pinned")]
    InnerPinned,
    /// `pinning` is neither `LIBBPF_PIN_NONE` nor `LIBBPF_PIN_BY_NAME`.
    #[error("invalid pinning value {value}")]
    BadPinning {
        /// The value.
        value: u32,
    },
    /// An unknown definition member (strict mode).
    #[error("unknown field '{field}'")]
    UnknownField {
        /// Member name.
        field: String,
    },
    /// No `type`.
    #[error("map type isn't specified")]
    NoType,
    /// A `.maps` variable without a name.
    #[error("map #{index}: empty name")]
    EmptyName {
        /// Variable index in the DATASEC.
        index: usize,
    },
    /// The variable lies outside the `.maps` section.
    #[error("BTF data is corrupted (offset {offset} + size {size} > section size {section_size})")]
    Corrupted {
        /// Variable offset.
        offset: u32,
        /// Variable size.
        size: u32,
        /// Section size.
        section_size: usize,
    },
    /// A `.maps` DATASEC entry that is not a `VAR`.
    #[error("unexpected var kind {kind}")]
    NotVar {
        /// The kind found.
        kind: Kind,
    },
    /// A map variable that is not a global, allocated one.
    #[error("unsupported map linkage {linkage}")]
    Linkage {
        /// Linkage as libbpf names it (`static`, `extern`, ...).
        linkage: &'static str,
    },
    /// The variable's type is not a struct.
    #[error("unexpected def kind {kind}")]
    DefNotStruct {
        /// The kind found.
        kind: Kind,
    },
    /// The definition struct is larger than the variable.
    #[error("invalid def size")]
    DefTooBig,
    /// No `.maps` DATASEC in BTF although the section exists.
    #[error("DATASEC '.maps' not found")]
    NoMapsDatasec,
    /// BTF is needed for `.maps` but missing.
    #[error("BTF is required for '.maps' but missing")]
    NoBtf,
    /// More than one `BPF_MAP_TYPE_ARENA` map.
    #[error("only a single ARENA map is supported (also '{other}')")]
    MultipleArenas {
        /// The other arena map.
        other: String,
    },
    /// `__arena` globals but no arena map.
    #[error("global __arena variables need an ARENA map declared in SEC(\".maps\")")]
    NoArenaMap,
    /// The arena map is too small for the `__arena` globals.
    #[error("declared ARENA map size ({map_size}) is too small for __arena globals ({data_size})")]
    ArenaTooSmall {
        /// Bytes the map provides.
        map_size: u64,
        /// Bytes the globals need.
        data_size: usize,
    },
    /// A zero-initialised map (`.bss`, `.kconfig`) over the 4 MiB an array map value may
    /// hold in the kernel (`KMALLOC_MAX_SIZE`), which would refuse it with `E2BIG`.
    #[error("{size} bytes of zero-initialised data: over the 4 MiB a map value may hold")]
    TooLarge {
        /// Bytes requested.
        size: usize,
    },
    /// A DATASEC fixup failed (`btf_fixup_datasec`).
    #[error("DATASEC '{section}': {reason}")]
    Datasec {
        /// DATASEC name.
        section: String,
        /// What went wrong.
        reason: &'static str,
    },
}

/// Collecting and resolving externs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExternError {
    /// There is no BTF to describe the extern.
    #[error("failed to find BTF for extern '{name}': no BTF")]
    NoBtf {
        /// Extern name.
        name: String,
    },
    /// No `VAR`/`FUNC` of that name.
    #[error("failed to find BTF for extern '{name}'")]
    BtfNotFound {
        /// Extern name.
        name: String,
    },
    /// The `VAR`/`FUNC` of that name is not `extern`.
    #[error("BTF for extern '{name}' is not extern")]
    BadLinkage {
        /// Extern name.
        name: String,
    },
    /// No DATASEC holds the extern.
    #[error("failed to find BTF section for extern '{name}'")]
    NoSection {
        /// Extern name.
        name: String,
    },
    /// A function in `.kconfig`.
    #[error("extern function '{name}' is unsupported under .kconfig")]
    FuncInKconfig {
        /// Extern name.
        name: String,
    },
    /// The kconfig extern has no size or alignment.
    #[error("failed to resolve size or alignment of extern (kcfg) '{name}'")]
    KcfgSize {
        /// Extern name.
        name: String,
    },
    /// The kconfig extern's type is not supported.
    #[error("extern (kcfg) '{name}': type is unsupported")]
    UnsupportedType {
        /// Extern name.
        name: String,
    },
    /// An extern in a DATASEC other than `.kconfig`/`.ksyms`.
    #[error("unrecognized extern section '{section}' (extern '{name}')")]
    UnknownSection {
        /// Extern name.
        name: String,
        /// DATASEC name.
        section: String,
    },
    /// A DATASEC variable with no matching extern symbol.
    #[error("failed to find extern definition for BTF '{name}'")]
    NoDefinition {
        /// Variable name.
        name: String,
    },
    /// A kconfig value's slot is outside the `.kconfig` map.
    #[error("extern (kcfg) '{name}': value outside the .kconfig map")]
    KconfigOutOfRange {
        /// Extern name.
        name: String,
    },
    /// A kconfig value does not suit the extern's type.
    #[error("extern (kcfg) '{name}': value '{value}' does not match its type")]
    KconfigType {
        /// Extern name.
        name: String,
        /// The value.
        value: String,
    },
    /// An integer kconfig value does not fit.
    #[error("extern (kcfg) '{name}': value '{value}' doesn't fit in {size} bytes")]
    KconfigRange {
        /// Extern name.
        name: String,
        /// The value.
        value: u64,
        /// The extern's size.
        size: u32,
    },
    /// A malformed `CONFIG_X=value` line.
    #[error("failed to parse kconfig line '{line}'")]
    KconfigLine {
        /// The line.
        line: String,
    },
    /// `LINUX_KERNEL_VERSION` with no known kernel version.
    #[error("extern (kcfg) 'LINUX_KERNEL_VERSION': failed to get kernel version")]
    NoKernelVersion,
    /// A non-weak `LINUX_*` (or other non-`CONFIG_`) kconfig extern libbpf does not know.
    #[error("extern (kcfg) '{name}': unrecognized virtual extern")]
    UnknownVirtual {
        /// Extern name.
        name: String,
    },
    /// `CONFIG_*` externs but the host has no Kconfig.
    #[error("failed to open system Kconfig")]
    NoKconfig,
    /// A strong typed ksym or kfunc the kernel does not have.
    #[error("extern (ksym) '{name}': not found in kernel BTF")]
    KsymNotFound {
        /// Extern name.
        name: String,
    },
    /// A strong extern left unresolved.
    #[error("extern '{name}' (strong): not resolved")]
    Unresolved {
        /// Extern name.
        name: String,
    },
}

/// Building struct_ops maps and binding them to a kernel type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StructOpsError {
    /// The section has no DATASEC in BTF.
    #[error("DATASEC '{section}' not found")]
    NoDatasec {
        /// Section name.
        section: String,
    },
    /// BTF is required but missing.
    #[error("BTF is required for struct_ops but missing")]
    NoBtf,
    /// The variable's type cannot be resolved.
    #[error("cannot resolve var type_id {type_id}")]
    VarType {
        /// The DATASEC entry's type id.
        type_id: u32,
    },
    /// The variable's type has no name.
    #[error("anonymous type is not supported")]
    AnonymousType,
    /// The variable's type is not a struct.
    #[error("'{name}' is not a struct")]
    NotStruct {
        /// Type name.
        name: String,
    },
    /// The variable extends past the section.
    #[error("var is beyond the end of DATASEC {section}")]
    BeyondSection {
        /// Section name.
        section: String,
    },
    /// The kernel has no such struct.
    #[error("struct {name} is not found in kernel BTF")]
    KernelTypeMissing {
        /// The struct's name.
        name: String,
    },
    /// `bpf_struct_ops_<name>` has no member of the ops type.
    #[error("ops struct data is not found in struct {value_type}")]
    NoDataMember {
        /// The value type's name.
        value_type: String,
    },
    /// A member's size cannot be resolved.
    #[error("failed to resolve the size of member {member}")]
    MemberSize {
        /// Member name.
        member: String,
    },
    /// A non-zero member the kernel type lacks.
    #[error("cannot find member {member} in kernel BTF")]
    MemberMissing {
        /// Member name.
        member: String,
    },
    /// A bitfield member.
    #[error("bitfield {member} is not supported")]
    Bitfield {
        /// Member name.
        member: String,
    },
    /// Local and kernel member kinds differ.
    #[error("unmatched member type {member} {local} != {kernel}(kernel)")]
    KindMismatch {
        /// Member name.
        member: String,
        /// Local kind.
        local: Kind,
        /// Kernel kind.
        kernel: Kind,
    },
    /// A function pointer member bound to something that is not a struct_ops program.
    #[error("member {member} is not a struct_ops program")]
    NotStructOpsProgram {
        /// Member name.
        member: String,
    },
    /// The kernel member is a pointer, but not to a function.
    #[error("kernel member {member} is not a func ptr")]
    KernelNotFuncPtr {
        /// Member name.
        member: String,
    },
    /// A program reused for a different ops type or member.
    #[error("func ptr {member}: invalid reuse of prog {program}")]
    ProgramReuse {
        /// Member name.
        member: String,
        /// Program name.
        program: String,
    },
    /// Local and kernel member sizes differ.
    #[error("error in size of member {member}: {local} != {kernel}(kernel)")]
    SizeMismatch {
        /// Member name.
        member: String,
        /// Local size.
        local: u32,
        /// Kernel size.
        kernel: u32,
    },
    /// A `.rel.struct_ops*` record outside every map.
    #[error("reloc: cannot find map at offset {offset}")]
    RelocNoMap {
        /// `r_offset`.
        offset: u64,
    },
    /// A relocation against a special section index.
    #[error("reloc: unsupported non-static function (shndx {shndx})")]
    RelocSpecialSection {
        /// `st_shndx`.
        shndx: u16,
    },
    /// A target symbol not at an instruction boundary.
    #[error("reloc: invalid target program offset {value}")]
    RelocBadTarget {
        /// `st_value`.
        value: u64,
    },
    /// No member at the relocated offset.
    #[error("reloc: cannot find member at moff {offset}")]
    RelocNoMember {
        /// Offset in the struct.
        offset: u64,
    },
    /// The relocated member is not a function pointer.
    #[error("reloc: cannot relocate non func ptr {member}")]
    RelocNotFuncPtr {
        /// Member name.
        member: String,
    },
    /// No program at the relocation's target.
    #[error("reloc: cannot find prog to relocate func ptr {member}")]
    RelocNoProgram {
        /// Member name.
        member: String,
    },
    /// The target program is not `SEC("struct_ops...")`.
    #[error("reloc: prog {program} is not struct_ops BPF program")]
    RelocNotStructOps {
        /// Program name.
        program: String,
    },
    /// A bad relocation record.
    #[error("reloc: {source}")]
    Elf {
        /// The ELF error.
        source: ElfError,
    },
}

/// Collecting relocation records and applying relocations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelocError {
    /// The relocation names a symbol that does not exist.
    #[error("symbol #{sym} not found")]
    NoSymbol {
        /// Symbol index.
        sym: u32,
    },
    /// The symbol points at an invalid section.
    #[error("corrupted symbol #{sym} pointing to invalid section #{shndx}")]
    SymbolSection {
        /// Symbol index.
        sym: u32,
        /// `st_shndx`.
        shndx: u16,
    },
    /// The offset is not an instruction inside the section.
    #[error("invalid offset {offset:#x}")]
    BadOffset {
        /// `r_offset`.
        offset: u64,
    },
    /// The relocated instruction is neither a call nor `ld_imm64`.
    #[error("invalid relo against '{symbol}' for insns[{insn}].code {code:#x}")]
    BadInsn {
        /// Symbol name.
        symbol: String,
        /// Instruction index.
        insn: usize,
        /// Its opcode.
        code: u8,
    },
    /// An extern symbol with no extern descriptor.
    #[error("extern relo failed to find extern for '{symbol}' ({sym})")]
    NoExtern {
        /// Symbol name.
        symbol: String,
        /// Symbol index.
        sym: u32,
    },
    /// A relocated call that is not a BPF-to-BPF call.
    #[error("incorrect bpf_call opcode")]
    BadCallOpcode,
    /// A call into a section other than `.text`.
    #[error("bad call relo against '{symbol}' in section '{section}'")]
    BadCallSection {
        /// Symbol name.
        symbol: String,
        /// Section name.
        section: String,
    },
    /// A call target not at an instruction boundary.
    #[error("bad call relo against '{symbol}' at offset {value}")]
    BadCallOffset {
        /// Symbol name.
        symbol: String,
        /// `st_value`.
        value: u64,
    },
    /// A reference to an undefined or special-section symbol.
    #[error(
        "invalid relo against '{symbol}' in special section {shndx:#x}; forgot to initialize global var?"
    )]
    SpecialSection {
        /// Symbol name.
        symbol: String,
        /// `st_shndx`.
        shndx: u16,
    },
    /// A subprogram address not at an instruction boundary.
    #[error("bad subprog addr relo against '{symbol}' at offset {value}+{imm}")]
    BadSubprogAddr {
        /// Symbol name.
        symbol: String,
        /// `st_value`.
        value: u64,
        /// The instruction's `imm`.
        imm: i32,
    },
    /// An arena data reference with no arena map.
    #[error("bad arena data relocation at insn {insn}, no arena maps defined")]
    NoArenaMap {
        /// Instruction index.
        insn: usize,
    },
    /// A map reference to a section that holds no maps.
    #[error("bad map relo against '{symbol}' in section '{section}'")]
    BadMapSection {
        /// Symbol name.
        symbol: String,
        /// Section name.
        section: String,
    },
    /// No map at the symbol's offset.
    #[error("map relo failed to find map for section '{section}', off {offset}")]
    NoMap {
        /// Section name.
        section: String,
        /// `st_value`.
        offset: u64,
    },
    /// A data reference to a section that is not global data.
    #[error("bad data relo against section '{section}'")]
    BadDataSection {
        /// Section name.
        section: String,
    },
    /// No internal map for the data section.
    #[error("data relo failed to find map for section '{section}'")]
    NoDataMap {
        /// Section name.
        section: String,
    },
    /// A `.maps` relocation outside every map.
    #[error(".maps relo: cannot find map '{symbol}' at offset {offset}")]
    MapsRelocNoMap {
        /// Symbol name.
        symbol: String,
        /// `r_offset`.
        offset: u64,
    },
    /// A map-in-map slot naming something that is not a BTF-defined map.
    #[error(".maps relo: '{symbol}' isn't a BTF-defined map")]
    NotBtfMap {
        /// Symbol name.
        symbol: String,
    },
    /// A hash-of-maps with a key that is not 4 bytes.
    #[error(".maps relo: hash-of-maps '{map}' should have key size 4")]
    HashOfMapsKey {
        /// Map name.
        map: String,
    },
    /// A slot naming a map that does not exist.
    #[error(".maps relo: '{symbol}' isn't a valid map reference")]
    NoSuchMap {
        /// Symbol name.
        symbol: String,
    },
    /// A slot naming a program that does not exist.
    #[error(".maps relo: '{symbol}' isn't a valid program reference")]
    NoSuchProgram {
        /// Symbol name.
        symbol: String,
    },
    /// A program array slot naming a subprogram.
    #[error(".maps relo: '{symbol}' isn't an entry-point program")]
    NotEntryProgram {
        /// Symbol name.
        symbol: String,
    },
    /// A `.maps` relocation in a map that takes none, or at a bad offset.
    #[error(".maps relo against '{symbol}': {reason}")]
    BadMapsReloc {
        /// Symbol name.
        symbol: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A call or `ld_imm64` relocation of an unexpected kind.
    #[error("unexpected relo for insn #{insn}")]
    UnexpectedRelo {
        /// Instruction index.
        insn: usize,
    },
    /// A `BPF_PSEUDO_FUNC` load without its relocation.
    #[error("missing subprog addr relo for insn #{insn}")]
    MissingSubprogAddr {
        /// Instruction index.
        insn: usize,
    },
    /// A call to an address where no subprogram is.
    #[error("no .text section found yet sub-program call exists (insn #{insn})")]
    NoSubprog {
        /// Instruction index.
        insn: usize,
    },
    /// A relocation's instruction index is outside the program.
    #[error("relocation for insn #{insn} outside the program")]
    InsnOutOfRange {
        /// Instruction index.
        insn: usize,
    },
    /// A subprogram address load that is not `BPF_PSEUDO_FUNC`.
    #[error("relo for insn #{insn}: bad insn")]
    BadPseudoFunc {
        /// Instruction index.
        insn: usize,
    },
    /// func_info or line_info records missing for a subprogram.
    #[error("missing .BTF.ext {what} info")]
    MissingExtInfo {
        /// `function` or `line`.
        what: &'static str,
    },
    /// The exception callback declaration is wrong.
    #[error("exception callback: {reason}")]
    ExceptionCallback {
        /// What is wrong.
        reason: String,
    },
    /// A struct_ops program no map references.
    #[error("SEC(\"struct_ops\") program isn't referenced anywhere")]
    UnreferencedStructOps,
    /// A program with no known type.
    #[error("missing BPF prog type, check ELF section name '{section}'")]
    NoProgType {
        /// Section name.
        section: String,
    },
    /// A bad record.
    #[error("{source}")]
    Elf {
        /// The ELF error.
        source: ElfError,
    },
}

/// Applying CO-RE relocations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// A `.BTF.ext` section entry without a name.
    #[error("CO-RE relocation section without a name")]
    NoSectionName,
    /// A relocation offset that is not an instruction boundary.
    #[error("insn offset {offset} is not a multiple of 8")]
    BadOffset {
        /// Byte offset.
        offset: u32,
    },
    /// A relocation past the program's end.
    #[error("insn #{insn} is outside the program")]
    InsnOutOfRange {
        /// Instruction index.
        insn: usize,
    },
    /// An `ld_imm64` cut off at the end of the program.
    #[error("insn #{insn} (LDIMM64) is truncated")]
    TruncatedLdimm64 {
        /// Instruction index.
        insn: usize,
    },
    /// The object has no BTF to resolve against.
    #[error("no BTF in the object")]
    NoBtf,
    /// Resolution or patching failed.
    #[error("{source}")]
    Resolve {
        /// What the CO-RE engine said.
        source: crate::core_relo::CoreError,
    },
}

/// Any error, with the context it happened in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The ELF container.
    #[error("ELF: {source}")]
    Elf {
        /// The error.
        #[from]
        source: ElfError,
    },
    /// An invalid `license` section.
    #[error("invalid license section")]
    License,
    /// An invalid `version` section.
    #[error("invalid kver section (size {size})")]
    Version {
        /// Its size.
        size: usize,
    },
    /// A legacy `maps` section: libbpf 1.x refuses them.
    #[error("legacy map definitions in 'maps' section are not supported by libbpf v1.0+")]
    LegacyMaps,
    /// `.BTF`/`.BTF.ext` is not `SHT_PROGBITS`.
    #[error("section '{section}' is not PROGBITS")]
    BtfSectionType {
        /// The section.
        section: &'static str,
    },
    /// BTF is required (for `.maps`, struct_ops) but missing or corrupt.
    #[error("BTF is required, but is missing or corrupted: {source}")]
    Btf {
        /// The parse error.
        source: BtfError,
    },
    /// BTF is required (for `.maps`, struct_ops) but the object has none.
    #[error("BTF is required, but is missing")]
    BtfMissing,
    /// A program could not be split out of its section.
    #[error("section '{section}', program '{program}': {source}")]
    Program {
        /// Section name.
        section: String,
        /// Program name (may be empty when the symbol has none).
        program: String,
        /// The error.
        source: ProgramError,
    },
    /// A map could not be built.
    #[error("map '{map}': {source}")]
    Map {
        /// Map name.
        map: String,
        /// The error.
        source: MapError,
    },
    /// An extern could not be collected or resolved.
    #[error("{source}")]
    Extern {
        /// The error.
        source: ExternError,
    },
    /// A struct_ops map could not be built or bound.
    #[error("struct_ops map '{map}': {source}")]
    StructOps {
        /// Map (variable) name; empty when none is known yet.
        map: String,
        /// The error.
        source: StructOpsError,
    },
    /// A relocation record could not be collected.
    #[error("section '{section}', relo #{index}: {source}")]
    Reloc {
        /// Relocation section name.
        section: String,
        /// Record index.
        index: usize,
        /// The error.
        source: RelocError,
    },
    /// A program could not be relocated.
    #[error("prog '{program}': {source}")]
    Link {
        /// Program name.
        program: String,
        /// The error.
        source: RelocError,
    },
    /// A CO-RE relocation failed.
    #[error("prog '{program}': relo #{index}: {source}")]
    Core {
        /// Program name (or section name before programs are known).
        program: String,
        /// Record index in its `.BTF.ext` section.
        index: usize,
        /// The error.
        source: CoreError,
    },
    /// A program name that does not exist.
    #[error("no program named '{name}'")]
    NoSuchProgram {
        /// The name.
        name: String,
    },
}

impl Error {
    /// The positive error code libbpf 1.5 returns from `bpf_object__open` or
    /// `bpf_object__load` for the same condition.
    pub fn libbpf_errno(&self) -> i32 {
        use errno::*;
        match self {
            Error::Elf { source } => match source {
                ElfError::NoSymbolTable => ENOENT,
                ElfError::NotElf | ElfError::BadHeader { .. } => LIBELF,
                _ => FORMAT,
            },
            Error::License | Error::Version { .. } | Error::BtfSectionType { .. } => FORMAT,
            Error::LegacyMaps => EOPNOTSUPP,
            Error::Btf { .. } => EINVAL,
            Error::BtfMissing => ENOENT,
            Error::Program { source, .. } => match source {
                ProgramError::Static => EOPNOTSUPP,
                ProgramError::Corrupted { .. } => EINVAL,
                _ => FORMAT,
            },
            Error::Map { source, .. } => match source {
                MapError::Linkage { .. }
                | MapError::NestedInnerMap
                | MapError::ValuesWrongMapType { .. }
                | MapError::UnknownField { .. } => EOPNOTSUPP,
                MapError::NoMapsDatasec | MapError::NoArenaMap => ENOENT,
                MapError::Datasec { .. } => ENOENT,
                MapError::ArenaTooSmall { .. } => E2BIG,
                MapError::TooLarge { .. } => E2BIG,
                MapError::Inner { source } => Error::Map {
                    map: String::new(),
                    source: (**source).clone(),
                }
                .libbpf_errno(),
                _ => EINVAL,
            },
            Error::Extern { source } => match source {
                ExternError::NoBtf { .. } => ESRCH,
                ExternError::BtfNotFound { .. } => ENOENT,
                ExternError::NoSection { .. } => ENOENT,
                ExternError::FuncInKconfig { .. }
                | ExternError::UnsupportedType { .. }
                | ExternError::UnknownSection { .. } => EOPNOTSUPP,
                ExternError::NoDefinition { .. } | ExternError::Unresolved { .. } => ESRCH,
                ExternError::KconfigRange { .. } => ERANGE,
                _ => EINVAL,
            },
            Error::StructOps { source, .. } => match source {
                StructOpsError::AnonymousType
                | StructOpsError::MemberMissing { .. }
                | StructOpsError::Bitfield { .. }
                | StructOpsError::KindMismatch { .. }
                | StructOpsError::NotStructOpsProgram { .. }
                | StructOpsError::KernelNotFuncPtr { .. }
                | StructOpsError::SizeMismatch { .. } => EOPNOTSUPP,
                StructOpsError::KernelTypeMissing { .. } => ESRCH,
                StructOpsError::RelocSpecialSection { .. } => RELOC,
                StructOpsError::RelocBadTarget { .. } | StructOpsError::Elf { .. } => FORMAT,
                _ => EINVAL,
            },
            Error::Reloc { source, .. } | Error::Link { source, .. } => match source {
                RelocError::NoSymbol { .. }
                | RelocError::SymbolSection { .. }
                | RelocError::BadOffset { .. }
                | RelocError::Elf { .. } => FORMAT,
                RelocError::NoSuchMap { .. } | RelocError::NoSuchProgram { .. } => ESRCH,
                RelocError::MapsRelocNoMap { .. }
                | RelocError::HashOfMapsKey { .. }
                | RelocError::BadMapsReloc { .. }
                | RelocError::InsnOutOfRange { .. }
                | RelocError::BadPseudoFunc { .. }
                | RelocError::UnreferencedStructOps
                | RelocError::NoProgType { .. } => EINVAL,
                RelocError::MissingExtInfo { .. } => ENOENT,
                RelocError::ExceptionCallback { .. } => EINVAL,
                _ => RELOC,
            },
            Error::Core { source, .. } => match source {
                CoreError::Resolve { source } => source.errno(),
                _ => EINVAL,
            },
            Error::NoSuchProgram { .. } => ENOENT,
        }
    }
}
