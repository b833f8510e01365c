//! `structops_btf::dump` against the tools it imitates: the raw listing must be
//! byte-identical to bpftool 7.1's (plain and JSON) on the running kernel's BTF and on the
//! `.BTF` sections of the fixtures in `tests/data/`, and the C header must compile with
//! clang-19 and reproduce every layout (checked by `_Static_assert`s and by compiling the
//! header back to BTF and comparing). Tests whose tool or input is missing print why and
//! skip.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use structops_btf::dump::{self, DumpError, RawFormat};
use structops_btf::{
    Btf, BtfBuilder, Composite, INT_BOOL, INT_CHAR, INT_SIGNED, Kind, Linkage, Type, TypeId,
    TypeKind, VarSecInfo,
};

const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// `name` from PATH or the sbin directories (bpftool lives in /usr/sbin).
fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

macro_rules! require {
    ($e:expr, $why:expr) => {
        match $e {
            Some(v) => v,
            None => {
                eprintln!("skipped: {}", $why);
                return;
            }
        }
    };
}

fn bpftool() -> Option<PathBuf> {
    tool("bpftool")
}

fn clang() -> Option<PathBuf> {
    tool("clang-19")
}

fn vmlinux() -> Option<Vec<u8>> {
    std::fs::read(VMLINUX).ok()
}

/// A fresh directory for one test's files.
fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("structops-dump-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn bpftool_dump(bpftool: &Path, file: &Path, json: Option<&str>, format: &str) -> Vec<u8> {
    let mut cmd = Command::new(bpftool);
    if let Some(flag) = json {
        cmd.arg(flag);
    }
    run(cmd
        .args(["btf", "dump", "file"])
        .arg(file)
        .args(["format", format]))
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn fixtures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixture_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".bpf.o"))
        .collect();
    v.sort();
    assert!(v.len() >= 2, "fixtures missing from {:?}", fixture_dir());
    v
}

/// The raw `.BTF` section of an object, as `llvm-objcopy-19 --dump-section` writes it.
fn extract_btf(objcopy: &Path, obj: &Path, dir: &Path) -> Vec<u8> {
    let stem = obj.file_name().unwrap().to_string_lossy().into_owned();
    let sec = dir.join(format!("{stem}.btf"));
    run(Command::new(objcopy)
        .arg(format!("--dump-section=.BTF={}", sec.display()))
        .arg(obj)
        .arg(dir.join(format!("{stem}.copy"))));
    std::fs::read(sec).unwrap()
}

fn ours(btf: &Btf, format: RawFormat) -> Vec<u8> {
    let mut v = Vec::new();
    dump::raw_ids(btf, 1..btf.len(), format, &mut v).unwrap();
    v
}

/// Asserts byte equality, showing the first differing line when it fails.
fn assert_same(what: &str, ours: &[u8], theirs: &[u8]) {
    if ours == theirs {
        return;
    }
    let a = String::from_utf8_lossy(ours);
    let b = String::from_utf8_lossy(theirs);
    let (n, (x, y)) = a
        .lines()
        .zip(b.lines())
        .enumerate()
        .find(|(_, (x, y))| x != y)
        .unwrap_or((a.lines().count().min(b.lines().count()), ("<end>", "<end>")));
    panic!(
        "{what}: output differs from bpftool's at line {}:\n ours:    {:.300}\n bpftool: {:.300}\n({} vs {} bytes)",
        n + 1,
        x,
        y,
        ours.len(),
        theirs.len()
    );
}

fn assert_json_same(what: &str, ours: &[u8], theirs: &[u8]) {
    let a: serde_json::Value = serde_json::from_slice(ours).unwrap();
    let b: serde_json::Value = serde_json::from_slice(theirs).unwrap();
    assert!(a == b, "{what}: JSON values differ from bpftool's");
    assert_same(what, ours, theirs);
}

#[test]
fn raw_text_matches_bpftool_on_vmlinux() {
    let bpftool = require!(bpftool(), "bpftool not installed");
    let data = require!(vmlinux(), "no /sys/kernel/btf/vmlinux");
    let btf = Btf::parse(&data).unwrap();
    let theirs = bpftool_dump(&bpftool, Path::new(VMLINUX), None, "raw");
    assert_same("vmlinux raw", &ours(&btf, RawFormat::Text), &theirs);
}

