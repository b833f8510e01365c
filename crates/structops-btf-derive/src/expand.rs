//! Code generation for `#[derive(Btf)]`.

use proc_macro2::{Group, Ident, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{
    Data, DataEnum, DeriveInput, Expr, Fields, FieldsNamed, GenericArgument, PathArguments,
    ReturnType, Type, TypeBareFn,
};

use crate::attr::{self, FieldAttrs};

/// Expands the derive, or returns the first problem as a spanned error.
pub fn derive(input: &DeriveInput) -> syn::Result<TokenStream> {
    if !input.generics.params.is_empty() || input.generics.where_clause.is_some() {
        return Err(syn::Error::new(
            input.generics.span(),
            "#[derive(Btf)] does not support generic types: BTF describes one concrete C type",
        ));
    }
    let attrs = attr::type_attrs(&input.attrs)?;
    let krate = match attrs.krate {
        Some(p) => p.into_token_stream(),
        None => quote!(::structops_btf),
    };
    let name = match &attrs.name {
        Some(lit) => lit.value(),
        None => input.ident.unraw().to_string(),
    };
    let repr = attr::repr(&input.attrs)?;
    let ident = &input.ident;
    match &input.data {
        Data::Struct(s) => {
            if !repr.c || repr.int.is_some() || repr.transparent {
                return Err(syn::Error::new(
                    ident.span(),
                    "#[derive(Btf)] needs #[repr(C)] on a struct (optionally with packed or align), \
                     so that its layout is C's",
                ));
            }
            let fields = match &s.fields {
                Fields::Named(f) => Some(f),
                Fields::Unit => None,
                Fields::Unnamed(f) => {
                    return Err(syn::Error::new(
                        f.span(),
                        "#[derive(Btf)] does not support tuple structs: BTF members need names; \
                         use named fields",
                    ));
                }
            };
            composite(&krate, ident, &name, fields, false)
        }
        Data::Union(u) => {
            if !repr.c || repr.int.is_some() || repr.transparent {
                return Err(syn::Error::new(
                    ident.span(),
                    "#[derive(Btf)] needs #[repr(C)] on a union, so that its layout is C's",
                ));
            }
            composite(&krate, ident, &name, Some(&u.fields), true)
        }
        Data::Enum(e) => enumeration(&krate, ident, &name, &repr, e),
    }
}

/// Replaces `Self` in field types by the type's name, so that the checks can sit in a
/// free `const` item (no generics, so this is exact).
fn replace_self(tokens: TokenStream, ident: &Ident) -> TokenStream {
    tokens
        .into_iter()
        .map(|tt| match tt {
            TokenTree::Ident(i) if i == "Self" => {
                TokenTree::Ident(Ident::new(&ident.to_string(), i.span()))
            }
            TokenTree::Group(g) => {
                let mut ng = Group::new(g.delimiter(), replace_self(g.stream(), ident));
                ng.set_span(g.span());
                TokenTree::Group(ng)
            }
            other => other,
        })
        .collect()
}

/// Looks through invisible and parenthesized groups around a type.
fn peel(ty: &Type) -> &Type {
    match ty {
        Type::Group(g) => peel(&g.elem),
        Type::Paren(p) => peel(&p.elem),
        other => other,
    }
}

/// The function pointer type of a field that is `fn(..)` or `Option<fn(..)>`.
fn bare_fn(ty: &Type) -> Option<&TypeBareFn> {
    match peel(ty) {
        Type::BareFn(f) => Some(f),
        Type::Path(p) if p.qself.is_none() => {
            let last = p.path.segments.last()?;
            if last.ident != "Option" {
                return None;
            }
            let PathArguments::AngleBracketed(args) = &last.arguments else {
                return None;
            };
            if args.args.len() != 1 {
                return None;
            }
            match args.args.first()? {
                GenericArgument::Type(inner) => match peel(inner) {
                    Type::BareFn(f) => Some(f),
                    _ => None,
                },
                _ => None,
            }
        }
        _ => None,
    }
}

/// Is `ty` a zero-length array `[T; 0]` written with a literal 0 (a C flexible array
/// member)?
fn is_flexible_array(ty: &Type) -> bool {
    match peel(ty) {
        Type::Array(a) => matches!(
            &a.len,
            Expr::Lit(syn::ExprLit { lit: syn::Lit::Int(i), .. }) if i.base10_digits() == "0"
        ),
        _ => false,
    }
}

/// Is `ty` a `PhantomData<..>`?
fn is_phantom(ty: &Type) -> bool {
    match peel(ty) {
        Type::Path(p) => p
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "PhantomData"),
        _ => false,
    }
}

