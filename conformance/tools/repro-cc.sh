#!/usr/bin/env bash
# Runs a compiler so that its output does not depend on where the checkout lives.
#
#   repro-cc.sh mirror ROOT INPUT...            print a scratch dir holding ROOT/INPUT...
#   repro-cc.sh run ROOT SUBDIR INPUT... -o DEST -- CMD ARGS...
#                                               mirror, run `CMD ARGS... -o OUT` in
#                                               SCRATCH/SUBDIR, move OUT to DEST, clean up
#
# INPUTs are paths relative to ROOT (files or directories); they are mirrored, as hard
# links when possible, under /tmp/structops-cc.XXXXXXXXXX/w, a path whose length never
# changes. CMD's arguments should name inputs by relative paths. The output, too, is
# written inside the scratch dir (its path is a string clang handles as well) and
# moved into place afterwards (callers of `mirror` write to SCRATCH/o/NAME, whose
# length depends only on NAME).
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
  mkdir "$scratch/w" "$scratch/o"
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
    dest=""
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
      if [ "$1" = -o ]; then dest="$2"; shift 2; else inputs+=("$1"); shift; fi
    done
    [ "${1:-}" = -- ] && [ -n "$dest" ] ||
      { echo "repro-cc.sh: run needs -o DEST and -- before the command" >&2; exit 2; }
    shift
    scratch="$(mirror "$root" "${inputs[@]}")"
    trap 'rm -rf "$scratch"' EXIT
    (cd "$scratch/w/$sub" && "$@" -o "$scratch/o/out")
    mv "$scratch/o/out" "$dest"
    ;;
  *)
    echo "usage: repro-cc.sh mirror ROOT INPUT... | run ROOT SUBDIR INPUT... -o DEST -- CMD..." >&2
    exit 2
    ;;
esac
