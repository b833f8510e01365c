//! The ELF layer: headers, sections, symbols and `SHT_REL` records of a BPF relocatable
//! object, read with every access checked.
//!
//! The `object` crate reads the file header, the section header table and the string
//! tables; symbols and relocation records are decoded here from the section bytes in the
//! file's byte order, so the same code serves `bpfel` and `bpfeb` objects. Nothing here
//! knows about BPF programs or maps: this is the part of libbpf's `bpf_object__elf_init`
//! and `elf_sec_*`/`elf_sym_*` helpers that a pure reader needs.

use object::elf;
use object::read::elf::{FileHeader, SectionHeader};
use object::{Endianness, SectionIndex};

pub use raw::*;

/// Raw ELF constants, as the plain integers the headers hold.
pub mod raw {
    /// `EI_CLASS`.
    pub const EI_CLASS: usize = 4;
    /// `ELFCLASS64`.
    pub const ELFCLASS64: u8 = 2;
    /// `ET_REL`.
    pub const ET_REL: u16 = 1;
    /// `EM_NONE`.
    pub const EM_NONE: u16 = 0;
    /// `SHT_PROGBITS`.
    pub const SHT_PROGBITS: u32 = 1;
    /// `SHT_SYMTAB`.
    pub const SHT_SYMTAB: u32 = 2;
    /// `SHT_STRTAB`.
    pub const SHT_STRTAB: u32 = 3;
    /// `SHT_NOBITS`.
    pub const SHT_NOBITS: u32 = 8;
    /// `SHT_REL`.
    pub const SHT_REL: u32 = 9;
    /// `SHF_EXECINSTR`.
    pub const SHF_EXECINSTR: u64 = 0x4;
    /// `SHN_UNDEF`.
    pub const SHN_UNDEF: u16 = 0;
    /// `STB_LOCAL`.
    pub const STB_LOCAL: u8 = 0;
    /// `STB_GLOBAL`.
    pub const STB_GLOBAL: u8 = 1;
    /// `STB_WEAK`.
    pub const STB_WEAK: u8 = 2;
    /// `STT_NOTYPE`.
    pub const STT_NOTYPE: u8 = 0;
    /// `STT_OBJECT`.
    pub const STT_OBJECT: u8 = 1;
    /// `STT_FUNC`.
    pub const STT_FUNC: u8 = 2;
    /// `STT_SECTION`.
    pub const STT_SECTION: u8 = 3;
    /// `STV_INTERNAL`.
    pub const STV_INTERNAL: u8 = 1;
    /// `STV_HIDDEN`.
    pub const STV_HIDDEN: u8 = 2;
}

use crate::error::ElfError;

/// `EM_BPF`.
pub const EM_BPF: u16 = 247;
/// `SHT_LLVM_ADDRSIG`, the section type of `.llvm_addrsig`.
pub const SHT_LLVM_ADDRSIG: u32 = 0x6fff_4c03;
/// Size of `Elf64_Sym`.
pub const SYM_SIZE: usize = 24;
/// Size of `Elf64_Rel`.
pub const REL_SIZE: usize = 16;
/// `SHN_LORESERVE`: symbol section indices from here on are special.
pub const SHN_LORESERVE: u16 = 0xff00;

/// One section header with its name and bytes.
#[derive(Clone, Debug)]
pub struct ElfSection<'a> {
    /// Section index.
    pub index: usize,
    /// The name (`None` when the name offset is invalid or not UTF-8).
    pub name: Option<&'a str>,
    /// `sh_type`.
    pub sh_type: u32,
    /// `sh_flags`.
    pub flags: u64,
    /// `sh_size` (also for `SHT_NOBITS`, which has no bytes in the file).
    pub size: u64,
    /// `sh_link`.
    pub link: u32,
    /// `sh_info`.
    pub info: u32,
    /// `sh_entsize`.
    pub entsize: u64,
    /// The bytes in the file: `None` when they lie outside it, empty for `SHT_NOBITS`.
    pub data: Option<&'a [u8]>,
}

