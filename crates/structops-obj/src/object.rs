//! [`Object::parse`]: an ELF file to the object model, following libbpf's
//! `bpf_object_open` step by step (`elf_collect`, `collect_externs`, `fixup_btf`,
//! `init_maps`, `init_progs`, `collect_relos`).

use structops_btf::ext::{BtfExt, SecInfo};
use structops_btf::{Btf, BtfBuilder, Kind, Linkage, Type, TypeId, TypeKind, VarSecInfo};

use crate::elf::raw as E;
use crate::elf::{
    ElfFile, ElfRel, ElfSection, ElfSymbol, SHN_LORESERVE, SHT_LLVM_ADDRSIG, SYM_SIZE,
};
use crate::error::{Error, ExternError, MapError, ProgramError, RelocError, StructOpsError};
use crate::externs::{Extern, ExternKind, Kcfg, Ksym, find_kcfg_type};
use crate::maps::{
    Map, MapDef, MapKind, PIN_BY_NAME, Slot, internal_map_name, object_name_from_path,
    parse_btf_map_def,
};
use crate::program::{ElfReloc, Program, RelocKind, RelocType, Relocation, sort_relos};
use crate::section::find_sec_def;
use crate::struct_ops::{StructOps, is_func_ptr, resolve_type};
use crate::types::{AttachType, MapType, ProgType, map_flags};

/// `BPF_INSN_SZ`.
pub(crate) const INSN_SZ: usize = 8;

/// The largest `.bss`/`.kconfig` value this parser materialises: the kernel's
/// `KMALLOC_MAX_SIZE` on x86-64 (4 MiB), beyond which it refuses the array map such a
/// section becomes (`E2BIG`), so no loadable object is refused here. libbpf would mmap
/// any size at open; a hostile `sh_size` must not make us allocate without bound.
pub const MAX_ZEROED_MAP_SIZE: usize = 4 << 20;

/// Options of [`Object::parse_with`] (the parts of `bpf_object_open_opts` that matter
/// to a pure parser, plus the host page size libbpf reads with `sysconf`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseOptions {
    /// The object name (libbpf derives it from the file name, see
    /// [`ParseOptions::for_path`]). Internal map names start with it.
    pub name: String,
    /// Reject unknown members of BTF map definitions (libbpf's default; `relaxed_maps`
    /// turns it off).
    pub strict_maps: bool,
    /// Where `LIBBPF_PIN_BY_NAME` maps are pinned (`pin_root_path`).
    pub pin_root_path: String,
    /// The host page size (ring buffer sizes are rounded to it).
    pub page_size: u32,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            name: String::new(),
            strict_maps: true,
            pin_root_path: "/sys/fs/bpf".to_string(),
            page_size: 4096,
        }
    }
}

impl ParseOptions {
    /// Options for an object read from `path`, named as `bpf_object__open` names it.
    pub fn for_path(path: &str) -> ParseOptions {
        ParseOptions {
            name: object_name_from_path(path),
            ..ParseOptions::default()
        }
    }

    /// Options with the given object name.
    pub fn named(name: &str) -> ParseOptions {
        ParseOptions {
            name: name.to_string(),
            ..ParseOptions::default()
        }
    }
}

/// How libbpf classified an ELF section (`enum sec_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SecType {
    Unused,
    Relo,
    Bss,
    Data,
    Rodata,
    StOps,
}

/// The ELF section index each `.BTF.ext` section entry refers to (0 when none).
#[derive(Clone, Debug, Default)]
pub(crate) struct ExtSecIdx {
    pub(crate) func: Vec<usize>,
    pub(crate) line: Vec<usize>,
    pub(crate) core: Vec<usize>,
}

/// A parsed BPF object: programs, maps, externs, BTF, license.
///
/// It owns copies of everything it needs from the ELF bytes. Relocation steps
/// ([`Object::resolve_externs`], [`Object::init_struct_ops`],
/// [`Object::relocate_core`], [`Object::relocate`]) take the host's facts as
/// arguments.
#[derive(Clone, Debug)]
pub struct Object {
    pub(crate) name: String,
    pub(crate) license: String,
    pub(crate) kern_version: Option<u32>,
    pub(crate) big_endian: bool,
    pub(crate) btf: Option<Btf>,
    pub(crate) btf_ext: Option<BtfExt>,
    pub(crate) ext_secs: ExtSecIdx,
    pub(crate) programs: Vec<Program>,
    pub(crate) maps: Vec<Map>,
    pub(crate) externs: Vec<Extern>,
    pub(crate) kconfig_map: Option<usize>,
    pub(crate) arena_map: Option<usize>,
    pub(crate) text_shndx: Option<usize>,
    pub(crate) section_names: Vec<String>,
}

/// libbpf's `ignore_elf_section`.
fn ignore_section(sec: &ElfSection<'_>, name: &str) -> bool {
    if sec.sh_type == E::SHT_STRTAB || sec.sh_type == SHT_LLVM_ADDRSIG {
        return true;
    }
    if sec.sh_type == E::SHT_PROGBITS && sec.size == 0 && name == ".text" {
        return true;
    }
    if name.starts_with(".debug_") {
        return true;
    }
    if let Some(rest) = name.strip_prefix(".rel")
        && (rest.starts_with(".debug_") || rest == ".BTF" || rest == ".BTF.ext")
    {
        return true;
    }
    false
}

/// libbpf's `find_prog_by_sec_insn` over programs sorted by (section, offset).
pub(crate) fn find_prog_by_sec_insn(progs: &[Program], sec: usize, idx: usize) -> Option<usize> {
    let n = progs.partition_point(|p| (p.section_index, p.insn_off) <= (sec, idx));
    let i = n.checked_sub(1)?;
    let p = progs.get(i)?;
    (p.section_index == sec && p.contains(idx)).then_some(i)
}

struct Collected<'a> {
    sec_types: Vec<SecType>,
    license: String,
    kern_version: Option<u32>,
    maps_shndx: Option<usize>,
    text_shndx: Option<usize>,
    has_st_ops: bool,
    arena: Option<(usize, &'a [u8])>,
    btf_data: Option<&'a [u8]>,
    btf_ext_data: Option<&'a [u8]>,
    programs: Vec<Program>,
}

impl Object {
    /// Parses a BPF object with default options (an empty object name, so internal
    /// maps are named after their sections alone).
    ///
    /// The struct_ops variables of `bpf/dummy_ops.bpf.c`, with their member → program
    /// bindings:
    ///
    /// ```
    /// use structops_obj::Object;
    ///
    /// let obj = Object::parse(include_bytes!("../../../bpf/dummy_ops.bpf.o"))?;
    /// assert_eq!(obj.license(), "Dual MIT/GPL");
    ///
    /// let map = obj.map("dummy_ops").expect("a .struct_ops variable");
    /// let st = map.struct_ops().expect("a struct_ops map");
    /// assert_eq!(st.type_name(), "bpf_dummy_ops");
    /// let bound: Vec<Option<&str>> = st
    ///     .programs()
    ///     .iter()
    ///     .map(|p| p.and_then(|i| obj.programs().get(i)).map(|p| p.name()))
    ///     .collect();
    /// assert_eq!(bound, [Some("dummy_test_1"), Some("dummy_test_2"), Some("dummy_test_sleepable")]);
    ///
    /// // A flavored local type keeps its kernel name; `.struct_ops.link` makes a link map.
    /// let lite = obj.map("dummy_ops_lite").and_then(|m| m.struct_ops()).expect("lite");
    /// assert_eq!((lite.type_name(), lite.kernel_type_name()), ("bpf_dummy_ops___lite", "bpf_dummy_ops"));
    /// assert!(obj.map("dummy_ops_link").is_some_and(|m| m.is_link()));
    /// // `?struct_ops/...` and `?.struct_ops`: not loaded or created unless asked for.
    /// assert!(!obj.program("dummy_optional_test_1").expect("present").autoload());
    /// assert!(!obj.map("dummy_ops_optional").expect("present").autocreate());
    /// # Ok::<(), structops_obj::Error>(())
    /// ```
    pub fn parse(data: &[u8]) -> Result<Object, Error> {
        Object::parse_with(data, &ParseOptions::default())
    }

