//! Externs: `__kconfig` variables (values from Kconfig and libbpf's virtual `LINUX_*`
//! names) and `__ksym` symbols (kernel variables and kfuncs).
//!
//! Mirrors libbpf's `bpf_object__collect_externs` (the descriptors), `find_kcfg_type`,
//! the `set_kcfg_value_*` family and `bpf_object__resolve_externs`. Resolution takes the
//! host's facts as arguments ([`ExternHost`], [`KsymResolver`]) instead of reading
//! `/proc`.

use structops_btf::{Btf, INT_BOOL, INT_SIGNED, Kind, TypeId, TypeKind};

use crate::error::ExternError;

/// The C type class of a `__kconfig` extern (`enum kcfg_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KcfgType {
    /// A one-byte integer (`char`).
    Char,
    /// `bool`.
    Bool,
    /// An integer of 2, 4 or 8 bytes.
    Int,
    /// `enum libbpf_tristate`.
    Tristate,
    /// A `char` array (string option).
    CharArr,
}

/// A `__kconfig` extern's place in the `.kconfig` map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kcfg {
    /// Its type class.
    pub ty: KcfgType,
    /// Size in bytes.
    pub size: u32,
    /// Alignment in bytes.
    pub align: u32,
    /// Byte offset in the `.kconfig` map value.
    pub data_off: u32,
    /// Is the integer signed?
    pub signed: bool,
}

/// A `__ksym` extern and what it resolved to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ksym {
    /// The local BTF type (after modifiers and typedefs): the function prototype of a
    /// kfunc, the variable's type of a typed ksym, 0 for a typeless (`void`) ksym.
    pub type_id: TypeId,
    /// The address of a typeless ksym (from kallsyms).
    pub addr: u64,
    /// The BTF object fd (0 for vmlinux) of a typed ksym or kfunc.
    pub kernel_btf_obj_fd: i32,
    /// The kernel BTF id.
    pub kernel_btf_id: u32,
    /// The `fd_array` index of the kfunc's module BTF (0 for vmlinux).
    pub btf_fd_idx: i16,
}

/// Which kind of extern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExternKind {
    /// A `.kconfig` variable.
    Kconfig(Kcfg),
    /// A `.ksyms` variable or function.
    Ksym(Ksym),
}

/// One extern symbol (libbpf's `struct extern_desc`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extern {
    pub(crate) name: String,
    pub(crate) essent_name: Option<String>,
    pub(crate) sym_idx: usize,
    pub(crate) btf_id: TypeId,
    pub(crate) sec_btf_id: TypeId,
    pub(crate) is_weak: bool,
    pub(crate) is_set: bool,
    pub(crate) is_func: bool,
    pub(crate) kind: ExternKind,
}

impl Extern {
    /// The extern's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name without a `___flavor` suffix, when it has one.
    pub fn essential_name(&self) -> &str {
        self.essent_name.as_deref().unwrap_or(&self.name)
    }

    /// The ELF symbol index.
    pub fn symbol_index(&self) -> usize {
        self.sym_idx
    }

    /// The `VAR` or `FUNC` type id in the object's BTF.
    pub fn btf_id(&self) -> TypeId {
        self.btf_id
    }

    /// The `DATASEC` (`.kconfig` or `.ksyms`) holding it.
    pub fn section_btf_id(&self) -> TypeId {
        self.sec_btf_id
    }

    /// Is it `__weak` (unresolved means zero, not an error)?
    pub fn is_weak(&self) -> bool {
        self.is_weak
    }

    /// Has it been resolved?
    pub fn is_set(&self) -> bool {
        self.is_set
    }

    /// Is it a kfunc (a `FUNC` in `.ksyms`)?
    pub fn is_func(&self) -> bool {
        self.is_func
    }

    /// The kind-specific part.
    pub fn kind(&self) -> &ExternKind {
        &self.kind
    }

    /// The kconfig part, for `__kconfig` externs.
    pub fn kcfg(&self) -> Option<&Kcfg> {
        match &self.kind {
            ExternKind::Kconfig(k) => Some(k),
            ExternKind::Ksym(_) => None,
        }
    }

