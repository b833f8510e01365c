//! Parsing of the `#[btf(...)]` and `#[repr(...)]` attributes.

use syn::spanned::Spanned;
use syn::{Attribute, LitStr, Path};

/// Longest name the kernel accepts (`KSYM_NAME_LEN` less the terminating NUL).
const MAX_NAME_LEN: usize = 511;

/// Attributes on the type itself.
#[derive(Default)]
pub struct TypeAttrs {
    /// `#[btf(name = "...")]`: the BTF name, instead of the Rust one.
    pub name: Option<LitStr>,
    /// `#[btf(crate = "...")]`: where `structops_btf` is, instead of `::structops_btf`.
    pub krate: Option<Path>,
}

/// Attributes on a struct or union field.
#[derive(Default)]
pub struct FieldAttrs {
    /// `#[btf(name = "...")]`: the member name.
    pub name: Option<LitStr>,
    /// `#[btf(params = "a, b")]`: parameter names of a function pointer field.
    pub params: Option<(LitStr, Vec<String>)>,
    /// `#[btf(typedef = "u32, __u32")]`: typedefs wrapping the field's type, outermost
    /// first.
    pub typedefs: Option<(LitStr, Vec<String>)>,
    /// `#[btf(bitfields = "a:5, b:1")]`: the field is the storage unit of C bitfields,
    /// given low bits first as `name:width`.
    pub bitfields: Option<(LitStr, Vec<(String, u8)>)>,
}

/// Attributes on an enum variant.
#[derive(Default)]
pub struct VariantAttrs {
    /// `#[btf(name = "...")]`: the enumerator name.
    pub name: Option<LitStr>,
}

/// Is `s` a C identifier, as the kernel's `btf_name_valid_identifier` requires of type and
/// member names?
pub fn is_c_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok && s.len() <= MAX_NAME_LEN && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_identifier(lit: &LitStr, what: &str) -> syn::Result<()> {
    if is_c_identifier(&lit.value()) {
        Ok(())
    } else {
        Err(syn::Error::new(
            lit.span(),
            format!(
                "{what} must be a C identifier ([A-Za-z_][A-Za-z0-9_]*, at most {MAX_NAME_LEN} bytes)"
            ),
        ))
    }
}

/// Splits a comma-separated list of names. An empty entry or `_` is an unnamed parameter
/// when `allow_unnamed`.
fn name_list(lit: &LitStr, what: &str, allow_unnamed: bool) -> syn::Result<Vec<String>> {
    let value = lit.value();
    if value.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for part in value.split(',') {
        let part = part.trim();
        if allow_unnamed && (part.is_empty() || part == "_") {
            out.push(String::new());
        } else if is_c_identifier(part) {
            out.push(part.to_owned());
        } else {
            return Err(syn::Error::new(
                lit.span(),
                format!("`{part}` in {what} is not a C identifier"),
            ));
        }
    }
    Ok(out)
}

/// Parses `name:width, ...` (widths 1..=64; an empty name is unnamed padding).
fn bitfield_list(lit: &LitStr) -> syn::Result<Vec<(String, u8)>> {
    let mut out = Vec::new();
    for part in lit.value().split(',') {
        let part = part.trim();
        let Some((name, width)) = part.split_once(':') else {
            return Err(syn::Error::new(
                lit.span(),
                format!("`{part}` in bitfields is not `name:width`"),
            ));
        };
        let name = name.trim();
        if !name.is_empty() && !is_c_identifier(name) {
            return Err(syn::Error::new(
                lit.span(),
                format!("`{name}` in bitfields is not a C identifier"),
            ));
        }
        let width: u8 = match width.trim().parse() {
            Ok(w) if (1..=64).contains(&w) => w,
            _ => {
                return Err(syn::Error::new(
                    lit.span(),
                    format!("`{part}`: a bitfield width is 1 to 64"),
                ));
            }
        };
        out.push((name.to_owned(), width));
    }
    if out.is_empty() {
        return Err(syn::Error::new(
            lit.span(),
            "bitfields needs at least one field",
        ));
    }
    Ok(out)
}

fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    span: proc_macro2::Span,
    key: &str,
) -> syn::Result<()> {
    if slot.is_some() {
        return Err(syn::Error::new(
            span,
            format!("duplicate `{key}` in #[btf(...)]"),
        ));
    }
    *slot = Some(value);
    Ok(())
}

fn btf_attrs(attrs: &[Attribute]) -> impl Iterator<Item = &Attribute> {
    attrs.iter().filter(|a| a.path().is_ident("btf"))
}