    /// Parses a BPF object as `bpf_object__open_file` does.
    pub fn parse_with(data: &[u8], opts: &ParseOptions) -> Result<Object, Error> {
        let elf = ElfFile::parse(data)?;
        let c = collect(&elf)?;
        let mut obj = Object {
            name: opts.name.clone(),
            license: c.license,
            kern_version: c.kern_version,
            big_endian: elf.big_endian,
            btf: None,
            btf_ext: None,
            ext_secs: ExtSecIdx::default(),
            programs: c.programs,
            maps: Vec::new(),
            externs: Vec::new(),
            kconfig_map: None,
            arena_map: None,
            text_shndx: c.text_shndx,
            section_names: elf
                .sections
                .iter()
                .map(|s| s.name.unwrap_or("").to_string())
                .collect(),
        };
        obj.init_btf(
            &elf,
            c.btf_data,
            c.btf_ext_data,
            c.maps_shndx.is_some() || c.has_st_ops,
        )?;
        let mut bb = obj.btf.as_ref().map(BtfBuilder::from_btf);
        obj.collect_externs(&elf, bb.as_mut())?;
        if let (Some(btf), Some(bb)) = (&obj.btf, bb.as_mut()) {
            fixup_btf(&elf, btf, bb)?;
        }
        if let Some(bb) = bb {
            obj.btf = Some(bb.build());
        }
        obj.init_user_maps(&elf, c.maps_shndx, opts, c.arena)?;
        obj.init_global_data_maps(&elf, &c.sec_types)?;
        obj.init_kconfig_map(&elf)?;
        obj.init_struct_ops_maps(&elf, &c.sec_types)?;
        for p in &mut obj.programs {
            p.sec_def = find_sec_def(&p.section);
            if let Some(d) = p.sec_def {
                p.prog_type = d.prog_type;
                p.expected_attach_type = d.expected_attach_type;
            }
        }
        obj.collect_relos(&elf, &c.sec_types, c.maps_shndx, c.arena.map(|a| a.0))?;
        obj.attach_ext_info();
        Ok(obj)
    }

    fn init_btf(
        &mut self,
        elf: &ElfFile<'_>,
        btf_data: Option<&[u8]>,
        ext_data: Option<&[u8]>,
        needs_btf: bool,
    ) -> Result<(), Error> {
        let mut err: Option<Error> = Some(Error::BtfMissing);
        if let Some(d) = btf_data {
            match Btf::parse(d) {
                Ok(b) => {
                    self.btf = Some(b);
                    err = None;
                }
                Err(source) => {
                    return if needs_btf {
                        Err(Error::Btf { source })
                    } else {
                        Ok(())
                    };
                }
            }
        }
        if let Some(d) = ext_data {
            let Some(btf) = &self.btf else {
                return match err {
                    Some(e) if needs_btf => Err(e),
                    _ => Ok(()),
                };
            };
            match BtfExt::parse(d) {
                Ok(ext) => {
                    let idx = |off: u32| -> usize {
                        match btf.name(off) {
                            Ok(n) if !n.is_empty() => elf.section_by_name(n).map_or(0, |s| s.index),
                            _ => 0,
                        }
                    };
                    fn map<T>(secs: &[SecInfo<T>], idx: &dyn Fn(u32) -> usize) -> Vec<usize> {
                        secs.iter().map(|s| idx(s.sec_name_off)).collect()
                    }
                    self.ext_secs = ExtSecIdx {
                        func: map(&ext.func_info, &idx),
                        line: map(&ext.line_info, &idx),
                        core: map(&ext.core_relos, &idx),
                    };
                    self.btf_ext = Some(ext);
                    err = None;
                }
                Err(source) => err = Some(Error::Btf { source }),
            }
        }
        match err {
            Some(e) if needs_btf => Err(e),
            _ => Ok(()),
        }
    }

