use structops_btf_derive::Btf;

#[derive(Btf)]
#[repr(C)]
struct Empty {}

#[derive(Btf)]
#[repr(C)]
struct HasEmpty {
    a: u32,
    nothing: Empty,
}

fn main() {}
