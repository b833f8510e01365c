#!/usr/bin/env bash
# Runs a compiler so that its output does not depend on where the checkout lives.
#
#   repro-cc.sh mirror ROOT INPUT...            print a scratch dir holding ROOT/INPUT...
#   repro-cc.sh run ROOT SUBDIR INPUT... -- CMD ARGS...
#                                               mirror, run CMD in SCRATCH/SUBDIR, clean up
#
# INPUTs are paths relative to ROOT (files or directories); they are mirrored, as hard
# links when possible, under /tmp/structops-cc.XXXXXXXXXX/w, a path whose length never
# changes. CMD's arguments should name inputs by relative paths; outputs may be anywhere.
#
# Why: clang 19's BTF writer emits the FWD types that stand behind pointers in the order
# of their metadata's heap addresses (a std::map keyed by pointer), and the heap layout
# follows the lengths of the real paths clang resolves for its inputs. Relative paths and
# -fdebug-compilation-dir=. keep paths out of the output, but only inputs whose real
# paths have a fixed length keep that order, and so the bytes, the same in every checkout.
set -euo pipefail

mirror() {
  local root="$1" scratch input
  shift
  scratch="$(mktemp -d /tmp/structops-cc.XXXXXXXXXX)"
  mkdir "$scratch/w"
  for input in "$@"; do
    mkdir -p "$scratch/w/$(dirname "$input")"
    cp -al "$root/$input" "$scratch/w/$input" 2>/dev/null ||
      cp -a "$root/$input" "$scratch/w/$input"
  done
  echo "$scratch"
}

case "${1:-}" in
  mirror)
    shift
    mirror "$@"
    ;;
  run)
    shift
    root="$1" sub="$2"
    shift 2
    inputs=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do inputs+=("$1"); shift; done
    [ "${1:-}" = -- ] || { echo "repro-cc.sh: missing -- before the command" >&2; exit 2; }
    shift
    scratch="$(mirror "$root" "${inputs[@]}")"
    trap 'rm -rf "$scratch"' EXIT
    cd "$scratch/w/$sub"
    "$@"
    ;;
  *)
    echo "usage: repro-cc.sh mirror ROOT INPUT... | run ROOT SUBDIR INPUT... -- CMD..." >&2
    exit 2
    ;;
esac
