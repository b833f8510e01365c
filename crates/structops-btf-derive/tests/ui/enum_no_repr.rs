use structops_btf_derive::Btf;

#[derive(Btf)]
enum NoRepr {
    A,
    B,
}

#[derive(Btf)]
#[repr(u128)]
enum TooWide {
    A,
}

fn main() {}