/// The expression giving the BTF id of a function pointer field, with parameter names.
fn fn_pointer_expr(
    krate: &TokenStream,
    f: &TypeBareFn,
    attrs: &FieldAttrs,
) -> syn::Result<TokenStream> {
    let abi_ok = match &f.abi {
        Some(abi) => match &abi.name {
            None => true,
            Some(n) => matches!(n.value().as_str(), "C" | "C-unwind"),
        },
        None => false,
    };
    if !abi_ok {
        return Err(syn::Error::new(
            f.span(),
            "function pointer members must use the C ABI: write `unsafe extern \"C\" fn(...)`",
        ));
    }
    if let Some(lt) = &f.lifetimes {
        return Err(syn::Error::new(
            lt.span(),
            "function pointer members cannot be higher-ranked (`for<'a>`): BTF types are 'static",
        ));
    }
    let names: Vec<String> = match &attrs.params {
        Some((lit, names)) => {
            if names.len() != f.inputs.len() {
                return Err(syn::Error::new(
                    lit.span(),
                    format!(
                        "`params` gives {} names but the function pointer has {} parameters",
                        names.len(),
                        f.inputs.len()
                    ),
                ));
            }
            names.clone()
        }
        None => f
            .inputs
            .iter()
            .map(|arg| match &arg.name {
                Some((ident, _)) if ident != "_" => ident.unraw().to_string(),
                _ => String::new(),
            })
            .collect(),
    };
    if attrs.params.is_none() {
        let bad = f
            .inputs
            .iter()
            .filter_map(|a| a.name.as_ref())
            .find(|(i, _)| i != "_" && !attr::is_c_identifier(&i.unraw().to_string()));
        if let Some((ident, _)) = bad {
            return Err(syn::Error::new(
                ident.span(),
                "parameter names must be C identifiers",
            ));
        }
    }
    let ret = match &f.output {
        ReturnType::Default => quote!(0),
        ReturnType::Type(_, ty) => {
            if matches!(peel(ty), Type::Never(_)) {
                return Err(syn::Error::new(
                    ty.span(),
                    "`!` has no BTF; a C function that does not return is declared `void`",
                ));
            }
            quote_spanned!(ty.span()=> <#ty as #krate::host::BtfReturn>::return_id(__btf))
        }
    };
    let params = f.inputs.iter().zip(&names).map(|(arg, name)| {
        let ty = &arg.ty;
        quote_spanned!(ty.span()=> (#name, __btf.id_of::<#ty>()))
    });
    let variadic = f.variadic.as_ref().map(|_| quote!(("", 0),));
    Ok(quote! {{
        let __ret: #krate::TypeId = #ret;
        let __params: &[(&str, #krate::TypeId)] = &[#(#params,)* #variadic];
        let __proto = __btf.func_proto(__ret, __params);
        __btf.ptr(__proto)
    }})
}

/// A struct or union.
fn composite(
    krate: &TokenStream,
    ident: &Ident,
    name: &str,
    fields: Option<&FieldsNamed>,
    union: bool,
) -> syn::Result<TokenStream> {
    let mut lets = Vec::new();
    let mut members = Vec::new();
    let mut checks = Vec::new();
    let mut seen: Vec<(String, Span)> = Vec::new();
    for (i, field) in fields.iter().flat_map(|f| f.named.iter()).enumerate() {
        let Some(fident) = &field.ident else {
            return Err(syn::Error::new(field.span(), "unnamed field"));
        };
        let fattrs = attr::field_attrs(&field.attrs)?;
        let mname = match &fattrs.name {
            Some(lit) => lit.value(),
            None => fident.unraw().to_string(),
        };
        if let Some((_, prev)) = seen.iter().find(|(n, _)| *n == mname) {
            let mut e = syn::Error::new(
                fident.span(),
                format!("duplicate BTF member name `{mname}`"),
            );
            e.combine(syn::Error::new(*prev, "first used here"));
            return Err(e);
        }
        seen.push((mname.clone(), fident.span()));
        let ty = &field.ty;
        if is_phantom(ty) {
            return Err(syn::Error::new(
                ty.span(),
                "zero-sized fields (PhantomData) have no C equivalent and cannot be BTF members",
            ));
        }
        let base = match bare_fn(ty) {
            Some(f) => fn_pointer_expr(krate, f, &fattrs)?,
            None => {
                if let Some((lit, _)) = &fattrs.params {
                    return Err(syn::Error::new(
                        lit.span(),
                        "`params` is only for function pointer fields (`unsafe extern \"C\" fn(..)` \
                         or an `Option` of one)",
                    ));
                }
                quote_spanned!(ty.span()=> __btf.id_of::<#ty>())
            }
        };
        let wrapped = match &fattrs.typedefs {
            Some((_, names)) => names.iter().rev().fold(
                base,
                |inner, td| quote!({ let __t = #inner; __btf.typedef(#td, __t) }),
            ),
            None => base,
        };
        let var = Ident::new(&format!("__m{i}"), Span::call_site());
        lets.push(quote!(let #var: #krate::TypeId = #wrapped;));
        let off = if union {
            quote!(0u32)
        } else {
            quote!(const { (::core::mem::offset_of!(Self, #fident) * 8) as u32 })
        };
        match &fattrs.bitfields {
            None => members.push(quote!((#mname, #var, #off, 0u8))),
            Some((lit, fields)) => {
                if union {
                    return Err(syn::Error::new(
                        lit.span(),
                        "bitfields are only supported in structs",
                    ));
                }
                if fattrs.name.is_some() {
                    return Err(syn::Error::new(
                        lit.span(),
                        "a bitfield storage field has no member name of its own; \
                         drop `name` (the bitfields name the members)",
                    ));
                }
                // The storage field's own name is not a member.
                seen.pop();
                let mut shift = 0u32;
                for (bname, width) in fields {
                    if !bname.is_empty() {
                        if let Some((_, prev)) = seen.iter().find(|(n, _)| n == bname) {
                            let mut e = syn::Error::new(
                                lit.span(),
                                format!("duplicate BTF member name `{bname}`"),
                            );
                            e.combine(syn::Error::new(*prev, "first used here"));
                            return Err(e);
                        }
                        seen.push((bname.clone(), lit.span()));
                        members.push(quote!((#bname, #var, #off + #shift, #width)));
                    }
                    shift += u32::from(*width);
                }
                let check_ty = replace_self(ty.to_token_stream(), ident);
                let msg = format!(
                    "#[derive(Btf)]: the bitfields of `{fident}` take {shift} bits, more than its type holds"
                );
                checks.push(quote_spanned!(ty.span()=>
                    ::core::assert!(#shift as usize <= 8 * ::core::mem::size_of::<#check_ty>(), #msg);
                ));
            }
        }

        let check_ty = replace_self(ty.to_token_stream(), ident);
        if !is_flexible_array(ty) {
            let msg = format!(
                "#[derive(Btf)]: field `{fident}` of `{ident}` is zero-sized; BTF members need a size"
            );
            checks.push(quote_spanned!(ty.span()=>
                ::core::assert!(::core::mem::size_of::<#check_ty>() != 0, #msg);
            ));
        }
        if !union {
            let msg = format!(
                "#[derive(Btf)]: field `{fident}` of `{ident}` is too far from the start for a BTF bit offset"
            );
            checks.push(quote! {
                ::core::assert!(
                    ::core::mem::offset_of!(#ident, #fident) <= (u32::MAX / 8) as usize,
                    #msg
                );
            });
        }
    }
    let size_msg = format!("#[derive(Btf)]: `{ident}` is too large for a BTF size");
    let setter = if union {
        quote!(set_union_bits)
    } else {
        quote!(set_struct_bits)
    };
    Ok(quote! {
        #[automatically_derived]
        impl #krate::BtfType for #ident {
            fn btf_type(__btf: &mut #krate::BtfTypes) -> #krate::TypeId {
                let __id = __btf.reserve::<Self>();
                #(#lets)*
                let __size: u32 = const { ::core::mem::size_of::<Self>() as u32 };
                let _: bool = __btf.#setter(__id, #name, __size, &[#(#members),*]);
                __id
            }
        }
        const _: () = {
            ::core::assert!(::core::mem::size_of::<#ident>() <= u32::MAX as usize, #size_msg);
            #(#checks)*
        };
    })
}

/// A fieldless enum.
fn enumeration(
    krate: &TokenStream,
    ident: &Ident,
    name: &str,
    repr: &attr::Repr,
    e: &DataEnum,
) -> syn::Result<TokenStream> {
    let signedness = match (&repr.int, repr.c) {
        (Some((int, _)), _) if int == "u128" || int == "i128" => {
            return Err(syn::Error::new(
                ident.span(),
                "BTF enums are at most 64 bits; #[repr(u128)]/#[repr(i128)] cannot be described",
            ));
        }
        (Some((_, signed)), _) => quote!(#signed),
        (None, true) => {
            let vidents = e.variants.iter().map(|v| &v.ident);
            quote!([#(#ident::#vidents as i128),*].iter().any(|&v| v < 0))
        }
        (None, false) => {
            return Err(syn::Error::new(
                ident.span(),
                "#[derive(Btf)] needs #[repr(C)] or an integer repr (#[repr(u8)], ...) on an enum, \
                 so that its size is fixed",
            ));
        }
    };
    if e.variants.is_empty() {
        return Err(syn::Error::new(
            ident.span(),
            "#[derive(Btf)] needs at least one variant: BTF enums describe C enums",
        ));
    }
    let mut bits = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for v in &e.variants {
        if !matches!(v.fields, Fields::Unit) {
            return Err(syn::Error::new(
                v.fields.span(),
                "#[derive(Btf)] supports only fieldless enums: C enums carry no data",
            ));
        }
        let vattrs = attr::variant_attrs(&v.attrs)?;
        let vname = match &vattrs.name {
            Some(lit) => lit.value(),
            None => v.ident.unraw().to_string(),
        };
        if seen.contains(&vname) {
            return Err(syn::Error::new(
                v.ident.span(),
                format!("duplicate BTF enumerator name `{vname}`"),
            ));
        }
        seen.push(vname.clone());
        let vident = &v.ident;
        bits.push(quote!((#vname, #ident::#vident as i128 as i64)));
    }
    Ok(quote! {
        #[automatically_derived]
        impl #krate::BtfType for #ident {
            fn btf_type(__btf: &mut #krate::BtfTypes) -> #krate::TypeId {
                let __signed: bool = #signedness;
                let __bits: &[(&str, i64)] = &[#(#bits),*];
                let __size: u32 = const { ::core::mem::size_of::<Self>() as u32 };
                __btf.add_enum(#name, __size, __signed, __bits)
            }
        }
    })
}
