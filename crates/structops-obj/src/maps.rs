//! Maps: BTF-defined maps of `.maps`, the internal maps libbpf makes for global data
//! (`.data*`, `.rodata*`, `.bss*`, `.kconfig`), and struct_ops maps.
//!
//! Mirrors libbpf's `parse_btf_map_def`, `bpf_object__init_user_btf_map`,
//! `internal_map_name` and `bpf_object__init_internal_map`.

use structops_btf::{Btf, Kind, TypeId, TypeKind};

use crate::error::MapError;
use crate::struct_ops::StructOps;
use crate::types::{MapType, map_flags};

/// What kind of map this is, by where libbpf found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapKind {
    /// A BTF-defined map of the `.maps` section.
    User,
    /// Global data of a `.data` or `.data.*` section (`LIBBPF_MAP_DATA`).
    Data,
    /// Read-only global data of a `.rodata` or `.rodata.*` section (`LIBBPF_MAP_RODATA`).
    Rodata,
    /// Zero-initialised global data of a `.bss` or `.bss.*` section (`LIBBPF_MAP_BSS`).
    Bss,
    /// The values of `__kconfig` externs (`LIBBPF_MAP_KCONFIG`).
    Kconfig,
    /// A struct_ops map, one per variable of a `.struct_ops*` section.
    StructOps,
}

impl MapKind {
    /// Is this one of libbpf's internal maps (`bpf_map__is_internal`)?
    pub fn is_internal(self) -> bool {
        matches!(
            self,
            MapKind::Data | MapKind::Rodata | MapKind::Bss | MapKind::Kconfig
        )
    }
}

/// `LIBBPF_PIN_BY_NAME`.
pub const PIN_BY_NAME: u32 = 1;

/// A decoded BTF map definition (libbpf's `struct btf_map_def`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapDef {
    /// `type`.
    pub map_type: MapType,
    /// `key_size`, or the size of `*key`.
    pub key_size: u32,
    /// `value_size`, the size of `*value`, or 4 for map-in-map and prog arrays.
    pub value_size: u32,
    /// `max_entries`.
    pub max_entries: u32,
    /// `map_flags`.
    pub map_flags: u32,
    /// `numa_node`.
    pub numa_node: u32,
    /// `map_extra`.
    pub map_extra: u64,
    /// `pinning` (`LIBBPF_PIN_NONE` or [`PIN_BY_NAME`]).
    pub pinning: u32,
    /// The BTF type of the key (0 when only `key_size` was given).
    pub key_type_id: TypeId,
    /// The BTF type of the value (0 when only `value_size` was given).
    pub value_type_id: TypeId,
    /// Did the definition have an inner map (`values` of a map-in-map)?
    pub has_inner: bool,
}

/// What an initial slot of a map-in-map or a program array refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    /// A map, by index in [`crate::Object::maps`].
    Map(usize),
    /// A program, by index in [`crate::Object::programs`].
    Program(usize),
}

/// A map as libbpf's `struct bpf_map` describes it after `bpf_object__open`.
#[derive(Clone, Debug)]
pub struct Map {
    pub(crate) name: String,
    pub(crate) real_name: Option<String>,
    pub(crate) kind: MapKind,
    pub(crate) section_index: usize,
    pub(crate) section_offset: usize,
    pub(crate) btf_var_idx: usize,
    pub(crate) map_type: MapType,
    pub(crate) key_size: u32,
    pub(crate) value_size: u32,
    pub(crate) max_entries: u32,
    pub(crate) map_flags: u32,
    pub(crate) numa_node: u32,
    pub(crate) map_extra: u64,
    pub(crate) btf_key_type_id: TypeId,
    pub(crate) btf_value_type_id: TypeId,
    pub(crate) btf_vmlinux_value_type_id: TypeId,
    pub(crate) pin_path: Option<String>,
    pub(crate) inner: Option<Box<Map>>,
    pub(crate) init_slots: Vec<Option<Slot>>,
    pub(crate) data: Vec<u8>,
    pub(crate) autocreate: bool,
    pub(crate) autoattach: bool,
    pub(crate) struct_ops: Option<StructOps>,
}

impl Map {
    pub(crate) fn new(name: String, kind: MapKind, section_index: usize) -> Map {
        Map {
            name,
            real_name: None,
            kind,
            section_index,
            section_offset: 0,
            btf_var_idx: 0,
            map_type: MapType::UNSPEC,
            key_size: 0,
            value_size: 0,
            max_entries: 0,
            map_flags: 0,
            numa_node: 0,
            map_extra: 0,
            btf_key_type_id: 0,
            btf_value_type_id: 0,
            btf_vmlinux_value_type_id: 0,
            pin_path: None,
            inner: None,
            init_slots: Vec::new(),
            data: Vec::new(),
            autocreate: true,
            autoattach: false,
            struct_ops: None,
        }
    }