/// Parses the type's `#[btf(...)]` attributes.
pub fn type_attrs(attrs: &[Attribute]) -> syn::Result<TypeAttrs> {
    let mut out = TypeAttrs::default();
    for attr in btf_attrs(attrs) {
        attr.parse_nested_meta(|meta| {
            let span = meta.path.span();
            if meta.path.is_ident("name") {
                let lit: LitStr = meta.value()?.parse()?;
                check_identifier(&lit, "a BTF type name")?;
                set_once(&mut out.name, lit, span, "name")
            } else if meta.path.is_ident("crate") {
                let lit: LitStr = meta.value()?.parse()?;
                let path: Path = lit.parse()?;
                set_once(&mut out.krate, path, span, "crate")
            } else {
                Err(meta.error("unknown #[btf] key on a type; expected `name` or `crate`"))
            }
        })?;
    }
    Ok(out)
}

/// Parses a field's `#[btf(...)]` attributes.
pub fn field_attrs(attrs: &[Attribute]) -> syn::Result<FieldAttrs> {
    let mut out = FieldAttrs::default();
    for attr in btf_attrs(attrs) {
        attr.parse_nested_meta(|meta| {
            let span = meta.path.span();
            if meta.path.is_ident("name") {
                let lit: LitStr = meta.value()?.parse()?;
                check_identifier(&lit, "a BTF member name")?;
                set_once(&mut out.name, lit, span, "name")
            } else if meta.path.is_ident("params") {
                let lit: LitStr = meta.value()?.parse()?;
                let names = name_list(&lit, "params", true)?;
                set_once(&mut out.params, (lit, names), span, "params")
            } else if meta.path.is_ident("typedef") {
                let lit: LitStr = meta.value()?.parse()?;
                let names = name_list(&lit, "typedef", false)?;
                if names.is_empty() {
                    return Err(syn::Error::new(
                        lit.span(),
                        "typedef needs at least one name",
                    ));
                }
                set_once(&mut out.typedefs, (lit, names), span, "typedef")
            } else if meta.path.is_ident("bitfields") {
                let lit: LitStr = meta.value()?.parse()?;
                let fields = bitfield_list(&lit)?;
                set_once(&mut out.bitfields, (lit, fields), span, "bitfields")
            } else {
                Err(meta.error(
                    "unknown #[btf] key on a field; expected `name`, `params`, `typedef` or `bitfields`",
                ))
            }
        })?;
    }
    Ok(out)
}

/// Parses a variant's `#[btf(...)]` attributes.
pub fn variant_attrs(attrs: &[Attribute]) -> syn::Result<VariantAttrs> {
    let mut out = VariantAttrs::default();
    for attr in btf_attrs(attrs) {
        attr.parse_nested_meta(|meta| {
            let span = meta.path.span();
            if meta.path.is_ident("name") {
                let lit: LitStr = meta.value()?.parse()?;
                check_identifier(&lit, "a BTF enumerator name")?;
                set_once(&mut out.name, lit, span, "name")
            } else {
                Err(meta.error("unknown #[btf] key on a variant; expected `name`"))
            }
        })?;
    }
    Ok(out)
}

/// What `#[repr(...)]` says about the layout.
#[derive(Default)]
pub struct Repr {
    /// `C` is present.
    pub c: bool,
    /// An integer representation (`u8`, `i32`, ...) and whether it is signed.
    pub int: Option<(String, bool)>,
    /// `transparent` is present.
    pub transparent: bool,
}

/// Parses every `#[repr(...)]` attribute. `packed` and `align` are accepted and ignored
/// (the generated code reads the real layout with `offset_of!` and `size_of`).
pub fn repr(attrs: &[Attribute]) -> syn::Result<Repr> {
    let mut out = Repr::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("repr")) {
        attr.parse_nested_meta(|meta| {
            let Some(ident) = meta.path.get_ident() else {
                return Err(meta.error("unexpected repr"));
            };
            let name = ident.to_string();
            match name.as_str() {
                "C" => out.c = true,
                "transparent" => out.transparent = true,
                "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => out.int = Some((name, false)),
                "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => out.int = Some((name, true)),
                "packed" | "align" | "simd" | "Rust" => {
                    if meta.input.peek(syn::token::Paren) {
                        let content;
                        syn::parenthesized!(content in meta.input);
                        content.parse::<proc_macro2::TokenStream>()?;
                    }
                }
                _ => return Err(meta.error("unknown repr")),
            }
            Ok(())
        })?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_identifiers() {
        assert!(is_c_identifier("bpf_dummy_ops"));
        assert!(is_c_identifier("_x9"));
        assert!(!is_c_identifier(""));
        assert!(!is_c_identifier("9x"));
        assert!(!is_c_identifier("a-b"));
        assert!(!is_c_identifier(&"a".repeat(MAX_NAME_LEN + 1)));
    }

    #[test]
    fn name_lists_allow_unnamed_params_only_when_asked() {
        let lit = LitStr::new("sk, _, , acked", proc_macro2::Span::call_site());
        assert_eq!(
            name_list(&lit, "params", true).unwrap(),
            ["sk", "", "", "acked"]
        );
        assert!(name_list(&lit, "typedef", false).is_err());
        let empty = LitStr::new("  ", proc_macro2::Span::call_site());
        assert!(name_list(&empty, "params", true).unwrap().is_empty());
    }
}