#[test]
fn raw_json_matches_bpftool_on_vmlinux() {
    let bpftool = require!(bpftool(), "bpftool not installed");
    let data = require!(vmlinux(), "no /sys/kernel/btf/vmlinux");
    let btf = Btf::parse(&data).unwrap();
    let theirs = bpftool_dump(&bpftool, Path::new(VMLINUX), Some("-j"), "raw");
    let mine = ours(&btf, RawFormat::Json { pretty: false });
    assert_json_same("vmlinux json", &mine, &theirs);
    let theirs = bpftool_dump(&bpftool, Path::new(VMLINUX), Some("-p"), "raw");
    let mine = ours(&btf, RawFormat::Json { pretty: true });
    assert_json_same("vmlinux pretty json", &mine, &theirs);
}

#[test]
fn fixtures_cover_every_kind() {
    let objcopy = require!(tool("llvm-objcopy-19"), "llvm-objcopy-19 not installed");
    let dir = scratch("kinds");
    let mut kinds = BTreeSet::new();
    for obj in fixtures() {
        let btf = Btf::parse(&extract_btf(&objcopy, &obj, &dir)).unwrap();
        kinds.extend(btf.types().iter().skip(1).map(|t| t.kind()));
    }
    let all: BTreeSet<Kind> = (1..=19).filter_map(Kind::from_raw).collect();
    assert_eq!(kinds, all);
}

#[test]
fn raw_matches_bpftool_on_fixtures() {
    let bpftool = require!(bpftool(), "bpftool not installed");
    let objcopy = require!(tool("llvm-objcopy-19"), "llvm-objcopy-19 not installed");
    let dir = scratch("fixtures");
    for obj in fixtures() {
        let btf = Btf::parse(&extract_btf(&objcopy, &obj, &dir)).unwrap();
        let name = obj.display().to_string();
        // bpftool reads the object's .BTF as stored: DATASEC sizes and offsets stay 0
        // (libbpf fixes them only when opening a bpf_object), so the section alone
        // gives the same listing.
        let theirs = bpftool_dump(&bpftool, &obj, None, "raw");
        assert!(String::from_utf8_lossy(&theirs).contains("DATASEC '.bss' size=0"));
        assert_same(&name, &ours(&btf, RawFormat::Text), &theirs);
        let theirs = bpftool_dump(&bpftool, &obj, Some("-j"), "raw");
        assert_json_same(
            &name,
            &ours(&btf, RawFormat::Json { pretty: false }),
            &theirs,
        );
        let theirs = bpftool_dump(&bpftool, &obj, Some("-p"), "raw");
        assert_json_same(
            &name,
            &ours(&btf, RawFormat::Json { pretty: true }),
            &theirs,
        );
    }
}

/// BTF that clang never emits but the wire format allows: combined and unknown int
/// encodings, unknown linkages, names past the string section, an empty name, names
/// needing JSON escapes, a DATASEC entry naming a missing type, unsigned 32-bit enum
/// values above `INT_MAX` (sign-extended in bpftool's JSON), extreme ENUM64 values.
fn odd_btf() -> Vec<u8> {
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, INT_SIGNED);
    b.add_int("weird", 1, INT_SIGNED | INT_CHAR);
    b.add_int("flag", 1, INT_BOOL);
    b.add_int("ch", 1, INT_CHAR);
    b.add_int("bad", 2, 8);
    b.add_type(Type {
        name_off: 0,
        kind: TypeKind::Int {
            size: 4,
            encoding: 0,
            offset: 3,
            bits: 5,
        },
    });
    // The NUL ending "int": a non-zero offset naming the empty string.
    let empty = b.add_string("int") + 3;
    let proto = b.add_func_proto(int, &[("a", int), ("", 0)]);
    b.add_func("odd_linkage", proto, Linkage::Other(3));
    b.add_func("ext", proto, Linkage::Extern);
    let v1 = b.add_var("odd_var", int, Linkage::Other(7));
    let v2 = b.add_var("ext_var", int, Linkage::Extern);
    b.add_datasec(
        ".odd",
        12,
        &[
            VarSecInfo {
                ty: v1,
                offset: 0,
                size: 4,
            },
            VarSecInfo {
                ty: v2,
                offset: 4,
                size: 4,
            },
            VarSecInfo {
                ty: 999,
                offset: 8,
                size: 4,
            },
        ],
    );
    b.add_enum("uns", 4, false, &[("HIGH", 0xffff_fff0), ("LOW", 1)]);
    b.add_enum("sgn", 4, true, &[("MINUS", -5), ("MAXI", i32::MAX as i64)]);
    b.add_enum(
        "u64e",
        8,
        false,
        &[("TOP", -1), ("ZERO", 0), ("MID", 1 << 40)],
    );
    b.add_enum("s64e", 8, true, &[("MIN", i64::MIN), ("MAX", i64::MAX)]);
    b.add_struct("a\\b\"c\td\ne", 4, &[("x\\y", int, 0)]);
    b.add_decl_tag("tag", int, 7);
    b.add_type_tag("tt", int);
    b.add_fwd("fu", true);
    b.add_fwd("fs", false);
    b.add_float("float", 4);
    // A name offset past the end of the strings and one naming the empty string.
    b.add_type(Type {
        name_off: 0x00ff_0000,
        kind: TypeKind::Typedef { target: int },
    });
    b.add_type(Type {
        name_off: empty,
        kind: TypeKind::Const { target: int },
    });
    b.add_bitfield_composite(
        true,
        "bf_union",
        4,
        &[("lo", int, 0, 3), ("all", int, 0, 0)],
    );
    b.encode()
}

