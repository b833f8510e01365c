//! Throughput of the BTF dumpers on the running kernel's BTF (`/sys/kernel/btf/vmlinux`):
//! parsing, the raw listing (plain and JSON) into a reused buffer, the C header, and the
//! whole of what `bpftool btf dump file /sys/kernel/btf/vmlinux format raw > /dev/null`
//! does (read, parse, list into `/dev/null`) next to that bpftool command itself, timed
//! as a process when bpftool is installed. Skips, saying why, when the kernel exposes no
//! BTF.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::path::Path;
use std::process::{Command, Stdio};
use structops_btf::{Btf, dump};

const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

fn bench(c: &mut Criterion) {
    let Ok(data) = std::fs::read(VMLINUX) else {
        eprintln!("skipped: no {VMLINUX}");
        return;
    };
    let Ok(btf) = Btf::parse(&data) else {
        eprintln!("skipped: {VMLINUX} does not parse");
        return;
    };
    let mut out = Vec::new();
    let mut g = c.benchmark_group("vmlinux");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("parse", |b| b.iter(|| Btf::parse(black_box(&data))));
    g.bench_function("raw", |b| {
        b.iter(|| {
            out.clear();
            dump::raw(black_box(&btf), &mut out).map(|()| out.len())
        })
    });
    g.bench_function("raw_json", |b| {
        b.iter(|| {
            out.clear();
            dump::raw_json(black_box(&btf), false, &mut out).map(|()| out.len())
        })
    });
    g.bench_function("read+parse+raw to /dev/null", |b| {
        b.iter(|| {
            let data = std::fs::read(VMLINUX).ok()?;
            let btf = Btf::parse(&data).ok()?;
            let mut null = std::fs::File::create("/dev/null").ok()?;
            dump::raw(&btf, &mut null).ok()
        })
    });
    let bpftool = ["/usr/sbin/bpftool", "/usr/bin/bpftool", "/sbin/bpftool"]
        .into_iter()
        .find(|p| Path::new(p).is_file());
    match bpftool {
        Some(bpftool) => {
            g.bench_function("bpftool process, raw to /dev/null", |b| {
                b.iter(|| {
                    Command::new(bpftool)
                        .args(["btf", "dump", "file", VMLINUX, "format", "raw"])
                        .stdout(Stdio::null())
                        .status()
                        .map(|s| s.success())
                })
            });
        }
        None => eprintln!("skipped the bpftool comparison: bpftool not installed"),
    }
    g.bench_function("c_header", |b| {
        b.iter(|| {
            out.clear();
            dump::c_header(black_box(&btf), &mut out).map(|()| out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
