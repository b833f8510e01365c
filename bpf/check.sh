#!/usr/bin/env bash
# Verifies that the committed bpf/*.bpf.o are up to date: rebuilds every fixture into a
# temporary directory with bpf/Makefile and requires each object to be byte-identical
# to the committed one.
#
# Objects are reproducible across checkouts (see the Makefile), but they do depend on
# the compiler and, for fixtures that include vmlinux.h, on the kernel BTF the header
# was dumped from. bpf/BUILD_INFO records both; when this machine differs, the affected
# objects are still rebuilt (so the sources must compile) but not compared, and the
# reason is printed. Exits 0 with "skipped: <reason>" when clang-19 or the headers are
# not available.
#
# Usage: bpf/check.sh        (ends with "N passed, N failed")
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
CLANG="${CLANG:-clang-19}"

command -v "$CLANG" >/dev/null || { echo "skipped: $CLANG not found (run conformance/deps.sh)"; exit 0; }
command -v make >/dev/null || { echo "skipped: make not found"; exit 0; }

out="$("$REPO/conformance/build.sh" --headers-only)" || { echo "$out"; echo "bpf-check: conformance/build.sh failed"; exit 1; }
if grep -q '^skipped:' <<<"$out"; then
  echo "skipped: headers unavailable ($(grep '^skipped:' <<<"$out" | head -1 | cut -d' ' -f2-))"
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if ! make -s -C "$HERE" OUT="$tmp" >"$tmp/make.log" 2>&1; then
  cat "$tmp/make.log"
  echo "bpf-check: the fixtures do not compile"
  echo "0 passed, 1 failed"
  exit 1
fi

info_value() { sed -n "s/^$2: //p" "$1"; }
committed_info="$HERE/BUILD_INFO"
[ -e "$committed_info" ] || { echo "bpf-check: bpf/BUILD_INFO is missing (run make -C bpf)"; echo "0 passed, 1 failed"; exit 1; }
clang_same=1
[ "$(info_value "$committed_info" clang)" = "$(info_value "$tmp/BUILD_INFO" clang)" ] || clang_same=0
btf_same=1
[ "$(info_value "$committed_info" 'vmlinux.h sha256')" = "$(info_value "$tmp/BUILD_INFO" 'vmlinux.h sha256')" ] || btf_same=0
vmlinux_users=" $(info_value "$tmp/BUILD_INFO" 'vmlinux.h users') "

# Which sections differ, to make a failure actionable.
section_diff() {
  local a="$1" b="$2" name
  command -v llvm-objcopy-19 >/dev/null || return 0
  for name in $(llvm-readelf-19 -S -W "$a" 2>/dev/null | sed -n 's/^ *\[ *[0-9]*\] \([^ ]*\) .*/\1/p'); do
    rm -f "$tmp/sa" "$tmp/sb"
    llvm-objcopy-19 --dump-section "$name=$tmp/sa" "$a" "$tmp/junk" 2>/dev/null || true
    llvm-objcopy-19 --dump-section "$name=$tmp/sb" "$b" "$tmp/junk" 2>/dev/null || true
    cmp -s "$tmp/sa" "$tmp/sb" || printf ' %s' "$name"
  done
}

pass=0 fail=0 skip=0
for src in "$HERE"/*.bpf.c; do
  name="$(basename "$src" .c)"
  obj="$HERE/$name.o"
  fresh="$tmp/$name.o"
  if [ ! -e "$obj" ]; then
    echo "FAIL $name.o: not committed (run make -C bpf)"
    fail=$((fail + 1))
    continue
  fi
  if [ "$clang_same" = 0 ]; then
    echo "skip $name.o: built with '$(info_value "$committed_info" clang)', this machine has '$(info_value "$tmp/BUILD_INFO" clang)'"
    skip=$((skip + 1))
    continue
  fi
  if [ "$btf_same" = 0 ] && [[ "$vmlinux_users" == *" $name.c "* ]]; then
    echo "skip $name.o: uses vmlinux.h, and this kernel's BTF differs from the one it was built against"
    skip=$((skip + 1))
    continue
  fi
  if cmp -s "$obj" "$fresh"; then
    echo "ok   $name.o"
    pass=$((pass + 1))
  else
    echo "FAIL $name.o: differs from a fresh build of $name.c (sections:$(section_diff "$obj" "$fresh")); run make -C bpf"
    fail=$((fail + 1))
  fi
done
for obj in "$HERE"/*.bpf.o; do
  [ -e "$obj" ] || continue
  [ -e "${obj%.o}.c" ] || { echo "FAIL $(basename "$obj"): no source"; fail=$((fail + 1)); }
done
if [ "$btf_same" = 1 ] && [ "$clang_same" = 1 ] && ! cmp -s "$committed_info" "$tmp/BUILD_INFO"; then
  echo "FAIL BUILD_INFO: differs from a fresh one (run make -C bpf)"
  fail=$((fail + 1))
fi
echo "bpf-check: $pass passed, $fail failed, $skip skipped"
[ "$fail" = 0 ]