    /// `bpf_object__collect_externs`, editing the `.ksyms`/`.kconfig` DATASECs in `bb`.
    fn collect_externs(
        &mut self,
        elf: &ElfFile<'_>,
        mut bb: Option<&mut BtfBuilder>,
    ) -> Result<(), Error> {
        let symtab = elf
            .section(elf.symtab)
            .ok_or(crate::error::ElfError::NoSymbolTable)?;
        if symtab.entsize != SYM_SIZE as u64 {
            return Err(Error::Elf {
                source: crate::error::ElfError::SectionData { index: elf.symtab },
            });
        }
        let btf = self.btf.as_ref();
        // add_dummy_ksym_var: a VAR standing in for kfuncs in .ksyms.
        let mut dummy: Option<(TypeId, u32)> = None;
        if let (Some(btf), Some(bb)) = (btf, bb.as_deref_mut())
            && let Some(ksec) = btf.find_by_name_kind(".ksyms", Kind::Datasec)
            && let Ok(TypeKind::Datasec { vars, .. }) = btf.ty(ksec).map(|t| &t.kind)
            && vars
                .iter()
                .any(|v| btf.ty(v.ty).map(|t| t.kind()) == Ok(Kind::Func))
        {
            let int_id = find_int_btf_id(btf);
            let name_off = bb.add_string("dummy_ksym");
            let id = bb.add_type(Type {
                name_off,
                kind: TypeKind::Var {
                    ty: int_id,
                    linkage: Linkage::Global,
                },
            });
            dummy = Some((id, name_off));
        }
        let n = (symtab.size / SYM_SIZE as u64) as usize;
        let mut ksym_sec = None;
        let mut kcfg_sec = None;
        for i in 0..n {
            let sym = elf
                .symbol(i)
                .ok_or(crate::error::ElfError::SectionData { index: elf.symtab })?;
            if !sym.is_extern() {
                continue;
            }
            let Some(sym_name) = sym.name.filter(|n| !n.is_empty()) else {
                continue;
            };
            let btf = btf.ok_or_else(|| Error::Extern {
                source: ExternError::NoBtf {
                    name: sym_name.to_string(),
                },
            })?;
            let btf_id = find_extern_btf_id(btf, sym_name)?;
            let t = btf.ty(btf_id).map_err(|_| Error::Extern {
                source: ExternError::BtfNotFound {
                    name: sym_name.to_string(),
                },
            })?;
            let name = btf.name(t.name_off).unwrap_or(sym_name).to_string();
            let essential = Btf::essential_name(&name);
            let essent_name = (essential.len() != name.len()).then(|| essential.to_string());
            let sec_btf_id = find_extern_sec_btf_id(btf, btf_id).ok_or_else(|| Error::Extern {
                source: ExternError::NoSection { name: name.clone() },
            })?;
            let sec_name = btf.type_name(sec_btf_id).unwrap_or("");
            let is_func = t.kind() == Kind::Func;
            let target = t.target().unwrap_or(0);
            let kind = if sec_name == ".kconfig" {
                if is_func {
                    return Err(Error::Extern {
                        source: ExternError::FuncInKconfig { name },
                    });
                }
                kcfg_sec = Some(sec_btf_id);
                let size = btf.size_of(target).ok().filter(|s| *s > 0);
                let align = btf.align_of(target).ok().filter(|a| *a > 0);
                let (Some(size), Some(align)) = (size, align) else {
                    return Err(Error::Extern {
                        source: ExternError::KcfgSize { name },
                    });
                };
                let (ty, signed) = find_kcfg_type(btf, target);
                let Some(ty) = ty else {
                    return Err(Error::Extern {
                        source: ExternError::UnsupportedType { name },
                    });
                };
                ExternKind::Kconfig(Kcfg {
                    ty,
                    size,
                    align,
                    data_off: 0,
                    signed,
                })
            } else if sec_name == ".ksyms" {
                ksym_sec = Some(sec_btf_id);
                let type_id = btf.resolve(target).unwrap_or(target);
                ExternKind::Ksym(Ksym {
                    type_id,
                    ..Ksym::default()
                })
            } else {
                return Err(Error::Extern {
                    source: ExternError::UnknownSection {
                        name,
                        section: sec_name.to_string(),
                    },
                });
            };
            self.externs.push(Extern {
                name,
                essent_name,
                sym_idx: i,
                btf_id,
                sec_btf_id,
                is_weak: sym.bind() == E::STB_WEAK,
                is_set: false,
                is_func,
                kind,
            });
        }
        if self.externs.is_empty() {
            return Ok(());
        }
        // cmp_externs: kconfig first (by alignment descending, size ascending, name),
        // then ksyms by name.
        self.externs.sort_by(|a, b| {
            let key = |e: &Extern| match e.kind {
                ExternKind::Kconfig(k) => (0u8, u32::MAX - k.align, k.size),
                ExternKind::Ksym(_) => (1u8, 0, 0),
            };
            key(a).cmp(&key(b)).then_with(|| a.name.cmp(&b.name))
        });
        let (Some(btf), Some(bb)) = (btf, bb) else {
            return Ok(());
        };
        if let Some(sec_id) = ksym_sec {
            let int_id = find_int_btf_id(btf);
            let mut sec = bb
                .types()
                .get(sec_id as usize)
                .cloned()
                .ok_or(Error::BtfMissing)?;
            if let TypeKind::Datasec { size, vars } = &mut sec.kind {
                let mut off = 0u32;
                for vs in vars.iter_mut() {
                    let vt = btf
                        .ty(vs.ty)
                        .map_err(|source| Error::Btf { source })?
                        .clone();
                    let vname = btf.name(vt.name_off).unwrap_or("");
                    if !self.externs.iter().any(|e| e.name == vname) {
                        return Err(Error::Extern {
                            source: ExternError::NoDefinition {
                                name: vname.to_string(),
                            },
                        });
                    }
                    match vt.kind {
                        TypeKind::Func { proto, .. } => {
                            let func_id = vs.ty;
                            if let Some((dummy_id, dummy_name)) = dummy {
                                if let Ok(p) = btf.ty(proto)
                                    && let TypeKind::FuncProto { ret, params } = &p.kind
                                {
                                    let params = params
                                        .iter()
                                        .map(|pa| {
                                            let mut pa = *pa;
                                            if pa.ty != 0 && pa.name_off == 0 {
                                                pa.name_off = dummy_name;
                                            }
                                            pa
                                        })
                                        .collect();
                                    bb.set(
                                        proto,
                                        Type {
                                            name_off: p.name_off,
                                            kind: TypeKind::FuncProto { ret: *ret, params },
                                        },
                                    );
                                }
                                vs.ty = dummy_id;
                            }
                            bb.set(
                                func_id,
                                Type {
                                    name_off: vt.name_off,
                                    kind: TypeKind::Func {
                                        proto,
                                        linkage: Linkage::Global,
                                    },
                                },
                            );
                        }
                        TypeKind::Var { .. } => {
                            bb.set(
                                vs.ty,
                                Type {
                                    name_off: vt.name_off,
                                    kind: TypeKind::Var {
                                        ty: int_id,
                                        linkage: Linkage::Global,
                                    },
                                },
                            );
                        }
                        _ => {}
                    }
                    vs.offset = off;
                    vs.size = 4;
                    off += 4;
                }
                *size = off;
            }
            bb.set(sec_id, sec);
        }
        if let Some(sec_id) = kcfg_sec {
            let mut off = 0u32;
            for e in &mut self.externs {
                if let ExternKind::Kconfig(k) = &mut e.kind {
                    k.data_off = off.div_ceil(k.align).saturating_mul(k.align);
                    off = k.data_off.saturating_add(k.size);
                }
            }
            let mut sec = bb
                .types()
                .get(sec_id as usize)
                .cloned()
                .ok_or(Error::BtfMissing)?;
            if let TypeKind::Datasec { size, vars } = &mut sec.kind {
                *size = off;
                for vs in vars.iter_mut() {
                    let vt = btf.ty(vs.ty).map_err(|source| Error::Btf { source })?;
                    let vname = btf.name(vt.name_off).unwrap_or("");
                    let Some(ext) = self.externs.iter().find(|e| e.name == vname) else {
                        return Err(Error::Extern {
                            source: ExternError::NoDefinition {
                                name: vname.to_string(),
                            },
                        });
                    };
                    if let TypeKind::Var { ty, .. } = vt.kind {
                        bb.set(
                            vs.ty,
                            Type {
                                name_off: vt.name_off,
                                kind: TypeKind::Var {
                                    ty,
                                    linkage: Linkage::Global,
                                },
                            },
                        );
                    }
                    if let Some(k) = ext.kcfg() {
                        vs.offset = k.data_off;
                    }
                }
            }
            bb.set(sec_id, sec);
        }
        Ok(())
    }

    /// `bpf_object__init_user_btf_maps`.
    fn init_user_maps(
        &mut self,
        elf: &ElfFile<'_>,
        maps_shndx: Option<usize>,
        opts: &ParseOptions,
        arena: Option<(usize, &[u8])>,
    ) -> Result<(), Error> {
        let Some(shndx) = maps_shndx else {
            if arena.is_some() {
                return Err(Error::Map {
                    map: ".addr_space.1".into(),
                    source: MapError::NoArenaMap,
                });
            }
            return Ok(());
        };
        let map_err = |map: &str, source| Error::Map {
            map: map.to_string(),
            source,
        };
        let data_len = elf
            .section(shndx)
            .and_then(|s| s.data.map(|_| s.data_size()))
            .ok_or_else(|| map_err(".maps", MapError::NoBtf))?;
        let btf = self
            .btf
            .as_ref()
            .ok_or_else(|| map_err(".maps", MapError::NoBtf))?;
        let sec_id = (1..btf.len())
            .find(|&i| {
                btf.ty(i).is_ok_and(|t| t.kind() == Kind::Datasec)
                    && btf.type_name(i) == Ok(".maps")
            })
            .ok_or_else(|| map_err(".maps", MapError::NoMapsDatasec))?;
        let vars = match btf.ty(sec_id).map(|t| &t.kind) {
            Ok(TypeKind::Datasec { vars, .. }) => vars.clone(),
            _ => Vec::new(),
        };
        for (i, vi) in vars.iter().enumerate() {
            let var = btf.ty(vi.ty).map_err(|source| Error::Btf { source })?;
            let map_name = btf.name(var.name_off).unwrap_or("");
            if map_name.is_empty() {
                return Err(map_err("", MapError::EmptyName { index: i }));
            }
            if u64::from(vi.offset) + u64::from(vi.size) > data_len as u64 {
                return Err(map_err(
                    map_name,
                    MapError::Corrupted {
                        offset: vi.offset,
                        size: vi.size,
                        section_size: data_len,
                    },
                ));
            }
            let TypeKind::Var { ty, linkage } = var.kind else {
                return Err(map_err(map_name, MapError::NotVar { kind: var.kind() }));
            };
            if linkage != Linkage::Global {
                let linkage = match linkage {
                    Linkage::Static => "static",
                    Linkage::Extern => "extern",
                    _ => "unknown",
                };
                return Err(map_err(map_name, MapError::Linkage { linkage }));
            }
            let (def_id, def_t) = btf
                .resolved_ty(ty)
                .map_err(|source| Error::Btf { source })?;
            let Some(comp) = def_t.composite().filter(|_| def_t.kind() == Kind::Struct) else {
                return Err(map_err(
                    map_name,
                    MapError::DefNotStruct { kind: var.kind() },
                ));
            };
            if comp.size > vi.size {
                return Err(map_err(map_name, MapError::DefTooBig));
            }
            let mut map = Map::new(map_name.to_string(), MapKind::User, shndx);
            map.section_offset = vi.offset as usize;
            map.btf_var_idx = i;
            let mut def = MapDef::default();
            let mut inner_def = MapDef::default();
            parse_btf_map_def(
                btf,
                def_id,
                opts.strict_maps,
                &mut def,
                Some(&mut inner_def),
            )
            .map_err(|e| map_err(map_name, e))?;
            map.fill_from_def(&def, opts.page_size);
            if def.pinning == PIN_BY_NAME {
                map.pin_path = Some(format!("{}/{}", opts.pin_root_path, map.name()));
            }
            if def.has_inner {
                let mut inner = Map::new(format!("{map_name}.inner"), MapKind::User, shndx);
                inner.fill_from_def(&inner_def, opts.page_size);
                map.inner = Some(Box::new(inner));
            }
            self.maps.push(map);
        }
        for i in 0..self.maps.len() {
            if self.maps.get(i).map(|m| m.map_type) != Some(MapType::ARENA) {
                continue;
            }
            if let Some(prev) = self.arena_map {
                let other = self
                    .maps
                    .get(prev)
                    .map(|m| m.name.clone())
                    .unwrap_or_default();
                let name = self.maps.get(i).map(|m| m.name.clone()).unwrap_or_default();
                return Err(map_err(&name, MapError::MultipleArenas { other }));
            }
            self.arena_map = Some(i);
            if let (Some((_, data)), Some(m)) = (arena, self.maps.get_mut(i)) {
                let page = u64::from(opts.page_size.max(1));
                let mmap_sz = page * u64::from(m.max_entries);
                let need = (data.len() as u64).div_ceil(page) * page;
                if need > mmap_sz {
                    return Err(map_err(
                        &m.name.clone(),
                        MapError::ArenaTooSmall {
                            map_size: mmap_sz,
                            data_size: data.len(),
                        },
                    ));
                }
                m.data = data.to_vec();
            }
        }
        if arena.is_some() && self.arena_map.is_none() {
            return Err(map_err(".addr_space.1", MapError::NoArenaMap));
        }
        Ok(())
    }

