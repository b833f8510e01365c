#!/usr/bin/env bash
# Runs one cargo-fuzz target for a bounded time on the committed seeds plus a local corpus,
# and prints libFuzzer's final stats (executions, coverage). The toolchain is stable Rust;
# RUSTC_BOOTSTRAP lets cargo-fuzz pass its sanitizer flags.
#   usage: fuzz/run.sh TARGET [SECONDS]
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?usage: fuzz/run.sh TARGET [SECONDS]}
secs=${2:-60}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
mkdir -p "corpus/$target" "seeds/$target"
# The kernel selftest corpus (built, never committed) seeds the object parser too.
extra=()
if [ "$target" = obj_parse ] && [ -d ../conformance/build/corpus ]; then
  extra=(../conformance/build/corpus)
fi
export RUSTC_BOOTSTRAP=1
# Build first so that a compile error is shown rather than filtered out below.
cargo fuzz build -O "$target"
cargo fuzz run -O "$target" "corpus/$target" "seeds/$target" "${extra[@]}" -- \
  -max_total_time="$secs" -print_final_stats=1 -max_len=65536 2>&1 |
  grep -E "^(stat::|Done|#[0-9]+[[:space:]]+DONE|==|SUMMARY|.*panicked)" || true
ls artifacts/"$target" 2>/dev/null | grep . && { echo "FINDINGS in fuzz/artifacts/$target"; exit 1; } || true