#[test]
fn raw_matches_bpftool_on_odd_btf() {
    let bpftool = require!(bpftool(), "bpftool not installed");
    let dir = scratch("odd");
    let bytes = odd_btf();
    let file = dir.join("odd.btf");
    std::fs::write(&file, &bytes).unwrap();
    let btf = Btf::parse(&bytes).unwrap();
    let theirs = bpftool_dump(&bpftool, &file, None, "raw");
    let text = String::from_utf8_lossy(&theirs);
    assert!(text.contains("encoding=UNKN"), "{text}");
    assert!(text.contains("'(invalid)'"), "{text}");
    assert_same("odd raw", &ours(&btf, RawFormat::Text), &theirs);
    // bpftool's JSON writer turns a backslash into `\n`, so compare bytes only (the
    // names here are still valid JSON).
    let theirs = bpftool_dump(&bpftool, &file, Some("-j"), "raw");
    assert_json_same(
        "odd json",
        &ours(&btf, RawFormat::Json { pretty: false }),
        &theirs,
    );
    let theirs = bpftool_dump(&bpftool, &file, Some("-p"), "raw");
    assert_json_same(
        "odd pretty",
        &ours(&btf, RawFormat::Json { pretty: true }),
        &theirs,
    );
}

#[test]
fn raw_ids_dumps_chosen_types_and_rejects_missing_ones() {
    let btf = Btf::parse(&odd_btf()).unwrap();
    let mut out = Vec::new();
    dump::raw_ids(&btf, [0, 1], RawFormat::Text, &mut out).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "[0] UNKNOWN '(anon)'\n[1] INT 'int' size=4 bits_offset=0 nr_bits=32 encoding=SIGNED\n"
    );
    let mut out = Vec::new();
    dump::raw_ids(&btf, [1], RawFormat::Json { pretty: false }, &mut out).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "{\"types\":[{\"id\":1,\"kind\":\"INT\",\"name\":\"int\",\"size\":4,\"bits_offset\":0,\"nr_bits\":32,\"encoding\":\"SIGNED\"}]}\n"
    );
    let err = dump::raw_ids(&btf, [btf.len()], RawFormat::Text, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, DumpError::NoSuchType { id, .. } if id == btf.len()));
}

#[test]
fn write_errors_are_reported() {
    struct Broken;
    impl std::io::Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let btf = Btf::parse(&odd_btf()).unwrap();
    assert!(matches!(
        dump::raw(&btf, &mut Broken),
        Err(DumpError::Io { .. })
    ));
    assert!(matches!(
        dump::c_header(&builder_btf(), &mut Broken),
        Err(DumpError::Io { .. })
    ));
    // The C header needs every name; a name past the string section is an error there.
    assert!(matches!(
        dump::c_header(&btf, &mut Vec::new()),
        Err(DumpError::Name { .. })
    ));
}

// ---- C header ----------------------------------------------------------------------

