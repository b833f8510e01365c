#!/usr/bin/env bash
# Rebuilds the structops-obj test objects from the C sources beside this script.
# Usage: tests/data/build.sh   (needs clang-19; the objects are committed)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
CLANG="${CLANG:-clang-19}"
command -v "$CLANG" >/dev/null || { echo "skipped: $CLANG not found"; exit 0; }
for src in minimal features struct_ops; do
  "$CLANG" -g -O2 --target=bpf -mcpu=v3 -fdebug-compilation-dir=. -c "$src.bpf.c" -o "$src.bpf.o"
done
# A big-endian build of the minimal object (libbpf refuses these on little-endian hosts).
"$CLANG" -g -O2 --target=bpfeb -mcpu=v3 -fdebug-compilation-dir=. -c minimal.bpf.c -o minimal.bpfeb.o
echo "built: $(ls *.o | tr '\n' ' ')"