    /// `bpf_object__init_internal_map`.
    fn add_internal_map(&mut self, kind: MapKind, real_name: &str, sec_idx: usize, data: Vec<u8>) {
        let mut map = Map::new(internal_map_name(&self.name, real_name), kind, sec_idx);
        map.real_name = Some(real_name.to_string());
        map.map_type = MapType::ARRAY;
        map.key_size = 4;
        map.value_size = data.len() as u32;
        map.max_entries = 1;
        map.map_flags = if matches!(kind, MapKind::Rodata | MapKind::Kconfig) {
            map_flags::RDONLY_PROG
        } else {
            0
        };
        if let Some(btf) = &self.btf
            && let Some(&id) = btf.ids_by_name(real_name).first()
        {
            map.btf_value_type_id = id;
            // map_is_mmapable: some VAR of the DATASEC is not static.
            if let Ok(TypeKind::Datasec { vars, .. }) = btf.ty(id).map(|t| &t.kind)
                && vars.iter().any(|v| {
                    matches!(btf.ty(v.ty).map(|t| &t.kind),
                        Ok(TypeKind::Var { linkage, .. }) if *linkage != Linkage::Static)
                })
            {
                map.map_flags |= map_flags::MMAPABLE;
            }
        }
        map.data = data;
        self.maps.push(map);
    }

