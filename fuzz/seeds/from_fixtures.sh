#!/usr/bin/env bash
# Regenerates the instruction seeds of the `verifier` and `jit_diff` targets from the
# committed fixtures: every program section of bpf/*.bpf.o as raw instructions (mode byte
# 0), and generator seeds 1..8 with a 64-byte packet (mode byte 1). Needs llvm-19.
set -euo pipefail
cd "$(dirname "$0")"
for target in verifier jit_diff; do
  mkdir -p "$target"
  for obj in ../../bpf/*.bpf.o; do
    base=$(basename "$obj" .bpf.o)
    # Sections with the executable flag: the object's programs.
    llvm-readelf-19 -S -W "$obj" | awk '$0 ~ /\] / && $0 ~ / AX / { sub(/.*\] /, ""); print $1 }' |
      while read -r sec; do
        out="$target/fixture-$base-$(tr -c 'A-Za-z0-9_\n' '_' <<<"$sec")"
        tmp=$(mktemp)
        llvm-objcopy-19 --dump-section "$sec=$tmp" "$obj" /dev/null 2>/dev/null || { rm -f "$tmp"; continue; }
        if [ -s "$tmp" ]; then
          { printf '\x00'; cat "$tmp"; } >"$out"
        fi
        rm -f "$tmp"
      done
  done
  for i in 1 2 3 4 5 6 7 8; do
    { printf '\x01'; printf "\\x$(printf %02x "$i")\\x00\\x00\\x00\\x00\\x00\\x00\\x00"; head -c 64 /dev/zero; } >"$target/generator-$i"
  done
done
