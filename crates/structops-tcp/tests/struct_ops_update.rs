//! The struct_ops map update path with arbitrary values (the bounded twin of the
//! `struct_ops_update` fuzz target): random and mutated `tcp_congestion_ops` values, with
//! real programs in random member slots, go through update, registration, calls and
//! teardown; each ends in a result or an errno, and the host is left as it was.
//! `STRUCTOPS_CASES=N` changes the number of random cases (default 3000).

mod common {
    pub mod update_harness;
}

use common::update_harness::{Harness, Outcome};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Inputs the fuzzer found, kept as regressions.
#[test]
fn fuzz_findings_stay_fixed() {
    let h = Harness::new();
    // A plain map whose value sets `owner`: the update succeeds without registering
    // (the kernel's silent reset), so the delete that follows is ENOENT.
    let mut owner = h.good_input(false, "so_f");
    owner[4 + 64 + 104] = b'f';
    assert_eq!(h.run(&owner), Outcome::Unregistered);
    let crash = include_bytes!("../../../fuzz/seeds/struct_ops_update/owner_set_plain_map");
    assert_eq!(h.run(crash), Outcome::Unregistered);
}

#[test]
fn well_formed_values_register_on_both_paths() {
    let h = Harness::new();
    assert_eq!(
        h.run(&h.good_input(true, "so_fz_link")),
        Outcome::Registered
    );
    assert_eq!(
        h.run(&h.good_input(false, "so_fz_map")),
        Outcome::Registered
    );
    // The same value twice in a row: the first registration was torn down.
    assert_eq!(
        h.run(&h.good_input(true, "so_fz_link")),
        Outcome::Registered
    );
    // A name the host already has (native reno): EEXIST at registration.
    assert_eq!(
        h.run(&h.good_input(true, "reno")),
        Outcome::RegisterRefused(structops::Errno::EEXIST)
    );
    assert_eq!(
        h.run(&h.good_input(false, "reno")),
        Outcome::UpdateRefused(structops::Errno::EEXIST)
    );
}

/// Bit flips and byte overwrites of a registering value, and random values.
#[test]
fn mutated_and_random_values_never_break_the_host() {
    let h = Harness::new();
    let good = h.good_input(true, "so_fz");
    let cases: u32 = std::env::var("STRUCTOPS_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let seen = std::cell::RefCell::new(std::collections::BTreeMap::<String, u32>::new());
    let len = good.len();
    let strategy = prop_oneof![
        // Flip 1-4 bits of the good input.
        proptest::collection::vec((0..len, 0u8..8), 1..5).prop_map({
            let good = good.clone();
            move |flips| {
                let mut v = good.clone();
                for (i, b) in flips {
                    v[i] ^= 1 << b;
                }
                v
            }
        }),
        // Overwrite a few bytes with anything.
        proptest::collection::vec((0..len, any::<u8>()), 1..9).prop_map({
            let good = good.clone();
            move |writes| {
                let mut v = good.clone();
                for (i, b) in writes {
                    v[i] = b;
                }
                v
            }
        }),
        // Anything at all, of any length.
        proptest::collection::vec(any::<u8>(), 0..400),
    ];
    runner
        .run(&strategy, |input| {
            let key = match h.run(&input) {
                Outcome::UpdateRefused(e) => format!("update {e}"),
                Outcome::RegisterRefused(e) => format!("register {e}"),
                Outcome::Registered => "registered".to_string(),
                Outcome::Unregistered => "accepted, not registered".to_string(),
            };
            *seen.borrow_mut().entry(key).or_default() += 1;
            Ok(())
        })
        .unwrap();
    let seen = seen.into_inner();
    eprintln!("outcomes: {seen:?}");
    assert!(seen.contains_key("registered"), "{seen:?}");
    assert!(seen.len() >= 3, "inputs reached only {seen:?}");
}