    /// The ksym part, for `__ksym` externs.
    pub fn ksym(&self) -> Option<&Ksym> {
        match &self.kind {
            ExternKind::Ksym(k) => Some(k),
            ExternKind::Kconfig(_) => None,
        }
    }
}

/// libbpf's `find_kcfg_type`: the kconfig class of BTF type `id`, with its signedness.
pub fn find_kcfg_type(btf: &Btf, id: TypeId) -> (Option<KcfgType>, bool) {
    find_kcfg_type_depth(btf, id, 0)
}

fn find_kcfg_type_depth(btf: &Btf, id: TypeId, depth: usize) -> (Option<KcfgType>, bool) {
    // libbpf recurses only through one array level that matters (a char array's
    // element); bound the recursion for hostile BTF.
    if depth > 8 {
        return (None, false);
    }
    let Ok((_, t)) = btf.resolved_ty(id) else {
        return (None, false);
    };
    let name = btf.name(t.name_off).unwrap_or("");
    match &t.kind {
        TypeKind::Int { size, encoding, .. } => {
            if encoding & INT_BOOL != 0 {
                return (
                    if *size == 1 {
                        Some(KcfgType::Bool)
                    } else {
                        None
                    },
                    false,
                );
            }
            let signed = encoding & INT_SIGNED != 0;
            if *size == 1 {
                return (Some(KcfgType::Char), signed);
            }
            if *size < 1 || *size > 8 || !size.is_power_of_two() {
                return (None, signed);
            }
            (Some(KcfgType::Int), signed)
        }
        TypeKind::Enum(e) => {
            if e.size != 4 || name != "libbpf_tristate" {
                return (None, false);
            }
            (Some(KcfgType::Tristate), false)
        }
        TypeKind::Enum64(_) => (
            (name == "libbpf_tristate").then_some(KcfgType::Tristate),
            false,
        ),
        TypeKind::Array { elem, len, .. } => {
            if *len == 0 || find_kcfg_type_depth(btf, *elem, depth + 1).0 != Some(KcfgType::Char) {
                return (None, false);
            }
            (Some(KcfgType::CharArr), false)
        }
        _ => (None, false),
    }
}

/// `enum libbpf_tristate` values.
const TRI_NO: u32 = 0;
const TRI_YES: u32 = 1;
const TRI_MODULE: u32 = 2;

fn slot<'d>(
    data: &'d mut [u8],
    ext: &Extern,
    k: &Kcfg,
    len: usize,
) -> Result<&'d mut [u8], ExternError> {
    let off = k.data_off as usize;
    data.get_mut(off..off.saturating_add(len))
        .ok_or_else(|| ExternError::KconfigOutOfRange {
            name: ext.name.clone(),
        })
}

/// `set_kcfg_value_tri`: a `y`/`n`/`m` value.
fn set_tri(ext: &mut Extern, data: &mut [u8], value: u8) -> Result<(), ExternError> {
    let ExternKind::Kconfig(k) = ext.kind else {
        return Err(ExternError::KconfigType {
            name: ext.name.clone(),
            value: (value as char).to_string(),
        });
    };
    match k.ty {
        KcfgType::Bool => {
            if value == b'm' {
                return Err(ExternError::KconfigType {
                    name: ext.name.clone(),
                    value: "m".into(),
                });
            }
            slot(data, ext, &k, 1)?.copy_from_slice(&[u8::from(value == b'y')]);
        }
        KcfgType::Tristate => {
            let v = match value {
                b'y' => TRI_YES,
                b'm' => TRI_MODULE,
                _ => TRI_NO,
            };
            slot(data, ext, &k, 4)?.copy_from_slice(&v.to_ne_bytes());
        }
        KcfgType::Char => slot(data, ext, &k, 1)?.copy_from_slice(&[value]),
        KcfgType::Int | KcfgType::CharArr => {
            return Err(ExternError::KconfigType {
                name: ext.name.clone(),
                value: (value as char).to_string(),
            });
        }
    }
    ext.is_set = true;
    Ok(())
}