/// Composite names that are unique among struct/union/enum tags, so that the header
/// writes them unchanged (duplicates get `___N` suffixes).
fn unique_composites(btf: &Btf) -> Vec<(TypeId, &'static str, String)> {
    let mut count: HashMap<&str, usize> = HashMap::new();
    for t in btf.types() {
        if t.name_off != 0
            && matches!(
                t.kind(),
                Kind::Struct | Kind::Union | Kind::Enum | Kind::Enum64
            )
        {
            *count.entry(btf.name(t.name_off).unwrap()).or_default() += 1;
        }
    }
    let mut v = Vec::new();
    for (id, t) in btf.types().iter().enumerate() {
        let kw = match t.kind() {
            Kind::Struct => "struct",
            Kind::Union => "union",
            _ => continue,
        };
        if t.name_off == 0 {
            continue;
        }
        let name = btf.name(t.name_off).unwrap();
        if count.get(name) == Some(&1) {
            v.push((id as TypeId, kw, name.to_string()));
        }
    }
    v
}

/// `_Static_assert`s on the size of every uniquely named struct and union and the offset
/// of each of its named, byte-aligned, non-bitfield members, plus one global variable per
/// type so that compiling with `-g` describes them all in BTF again.
fn layout_checks(btf: &Btf) -> String {
    let mut s = String::new();
    for (id, kw, name) in unique_composites(btf) {
        let c = btf.ty(id).unwrap().composite().unwrap();
        s += &format!(
            "_Static_assert(sizeof({kw} {name}) == {}, \"{name}\");\n",
            c.size
        );
        for m in &c.members {
            let off = m.bit_offset(c.kflag);
            if m.name_off == 0
                || m.bitfield_size(c.kflag) != 0
                || off % 8 != 0
                || old_bitfield(btf, m.ty)
            {
                continue;
            }
            let mn = btf.name(m.name_off).unwrap();
            s += &format!(
                "_Static_assert(__builtin_offsetof({kw} {name}, {mn}) == {}, \"{name}.{mn}\");\n",
                off / 8
            );
        }
        s += &format!("{kw} {name} __layout_{id};\n");
    }
    s
}

fn old_bitfield(btf: &Btf, ty: TypeId) -> bool {
    let r = btf.resolve(ty).unwrap();
    matches!(btf.ty(r).unwrap().kind, TypeKind::Int { size, offset, bits, .. } if offset != 0 || u32::from(bits) != size * 8)
}

/// (name, bit offset, bitfield width) of each member, with old-style bitfields (an `INT`
/// narrower than its size, no kind flag) read the way clang writes them now.
fn members(btf: &Btf, c: &Composite) -> Vec<(String, u32, u32)> {
    c.members
        .iter()
        .map(|m| {
            let name = btf.name(m.name_off).unwrap().to_string();
            let (mut off, mut bits) = (m.bit_offset(c.kflag), m.bitfield_size(c.kflag));
            if !c.kflag {
                let r = btf.resolve(m.ty).unwrap();
                if let TypeKind::Int {
                    size,
                    offset,
                    bits: b,
                    ..
                } = btf.ty(r).unwrap().kind
                    && (offset != 0 || u32::from(b) != size * 8)
                {
                    off += u32::from(offset);
                    bits = u32::from(b);
                }
            }
            (name, off, bits)
        })
        .filter(|(name, _, _)| !name.starts_with("__pad_"))
        .collect()
}