    /// The name users see (`bpf_map__name`): the ELF section name for `.data.*` and
    /// `.rodata.*` maps, else the kernel-visible name.
    pub fn name(&self) -> &str {
        match (&self.real_name, self.kind) {
            (Some(real), MapKind::Data) if real != ".data" => real,
            (Some(real), MapKind::Rodata) if real != ".rodata" => real,
            _ => &self.name,
        }
    }

    /// The name given to the kernel (at most 15 characters for internal maps).
    pub fn kernel_name(&self) -> &str {
        &self.name
    }

    /// The ELF section name of an internal map (`.rodata`, `.data.foo`, `.kconfig`).
    pub fn real_name(&self) -> Option<&str> {
        self.real_name.as_deref()
    }

    /// Where the map came from.
    pub fn kind(&self) -> MapKind {
        self.kind
    }

    /// Is this one of libbpf's internal maps?
    pub fn is_internal(&self) -> bool {
        self.kind.is_internal()
    }

    /// The ELF section index holding the map's definition or data.
    pub fn section_index(&self) -> usize {
        self.section_index
    }

    /// Byte offset of the map's definition in its section.
    pub fn section_offset(&self) -> usize {
        self.section_offset
    }

    /// `bpf_map__type`.
    pub fn map_type(&self) -> MapType {
        self.map_type
    }

    /// `bpf_map__key_size`.
    pub fn key_size(&self) -> u32 {
        self.key_size
    }

    /// `bpf_map__value_size` (for struct_ops maps: the local type's size until the
    /// kernel type is known, then the size of the kernel's `bpf_struct_ops_<name>`).
    pub fn value_size(&self) -> u32 {
        self.value_size
    }

    /// `bpf_map__max_entries`.
    pub fn max_entries(&self) -> u32 {
        self.max_entries
    }

    /// `bpf_map__map_flags`.
    pub fn map_flags(&self) -> u32 {
        self.map_flags
    }

    /// `bpf_map__numa_node`.
    pub fn numa_node(&self) -> u32 {
        self.numa_node
    }

    /// `bpf_map__map_extra`.
    pub fn map_extra(&self) -> u64 {
        self.map_extra
    }

    /// `bpf_map__btf_key_type_id`.
    pub fn btf_key_type_id(&self) -> TypeId {
        self.btf_key_type_id
    }

    /// `bpf_map__btf_value_type_id`.
    pub fn btf_value_type_id(&self) -> TypeId {
        self.btf_value_type_id
    }

    /// For struct_ops maps after [`crate::Object::init_struct_ops`]: the id of the
    /// kernel's `bpf_struct_ops_<name>` value type in the target BTF.
    pub fn btf_vmlinux_value_type_id(&self) -> TypeId {
        self.btf_vmlinux_value_type_id
    }

    /// The pin path of a `LIBBPF_PIN_BY_NAME` map.
    pub fn pin_path(&self) -> Option<&str> {
        self.pin_path.as_deref()
    }

    /// The inner map definition of a map-in-map.
    pub fn inner_map(&self) -> Option<&Map> {
        self.inner.as_deref()
    }

    /// Initial slots of a map-in-map or program array (`values = { ... }`).
    pub fn init_slots(&self) -> &[Option<Slot>] {
        &self.init_slots
    }

    /// The initial value: section bytes for `.data`/`.rodata`, zeroes for `.bss` and
    /// `.kconfig` (filled by [`crate::Object::resolve_externs`]), the local struct for
    /// struct_ops maps; empty for user maps.
    pub fn initial_value(&self) -> &[u8] {
        match &self.struct_ops {
            Some(st) => &st.data,
            None => &self.data,
        }
    }

    /// `bpf_map__autocreate`.
    pub fn autocreate(&self) -> bool {
        self.autocreate
    }

    /// `bpf_map__set_autocreate`.
    pub fn set_autocreate(&mut self, autocreate: bool) {
        self.autocreate = autocreate;
    }

    /// `bpf_map__set_max_entries`.
    pub fn set_max_entries(&mut self, max_entries: u32) {
        self.max_entries = max_entries;
    }

    /// `bpf_map__autoattach` (struct_ops maps).
    pub fn autoattach(&self) -> bool {
        self.autoattach
    }

