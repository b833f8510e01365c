use structops_btf_derive::Btf;

#[derive(Btf)]
#[repr(C)]
struct Generic<T> {
    a: T,
}

fn main() {}