/// Writes the header for `btf` (all types, or only `roots`), compiles it with the layout
/// checks, and compares the layouts in the compiled object's BTF with the original's.
/// Returns the header text.
fn compile_and_compare(tag: &str, btf: &Btf, roots: Option<&[TypeId]>) -> Option<String> {
    let clang = clang()?;
    let objcopy = tool("llvm-objcopy-19")?;
    let dir = scratch(tag);
    let mut header = Vec::new();
    match roots {
        Some(r) => dump::c_header_types(btf, r.iter().copied(), &mut header).unwrap(),
        None => dump::c_header(btf, &mut header).unwrap(),
    }
    std::fs::write(dir.join("types.h"), &header).unwrap();
    let checks = match roots {
        Some(r) => {
            let keep: BTreeSet<TypeId> = r.iter().copied().collect();
            let all = layout_checks(btf);
            // Only the roots' checks: keep each root's block of lines.
            let names: Vec<String> = unique_composites(btf)
                .into_iter()
                .filter(|(id, _, _)| keep.contains(id))
                .map(|(_, kw, n)| format!("{kw} {n}"))
                .collect();
            all.lines()
                .filter(|l| {
                    names.iter().any(|n| {
                        l.contains(&format!("({n})"))
                            || l.contains(&format!("({n},"))
                            || l.starts_with(&format!("{n} "))
                    })
                })
                .map(|l| format!("{l}\n"))
                .collect()
        }
        None => layout_checks(btf),
    };
    std::fs::write(
        dir.join("check.c"),
        format!("#include \"types.h\"\n{checks}"),
    )
    .unwrap();
    let obj = dir.join("check.o");
    let out = Command::new(&clang)
        .args(["-target", "bpf", "-g", "-O0", "-c", "-x", "c"])
        .arg(dir.join("check.c"))
        .arg("-o")
        .arg(&obj)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{tag}: header does not compile ({}):\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let back = Btf::parse(&extract_btf(&objcopy, &obj, &dir)).unwrap();
    let mut compared = 0;
    for (id, _, name) in unique_composites(btf) {
        if roots.is_some_and(|r| !r.contains(&id)) {
            continue;
        }
        let t = btf.ty(id).unwrap();
        let c = t.composite().unwrap();
        let bid = back
            .find_by_name_kind(&name, t.kind())
            .unwrap_or_else(|| panic!("{tag}: {name} missing from the compiled BTF"));
        let bc = back.ty(bid).unwrap().composite().unwrap();
        assert_eq!(bc.size, c.size, "{tag}: size of {name}");
        assert_eq!(
            members(&back, bc),
            members(btf, c),
            "{tag}: members of {name}"
        );
        compared += 1;
    }
    assert!(compared > 0, "{tag}: nothing compared");
    Some(String::from_utf8(header).unwrap())
}

#[test]
fn c_header_of_vmlinux_compiles_with_exact_layouts() {
    let data = require!(vmlinux(), "no /sys/kernel/btf/vmlinux");
    let btf = Btf::parse(&data).unwrap();
    let checks = layout_checks(&btf);
    for (kw, name, member) in [
        ("struct", "tcp_sock", "snd_cwnd"),
        ("struct", "bpf_dummy_ops", "test_1"),
        ("struct", "sk_buff", "len"),
        ("struct", "tcp_congestion_ops", "cong_avoid"),
    ] {
        let id = btf.find_by_name_kind(name, Kind::Struct).unwrap();
        let size = btf.size_of(id).unwrap();
        let (_, off) = btf.member_by_name(id, member).unwrap().unwrap();
        assert!(checks.contains(&format!("sizeof({kw} {name}) == {size},")));
        // sk_buff's `len` sits in an anonymous member: checked through the compiled BTF
        // comparison instead.
        if name != "sk_buff" {
            assert!(checks.contains(&format!("offsetof({kw} {name}, {member}) == {},", off / 8)));
        }
    }
    let header = require!(
        compile_and_compare("vmlinux", &btf, None),
        "clang-19 or llvm-objcopy-19 not installed"
    );
    assert!(header.starts_with("#ifndef __VMLINUX_H__\n"));
    assert!(header.contains("struct bpf_dummy_ops {"));
    assert!(header.ends_with("#endif /* __VMLINUX_H__ */\n"));
}

#[test]
fn c_header_of_one_vmlinux_type_compiles() {
    let data = require!(vmlinux(), "no /sys/kernel/btf/vmlinux");
    let btf = Btf::parse(&data).unwrap();
    let ops = btf
        .find_by_name_kind("bpf_dummy_ops", Kind::Struct)
        .unwrap();
    let tcp = btf.find_by_name_kind("tcp_sock", Kind::Struct).unwrap();
    let header = require!(
        compile_and_compare("vmlinux-one", &btf, Some(&[ops, tcp])),
        "clang-19 or llvm-objcopy-19 not installed"
    );
    assert!(header.contains("struct bpf_dummy_ops {"));
    assert!(header.contains("struct tcp_sock {"));
    // Only what the two need: nothing unrelated such as the scheduler's run queue.
    assert!(!header.contains("struct rq {"));
    let mut full = Vec::new();
    dump::c_header(&btf, &mut full).unwrap();
    assert!(header.len() * 2 < full.len());
}