/// `set_kcfg_value_str`: a quoted string value, truncated to the array.
fn set_str(ext: &mut Extern, data: &mut [u8], value: &str) -> Result<(), ExternError> {
    let k = match ext.kind {
        ExternKind::Kconfig(k) if k.ty == KcfgType::CharArr => k,
        _ => {
            return Err(ExternError::KconfigType {
                name: ext.name.clone(),
                value: value.to_string(),
            });
        }
    };
    let b = value.as_bytes();
    if b.len() < 2 || b.last() != Some(&b'"') {
        return Err(ExternError::KconfigType {
            name: ext.name.clone(),
            value: value.to_string(),
        });
    }
    let mut len = b.len() - 2;
    let cap = (k.size as usize).saturating_sub(1);
    if len >= k.size as usize {
        len = cap;
    }
    let dst = slot(data, ext, &k, len + 1)?;
    let (body, nul) = dst.split_at_mut(len);
    body.copy_from_slice(b.get(1..1 + len).unwrap_or(&[]));
    if let Some(z) = nul.first_mut() {
        *z = 0;
    }
    ext.is_set = true;
    Ok(())
}

/// libbpf's `is_kcfg_value_in_range`.
fn in_range(k: &Kcfg, v: u64) -> bool {
    if k.size >= 8 {
        return true;
    }
    let bits = k.size * 8;
    if k.signed {
        v.wrapping_add(1u64 << (bits - 1)) < (1u64 << bits)
    } else {
        (v >> bits) == 0
    }
}

/// `set_kcfg_value_num`: an integer value.
fn set_num(ext: &mut Extern, data: &mut [u8], value: u64) -> Result<(), ExternError> {
    let k = match ext.kind {
        ExternKind::Kconfig(k)
            if matches!(k.ty, KcfgType::Int | KcfgType::Char | KcfgType::Bool) =>
        {
            k
        }
        _ => {
            return Err(ExternError::KconfigType {
                name: ext.name.clone(),
                value: value.to_string(),
            });
        }
    };
    if k.ty == KcfgType::Bool && value > 1 {
        return Err(ExternError::KconfigType {
            name: ext.name.clone(),
            value: value.to_string(),
        });
    }
    if !in_range(&k, value) {
        return Err(ExternError::KconfigRange {
            name: ext.name.clone(),
            value,
            size: k.size,
        });
    }
    let bytes = value.to_ne_bytes();
    match k.size {
        1 => slot(data, ext, &k, 1)?.copy_from_slice(&(value as u8).to_ne_bytes()),
        2 => slot(data, ext, &k, 2)?.copy_from_slice(&(value as u16).to_ne_bytes()),
        4 => slot(data, ext, &k, 4)?.copy_from_slice(&(value as u32).to_ne_bytes()),
        8 => slot(data, ext, &k, 8)?.copy_from_slice(&bytes),
        _ => {
            return Err(ExternError::KconfigRange {
                name: ext.name.clone(),
                value,
                size: k.size,
            });
        }
    }
    ext.is_set = true;
    Ok(())
}

/// C's `strtoull(s, &end, 0)` requiring the whole string to be consumed: optional
/// leading white space and sign, `0x` hex, leading-`0` octal or decimal.
pub fn parse_u64(s: &str) -> Option<u64> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (radix, digits) = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        (16, h)
    } else if t.len() > 1 && t.starts_with('0') {
        (8, &t[1..])
    } else {
        (10, t)
    };
    if digits.is_empty() {
        return None;
    }
    let v = u64::from_str_radix(digits, radix).ok()?;
    Some(if neg { v.wrapping_neg() } else { v })
}

