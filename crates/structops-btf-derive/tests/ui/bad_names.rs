use structops_btf_derive::Btf;

#[derive(Btf)]
#[repr(C)]
#[btf(name = "not-an-identifier")]
struct BadTypeName {
    a: u32,
}

#[derive(Btf)]
#[repr(C)]
struct Duplicate {
    #[btf(name = "b")]
    a: u32,
    b: u32,
}

#[derive(Btf)]
#[repr(C)]
struct Unknown {
    #[btf(rename = "x")]
    a: u32,
}

fn main() {}
