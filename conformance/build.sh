#!/usr/bin/env bash
# Builds the external conformance corpus from Debian's linux-source-6.12 package:
#
#   conformance/build/linux-6.12/     the few parts of the kernel tree we need (extracted)
#   conformance/build/lib/libbpf.a    libbpf 1.5 from tools/lib/bpf (static)
#   conformance/build/include/bpf/    libbpf's headers (bpf_helpers.h, bpf_core_read.h, ...)
#   conformance/build/vmlinux.h       `bpftool btf dump` of this machine's kernel BTF
#   conformance/build/corpus/*.bpf.o  kernel selftest BPF objects, plus corpus/MANIFEST
#   conformance/build/xdp/*.bpf.o     packet (XDP/tc) selftest programs, plus xdp/MANIFEST
#   conformance/build/bin/libbpf_report  the libbpf oracle (conformance/tools/libbpf_report.c)
#
# Nothing from the kernel package is committed: it is all extracted here at build time.
# Idempotent and incremental: every step is skipped when its output is newer than its
# inputs, so a re-run takes well under a second. Exits 0 with "skipped: <reason>" when a
# tool is missing, so callers (tests, bpf/Makefile, CI) can skip instead of failing.
#
# Usage: conformance/build.sh [--headers-only] [--clean]
#   --headers-only  stop after libbpf headers and vmlinux.h (what bpf/Makefile needs)
#   --clean         remove conformance/build first
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
B="$HERE/build"
KVER=6.12
TARBALL="${LINUX_SOURCE_TARBALL:-/usr/src/linux-source-$KVER.tar.xz}"
TOP="linux-source-$KVER"
SRC="$B/linux-$KVER"
SELFTESTS="$SRC/tools/testing/selftests/bpf"
CLANG="${CLANG:-clang-19}"
BPFTOOL="${BPFTOOL:-bpftool}"
VMLINUX_BTF="${VMLINUX_BTF:-/sys/kernel/btf/vmlinux}"
JOBS="$(nproc 2>/dev/null || echo 2)"

headers_only=0
for arg in "$@"; do
  case "$arg" in
    --headers-only) headers_only=1 ;;
    --clean) echo "build: removing $B"; rm -rf "$B" ;;
    *) echo "usage: $0 [--headers-only] [--clean]" >&2; exit 2 ;;
  esac
done

skip() { echo "skipped: $*"; exit 0; }
say() { echo "build: $*"; }
# newer OUT IN...: true when OUT exists and is newer than every IN.
newer() {
  local out="$1"; shift
  [ -e "$out" ] || return 1
  local f
  for f in "$@"; do [ "$f" -nt "$out" ] && return 1; done
  return 0
}

[ -r "$TARBALL" ] || skip "$TARBALL not found (run conformance/deps.sh as root)"
command -v "$CLANG" >/dev/null || skip "$CLANG not found (run conformance/deps.sh)"
command -v "$BPFTOOL" >/dev/null || skip "bpftool not found (run conformance/deps.sh)"
command -v make >/dev/null || skip "make not found"
command -v python3 >/dev/null || skip "python3 not found (libbpf generates bpf_helper_defs.h with it)"
HOSTCC="${HOSTCC:-$(command -v cc || command -v gcc || command -v "$CLANG")}"
[ -n "$HOSTCC" ] || skip "no host C compiler"
[ -r /usr/include/libelf.h ] || [ -r /usr/include/gelf.h ] || skip "libelf headers missing (libelf-dev)"
[ -r /usr/include/zlib.h ] || skip "zlib headers missing (zlib1g-dev)"

mkdir -p "$B"
start_us=${EPOCHREALTIME/./}