impl ElfSection<'_> {
    /// Is this section executable (`SHF_EXECINSTR`)?
    pub fn is_exec(&self) -> bool {
        self.flags & SHF_EXECINSTR != 0
    }

    /// The data size as libelf's `Elf_Data::d_size` reports it: `sh_size`, also for
    /// `SHT_NOBITS`.
    pub fn data_size(&self) -> usize {
        usize::try_from(self.size).unwrap_or(usize::MAX)
    }
}

/// One `Elf64_Sym`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElfSymbol<'a> {
    /// The name, if `st_name` points at a valid UTF-8 string.
    pub name: Option<&'a str>,
    /// `st_name`.
    pub st_name: u32,
    /// `st_info`.
    pub info: u8,
    /// `st_other`.
    pub other: u8,
    /// `st_shndx`.
    pub shndx: u16,
    /// `st_value`.
    pub value: u64,
    /// `st_size`.
    pub size: u64,
}

impl ElfSymbol<'_> {
    /// `ELF64_ST_TYPE`.
    pub fn st_type(&self) -> u8 {
        self.info & 0xf
    }

    /// `ELF64_ST_BIND`.
    pub fn bind(&self) -> u8 {
        self.info >> 4
    }

    /// `ELF64_ST_VISIBILITY`.
    pub fn visibility(&self) -> u8 {
        self.other & 0x3
    }

    /// Is this symbol hidden or internal (`STV_HIDDEN`/`STV_INTERNAL`)?
    pub fn is_hidden(&self) -> bool {
        matches!(self.visibility(), STV_HIDDEN | STV_INTERNAL)
    }

    /// libbpf's `sym_is_extern`: an undefined global or weak `STT_NOTYPE` symbol.
    pub fn is_extern(&self) -> bool {
        self.shndx == SHN_UNDEF
            && matches!(self.bind(), STB_GLOBAL | STB_WEAK)
            && self.st_type() == STT_NOTYPE
    }

    /// libbpf's `sym_is_subprog`: a function of the `.text` section (a global or weak
    /// `STT_FUNC`, or the `STT_SECTION` symbol static calls refer to).
    pub fn is_subprog(&self, text_shndx: Option<usize>) -> bool {
        if Some(usize::from(self.shndx)) != text_shndx {
            return false;
        }
        let (bind, ty) = (self.bind(), self.st_type());
        if bind == STB_LOCAL && ty == STT_SECTION {
            return true;
        }
        matches!(bind, STB_GLOBAL | STB_WEAK) && ty == STT_FUNC
    }
}

/// One `Elf64_Rel` record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ElfRel {
    /// `r_offset`: byte offset in the target section.
    pub offset: u64,
    /// `ELF64_R_SYM(r_info)`: the symbol index.
    pub sym: u32,
    /// `ELF64_R_TYPE(r_info)`: `R_BPF_*`.
    pub r_type: u32,
}

/// A checked view of a BPF ELF relocatable object.
#[derive(Clone, Debug)]
pub struct ElfFile<'a> {
    /// Is the object big-endian (`bpfeb`)?
    pub big_endian: bool,
    /// Every section header, indexed by section index (index 0 is the null section).
    pub sections: Vec<ElfSection<'a>>,
    /// The symbol table (`SHT_SYMTAB`) section index.
    pub symtab: usize,
    /// The symbol table's string table section index (`sh_link`).
    pub strtab: usize,
    /// The symbols, indexed by symbol index.
    pub symbols: Vec<ElfSymbol<'a>>,
}

/// A bounds-checked little/big-endian reader.
#[derive(Clone, Copy)]
pub(crate) struct Bytes<'a> {
    pub(crate) data: &'a [u8],
    pub(crate) big: bool,
}

