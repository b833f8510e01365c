use structops_btf_derive::Btf;

struct Opaque {
    x: u32,
}

#[derive(Btf)]
#[repr(C)]
struct HoldsOpaque {
    inner: *mut Opaque,
}

fn main() {}