# ---------------------------------------------------------------------------------------
# 1. Extract the parts of the kernel tree we need.
# ---------------------------------------------------------------------------------------
EXTRACT_PATHS=(
  "$TOP/tools/lib/bpf"
  "$TOP/tools/include"
  "$TOP/tools/arch/x86/include"
  "$TOP/tools/scripts"
  "$TOP/tools/build"
  "$TOP/tools/testing/selftests/bpf/progs"
  "$TOP/tools/testing/selftests/bpf/bpf_testmod/*.h"
  "$TOP/tools/testing/selftests/bpf/*.h"
  "$TOP/tools/testing/selftests/bpf/Makefile"
  "$TOP/scripts/bpf_doc.py"
  "$TOP/Makefile"
)
# The stamp records what was extracted, so adding a path re-extracts but editing
# the rest of this script does not.
stamp="$B/.extracted-$KVER"
want="$(printf '%s\n' "$TARBALL" "${EXTRACT_PATHS[@]}")"
if newer "$stamp" "$TARBALL" && [ "$(cat "$stamp")" = "$want" ]; then
  say "kernel tree: up to date ($SRC)"
else
  say "extracting $(basename "$TARBALL") (tools/lib/bpf, tools/include, tools/build, selftests/bpf) -> $SRC"
  rm -rf "$SRC" "$stamp"
  mkdir -p "$SRC"
  tar -xJf "$TARBALL" -C "$SRC" --strip-components=1 --wildcards "${EXTRACT_PATHS[@]}"
  printf '%s\n' "$want" > "$stamp"
fi

# ---------------------------------------------------------------------------------------
# 2. libbpf: static library and headers. Debian's libbpf-dev (1.1) and linux-libc-dev are
#    too old (no .struct_ops.link), so everything uses this one.
# ---------------------------------------------------------------------------------------
LIBBPF_A="$B/lib/libbpf.a"
if newer "$LIBBPF_A" "$stamp" && [ -e "$B/include/bpf/bpf_helper_defs.h" ]; then
  say "libbpf: up to date ($LIBBPF_A)"
else
  say "libbpf: building static library and installing headers"
  mkdir -p "$B/libbpf-obj" "$B/lib"
  make -s -C "$SRC/tools/lib/bpf" -j"$JOBS" \
    CC="$HOSTCC" OUTPUT="$B/libbpf-obj/" DESTDIR="$B" prefix= \
    EXTRA_CFLAGS="-g -O2 -fPIC" \
    "$B/libbpf-obj/libbpf.a" install_headers >/dev/null
  cp "$B/libbpf-obj/libbpf.a" "$LIBBPF_A"
fi

# ---------------------------------------------------------------------------------------
# 3. vmlinux.h for this machine's kernel.
# ---------------------------------------------------------------------------------------
VMLINUX_H="$B/vmlinux.h"
if [ ! -r "$VMLINUX_BTF" ]; then
  skip "$VMLINUX_BTF not readable (kernel built without CONFIG_DEBUG_INFO_BTF)"
fi
# The BTF file's mtime is the boot time, so every boot re-dumps it; the header is
# replaced (and its mtime bumped, which rebuilds its users) only when it changed.
if newer "$VMLINUX_H" "$VMLINUX_BTF" || newer "$B/.vmlinux-checked" "$VMLINUX_BTF"; then
  say "vmlinux.h: up to date"
else
  say "vmlinux.h: bpftool btf dump file $VMLINUX_BTF format c"
  "$BPFTOOL" btf dump file "$VMLINUX_BTF" format c > "$VMLINUX_H.tmp"
  if [ -e "$VMLINUX_H" ] && cmp -s "$VMLINUX_H.tmp" "$VMLINUX_H"; then
    rm -f "$VMLINUX_H.tmp"
    echo > "$B/.vmlinux-checked"   # remember that the dump matched, keep the header's mtime
    say "vmlinux.h: unchanged"
  else
    mv "$VMLINUX_H.tmp" "$VMLINUX_H"
  fi
fi
# The selftests' progs include it as <vmlinux.h> or "vmlinux.h" from their include dir.
ln -sf ../vmlinux.h "$B/include/vmlinux.h"

if [ "$headers_only" = 1 ]; then
  say "headers ready ($B/include, $VMLINUX_H)"
  exit 0
fi

