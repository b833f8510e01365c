#!/usr/bin/env bash
# Rebuilds the BTF dumper fixtures (*.bpf.o) from their C sources with clang-19 and
# records the compiler in BUILD_INFO. -fdebug-prefix-map keeps the checkout's path out of
# the objects, so rebuilding in any checkout (or into OUT=DIR) gives the same bytes.
set -euo pipefail
cd "$(dirname "$0")"
CLANG=${CLANG:-clang-19}
OUT=${OUT:-.}
for src in *.bpf.c; do
	"$CLANG" -g -O2 --target=bpf -mcpu=v3 -Wall -Werror -Wno-unused-function \
		-fdebug-prefix-map="$PWD"=. -c "$src" -o "$OUT/${src%.c}.o"
done
if [ "$OUT" = . ]; then
	"$CLANG" --version | head -1 > BUILD_INFO
fi