impl<'a> Bytes<'a> {
    pub(crate) fn get<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        let end = off.checked_add(N)?;
        let s = self.data.get(off..end)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Some(a)
    }

    pub(crate) fn u16(&self, off: usize) -> Option<u16> {
        let a = self.get::<2>(off)?;
        Some(if self.big {
            u16::from_be_bytes(a)
        } else {
            u16::from_le_bytes(a)
        })
    }

    pub(crate) fn u32(&self, off: usize) -> Option<u32> {
        let a = self.get::<4>(off)?;
        Some(if self.big {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        })
    }

    pub(crate) fn u64(&self, off: usize) -> Option<u64> {
        let a = self.get::<8>(off)?;
        Some(if self.big {
            u64::from_be_bytes(a)
        } else {
            u64::from_le_bytes(a)
        })
    }
}

impl<'a> ElfFile<'a> {
    /// Reads and checks the ELF header and the section and symbol tables, as libbpf's
    /// `bpf_object__elf_init` and the first pass of `bpf_object__elf_collect` do.
    pub fn parse(data: &'a [u8]) -> Result<ElfFile<'a>, ElfError> {
        if data.get(..4) != Some(&elf::ELFMAG[..]) {
            return Err(ElfError::NotElf);
        }
        match data.get(EI_CLASS) {
            Some(&ELFCLASS64) => {}
            class => {
                return Err(ElfError::Not64Bit {
                    class: class.copied().unwrap_or(0),
                });
            }
        }
        let header =
            elf::FileHeader64::<Endianness>::parse(data).map_err(|e| ElfError::BadHeader {
                reason: e.to_string(),
            })?;
        let endian = header.endian().map_err(|e| ElfError::BadHeader {
            reason: e.to_string(),
        })?;
        let big_endian = endian == Endianness::Big;
        let e_type = header.e_type(endian).0;
        let machine = header.e_machine(endian).0;
        // Old LLVM left e_machine as EM_NONE; libbpf accepts that.
        if e_type != ET_REL || (machine != EM_NONE && machine != EM_BPF) {
            return Err(ElfError::NotBpf { e_type, machine });
        }
        let table = header
            .sections(endian, data)
            .map_err(|e| ElfError::BadSectionTable {
                reason: e.to_string(),
            })?;
        let shstrndx =
            header
                .section_strings_index(endian, data)
                .map_err(|e| ElfError::BadSectionTable {
                    reason: e.to_string(),
                })?;
        // libbpf refuses an object whose section-name table has no data.
        let shstr = table
            .section(shstrndx)
            .map_err(|_| ElfError::NoSectionNames)?;
        if shstr.data(endian, data).is_err() || shstrndx == SectionIndex(0) {
            return Err(ElfError::NoSectionNames);
        }

        let mut sections = Vec::with_capacity(table.len());
        for (index, sh) in table.enumerate() {
            let name = table
                .section_name(endian, sh)
                .ok()
                .and_then(|b| std::str::from_utf8(b).ok());
            let sh_type = sh.sh_type(endian).0;
            let data_bytes = if sh_type == SHT_NOBITS {
                Some(&[][..])
            } else {
                sh.data(endian, data).ok()
            };
            sections.push(ElfSection {
                index: index.0,
                name,
                sh_type,
                flags: sh.sh_flags(endian).0,
                size: sh.sh_size(endian),
                link: sh.sh_link(endian),
                info: sh.sh_info(endian),
                entsize: sh.sh_entsize(endian),
                data: data_bytes,
            });
        }

        // First pass of bpf_object__elf_collect: exactly one symbol table.
        let mut symtab = None;
        for s in sections.iter().skip(1) {
            if s.sh_type == SHT_SYMTAB {
                if let Some(first) = symtab {
                    return Err(ElfError::MultipleSymbolTables {
                        first,
                        second: s.index,
                    });
                }
                if s.data.is_none() {
                    return Err(ElfError::SectionData { index: s.index });
                }
                symtab = Some(s.index);
            }
        }
        let symtab = symtab.ok_or(ElfError::NoSymbolTable)?;
        let (sym_data, strtab) = match sections.get(symtab) {
            Some(s) => (s.data.unwrap_or(&[]), s.link as usize),
            None => return Err(ElfError::NoSymbolTable),
        };
        let strings = table
            .strings(endian, data, SectionIndex(strtab))
            .unwrap_or_default();
        let r = Bytes {
            data: sym_data,
            big: big_endian,
        };
        let count = sym_data.len() / SYM_SIZE;
        let mut symbols = Vec::with_capacity(count);
        for i in 0..count {
            let o = i * SYM_SIZE;
            let sym = (|| {
                let st_name = r.u32(o)?;
                Some(ElfSymbol {
                    name: strings
                        .get(st_name)
                        .ok()
                        .and_then(|b| std::str::from_utf8(b).ok()),
                    st_name,
                    info: *sym_data.get(o + 4)?,
                    other: *sym_data.get(o + 5)?,
                    shndx: r.u16(o + 6)?,
                    value: r.u64(o + 8)?,
                    size: r.u64(o + 16)?,
                })
            })()
            .ok_or(ElfError::SectionData { index: symtab })?;
            symbols.push(sym);
        }
        Ok(ElfFile {
            big_endian,
            sections,
            symtab,
            strtab,
            symbols,
        })
    }

    /// The section at `index`.
    pub fn section(&self, index: usize) -> Option<&ElfSection<'a>> {
        self.sections.get(index)
    }