/// libbpf's `bpf_object__process_kconfig_line`: applies one `CONFIG_X=value` line to
/// the matching, not yet set, `__kconfig` extern.
pub(crate) fn apply_kconfig_line(
    externs: &mut [Extern],
    data: &mut [u8],
    line: &str,
) -> Result<(), ExternError> {
    if !line.starts_with("CONFIG_") {
        return Ok(());
    }
    let line = line.strip_suffix('\n').unwrap_or(line);
    let Some((name, value)) = line.split_once('=') else {
        return Err(ExternError::KconfigLine {
            line: line.to_string(),
        });
    };
    if value.is_empty() {
        return Err(ExternError::KconfigLine {
            line: line.to_string(),
        });
    }
    let Some(ext) = externs.iter_mut().find(|e| e.name == name) else {
        return Ok(());
    };
    if ext.is_set || !matches!(ext.kind, ExternKind::Kconfig(_)) {
        return Ok(());
    }
    match value.as_bytes().first() {
        Some(&c @ (b'y' | b'n' | b'm')) => set_tri(ext, data, c),
        Some(b'"') => set_str(ext, data, value),
        _ => {
            let num = parse_u64(value).ok_or_else(|| ExternError::KconfigLine {
                line: line.to_string(),
            })?;
            match ext.kind {
                ExternKind::Kconfig(k) if matches!(k.ty, KcfgType::Int | KcfgType::Char) => {}
                _ => {
                    return Err(ExternError::KconfigType {
                        name: ext.name.clone(),
                        value: value.to_string(),
                    });
                }
            }
            set_num(ext, data, num)
        }
    }
}

/// What the host says about a `__ksym`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct KsymTarget {
    /// The kernel BTF id of the `VAR` or `FUNC`.
    pub btf_id: u32,
    /// The BTF object fd holding it (0 for vmlinux), patched into `ld_imm64` of typed
    /// ksyms.
    pub btf_obj_fd: i32,
    /// The `fd_array` index of that BTF object (0 for vmlinux), patched into the
    /// `off` field of kfunc calls.
    pub fd_idx: i16,
}

/// Resolves `__ksym` externs against the host kernel (libbpf: vmlinux and module BTF,
/// `/proc/kallsyms`). Type compatibility is the resolver's responsibility: return
/// `None` for a symbol whose type does not match, as libbpf treats both alike for weak
/// externs.
pub trait KsymResolver {
    /// A kfunc by its essential name.
    fn kfunc(&self, name: &str) -> Option<KsymTarget>;
    /// A typed kernel variable by name.
    fn var(&self, name: &str) -> Option<KsymTarget>;
    /// The address of a kernel symbol (for typeless ksyms).
    fn kallsyms(&self, name: &str) -> Option<u64>;
}

/// A [`KsymResolver`] that looks names up in one target BTF (vmlinux: fd 0, index 0)
/// by name and kind, and knows no addresses.
#[derive(Clone, Copy, Debug)]
pub struct BtfKsyms<'a> {
    /// The target BTF.
    pub btf: &'a Btf,
}

impl KsymResolver for BtfKsyms<'_> {
    fn kfunc(&self, name: &str) -> Option<KsymTarget> {
        self.btf
            .find_by_name_kind(name, Kind::Func)
            .map(|btf_id| KsymTarget {
                btf_id,
                ..KsymTarget::default()
            })
    }

    fn var(&self, name: &str) -> Option<KsymTarget> {
        self.btf
            .find_by_name_kind(name, Kind::Var)
            .map(|btf_id| KsymTarget {
                btf_id,
                ..KsymTarget::default()
            })
    }

    fn kallsyms(&self, _name: &str) -> Option<u64> {
        None
    }
}

/// A resolver that knows nothing (every ksym is unresolved).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoKsyms;

impl KsymResolver for NoKsyms {
    fn kfunc(&self, _name: &str) -> Option<KsymTarget> {
        None
    }

    fn var(&self, _name: &str) -> Option<KsymTarget> {
        None
    }

    fn kallsyms(&self, _name: &str) -> Option<u64> {
        None
    }
}

/// The host facts extern resolution needs.
#[derive(Clone, Copy)]
pub struct ExternHost<'a> {
    /// `LINUX_KERNEL_VERSION` (libbpf's `get_kernel_version()`).
    pub kernel_version: u32,
    /// `LINUX_HAS_BPF_COOKIE`.
    pub has_bpf_cookie: bool,
    /// `LINUX_HAS_SYSCALL_WRAPPER`.
    pub has_syscall_wrapper: bool,
    /// Kconfig text passed by the user (libbpf's `kconfig` open option).
    pub extra_kconfig: Option<&'a str>,
    /// The system Kconfig (`/boot/config-$(uname -r)` or `/proc/config.gz`), `None`
    /// when the host has none.
    pub system_kconfig: Option<&'a str>,
    /// The `__ksym` resolver.
    pub ksyms: &'a dyn KsymResolver,
}