    /// `bpf_object__init_global_data_maps`.
    fn init_global_data_maps(
        &mut self,
        elf: &ElfFile<'_>,
        sec_types: &[SecType],
    ) -> Result<(), Error> {
        for (idx, st) in sec_types.iter().enumerate().skip(1) {
            let Some(sec) = elf.section(idx) else {
                continue;
            };
            let size = sec.data_size();
            if size == 0 {
                continue;
            }
            let name = sec.name.unwrap_or("");
            match st {
                SecType::Data => self.add_internal_map(
                    MapKind::Data,
                    name,
                    idx,
                    sec.data.unwrap_or(&[]).to_vec(),
                ),
                SecType::Rodata => self.add_internal_map(
                    MapKind::Rodata,
                    name,
                    idx,
                    sec.data.unwrap_or(&[]).to_vec(),
                ),
                SecType::Bss => {
                    if size > MAX_ZEROED_MAP_SIZE {
                        return Err(Error::Map {
                            map: name.to_string(),
                            source: MapError::TooLarge { size },
                        });
                    }
                    self.add_internal_map(MapKind::Bss, name, idx, vec![0; size])
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// `bpf_object__init_kconfig_map`.
    fn init_kconfig_map(&mut self, elf: &ElfFile<'_>) -> Result<(), Error> {
        let last = self.externs.iter().rev().find_map(|e| e.kcfg().copied());
        if let Some(k) = last {
            let size = k.data_off as usize + k.size as usize;
            if size > MAX_ZEROED_MAP_SIZE {
                return Err(Error::Map {
                    map: ".kconfig".into(),
                    source: MapError::TooLarge { size },
                });
            }
            self.add_internal_map(MapKind::Kconfig, ".kconfig", elf.symtab, vec![0; size]);
            self.kconfig_map = Some(self.maps.len() - 1);
        }
        Ok(())
    }

    /// `bpf_object_init_struct_ops` / `init_struct_ops_maps`.
    fn init_struct_ops_maps(
        &mut self,
        elf: &ElfFile<'_>,
        sec_types: &[SecType],
    ) -> Result<(), Error> {
        for (idx, st) in sec_types.iter().enumerate() {
            if *st != SecType::StOps {
                continue;
            }
            let Some(sec) = elf.section(idx) else {
                continue;
            };
            let full_name = sec.name.unwrap_or("");
            let data = sec.data.unwrap_or(&[]);
            let so_err = |map: &str, source| Error::StructOps {
                map: map.to_string(),
                source,
            };
            let btf = self
                .btf
                .as_ref()
                .ok_or_else(|| so_err("", StructOpsError::NoBtf))?;
            let dsec = btf
                .find_by_name_kind(full_name, Kind::Datasec)
                .ok_or_else(|| {
                    so_err(
                        "",
                        StructOpsError::NoDatasec {
                            section: full_name.to_string(),
                        },
                    )
                })?;
            let vars = match btf.ty(dsec).map(|t| &t.kind) {
                Ok(TypeKind::Datasec { vars, .. }) => vars.clone(),
                _ => Vec::new(),
            };
            // libbpf strips a leading '?' after the first variable (so only the first
            // map of a "?.struct_ops" section starts with autocreate off).
            let mut sec_name = full_name;
            for vsi in &vars {
                let var_name = btf.type_name(vsi.ty).unwrap_or("").to_string();
                let type_id = resolve_type(btf, vsi.ty).ok_or_else(|| {
                    so_err(&var_name, StructOpsError::VarType { type_id: vsi.ty })
                })?;
                let t = btf
                    .ty(type_id)
                    .map_err(|_| so_err(&var_name, StructOpsError::VarType { type_id }))?;
                let tname = btf.name(t.name_off).unwrap_or("");
                if tname.is_empty() {
                    return Err(so_err(&var_name, StructOpsError::AnonymousType));
                }
                let Some(comp) = t.composite().filter(|_| t.kind() == Kind::Struct) else {
                    return Err(so_err(
                        &var_name,
                        StructOpsError::NotStruct {
                            name: tname.to_string(),
                        },
                    ));
                };
                let mut map = Map::new(var_name.clone(), MapKind::StructOps, idx);
                map.section_offset = vsi.offset as usize;
                map.btf_value_type_id = type_id;
                if let Some(rest) = sec_name.strip_prefix('?') {
                    map.autocreate = false;
                    sec_name = rest;
                }
                map.map_type = MapType::STRUCT_OPS;
                map.key_size = 4;
                map.value_size = comp.size;
                map.max_entries = 1;
                map.map_flags = if sec_name == ".struct_ops.link" {
                    map_flags::LINK
                } else {
                    0
                };
                map.autoattach = true;
                let start = vsi.offset as usize;
                let bytes = start
                    .checked_add(comp.size as usize)
                    .and_then(|end| data.get(start..end))
                    .ok_or_else(|| {
                        so_err(
                            &var_name,
                            StructOpsError::BeyondSection {
                                section: sec_name.to_string(),
                            },
                        )
                    })?;
                map.struct_ops = Some(StructOps {
                    type_id,
                    type_name: tname.to_string(),
                    kernel_type_name: Btf::essential_name(tname).to_string(),
                    data: bytes.to_vec(),
                    progs: vec![None; comp.members.len()],
                    declared: vec![None; comp.members.len()],
                    kern: None,
                });
                self.maps.push(map);
            }
        }
        Ok(())
    }

    /// `bpf_object__collect_relos`.
    fn collect_relos(
        &mut self,
        elf: &ElfFile<'_>,
        sec_types: &[SecType],
        maps_shndx: Option<usize>,
        arena_shndx: Option<usize>,
    ) -> Result<(), Error> {
        for (idx, st) in sec_types.iter().enumerate() {
            if *st != SecType::Relo {
                continue;
            }
            let Some(sec) = elf.section(idx) else {
                continue;
            };
            let target = sec.info as usize;
            let rels = elf.rels(sec).map_err(|source| Error::Reloc {
                section: sec.name.unwrap_or("").to_string(),
                index: 0,
                source: RelocError::Elf { source },
            })?;
            if sec_types.get(target) == Some(&SecType::StOps) {
                self.collect_st_ops_relos(elf, target, &rels)?;
            } else if Some(target) == maps_shndx {
                self.collect_map_relos(elf, sec, target, &rels)?;
            } else {
                self.collect_prog_relos(
                    elf,
                    sec,
                    target,
                    &rels,
                    sec_types,
                    maps_shndx,
                    arena_shndx,
                )?;
            }
        }
        for p in &mut self.programs {
            sort_relos(&mut p.relos);
        }
        Ok(())
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "mirrors libbpf's collection state"
    )]
    fn collect_prog_relos(
        &mut self,
        elf: &ElfFile<'_>,
        rel_sec: &ElfSection<'_>,
        target: usize,
        rels: &[ElfRel],
        sec_types: &[SecType],
        maps_shndx: Option<usize>,
        arena_shndx: Option<usize>,
    ) -> Result<(), Error> {
        let relo_sec_name = rel_sec.name.unwrap_or("");
        let sec_cnt = elf.sections.len();
        let tsec = elf
            .section(target)
            .filter(|s| s.data.is_some())
            .ok_or(Error::Elf {
                source: crate::error::ElfError::SectionData { index: target },
            })?;
        let target_size = tsec.data_size() as u64;
        for (i, rel) in rels.iter().enumerate() {
            let err = |source| Error::Reloc {
                section: relo_sec_name.to_string(),
                index: i,
                source,
            };
            let sym = elf
                .symbol(rel.sym as usize)
                .ok_or_else(|| err(RelocError::NoSymbol { sym: rel.sym }))?;
            if usize::from(sym.shndx) >= sec_cnt {
                return Err(err(RelocError::SymbolSection {
                    sym: rel.sym,
                    shndx: sym.shndx,
                }));
            }
            if rel.offset % INSN_SZ as u64 != 0 || rel.offset >= target_size {
                return Err(err(RelocError::BadOffset { offset: rel.offset }));
            }
            let insn_idx = (rel.offset / INSN_SZ as u64) as usize;
            let sym_name = if sym.st_type() == E::STT_SECTION && sym.st_name == 0 {
                elf.section_name(usize::from(sym.shndx))
            } else {
                sym.name
            }
            .unwrap_or("<?");
            let Some(pi) = find_prog_by_sec_insn(&self.programs, target, insn_idx) else {
                // An overridden weak function's code: libbpf skips it.
                continue;
            };
            let local = insn_idx - self.programs.get(pi).map_or(0, |p| p.insn_off);
            let kind = self
                .classify_reloc(
                    elf,
                    pi,
                    local,
                    sym_name,
                    sym,
                    rel,
                    sec_types,
                    maps_shndx,
                    arena_shndx,
                )
                .map_err(err)?;
            if let Some(p) = self.programs.get_mut(pi) {
                p.elf_relocs.push(ElfReloc {
                    insn_idx: local,
                    symbol: rel.sym,
                    r_type: RelocType::from_raw(rel.r_type),
                });
                p.relos.push(Relocation {
                    insn_idx: local,
                    kind,
                });
            }
        }
        Ok(())
    }

    /// `bpf_program__record_reloc`.
    #[expect(
        clippy::too_many_arguments,
        reason = "mirrors libbpf's collection state"
    )]
    fn classify_reloc(
        &self,
        elf: &ElfFile<'_>,
        pi: usize,
        insn_idx: usize,
        sym_name: &str,
        sym: &ElfSymbol<'_>,
        rel: &ElfRel,
        sec_types: &[SecType],
        maps_shndx: Option<usize>,
        arena_shndx: Option<usize>,
    ) -> Result<RelocKind, RelocError> {
        let insn = self
            .programs
            .get(pi)
            .and_then(|p| p.insns.get(insn_idx))
            .copied()
            .ok_or(RelocError::InsnOutOfRange { insn: insn_idx })?;
        let is_call = insn.code == structops_isa::opcode::CALL_CODE;
        let is_ldimm64 = insn.code == structops_isa::opcode::LD_IMM64;
        if !is_call && !is_ldimm64 {
            return Err(RelocError::BadInsn {
                symbol: sym_name.to_string(),
                insn: insn_idx,
                code: insn.code,
            });
        }
        if sym.is_extern() {
            let ext = self
                .externs
                .iter()
                .position(|e| e.sym_idx == rel.sym as usize)
                .ok_or_else(|| RelocError::NoExtern {
                    symbol: sym_name.to_string(),
                    sym: rel.sym,
                })?;
            return Ok(if is_call {
                RelocKind::ExternCall { ext }
            } else {
                RelocKind::ExternLd64 { ext }
            });
        }
        let shndx = usize::from(sym.shndx);
        if is_call {
            if insn.src_reg() != structops_isa::opcode::PSEUDO_CALL {
                return Err(RelocError::BadCallOpcode);
            }
            if shndx == 0 || Some(shndx) != self.text_shndx {
                return Err(RelocError::BadCallSection {
                    symbol: sym_name.to_string(),
                    section: elf.section_name(shndx).unwrap_or("").to_string(),
                });
            }
            if !sym.value.is_multiple_of(INSN_SZ as u64) {
                return Err(RelocError::BadCallOffset {
                    symbol: sym_name.to_string(),
                    value: sym.value,
                });
            }
            return Ok(RelocKind::Call { sym_off: sym.value });
        }
        if shndx == 0 || sym.shndx >= SHN_LORESERVE {
            return Err(RelocError::SpecialSection {
                symbol: sym_name.to_string(),
                shndx: sym.shndx,
            });
        }
        if sym.is_subprog(self.text_shndx) {
            if !sym.value.is_multiple_of(INSN_SZ as u64) || insn.imm % INSN_SZ as i32 != 0 {
                return Err(RelocError::BadSubprogAddr {
                    symbol: sym_name.to_string(),
                    value: sym.value,
                    imm: insn.imm,
                });
            }
            return Ok(RelocKind::SubprogAddr { sym_off: sym.value });
        }
        let kind = if shndx == elf.symtab {
            Some(MapKind::Kconfig)
        } else {
            match sec_types.get(shndx) {
                Some(SecType::Bss) => Some(MapKind::Bss),
                Some(SecType::Data) => Some(MapKind::Data),
                Some(SecType::Rodata) => Some(MapKind::Rodata),
                _ => None,
            }
        };
        let sec_name = elf.section_name(shndx).unwrap_or("").to_string();
        if Some(shndx) == arena_shndx {
            let map = self
                .arena_map
                .ok_or(RelocError::NoArenaMap { insn: insn_idx })?;
            return Ok(RelocKind::Data {
                map,
                sym_off: sym.value,
            });
        }
        let Some(kind) = kind else {
            if Some(shndx) != maps_shndx {
                return Err(RelocError::BadMapSection {
                    symbol: sym_name.to_string(),
                    section: sec_name,
                });
            }
            let map = self
                .maps
                .iter()
                .position(|m| {
                    !m.kind.is_internal()
                        && m.section_index == shndx
                        && m.section_offset as u64 == sym.value
                })
                .ok_or(RelocError::NoMap {
                    section: sec_name,
                    offset: sym.value,
                })?;
            return Ok(RelocKind::Map { map });
        };
        if !matches!(
            sec_types.get(shndx),
            Some(SecType::Bss | SecType::Data | SecType::Rodata)
        ) {
            return Err(RelocError::BadDataSection { section: sec_name });
        }
        let map = self
            .maps
            .iter()
            .position(|m| m.kind == kind && m.section_index == shndx)
            .ok_or(RelocError::NoDataMap { section: sec_name })?;
        Ok(RelocKind::Data {
            map,
            sym_off: sym.value,
        })
    }

    /// `bpf_object__collect_map_relos`: initial slots of map-in-map and prog arrays.
    fn collect_map_relos(
        &mut self,
        elf: &ElfFile<'_>,
        rel_sec: &ElfSection<'_>,
        maps_shndx: usize,
        rels: &[ElfRel],
    ) -> Result<(), Error> {
        let relo_sec_name = rel_sec.name.unwrap_or("").to_string();
        let btf = self.btf.as_ref().ok_or_else(|| Error::Map {
            map: ".maps".into(),
            source: MapError::NoBtf,
        })?;
        let sec_id = btf
            .find_by_name_kind(".maps", Kind::Datasec)
            .ok_or_else(|| Error::Map {
                map: ".maps".into(),
                source: MapError::NoMapsDatasec,
            })?;
        let vars: Vec<VarSecInfo> = match btf.ty(sec_id).map(|t| &t.kind) {
            Ok(TypeKind::Datasec { vars, .. }) => vars.clone(),
            _ => Vec::new(),
        };
        let mut updates: Vec<(usize, usize, Slot)> = Vec::new();
        for (i, rel) in rels.iter().enumerate() {
            let err = |source| Error::Reloc {
                section: relo_sec_name.clone(),
                index: i,
                source,
            };
            let sym = elf
                .symbol(rel.sym as usize)
                .ok_or_else(|| err(RelocError::NoSymbol { sym: rel.sym }))?;
            let name = sym.name.unwrap_or("<?>");
            let found = self.maps.iter().enumerate().find_map(|(j, m)| {
                if m.section_index != maps_shndx || m.kind != MapKind::User {
                    return None;
                }
                let vi = vars.get(m.btf_var_idx)?;
                let (off, size) = (u64::from(vi.offset), u64::from(vi.size));
                (off <= rel.offset && rel.offset + 8 <= off + size).then_some((j, *vi))
            });
            let Some((j, vi)) = found else {
                return Err(err(RelocError::MapsRelocNoMap {
                    symbol: name.to_string(),
                    offset: rel.offset,
                }));
            };
            let Some(map) = self.maps.get(j) else {
                continue;
            };
            let slot = if map.map_type.is_map_in_map() {
                if Some(usize::from(sym.shndx)) != Some(maps_shndx) {
                    return Err(err(RelocError::NotBtfMap {
                        symbol: name.to_string(),
                    }));
                }
                if map.map_type == MapType::HASH_OF_MAPS && map.key_size != 4 {
                    return Err(err(RelocError::HashOfMapsKey {
                        map: map.name.clone(),
                    }));
                }
                let t = self
                    .maps
                    .iter()
                    .position(|m| m.name() == name)
                    .ok_or_else(|| {
                        err(RelocError::NoSuchMap {
                            symbol: name.to_string(),
                        })
                    })?;
                Slot::Map(t)
            } else if map.map_type == MapType::PROG_ARRAY {
                let t = self
                    .programs
                    .iter()
                    .position(|p| !p.is_subprog && p.name == name)
                    .ok_or_else(|| {
                        err(RelocError::NoSuchProgram {
                            symbol: name.to_string(),
                        })
                    })?;
                let p = self.programs.get(t).ok_or_else(|| {
                    err(RelocError::NoSuchProgram {
                        symbol: name.to_string(),
                    })
                })?;
                if p.section_index != usize::from(sym.shndx)
                    || (p.insn_off * INSN_SZ) as u64 != sym.value
                    || p.is_subprog
                {
                    return Err(err(RelocError::NotEntryProgram {
                        symbol: name.to_string(),
                    }));
                }
                Slot::Program(t)
            } else {
                return Err(err(RelocError::BadMapsReloc {
                    symbol: name.to_string(),
                    reason: "map is neither map-in-map nor prog-array",
                }));
            };
            let bad = |reason| {
                err(RelocError::BadMapsReloc {
                    symbol: name.to_string(),
                    reason,
                })
            };
            let var = btf.ty(vi.ty).map_err(|_| bad("bad variable type"))?;
            let (_, def) = btf
                .resolved_ty(var.target().unwrap_or(0))
                .map_err(|_| bad("bad definition type"))?;
            let comp = def
                .composite()
                .ok_or_else(|| bad("definition is not a struct"))?;
            let last = comp
                .members
                .last()
                .ok_or_else(|| bad("definition has no members"))?;
            if btf.name(last.name_off) != Ok("values") {
                return Err(bad("last member is not 'values'"));
            }
            let moff = u64::from(last.bit_offset(comp.kflag) / 8);
            let rel_in_var = rel.offset - u64::from(vi.offset);
            if rel_in_var < moff {
                return Err(bad("relocation before 'values'"));
            }
            let moff = rel_in_var - moff;
            if moff % 8 != 0 {
                return Err(bad("slot offset is not pointer-aligned"));
            }
            updates.push((j, (moff / 8) as usize, slot));
        }
        for (j, idx, slot) in updates {
            if let Some(m) = self.maps.get_mut(j) {
                if idx >= m.init_slots.len() {
                    m.init_slots.resize(idx + 1, None);
                }
                if let Some(s) = m.init_slots.get_mut(idx) {
                    *s = Some(slot);
                }
            }
        }
        Ok(())
    }

    /// `bpf_object__collect_st_ops_relos`: bind struct_ops members to programs.
    fn collect_st_ops_relos(
        &mut self,
        elf: &ElfFile<'_>,
        target: usize,
        rels: &[ElfRel],
    ) -> Result<(), Error> {
        for rel in rels {
            let sym = elf.symbol(rel.sym as usize).ok_or(Error::StructOps {
                map: String::new(),
                source: StructOpsError::Elf {
                    source: crate::error::ElfError::SectionData { index: elf.symtab },
                },
            })?;
            let Some(mi) = self.maps.iter().position(|m| {
                m.kind == MapKind::StructOps
                    && m.section_index == target
                    && m.section_offset as u64 <= rel.offset
                    && rel.offset - (m.section_offset as u64) < u64::from(m.value_size)
            }) else {
                return Err(Error::StructOps {
                    map: String::new(),
                    source: StructOpsError::RelocNoMap { offset: rel.offset },
                });
            };
            let map_name = self
                .maps
                .get(mi)
                .map(|m| m.name.clone())
                .unwrap_or_default();
            let so_err = |source| Error::StructOps {
                map: map_name.clone(),
                source,
            };
            let moff = rel.offset - self.maps.get(mi).map_or(0, |m| m.section_offset as u64);
            if sym.shndx >= SHN_LORESERVE {
                return Err(so_err(StructOpsError::RelocSpecialSection {
                    shndx: sym.shndx,
                }));
            }
            if !sym.value.is_multiple_of(INSN_SZ as u64) {
                return Err(so_err(StructOpsError::RelocBadTarget { value: sym.value }));
            }
            let insn_idx = (sym.value / INSN_SZ as u64) as usize;
            let btf = self
                .btf
                .as_ref()
                .ok_or_else(|| so_err(StructOpsError::NoBtf))?;
            let type_id = self
                .maps
                .get(mi)
                .and_then(|m| m.struct_ops.as_ref())
                .map_or(0, |s| s.type_id);
            let comp = btf
                .ty(type_id)
                .ok()
                .and_then(|t| t.composite())
                .ok_or_else(|| so_err(StructOpsError::RelocNoMember { offset: moff }))?;
            let (member_idx, member) = comp
                .members
                .iter()
                .enumerate()
                .find(|(_, m)| u64::from(m.bit_offset(comp.kflag)) == moff * 8)
                .ok_or_else(|| so_err(StructOpsError::RelocNoMember { offset: moff }))?;
            let mname = btf.name(member.name_off).unwrap_or("").to_string();
            if !is_func_ptr(btf, member.ty) {
                return Err(so_err(StructOpsError::RelocNotFuncPtr { member: mname }));
            }
            let pi = find_prog_by_sec_insn(&self.programs, usize::from(sym.shndx), insn_idx)
                .ok_or_else(|| {
                    so_err(StructOpsError::RelocNoProgram {
                        member: mname.clone(),
                    })
                })?;
            let prog = self.programs.get(pi).ok_or_else(|| {
                so_err(StructOpsError::RelocNoProgram {
                    member: mname.clone(),
                })
            })?;
            if prog.prog_type != ProgType::STRUCT_OPS {
                return Err(so_err(StructOpsError::RelocNotStructOps {
                    program: prog.name.clone(),
                }));
            }
            if let Some(st) = self.maps.get_mut(mi).and_then(|m| m.struct_ops.as_mut()) {
                if let Some(slot) = st.progs.get_mut(member_idx) {
                    *slot = Some(pi);
                }
                if let Some(slot) = st.declared.get_mut(member_idx) {
                    *slot = Some(pi);
                }
            }
        }
        Ok(())
    }

    /// Hands each program the `.BTF.ext` records that fall in its instructions.
    fn attach_ext_info(&mut self) {
        let Some(ext) = &self.btf_ext else { return };
        for p in &mut self.programs {
            let (psec, start, end) = (p.section_index, p.insn_off, p.insn_off + p.insns.len());
            let inside = move |sec: usize, off: u32| {
                let i = off as usize / INSN_SZ;
                sec == psec && i >= start && i < end
            };
            for (s, sec) in ext.func_info.iter().zip(&self.ext_secs.func) {
                p.func_info
                    .extend(s.records.iter().filter(|r| inside(*sec, r.insn_off)));
            }
            for (s, sec) in ext.line_info.iter().zip(&self.ext_secs.line) {
                p.line_info
                    .extend(s.records.iter().filter(|r| inside(*sec, r.insn_off)));
            }
            for (s, sec) in ext.core_relos.iter().zip(&self.ext_secs.core) {
                p.core_relos
                    .extend(s.records.iter().filter(|r| inside(*sec, r.insn_off)));
            }
        }
    }
}

/// libbpf's `find_int_btf_id`: the first 32-bit `INT`.
fn find_int_btf_id(btf: &Btf) -> TypeId {
    btf.types()
        .iter()
        .enumerate()
        .skip(1)
        .find(|(_, t)| matches!(t.kind, TypeKind::Int { bits: 32, .. }))
        .map_or(0, |(i, _)| i as TypeId)
}

/// libbpf's `find_extern_btf_id`: the first `VAR` or `FUNC` named `name`, which must be
/// `extern`.
fn find_extern_btf_id(btf: &Btf, name: &str) -> Result<TypeId, Error> {
    for &id in btf.ids_by_name(name) {
        let Ok(t) = btf.ty(id) else { continue };
        match t.kind {
            TypeKind::Var { linkage, .. } | TypeKind::Func { linkage, .. } => {
                if linkage != Linkage::Extern {
                    return Err(Error::Extern {
                        source: ExternError::BadLinkage {
                            name: name.to_string(),
                        },
                    });
                }
                return Ok(id);
            }
            _ => {}
        }
    }
    Err(Error::Extern {
        source: ExternError::BtfNotFound {
            name: name.to_string(),
        },
    })
}

/// libbpf's `find_extern_sec_btf_id`: the first DATASEC listing `ext_id`.
fn find_extern_sec_btf_id(btf: &Btf, ext_id: TypeId) -> Option<TypeId> {
    btf.types()
        .iter()
        .enumerate()
        .skip(1)
        .find_map(|(i, t)| match &t.kind {
            TypeKind::Datasec { vars, .. } if vars.iter().any(|v| v.ty == ext_id) => {
                Some(i as TypeId)
            }
            _ => None,
        })
}

/// `bpf_object_fixup_btf` / `btf_fixup_datasec`: DATASEC sizes and variable offsets
/// from the ELF, hidden globals made static, variables sorted by offset.
fn fixup_btf(elf: &ElfFile<'_>, btf: &Btf, bb: &mut BtfBuilder) -> Result<(), Error> {
    let n = bb.types().len();
    for id in 1..n {
        let Some(t) = bb.types().get(id).cloned() else {
            continue;
        };
        let TypeKind::Datasec { size, mut vars } = t.kind else {
            continue;
        };
        let ds_err = |section: &str, reason| Error::Map {
            map: section.to_string(),
            source: MapError::Datasec {
                section: section.to_string(),
                reason,
            },
        };
        let sec_name = btf.name(t.name_off).map_err(|_| ds_err("", "no name"))?;
        let mut new_size = size;
        if sec_name != ".kconfig" && sec_name != ".ksyms" {
            let mut fixup_offsets = false;
            if size == 0 {
                let sz = elf
                    .section_by_name(sec_name)
                    .filter(|s| s.data.is_some())
                    .map(|s| s.data_size())
                    .unwrap_or(0);
                if sz == 0 {
                    return Err(ds_err(sec_name, "failed to determine size from ELF"));
                }
                new_size = sz as u32;
                fixup_offsets = true;
            }
            for vs in vars.iter_mut() {
                let Some(vt) = bb.types().get(vs.ty as usize).cloned() else {
                    return Err(ds_err(sec_name, "unexpected non-VAR type found"));
                };
                let TypeKind::Var { ty, linkage } = vt.kind else {
                    return Err(ds_err(sec_name, "unexpected non-VAR type found"));
                };
                if matches!(linkage, Linkage::Static | Linkage::Extern) {
                    continue;
                }
                let var_name = btf
                    .name(vt.name_off)
                    .map_err(|_| ds_err(sec_name, "variable without a name"))?;
                let sym = elf
                    .symbols
                    .iter()
                    .find(|s| {
                        s.st_type() == E::STT_OBJECT
                            && matches!(s.bind(), E::STB_GLOBAL | E::STB_WEAK)
                            && s.name == Some(var_name)
                    })
                    .ok_or_else(|| ds_err(sec_name, "failed to find ELF symbol for a VAR"))?;
                if fixup_offsets {
                    vs.offset = sym.value as u32;
                }
                if sym.is_hidden() {
                    bb.set(
                        vs.ty,
                        Type {
                            name_off: vt.name_off,
                            kind: TypeKind::Var {
                                ty,
                                linkage: Linkage::Static,
                            },
                        },
                    );
                }
            }
        }
        vars.sort_by_key(|v| v.offset);
        bb.set(
            id as TypeId,
            Type {
                name_off: t.name_off,
                kind: TypeKind::Datasec {
                    size: new_size,
                    vars,
                },
            },
        );
    }
    Ok(())
}

/// `bpf_object__elf_collect` without BTF: section classification and programs.
fn collect<'a>(elf: &ElfFile<'a>) -> Result<Collected<'a>, Error> {
    let mut c = Collected {
        sec_types: vec![SecType::Unused; elf.sections.len()],
        license: String::new(),
        kern_version: None,
        maps_shndx: None,
        text_shndx: None,
        has_st_ops: false,
        arena: None,
        btf_data: None,
        btf_ext_data: None,
        programs: Vec::new(),
    };
    let sec_cnt = elf.sections.len();
    let mut last_idx = 0;
    for sec in elf.sections.iter().skip(1) {
        let idx = sec.index;
        last_idx = idx;
        let name = sec
            .name
            .ok_or(crate::error::ElfError::BadSectionName { index: idx })?;
        if ignore_section(sec, name) {
            continue;
        }
        let data = sec
            .data
            .ok_or(crate::error::ElfError::SectionData { index: idx })?;
        let size = sec.data_size();
        match name {
            "license" => {
                let n = data.len().min(63);
                let raw = data.get(..n).unwrap_or(&[]);
                let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
                c.license = String::from_utf8_lossy(raw.get(..end).unwrap_or(&[])).into_owned();
            }
            "version" => {
                let b: [u8; 4] = data.try_into().map_err(|_| Error::Version { size })?;
                c.kern_version = Some(if elf.big_endian {
                    u32::from_be_bytes(b)
                } else {
                    u32::from_le_bytes(b)
                });
            }
            "maps" => return Err(Error::LegacyMaps),
            ".maps" => c.maps_shndx = Some(idx),
            ".BTF" => {
                if sec.sh_type != E::SHT_PROGBITS {
                    return Err(Error::BtfSectionType { section: ".BTF" });
                }
                c.btf_data = Some(data);
            }
            ".BTF.ext" => {
                if sec.sh_type != E::SHT_PROGBITS {
                    return Err(Error::BtfSectionType {
                        section: ".BTF.ext",
                    });
                }
                c.btf_ext_data = Some(data);
            }
            _ if sec.sh_type == E::SHT_SYMTAB => {}
            _ if sec.sh_type == E::SHT_PROGBITS && size > 0 => {
                let slot = c.sec_types.get_mut(idx);
                if sec.is_exec() {
                    if name == ".text" {
                        c.text_shndx = Some(idx);
                    }
                    add_programs(elf, &mut c.programs, data, name, idx, c.text_shndx)?;
                } else if name == ".data" || name.starts_with(".data.") {
                    if let Some(s) = slot {
                        *s = SecType::Data;
                    }
                } else if name == ".rodata" || name.starts_with(".rodata.") {
                    if let Some(s) = slot {
                        *s = SecType::Rodata;
                    }
                } else if matches!(
                    name,
                    ".struct_ops" | ".struct_ops.link" | "?.struct_ops" | "?.struct_ops.link"
                ) {
                    if let Some(s) = slot {
                        *s = SecType::StOps;
                    }
                    c.has_st_ops = true;
                } else if name == ".addr_space.1" {
                    c.arena = Some((idx, data));
                }
            }
            _ if sec.sh_type == E::SHT_REL => {
                let target = sec.info as usize;
                if sec.entsize != crate::elf::REL_SIZE as u64 || target >= sec_cnt {
                    return Err(crate::error::ElfError::BadRelSection {
                        index: idx,
                        reason: "bad entry size or target section",
                    }
                    .into());
                }
                let exec = elf.section(target).is_some_and(|s| s.is_exec());
                if !exec
                    && !matches!(
                        name,
                        ".rel.struct_ops"
                            | ".rel.struct_ops.link"
                            | ".rel?.struct_ops"
                            | ".rel?.struct_ops.link"
                            | ".rel.maps"
                    )
                {
                    continue;
                }
                if let Some(s) = c.sec_types.get_mut(idx) {
                    *s = SecType::Relo;
                }
            }
            _ if sec.sh_type == E::SHT_NOBITS && (name == ".bss" || name.starts_with(".bss.")) => {
                if let Some(s) = c.sec_types.get_mut(idx) {
                    *s = SecType::Bss;
                }
            }
            _ => {}
        }
    }
    if elf.strtab == 0 || elf.strtab > last_idx {
        return Err(crate::error::ElfError::BadStrtab { index: elf.strtab }.into());
    }
    c.programs.sort_by_key(|p| (p.section_index, p.insn_off));
    for p in &mut c.programs {
        p.is_subprog = Some(p.section_index) == c.text_shndx;
    }
    Ok(c)
}

