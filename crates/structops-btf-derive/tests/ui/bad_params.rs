use structops_btf_derive::Btf;

#[derive(Btf)]
#[repr(C)]
struct CountMismatch {
    #[btf(params = "a, b, c")]
    f: Option<unsafe extern "C" fn(u32, u32) -> u32>,
}

#[derive(Btf)]
#[repr(C)]
struct NotAFunction {
    #[btf(params = "a")]
    x: u32,
}

fn main() {}
