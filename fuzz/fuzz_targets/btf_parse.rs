//! BTF parser and `.BTF.ext` parser: arbitrary bytes must give a typed error or a `Btf`
//! whose queries and encoding never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use structops_btf::{Btf, ext::BtfExt};

fuzz_target!(|data: &[u8]| {
    let _ = BtfExt::parse(data);
    let Ok(btf) = Btf::parse(data) else { return };
    for id in 0..btf.len() {
        let _ = btf.size_of(id);
        let _ = btf.align_of(id);
        let _ = btf.resolve(id);
        let _ = btf.type_name(id);
        let _ = btf.func_proto(id);
        let _ = btf.member_by_name(id, "x");
    }
    let again = Btf::parse(&btf.encode());
    assert_eq!(again.as_ref(), Ok(&btf), "encode/parse round trip");
});