#[test]
fn c_header_of_fixtures_compiles_with_exact_layouts() {
    let objcopy = require!(tool("llvm-objcopy-19"), "llvm-objcopy-19 not installed");
    let dir = scratch("fixtures-c");
    for obj in fixtures() {
        let btf = Btf::parse(&extract_btf(&objcopy, &obj, &dir)).unwrap();
        let tag = obj.file_name().unwrap().to_string_lossy().into_owned();
        let header = require!(
            compile_and_compare(&tag, &btf, None),
            "clang-19 not installed"
        );
        if tag.starts_with("layouts") {
            let checks = layout_checks(&btf);
            // The packed header: 1 + 4 + 2 bytes, no padding.
            assert!(checks.contains("sizeof(struct packed_hdr) == 7,"));
            assert!(checks.contains("offsetof(struct packed_hdr, len) == 1,"));
            assert!(checks.contains("offsetof(struct packed_hdr, port) == 5,"));
            assert!(header.contains("} __attribute__((packed));"));
            assert!(header.contains("\tunsigned long long wide: 40;\n"));
            assert!(header.contains("\tvoid (*cleanup[2])(void);\n"));
            assert!(header.contains("\tint (* (*get_handler)(int))(long);\n"));
            // union odd_union is aligned(8) in the source; its members alone give 6.
            assert!(header.contains("} __attribute__((aligned(8)));"));
            assert!(header.contains("struct tree;\n\nstruct list_node {"));
        } else {
            assert!(header.contains("} __attribute__((mode(byte)));"));
            assert!(header.contains("\tint * restrict rp;\n"));
            assert!(header.contains("int __attribute__((btf_type_tag(\"user\"))) *uptr;"));
            assert!(header.contains("\tWIDE_HI = 78187493520ULL,\n"));
            assert!(header.contains("\tSWIDE_NEG = -4294967296LL,\n"));
            assert!(header.contains("\tvoid (*handlers[4])(void *, ...);\n"));
        }
    }
}