/// `bpf_object__add_programs`: one program per `STT_FUNC` symbol of the section.
fn add_programs(
    elf: &ElfFile<'_>,
    progs: &mut Vec<Program>,
    data: &[u8],
    sec_name: &str,
    sec_idx: usize,
    text_shndx: Option<usize>,
) -> Result<(), Error> {
    let perr = |program: &str, source| Error::Program {
        section: sec_name.to_string(),
        program: program.to_string(),
        source,
    };
    for sym in &elf.symbols {
        if usize::from(sym.shndx) != sec_idx || sym.st_type() != E::STT_FUNC {
            continue;
        }
        let (off, size) = (sym.value, sym.size);
        let name = sym
            .name
            .ok_or_else(|| perr("", ProgramError::NoName { offset: off }))?;
        match off.checked_add(size) {
            Some(end) if end <= data.len() as u64 => {}
            _ => {
                return Err(perr(
                    name,
                    ProgramError::CrossesSection { offset: off, size },
                ));
            }
        }
        if Some(sec_idx) != text_shndx && sym.bind() == E::STB_LOCAL {
            return Err(perr(name, ProgramError::Static));
        }
        if size == 0 || size % INSN_SZ as u64 != 0 || off % INSN_SZ as u64 != 0 {
            return Err(perr(name, ProgramError::Corrupted { offset: off, size }));
        }
        let bytes = data.get(off as usize..(off + size) as usize).unwrap_or(&[]);
        let (section, autoload) = match sec_name.strip_prefix('?') {
            Some(rest) => (rest, false),
            None => (sec_name, true),
        };
        let sym_global = sym.bind() != E::STB_LOCAL;
        progs.push(Program {
            name: name.to_string(),
            section: section.to_string(),
            section_index: sec_idx,
            insn_off: off as usize / INSN_SZ,
            insns: elf.insns(bytes),
            elf_relocs: Vec::new(),
            relos: Vec::new(),
            sec_def: None,
            prog_type: ProgType::UNSPEC,
            expected_attach_type: AttachType(0),
            autoload,
            autoattach: true,
            sym_global,
            mark_btf_static: sym_global && sym.is_hidden(),
            is_subprog: false,
            attach_btf_id: 0,
            attach_btf_obj_fd: 0,
            func_info: Vec::new(),
            line_info: Vec::new(),
            core_relos: Vec::new(),
        });
    }
    Ok(())
}

