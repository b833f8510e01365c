use structops_btf_derive::Btf;

#[derive(Btf)]
#[repr(C)]
struct Tuple(u32, u64);

fn main() {}