/// Layouts clang would not produce from C source but BTF can describe, and names that
/// collide.
fn builder_btf() -> Btf {
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, INT_SIGNED);
    let uint = b.add_int("unsigned int", 4, 0);
    let char_ = b.add_int("char", 1, INT_SIGNED | INT_CHAR);
    let long = b.add_int("long", 8, INT_SIGNED);
    // Two different structs named `dup`, two typedefs named `dup_t`, enumerators that
    // collide with each other and with a typedef name.
    let dup1 = b.add_struct("dup", 4, &[("a", int, 0)]);
    let dup2 = b.add_struct("dup", 16, &[("a", long, 0), ("b", long, 64)]);
    let t1 = b.add_typedef("dup_t", dup1);
    let t2 = b.add_typedef("dup_t", dup2);
    b.add_enum("e1", 4, false, &[("SAME", 1), ("dup_t", 2)]);
    b.add_enum("e2", 4, false, &[("SAME", 3)]);
    // A top-level anonymous enum nothing refers to: constants.
    b.add_enum("", 4, true, &[("CONST_A", -1)]);
    // A 2-byte enum and a 32-bit ENUM of size 8.
    let e16 = b.add_enum("e16", 2, false, &[("E16", 0x1234)]);
    let s_e8byte = b.add_string("e8byte");
    let s_e8 = b.add_string("E8");
    let e64 = b.add_type(Type {
        name_off: s_e8byte,
        kind: TypeKind::Enum(structops_btf::EnumBody {
            size: 8,
            signed: false,
            values: vec![structops_btf::Enumerator {
                name_off: s_e8,
                value: 7,
            }],
        }),
    });
    // Old-style bitfields: INTs narrower than their size, no kind flag.
    let s_unsigned_int = b.add_string("unsigned int");
    let int3 = b.add_type(Type {
        name_off: s_unsigned_int,
        kind: TypeKind::Int {
            size: 4,
            encoding: 0,
            offset: 0,
            bits: 3,
        },
    });
    let s_int = b.add_string("int");
    let int7 = b.add_type(Type {
        name_off: s_int,
        kind: TypeKind::Int {
            size: 4,
            encoding: INT_SIGNED,
            offset: 0,
            bits: 7,
        },
    });
    // A union larger than its members, and one with no members at all.
    let big_union = b.add_union("big_union", 32, &[("x", long, 0), ("c", char_, 0)]);
    let odd_union = b.add_union("odd_union", 12, &[("c", char_, 0)]);
    let empty_union = b.add_union("", 8, &[]);
    let empty_t = b.add_typedef("empty_union_t", empty_union);
    // Mutual references: a pointer cycle, a struct embedding one that points back.
    let a = b.reserve();
    let pa = b.add_ptr(a);
    let bb = b.add_struct("cyc_b", 16, &[("back", pa, 0), ("n", int, 64)]);
    let pb = b.add_ptr(bb);
    let holder = b.add_struct(
        "holder",
        104,
        &[
            ("d1", t1, 0),
            ("d2", t2, 64),
            ("small", e16, 192),
            ("eight", e64, 256),
            ("bits3", int3, 320),
            ("bits7", int7, 323),
            ("after", uint, 352),
            ("bu", big_union, 384),
            ("ou", odd_union, 640),
            ("eu", empty_t, 768),
        ],
    );
    let phold = b.add_ptr(holder);
    let s_cyc_a = b.add_string("cyc_a");
    let s_b = b.add_string("b");
    let s_h = b.add_string("h");
    let s_embedded = b.add_string("embedded");
    b.set(
        a,
        Type {
            name_off: s_cyc_a,
            kind: TypeKind::Struct(Composite {
                size: 24,
                kflag: false,
                members: vec![
                    structops_btf::Member {
                        name_off: s_b,
                        ty: pb,
                        offset: 0,
                    },
                    structops_btf::Member {
                        name_off: s_h,
                        ty: phold,
                        offset: 64,
                    },
                    structops_btf::Member {
                        name_off: s_embedded,
                        ty: int,
                        offset: 128,
                    },
                ],
            }),
        },
    );
    // Arrays of function pointers returning function pointers, const arrays.
    let proto_inner = b.add_func_proto(long, &[("", int)]);
    let pinner = b.add_ptr(proto_inner);
    let proto_outer = b.add_func_proto(pinner, &[("which", int), ("", 0)]);
    let pouter = b.add_ptr(proto_outer);
    let arr = b.add_array(pouter, int, 3);
    let cint = b.add_const(int);
    let carr = b.add_array(cint, int, 2);
    let carr2 = b.add_array(carr, int, 2);
    b.add_struct("fnptrs", 40, &[("tab", arr, 0), ("grid", carr2, 192)]);
    // A packed struct with a straddling bitfield and a misaligned member.
    b.add_bitfield_composite(
        false,
        "straddle",
        6,
        &[
            ("lo", uint, 0, 30),
            ("mid", uint, 30, 4),
            ("v", char_, 40, 0),
        ],
    );
    // `va_list` whose BTF target is x86-64's `struct __va_list_tag[1]`.
    let tag = b.add_struct(
        "__va_list_tag",
        24,
        &[("gp_offset", uint, 0), ("p", long, 64), ("q", long, 128)],
    );
    let tag_arr = b.add_array(tag, int, 1);
    let builtin = b.add_typedef("__builtin_va_list", tag_arr);
    let va = b.add_typedef("va_list", builtin);
    b.add_struct("uses_va", 32, &[("fmt", long, 0), ("args", va, 64)]);
    b.build()
}

#[test]
fn c_header_of_built_btf_compiles_with_exact_layouts() {
    let btf = builder_btf();
    let header = require!(
        compile_and_compare("builder", &btf, None),
        "clang-19 or llvm-objcopy-19 not installed"
    );
    for needle in [
        "struct dup {",
        "struct dup___2 {",
        "typedef struct dup dup_t;",
        "typedef struct dup___2 dup_t___2;",
        "\tSAME = 1,\n\tdup_t___3 = 2,",
        "\tSAME___2 = 3,",
        "enum {\n\tCONST_A = -1,\n};",
        "} __attribute__((mode(HI)));",
        "} __attribute__((mode(word)));",
        "\tunsigned int bits3: 3;\n\tint bits7: 7;",
        "} __attribute__((aligned(32)));",
        "\tchar __pad_",
        "struct cyc_b;\n\nstruct holder;\n\nstruct cyc_a {",
        "\tlong (* (*tab[3])(int which, ...))(int);",
        "\tconst int grid[2][2];",
        "typedef struct __va_list_tag va_list[1];",
    ] {
        assert!(header.contains(needle), "missing {needle:?} in:\n{header}");
    }
    assert!(header.contains("struct straddle {") && header.contains("} __attribute__((packed));"));
}

