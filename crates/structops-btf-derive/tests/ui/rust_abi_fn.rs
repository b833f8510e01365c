use structops_btf_derive::Btf;

#[derive(Btf)]
#[repr(C)]
struct Ops {
    f: Option<fn(u32) -> u32>,
}

fn main() {}