    /// The struct_ops part of a struct_ops map.
    pub fn struct_ops(&self) -> Option<&StructOps> {
        self.struct_ops.as_ref()
    }

    /// The struct_ops part of a struct_ops map, mutably (to rebind members the way
    /// libbpf's shadow type does).
    pub fn struct_ops_mut(&mut self) -> Option<&mut StructOps> {
        self.struct_ops.as_mut()
    }

    /// For struct_ops maps: the kernel type name (the local type name without its
    /// `___flavor` suffix).
    pub fn struct_ops_type(&self) -> Option<&str> {
        self.struct_ops.as_ref().map(|s| s.kernel_type_name())
    }

    /// For struct_ops maps: was it declared in `.struct_ops.link` (`BPF_F_LINK`)?
    pub fn is_link(&self) -> bool {
        self.struct_ops.is_some() && self.map_flags & map_flags::LINK != 0
    }

    pub(crate) fn fill_from_def(&mut self, def: &MapDef, page_size: u32) {
        self.map_type = def.map_type;
        self.key_size = def.key_size;
        self.value_size = def.value_size;
        self.max_entries = def.max_entries;
        self.map_flags = def.map_flags;
        self.map_extra = def.map_extra;
        self.numa_node = def.numa_node;
        self.btf_key_type_id = def.key_type_id;
        self.btf_value_type_id = def.value_type_id;
        if self.map_type.is_ringbuf() {
            self.max_entries = adjust_ringbuf_size(self.max_entries, page_size);
        }
    }
}

/// libbpf's `adjust_ringbuf_sz`: round a ring buffer size up to a power-of-two number of
/// pages (0 stays 0 so the kernel reports the mistake).
pub fn adjust_ringbuf_size(sz: u32, page_size: u32) -> u32 {
    if sz == 0 || page_size == 0 {
        return sz;
    }
    if sz.is_multiple_of(page_size) && (sz / page_size).is_power_of_two() {
        return sz;
    }
    let mut mul: u32 = 1;
    while mul <= u32::MAX / page_size {
        let total = mul * page_size;
        if total > sz {
            return total;
        }
        match mul.checked_shl(1) {
            Some(m) if m != 0 => mul = m,
            _ => break,
        }
    }
    sz
}

/// `BPF_OBJ_NAME_LEN`.
pub const OBJ_NAME_LEN: usize = 16;

