#!/usr/bin/env bash
# Rebuilds the CO-RE test objects from their sources with clang-19, reproducibly
# (relative paths only, fixed debug compilation dir), then re-records libbpf's view
# of them for machines without conformance/build/bin/libbpf_report:
#
#   crates/structops-obj/tests/data/core/build.sh
#
# Recording runs the core_relo_vmlinux test with STRUCTOPS_RECORD_CORE=1, which writes
# <name>.libbpf.json and vmlinux.fnv (the kernel BTF's fingerprint) from the live
# libbpf_report when it is available.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
CLANG="${CLANG:-clang-19}"
command -v "$CLANG" >/dev/null || { echo "skipped: $CLANG not found"; exit 0; }
for src in *.bpf.c; do
  "$CLANG" --target=bpf -O2 -g -Wall -Werror -fdebug-compilation-dir=. \
    -c "$src" -o "${src%.c}.o"
  echo "built ${src%.c}.o"
done
if [ -x ../../../../../conformance/build/bin/libbpf_report ]; then
  (cd ../../.. && STRUCTOPS_RECORD_CORE=1 cargo test -q --test core_relo_vmlinux relocations_equal_libbpf)
fi