# ---------------------------------------------------------------------------------------
# 4. The corpus: kernel selftest BPF programs compiled as the selftests Makefile does
#    (CLANG_BPF_BUILD_RULE with TRUNNER_BPF_CFLAGS of the test_progs runner).
# ---------------------------------------------------------------------------------------
# struct_ops programs
CORPUS_STRUCT_OPS=(
  bpf_cubic bpf_cc_cubic bpf_dctcp bpf_dctcp_release
  dummy_st_ops_success dummy_st_ops_fail
  tcp_ca_update tcp_ca_write_sk_pacing tcp_ca_incompl_cong_ops tcp_ca_unsupp_cong_op
  tcp_ca_kfunc struct_ops_detach bad_struct_ops
  struct_ops_autocreate struct_ops_maybe_null struct_ops_nulled_out_cb
)
# larger programs for parser coverage (maps, map-in-map, global data, CO-RE, ksyms, kconfig)
CORPUS_OTHER=(
  test_btf_map_in_map map_ptr_kern test_global_data test_ksyms_btf test_ksyms_weak
  test_subprogs test_core_extern linked_list
)

# Packet programs for the test-run differential (crates/structops/tests/xdp_kernel.rs):
# the XDP selftests (and a few tc ones) whose BPF_PROG_TEST_RUN results the runtime must
# reproduce. Built into $B/xdp (own MANIFEST), apart from the corpus, so the parser and
# libbpf parity tests that glob corpus/ are not affected.
CORPUS_XDP=(
  test_xdp test_xdp_adjust_tail_grow test_xdp_adjust_tail_shrink test_xdp_context_test_run
  test_xdp_devmap_helpers test_xdp_do_redirect test_xdp_dynptr test_xdp_link test_xdp_loop
  test_xdp_noinline test_xdp_update_frags test_xdp_with_cpumap_helpers
  test_xdp_with_devmap_helpers xdp_dummy xdp_features xdp_redirect_map
  xdp_redirect_multi_kern xdp_synproxy_kern xdp_tx xdping_kern xdpwall xdp_metadata
  test_parse_tcp_hdr_opt test_parse_tcp_hdr_opt_dynptr test_tcp_check_syncookie_kern
  test_check_mtu test_pkt_access test_l4lb test_l4lb_noinline
)

# CO-RE: every test_core_reloc_*.c program, and every btf__core_reloc_*.c object whose
# BTF the core_reloc selftest uses as the relocation target (libbpf's btf_custom_path).
# core_reloc_pairs.tsv names the target of each program (its base, non-variant BTF).
CORPUS_CORE=()
for f in "$SELFTESTS"/progs/test_core_reloc_*.c "$SELFTESTS"/progs/btf__core_reloc_*.c; do
  n="$(basename "$f" .c)"
  CORPUS_CORE+=("$n")
done

# Host include dirs, appended with -idirafter exactly as get_sys_includes does.
sys_includes() {
  "$CLANG" -v -E - </dev/null 2>&1 |
    sed -n '/<...> search starts here:/,/End of search list./{ s| \(/.*\)|-idirafter \1|p }'
}
read -r -a SYS_INC <<< "$(sys_includes | tr '\n' ' ')"

# Paths are relative to (a mirror of) $B, where clang runs: with -fdebug-compilation-dir=.
# no absolute path lands in the objects, and the mirror at a fixed-length path keeps
# clang 19's BTF type order stable (tools/repro-cc.sh), so the objects and MANIFEST's
# hashes are the same in every checkout on machines with the same kernel BTF.
REL_SELFTESTS="linux-$KVER/tools/testing/selftests/bpf"
BPF_CFLAGS=(
  -g -Wall -Werror -D__TARGET_ARCH_x86 -mlittle-endian
  -Iinclude -I"$REL_SELFTESTS" -I"linux-$KVER/tools/include/uapi"
  -Wno-compare-distinct-pointer-types
  "${SYS_INC[@]}"
  -DENABLE_ATOMICS_TESTS
  -fdebug-compilation-dir=.
)