    /// The name of section `index` (libbpf's `elf_sec_name`).
    pub fn section_name(&self, index: usize) -> Option<&'a str> {
        self.sections.get(index).and_then(|s| s.name)
    }

    /// The first section named `name` (libbpf's `elf_sec_by_name`, which scans from
    /// index 1).
    pub fn section_by_name(&self, name: &str) -> Option<&ElfSection<'a>> {
        self.sections.iter().skip(1).find(|s| s.name == Some(name))
    }

    /// The symbol at `index` (libbpf's `elf_sym_by_idx`).
    pub fn symbol(&self, index: usize) -> Option<&ElfSymbol<'a>> {
        self.symbols.get(index)
    }

    /// Decodes the `Elf64_Rel` records of relocation section `sec` (its `sh_size /
    /// sh_entsize` records, each of which must lie inside the section's bytes).
    pub fn rels(&self, sec: &ElfSection<'a>) -> Result<Vec<ElfRel>, ElfError> {
        let data = sec.data.ok_or(ElfError::SectionData { index: sec.index })?;
        if sec.entsize != REL_SIZE as u64 {
            return Err(ElfError::BadRelSection {
                index: sec.index,
                reason: "sh_entsize is not sizeof(Elf64_Rel)",
            });
        }
        let n = usize::try_from(sec.size / sec.entsize).unwrap_or(usize::MAX);
        let r = Bytes {
            data,
            big: self.big_endian,
        };
        // Never allocate more than the bytes present can hold.
        let mut out = Vec::with_capacity(n.min(data.len() / REL_SIZE));
        for i in 0..n {
            let o = i * REL_SIZE;
            let (offset, info) = match (r.u64(o), r.u64(o + 8)) {
                (Some(a), Some(b)) => (a, b),
                _ => {
                    return Err(ElfError::BadRelSection {
                        index: sec.index,
                        reason: "relocation record past the end of the section",
                    });
                }
            };
            out.push(ElfRel {
                offset,
                sym: (info >> 32) as u32,
                r_type: (info & 0xffff_ffff) as u32,
            });
        }
        Ok(out)
    }

    /// Splits section bytes into instructions, in the object's byte order.
    pub fn insns(&self, bytes: &[u8]) -> Vec<structops_isa::Insn> {
        bytes
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                if self.big_endian {
                    // bpfeb: dst_reg is the high nibble, off and imm are big-endian.
                    structops_isa::Insn::new(
                        b[0],
                        b[1] >> 4,
                        b[1] & 0xf,
                        i16::from_be_bytes([b[2], b[3]]),
                        i32::from_be_bytes([b[4], b[5], b[6], b[7]]),
                    )
                } else {
                    structops_isa::Insn::from_bytes(b)
                }
            })
            .collect()
    }
}
