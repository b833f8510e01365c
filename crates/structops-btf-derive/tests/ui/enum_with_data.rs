use structops_btf_derive::Btf;

#[derive(Btf)]
#[repr(u8)]
enum WithData {
    A,
    B(u32),
}

fn main() {}
