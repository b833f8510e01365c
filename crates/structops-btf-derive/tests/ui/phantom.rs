use std::marker::PhantomData;
use structops_btf_derive::Btf;

#[derive(Btf)]
#[repr(C)]
struct WithPhantom {
    a: u32,
    marker: PhantomData<u8>,
}

fn main() {}