impl Object {
    /// The object name (`bpf_object__name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `license` section's string.
    pub fn license(&self) -> &str {
        &self.license
    }

    /// The `version` section's value, if the object has one (libbpf otherwise uses the
    /// running kernel's version).
    pub fn kern_version(&self) -> Option<u32> {
        self.kern_version
    }

    /// Was the object compiled for big-endian BPF (`bpfeb`)? libbpf 1.5 refuses to open
    /// objects of the other byte order than the host's; this parser reads both.
    pub fn is_big_endian(&self) -> bool {
        self.big_endian
    }

    /// The object's BTF (after libbpf's extern and DATASEC fixups).
    pub fn btf(&self) -> Option<&Btf> {
        self.btf.as_ref()
    }

    /// The object's `.BTF.ext`.
    pub fn btf_ext(&self) -> Option<&BtfExt> {
        self.btf_ext.as_ref()
    }

    /// All programs, entry programs and subprograms, in libbpf's order (by section,
    /// then offset).
    pub fn programs(&self) -> &[Program] {
        &self.programs
    }

    /// All programs, mutably (to set autoload, type, ...).
    pub fn programs_mut(&mut self) -> &mut [Program] {
        &mut self.programs
    }

    /// The entry program named `name` (`bpf_object__find_program_by_name`).
    pub fn program(&self, name: &str) -> Option<&Program> {
        self.program_index(name).and_then(|i| self.programs.get(i))
    }