#[test]
fn c_dumper_writes_each_type_once() {
    let btf = builder_btf();
    let holder = btf.find_by_name_kind("holder", Kind::Struct).unwrap();
    let mut d = dump::CDumper::new(&btf);
    let mut first = Vec::new();
    d.dump_type(holder, &mut first).unwrap();
    let first = String::from_utf8(first).unwrap();
    assert!(first.contains("struct holder {"));
    assert!(first.contains("struct dup {"));
    // Already written: nothing more.
    let mut again = Vec::new();
    d.dump_type(holder, &mut again).unwrap();
    assert!(again.is_empty());
    // Functions, variables and sections define nothing in C.
    let odd = Btf::parse(&odd_btf()).unwrap();
    let f = odd.find_by_name_kind("ext", Kind::Func).unwrap();
    let mut d = dump::CDumper::new(&odd);
    let mut out = Vec::new();
    d.dump_type(f, &mut out).unwrap();
    assert!(out.is_empty());
    assert!(matches!(
        d.dump_type(odd.len(), &mut out),
        Err(DumpError::NoSuchType { .. })
    ));
}

#[test]
fn c_header_rejects_impossible_and_cyclic_btf() {
    // A struct that embeds itself.
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, INT_SIGNED);
    let s = b.reserve();
    let s_self = b.add_string("self");
    b.set(
        s,
        Type {
            name_off: s_self,
            kind: TypeKind::Struct(Composite {
                size: 8,
                kflag: false,
                members: vec![structops_btf::Member {
                    name_off: 0,
                    ty: s,
                    offset: 0,
                }],
            }),
        },
    );
    let _ = int;
    let btf = b.build();
    let err = dump::c_header(&btf, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, DumpError::Cycle { id } if id == s), "{err:?}");

    // A const that qualifies itself, and a typedef chain longer than any C needs.
    let mut b = BtfBuilder::new();
    let c = b.reserve();
    b.set(
        c,
        Type {
            name_off: 0,
            kind: TypeKind::Const { target: c },
        },
    );
    b.add_struct("holds_loop", 8, &[("x", c, 0)]);
    let btf = b.build();
    let err = dump::c_header(&btf, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, DumpError::TooDeep { .. }), "{err:?}");

    let mut b = BtfBuilder::new();
    let mut t = b.add_int("int", 4, INT_SIGNED);
    for i in 0..2000 {
        t = b.add_typedef(&format!("t{i}"), t);
    }
    b.add_struct("deep", 4, &[("x", t, 0)]);
    let btf = b.build();
    let err = dump::c_header(&btf, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, DumpError::TooDeep { .. }), "{err:?}");
}

#[test]
fn snapshots() {
    let mut header = Vec::new();
    dump::c_header(&builder_btf(), &mut header).unwrap();
    insta::assert_snapshot!("builder_header", String::from_utf8(header).unwrap());
    let btf = Btf::parse(&odd_btf()).unwrap();
    let text = String::from_utf8_lossy(&ours(&btf, RawFormat::Text)).into_owned();
    insta::assert_snapshot!("odd_raw", text);
}

/// The committed fixture objects are what their sources compile to (when this clang is
/// the one recorded in `tests/data/BUILD_INFO`; another build may differ in bytes).
#[test]
fn fixtures_are_up_to_date() {
    let clang = require!(clang(), "clang-19 not installed");
    let version = run(Command::new(&clang).arg("--version"));
    let version = String::from_utf8_lossy(&version);
    let first = version.lines().next().unwrap_or_default().to_string();
    let recorded = std::fs::read_to_string(fixture_dir().join("BUILD_INFO")).unwrap();
    let dir = scratch("rebuild");
    run(Command::new("bash")
        .arg(fixture_dir().join("build.sh"))
        .env("CLANG", &clang)
        .env("OUT", &dir));
    if recorded.trim() != first.trim() {
        eprintln!("skipped comparison: fixtures were built with {recorded:?}, this is {first:?}");
        return;
    }
    for obj in fixtures() {
        let rebuilt = std::fs::read(dir.join(obj.file_name().unwrap())).unwrap();
        assert!(
            rebuilt == std::fs::read(&obj).unwrap(),
            "{} is stale: run tests/data/build.sh",
            obj.display()
        );
    }
}
