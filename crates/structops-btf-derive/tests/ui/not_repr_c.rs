use structops_btf_derive::Btf;

#[derive(Btf)]
struct NoRepr {
    a: u32,
}

fn main() {}