mkdir -p "$B/corpus" "$B/xdp"
# Objects depend on the compiler and its flags through this file, rewritten only when
# they change.
FLAGS_STAMP="$B/corpus/.flags"
flags_now="$("$CLANG" --version | head -1) ${BPF_CFLAGS[*]} -O2 --target=bpf -mcpu=v3"
[ -e "$FLAGS_STAMP" ] && [ "$(cat "$FLAGS_STAMP")" = "$flags_now" ] || echo "$flags_now" > "$FLAGS_STAMP"
failed=()
pids=()
names=()
stale=()
for name in "${CORPUS_STRUCT_OPS[@]}" "${CORPUS_OTHER[@]}" "${CORPUS_CORE[@]}"; do
  newer "$B/corpus/$name.bpf.o" "$SELFTESTS/progs/$name.c" "$VMLINUX_H" "$LIBBPF_A" "$FLAGS_STAMP" ||
    stale+=("$name")
done
stale_xdp=()
for name in "${CORPUS_XDP[@]}"; do
  newer "$B/xdp/$name.bpf.o" "$SELFTESTS/progs/$name.c" "$VMLINUX_H" "$LIBBPF_A" "$FLAGS_STAMP" ||
    stale_xdp+=("$name")
done
say "corpus: compiling ${#CORPUS_STRUCT_OPS[@]} struct_ops + ${#CORPUS_OTHER[@]} other + ${#CORPUS_CORE[@]} CO-RE selftest programs (${#stale[@]} out of date) with $CLANG -O2 --target=bpf -mcpu=v3"
# clang runs in a mirror of its inputs at a fixed-length path (see tools/repro-cc.sh).
scratch=""
if [ $((${#stale[@]} + ${#stale_xdp[@]})) -gt 0 ]; then
  scratch="$("$HERE/tools/repro-cc.sh" mirror "$B" include vmlinux.h \
    "linux-$KVER/tools/include/uapi" "$REL_SELFTESTS")"
  trap 'rm -rf "$scratch"' EXIT
fi
# compile_one NAME [DIR]: DIR is corpus (default) or xdp.
compile_one() {
  local name="$1" dir="$B/${2:-corpus}"
  local out="$dir/$1.bpf.o"
  if ! (cd "$scratch/w" && "$CLANG" "${BPF_CFLAGS[@]}" -O2 --target=bpf -mcpu=v3 \
          -c "$REL_SELFTESTS/progs/$1.c" -o "$scratch/o/$1.bpf.o") 2> "$dir/$1.log"; then
    return 1
  fi
  rm -f "$dir/$1.log"
  mv "$scratch/o/$1.bpf.o" "$out"
  echo "  CLNG-BPF $name.bpf.o"
}
# Two at a time: the machine has 2 cores, each clang job is single-threaded.
run_batch() {
  local i
  for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then failed+=("${names[$i]}"); fi
  done
  pids=(); names=()
}
for name in "${stale[@]}"; do
  compile_one "$name" & pids+=($!); names+=("$name")
  [ ${#pids[@]} -ge "$JOBS" ] && run_batch
done
run_batch
if [ ${#stale_xdp[@]} -gt 0 ]; then
  say "xdp: compiling ${#stale_xdp[@]} of ${#CORPUS_XDP[@]} packet selftest programs into $B/xdp"
fi
for name in "${stale_xdp[@]}"; do
  compile_one "$name" xdp & pids+=($!); names+=("xdp/$name")
  [ ${#pids[@]} -ge "$JOBS" ] && run_batch
done
run_batch
{
  echo "# packet selftest programs for the test-run differential, from linux-source-$KVER"
  echo "# name<TAB>sha256"
  for name in "${CORPUS_XDP[@]}"; do
    o="$B/xdp/$name.bpf.o"
    [ -e "$o" ] || continue
    printf '%s.bpf.o\t%s\n' "$name" "$(sha256sum "$o" | cut -d' ' -f1)"
  done
} > "$B/xdp/MANIFEST.tmp"
mv "$B/xdp/MANIFEST.tmp" "$B/xdp/MANIFEST"

{
  echo "# conformance corpus: kernel selftest BPF objects from linux-source-$KVER"
  echo "# compiled with $("$CLANG" --version | head -1) against vmlinux.h of $(uname -r)"
  echo "# name<TAB>kind<TAB>sha256"
  for name in "${CORPUS_STRUCT_OPS[@]}" "${CORPUS_OTHER[@]}" "${CORPUS_CORE[@]}"; do
    o="$B/corpus/$name.bpf.o"
    [ -e "$o" ] || continue
    case "$name" in
      test_core_reloc_*) kind=core_reloc ;;
      btf__core_reloc_*) kind=core_btf ;;
      *) kind=other
         for s in "${CORPUS_STRUCT_OPS[@]}"; do [ "$s" = "$name" ] && kind=struct_ops; done ;;
    esac
    printf '%s.bpf.o\t%s\t%s\n' "$name" "$kind" "$(sha256sum "$o" | cut -d' ' -f1)"
  done
} > "$B/corpus/MANIFEST.tmp"
mv "$B/corpus/MANIFEST.tmp" "$B/corpus/MANIFEST"
# How the selftests' user-space halves load each object, as libbpf_report options:
# the core_reloc test relocates test_core_reloc_X against the BTF of
# btf__core_reloc_X.bpf.o (btf_custom_path), and map_ptr sizes its ring buffer to the
# page size before load. Paths are relative to the corpus directory.
{
  echo "# object<TAB>libbpf_report options (paths relative to this directory)"
  for name in "${CORPUS_CORE[@]}"; do
    case "$name" in test_core_reloc_*) ;; *) continue ;; esac
    base="${name#test_core_reloc_}"
    case "$base" in
      kernel|module) continue ;;  # relocated against the running kernel
      bitfields_direct|bitfields_probed) tgt=btf__core_reloc_bitfields.bpf.o ;;
      *) tgt="btf__core_reloc_$base.bpf.o" ;;
    esac
    [ -e "$B/corpus/$tgt" ] || continue
    printf '%s.bpf.o\t--btf %s\n' "$name" "$tgt"
  done
  printf 'map_ptr_kern.bpf.o\t--max-entries m_ringbuf=%s\n' "$(getconf PAGESIZE)"
} > "$B/corpus/LOAD_OPTIONS"
rm -f "$B/corpus/core_reloc_pairs.tsv"
say "corpus: $(grep -vc '^#' "$B/corpus/MANIFEST") objects in $B/corpus (MANIFEST written)"
if [ ${#failed[@]} -gt 0 ]; then
  for f in "${failed[@]}"; do
    echo "build: FAILED to compile $f:" >&2
    case "$f" in
      xdp/*) head -20 "$B/$f.log" >&2 ;;
      *) head -20 "$B/corpus/$f.log" >&2 ;;
    esac
  done
fi

# ---------------------------------------------------------------------------------------
# 5. The libbpf oracle.
# ---------------------------------------------------------------------------------------
REPORT_SRC="$HERE/tools/libbpf_report.c"
REPORT_BIN="$B/bin/libbpf_report"
if [ -e "$REPORT_SRC" ]; then
  if newer "$REPORT_BIN" "$REPORT_SRC" "$LIBBPF_A"; then
    say "libbpf_report: up to date ($REPORT_BIN)"
  else
    say "libbpf_report: compiling $REPORT_BIN"
    mkdir -p "$B/bin"
    "$HOSTCC" -g -O2 -Wall -Wextra -Werror -I"$B/include" -I"$SRC/tools/include/uapi" \
      "$REPORT_SRC" "$LIBBPF_A" -lelf -lz -o "$REPORT_BIN"
  fi
fi

end_us=${EPOCHREALTIME/./}
el=$(( (end_us - start_us) / 100000 ))
say "done in $((el / 10)).$((el % 10))s"
[ ${#failed[@]} -eq 0 ] || { echo "build: ${#failed[@]} corpus object(s) failed: ${failed[*]}" >&2; exit 1; }