impl std::fmt::Debug for ExternHost<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternHost")
            .field("kernel_version", &self.kernel_version)
            .field("has_bpf_cookie", &self.has_bpf_cookie)
            .field("has_syscall_wrapper", &self.has_syscall_wrapper)
            .finish_non_exhaustive()
    }
}

/// libbpf's `bpf_object__resolve_externs` over `externs`, writing kconfig values into
/// `kcfg_data` (the `.kconfig` map's value).
pub(crate) fn resolve(
    externs: &mut [Extern],
    kcfg_data: Option<&mut Vec<u8>>,
    host: &ExternHost<'_>,
) -> Result<(), ExternError> {
    if externs.is_empty() {
        return Ok(());
    }
    let mut fallback = Vec::new();
    let data: &mut Vec<u8> = match kcfg_data {
        Some(d) => d,
        None => &mut fallback,
    };
    let mut need_config = false;
    let mut need_kallsyms = false;
    let mut need_btf = false;
    for ext in externs.iter_mut() {
        match ext.kind {
            ExternKind::Ksym(k) => {
                if k.type_id != 0 {
                    need_btf = true;
                } else {
                    need_kallsyms = true;
                }
            }
            ExternKind::Kconfig(_) => {
                if ext.name.starts_with("CONFIG_") {
                    need_config = true;
                    continue;
                }
                let value: u64 = match ext.name.as_str() {
                    "LINUX_KERNEL_VERSION" => {
                        if host.kernel_version == 0 {
                            return Err(ExternError::NoKernelVersion);
                        }
                        u64::from(host.kernel_version)
                    }
                    "LINUX_HAS_BPF_COOKIE" => u64::from(host.has_bpf_cookie),
                    "LINUX_HAS_SYSCALL_WRAPPER" => u64::from(host.has_syscall_wrapper),
                    n if !n.starts_with("LINUX_") || !ext.is_weak => {
                        return Err(ExternError::UnknownVirtual {
                            name: ext.name.clone(),
                        });
                    }
                    _ => 0,
                };
                set_num(ext, data, value)?;
            }
        }
    }
    if need_config && let Some(text) = host.extra_kconfig {
        for line in text.split_inclusive('\n') {
            apply_kconfig_line(externs, data, line)?;
        }
        need_config = externs
            .iter()
            .any(|e| matches!(e.kind, ExternKind::Kconfig(_)) && !e.is_set);
    }
    if need_config {
        let text = host.system_kconfig.ok_or(ExternError::NoKconfig)?;
        for line in text.split_inclusive('\n') {
            apply_kconfig_line(externs, data, line)?;
        }
    }
    if need_kallsyms {
        for ext in externs.iter_mut() {
            if let ExternKind::Ksym(k) = &mut ext.kind
                && !ext.is_func
                && let Some(addr) = host.ksyms.kallsyms(&ext.name)
                && !ext.is_set
            {
                ext.is_set = true;
                k.addr = addr;
            }
        }
    }
    if need_btf {
        for ext in externs.iter_mut() {
            let ExternKind::Ksym(k) = &mut ext.kind else {
                continue;
            };
            if k.type_id == 0 {
                continue;
            }
            let found = if ext.is_func {
                host.ksyms
                    .kfunc(ext.essent_name.as_deref().unwrap_or(&ext.name))
            } else {
                host.ksyms.var(&ext.name)
            };
            match found {
                Some(t) => {
                    ext.is_set = true;
                    k.kernel_btf_id = t.btf_id;
                    k.kernel_btf_obj_fd = t.btf_obj_fd;
                    if ext.is_func {
                        k.btf_fd_idx = t.fd_idx;
                    }
                }
                None if ext.is_weak => {}
                None => {
                    return Err(ExternError::KsymNotFound {
                        name: ext.name.clone(),
                    });
                }
            }
        }
    }
    for ext in externs.iter() {
        if !ext.is_set && !ext.is_weak {
            return Err(ExternError::Unresolved {
                name: ext.name.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kcfg(name: &str, ty: KcfgType, size: u32, off: u32, signed: bool) -> Extern {
        Extern {
            name: name.into(),
            essent_name: None,
            sym_idx: 0,
            btf_id: 1,
            sec_btf_id: 2,
            is_weak: false,
            is_set: false,
            is_func: false,
            kind: ExternKind::Kconfig(Kcfg {
                ty,
                size,
                align: size.min(8),
                data_off: off,
                signed,
            }),
        }
    }

    #[test]
    fn strtoull_like_parsing() {
        assert_eq!(parse_u64("42"), Some(42));
        assert_eq!(parse_u64("0x1f"), Some(31));
        assert_eq!(parse_u64("010"), Some(8));
        assert_eq!(parse_u64("0"), Some(0));
        assert_eq!(parse_u64("-1"), Some(u64::MAX));
        assert_eq!(parse_u64("12abc"), None);
        assert_eq!(parse_u64("0x"), None);
        assert_eq!(parse_u64("99999999999999999999999"), None);
    }

    #[test]
    fn kconfig_lines_set_values() {
        let mut exts = vec![
            kcfg("CONFIG_BOOL", KcfgType::Bool, 1, 0, false),
            kcfg("CONFIG_TRI", KcfgType::Tristate, 4, 4, false),
            kcfg("CONFIG_STR", KcfgType::CharArr, 4, 8, false),
            kcfg("CONFIG_INT", KcfgType::Int, 2, 12, true),
        ];
        let mut data = vec![0xffu8; 16];
        let text = "# comment\nCONFIG_BOOL=y\nCONFIG_TRI=m\nCONFIG_STR=\"hello\"\nCONFIG_INT=-2\nCONFIG_OTHER=1\n";
        for l in text.split_inclusive('\n') {
            apply_kconfig_line(&mut exts, &mut data, l).unwrap();
        }
        assert!(exts.iter().all(|e| e.is_set));
        assert_eq!(data[0], 1);
        assert_eq!(
            u32::from_ne_bytes(data[4..8].try_into().unwrap()),
            TRI_MODULE
        );
        assert_eq!(&data[8..12], b"hel\0");
        assert_eq!(i16::from_ne_bytes(data[12..14].try_into().unwrap()), -2);
    }

    #[test]
    fn kconfig_errors_are_typed() {
        let mut exts = vec![kcfg("CONFIG_B", KcfgType::Bool, 1, 0, false)];
        let mut data = vec![0u8; 1];
        assert!(matches!(
            apply_kconfig_line(&mut exts, &mut data, "CONFIG_B=m\n"),
            Err(ExternError::KconfigType { .. })
        ));
        assert!(matches!(
            apply_kconfig_line(&mut exts, &mut data, "CONFIG_B\n"),
            Err(ExternError::KconfigLine { .. })
        ));
        let mut exts = vec![kcfg("CONFIG_U8", KcfgType::Char, 1, 0, false)];
        assert!(matches!(
            apply_kconfig_line(&mut exts, &mut data, "CONFIG_U8=300"),
            Err(ExternError::KconfigRange { value: 300, .. })
        ));
    }

    #[test]
    fn virtual_externs_and_weak_defaults() {
        let mut exts = vec![
            kcfg("LINUX_KERNEL_VERSION", KcfgType::Int, 4, 0, false),
            kcfg("LINUX_UNKNOWN", KcfgType::Int, 4, 4, false),
        ];
        exts[1].is_weak = true;
        let mut data = vec![0u8; 8];
        let host = ExternHost {
            kernel_version: 0x060c00,
            has_bpf_cookie: true,
            has_syscall_wrapper: true,
            extra_kconfig: None,
            system_kconfig: None,
            ksyms: &NoKsyms,
        };
        resolve(&mut exts, Some(&mut data), &host).unwrap();
        assert_eq!(u32::from_ne_bytes(data[0..4].try_into().unwrap()), 0x060c00);
        exts[1].is_weak = false;
        exts[1].is_set = false;
        assert!(matches!(
            resolve(&mut exts, Some(&mut data), &host),
            Err(ExternError::UnknownVirtual { .. })
        ));
    }
}