    /// The index of the entry program named `name`.
    pub fn program_index(&self, name: &str) -> Option<usize> {
        self.programs
            .iter()
            .position(|p| !p.is_subprog && p.name == name)
    }

    /// The entry program named `name`, mutably.
    pub fn program_mut(&mut self, name: &str) -> Option<&mut Program> {
        let i = self.program_index(name)?;
        self.programs.get_mut(i)
    }

    /// All maps in libbpf's order: `.maps`, then global data, `.kconfig`, struct_ops.
    pub fn maps(&self) -> &[Map] {
        &self.maps
    }

    /// All maps, mutably.
    pub fn maps_mut(&mut self) -> &mut [Map] {
        &mut self.maps
    }

    /// The map named `name` (`bpf_object__find_map_by_name`, by [`Map::name`]).
    pub fn map(&self, name: &str) -> Option<&Map> {
        self.maps.iter().find(|m| m.name() == name)
    }

    /// The map named `name`, mutably.
    pub fn map_mut(&mut self, name: &str) -> Option<&mut Map> {
        self.maps.iter_mut().find(|m| m.name() == name)
    }

    /// The externs, in libbpf's order (kconfig by alignment and size, then ksyms).
    pub fn externs(&self) -> &[Extern] {
        &self.externs
    }

    /// The index of the `.kconfig` map, if there is one.
    pub fn kconfig_map(&self) -> Option<usize> {
        self.kconfig_map
    }

    /// The ELF section index of `.text`, if the object has subprograms.
    pub fn text_section(&self) -> Option<usize> {
        self.text_shndx
    }

    /// The name of ELF section `index`.
    pub fn section_name(&self, index: usize) -> Option<&str> {
        self.section_names.get(index).map(String::as_str)
    }
}