/// libbpf's `internal_map_name`: as much of the object name as fits before the section
/// name in 15 characters (reserving at least 7 for the suffix), no object prefix for
/// `.data.*`/`.rodata.*` style names, and every character the kernel rejects replaced
/// by `_`.
pub fn internal_map_name(obj_name: &str, real_name: &str) -> String {
    let real = real_name.as_bytes();
    let obj = obj_name.as_bytes();
    let sfx_len = real.len().clamp(7, OBJ_NAME_LEN - 1);
    let pfx_len = if real.get(1..).is_some_and(|r| r.contains(&b'.')) {
        0
    } else {
        (OBJ_NAME_LEN - sfx_len - 1).min(obj.len())
    };
    let mut out: Vec<u8> = Vec::with_capacity(OBJ_NAME_LEN);
    out.extend(obj.iter().take(pfx_len));
    out.extend(real.iter().take(sfx_len));
    out.truncate(OBJ_NAME_LEN - 1);
    for c in &mut out {
        if !(c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.') {
            *c = b'_';
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// libbpf's object name for a file path: the base name, at most 15 bytes, cut at its
/// first `.` (so `bpf_cubic.bpf.o` is `bpf_cubic`).
pub fn object_name_from_path(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let bytes: Vec<u8> = base.bytes().take(OBJ_NAME_LEN - 1).collect();
    let cut = bytes.iter().position(|&b| b == b'.').unwrap_or(bytes.len());
    String::from_utf8_lossy(bytes.get(..cut).unwrap_or(&[])).into_owned()
}

/// libbpf's `get_map_field_int`: an integer attribute encoded as the element count of
/// the array a pointer member points to (`int (*type)[BPF_MAP_TYPE_HASH]`).
fn field_int(btf: &Btf, member_ty: TypeId, attr: &str) -> Result<u32, MapError> {
    let (_, t) = btf.resolved_ty(member_ty).map_err(|source| MapError::Btf {
        attr: attr.to_string(),
        source,
    })?;
    let TypeKind::Ptr { target } = t.kind else {
        return Err(MapError::AttrKind {
            attr: attr.to_string(),
            expected: "PTR",
            actual: t.kind(),
        });
    };
    let arr = btf.ty(target).map_err(|source| MapError::Btf {
        attr: attr.to_string(),
        source,
    })?;
    match arr.kind {
        TypeKind::Array { len, .. } => Ok(len),
        _ => Err(MapError::AttrKind {
            attr: attr.to_string(),
            expected: "ARRAY",
            actual: arr.kind(),
        }),
    }
}

/// libbpf's `get_map_field_long`: like [`field_int`], or a one-enumerator enum whose
/// value is the attribute (`__ulong`).
fn field_long(btf: &Btf, member_ty: TypeId, attr: &str) -> Result<u64, MapError> {
    let (_, t) = btf.resolved_ty(member_ty).map_err(|source| MapError::Btf {
        attr: attr.to_string(),
        source,
    })?;
    if t.kind() == Kind::Ptr {
        return field_int(btf, member_ty, attr).map(u64::from);
    }
    let Some(body) = t.enum_body() else {
        return Err(MapError::AttrKind {
            attr: attr.to_string(),
            expected: "ENUM or ENUM64",
            actual: t.kind(),
        });
    };
    match body.values.as_slice() {
        [only] => Ok(if t.kind() == Kind::Enum {
            // libbpf reads `btf_enum::val`, a signed 32-bit value, into a u64.
            (only.value as u32 as i32) as i64 as u64
        } else {
            only.value
        }),
        _ => Err(MapError::InvalidUlong {
            attr: attr.to_string(),
        }),
    }
}

/// Size of the type a `key`/`value` pointer member points to.
fn pointee_size(btf: &Btf, member_ty: TypeId, attr: &str) -> Result<(TypeId, u32), MapError> {
    let t = btf.ty(member_ty).map_err(|source| MapError::Btf {
        attr: attr.to_string(),
        source,
    })?;
    let TypeKind::Ptr { target } = t.kind else {
        return Err(MapError::AttrKind {
            attr: attr.to_string(),
            expected: "PTR",
            actual: t.kind(),
        });
    };
    let size = btf.size_of(target).map_err(|source| MapError::Btf {
        attr: attr.to_string(),
        source,
    })?;
    Ok((target, size))
}

/// Sets a key or value size from a map definition field; libbpf refuses a definition
/// that gives the same size twice with different values (`key_size` and `key`).
fn set_size(slot: &mut u32, what: &'static str, sz: u32) -> Result<(), MapError> {
    if *slot != 0 && *slot != sz {
        return Err(MapError::ConflictingSize {
            what,
            old: *slot,
            new: sz,
        });
    }
    *slot = sz;
    Ok(())
}

/// Decodes a BTF map definition struct, as libbpf's `parse_btf_map_def`. `inner` is
/// `None` when parsing an inner map (which may not nest further or be pinned).
pub fn parse_btf_map_def(
    btf: &Btf,
    def_id: TypeId,
    strict: bool,
    def: &mut MapDef,
    mut inner: Option<&mut MapDef>,
) -> Result<(), MapError> {
    let is_inner = inner.is_none();
    let t = btf.ty(def_id).map_err(|source| MapError::Btf {
        attr: String::new(),
        source,
    })?;
    let members = t.composite().map(|c| c.members.as_slice()).unwrap_or(&[]);
    let vlen = members.len();
    for (i, m) in members.iter().enumerate() {
        let name = btf
            .name(m.name_off)
            .map_err(|_| MapError::BadField { index: i })?;
        match name {
            "type" => def.map_type = MapType(field_int(btf, m.ty, name)?),
            "max_entries" => def.max_entries = field_int(btf, m.ty, name)?,
            "map_flags" => def.map_flags = field_int(btf, m.ty, name)?,
            "numa_node" => def.numa_node = field_int(btf, m.ty, name)?,
            "key_size" => set_size(&mut def.key_size, "key", field_int(btf, m.ty, name)?)?,
            "key" => {
                let (tid, sz) = pointee_size(btf, m.ty, name)?;
                set_size(&mut def.key_size, "key", sz)?;
                def.key_type_id = tid;
            }
            "value_size" => set_size(&mut def.value_size, "value", field_int(btf, m.ty, name)?)?,
            "value" => {
                let (tid, sz) = pointee_size(btf, m.ty, name)?;
                set_size(&mut def.value_size, "value", sz)?;
                def.value_type_id = tid;
            }
            "values" => {
                let is_map_in_map = def.map_type.is_map_in_map();
                let is_prog_array = def.map_type == MapType::PROG_ARRAY;
                if is_inner {
                    return Err(MapError::NestedInnerMap);
                }
                if i != vlen - 1 {
                    return Err(MapError::ValuesNotLast);
                }
                if !is_map_in_map && !is_prog_array {
                    return Err(MapError::ValuesWrongMapType {
                        map_type: def.map_type,
                    });
                }
                if def.value_size != 0 && def.value_size != 4 {
                    return Err(MapError::ConflictingSize {
                        what: "value",
                        old: def.value_size,
                        new: 4,
                    });
                }
                def.value_size = 4;
                let arr = btf.ty(m.ty).map_err(|source| MapError::Btf {
                    attr: name.to_string(),
                    source,
                })?;
                let elem = match arr.kind {
                    TypeKind::Array { elem, len: 0, .. } => elem,
                    _ => return Err(MapError::ValuesNotZeroArray),
                };
                let (_, pt) = btf.resolved_ty(elem).map_err(|source| MapError::Btf {
                    attr: name.to_string(),
                    source,
                })?;
                let TypeKind::Ptr { target } = pt.kind else {
                    return Err(MapError::AttrKind {
                        attr: name.to_string(),
                        expected: "PTR",
                        actual: pt.kind(),
                    });
                };
                let (inner_id, it) = btf.resolved_ty(target).map_err(|source| MapError::Btf {
                    attr: name.to_string(),
                    source,
                })?;
                if is_prog_array {
                    if it.kind() != Kind::FuncProto {
                        return Err(MapError::AttrKind {
                            attr: name.to_string(),
                            expected: "FUNC_PROTO",
                            actual: it.kind(),
                        });
                    }
                    continue;
                }
                if it.kind() != Kind::Struct {
                    return Err(MapError::AttrKind {
                        attr: name.to_string(),
                        expected: "STRUCT",
                        actual: it.kind(),
                    });
                }
                if let Some(inner_def) = inner.as_deref_mut() {
                    parse_btf_map_def(btf, inner_id, strict, inner_def, None).map_err(|e| {
                        MapError::Inner {
                            source: Box::new(e),
                        }
                    })?;
                }
                def.has_inner = true;
            }
            "pinning" => {
                if is_inner {
                    return Err(MapError::InnerPinned);
                }
                let val = field_int(btf, m.ty, name)?;
                if val != 0 && val != PIN_BY_NAME {
                    return Err(MapError::BadPinning { value: val });
                }
                def.pinning = val;
            }
            "map_extra" => def.map_extra = field_long(btf, m.ty, name)?,
            other => {
                if strict {
                    return Err(MapError::UnknownField {
                        field: other.to_string(),
                    });
                }
            }
        }
    }
    if def.map_type == MapType::UNSPEC {
        return Err(MapError::NoType);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_names_follow_libbpf() {
        assert_eq!(internal_map_name("bpf_cubic", ".bss"), "bpf_cubi.bss");
        assert_eq!(internal_map_name("bpf_cubic", ".rodata"), "bpf_cubi.rodata");
        assert_eq!(
            internal_map_name("bpf_cubic", ".kconfig"),
            "bpf_cub.kconfig"
        );
        assert_eq!(
            internal_map_name("my_object_name", ".data"),
            "my_objec.data"
        );
        assert_eq!(internal_map_name("x", ".rodata.str1.1"), ".rodata.str1.1");
        assert_eq!(
            internal_map_name("x", ".rodata.abracadabra"),
            ".rodata.abracad"
        );
        assert_eq!(internal_map_name("a-b", ".data"), "a_b.data");
        assert_eq!(internal_map_name("", ".bss"), ".bss");
    }

    #[test]
    fn object_names_follow_libbpf() {
        assert_eq!(object_name_from_path("corpus/bpf_cubic.bpf.o"), "bpf_cubic");
        assert_eq!(
            object_name_from_path("/x/test_core_reloc_kernel.bpf.o"),
            "test_core_reloc"
        );
        assert_eq!(object_name_from_path("plain"), "plain");
    }

    #[test]
    fn ringbuf_sizes_round_up_to_page_powers() {
        assert_eq!(adjust_ringbuf_size(0, 4096), 0);
        assert_eq!(adjust_ringbuf_size(4096, 4096), 4096);
        assert_eq!(adjust_ringbuf_size(4097, 4096), 8192);
        assert_eq!(adjust_ringbuf_size(3 * 4096, 4096), 4 * 4096);
        assert_eq!(adjust_ringbuf_size(u32::MAX, 4096), u32::MAX);
    }
}
