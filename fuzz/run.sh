#!/usr/bin/env bash
# Runs one cargo-fuzz target for a bounded time on the committed seeds plus a local corpus,
# prints libFuzzer's final stats (executions, coverage), and appends a row to
# fuzz/ledger.tsv (date, target, seconds, executions, cov, ft, corpus units, findings), so
# the total time and executions per target can be reported. The toolchain is stable Rust;
# RUSTC_BOOTSTRAP lets cargo-fuzz pass its sanitizer flags.
#   usage: fuzz/run.sh TARGET [SECONDS]
#          fuzz/run.sh --summary        (totals per target from the ledger)
set -euo pipefail
cd "$(dirname "$0")"
if [ "${1:-}" = --summary ]; then
  printf "%-18s %5s %9s %14s %7s %7s %8s\n" target runs seconds executions "max cov" "max ft" findings
  awk -F'\t' 'NR > 1 { s[$2] += $3; e[$2] += $4; f[$2] += $8; if ($5 > c[$2]) c[$2] = $5; if ($6 > t[$2]) t[$2] = $6; n[$2]++ }
    END { for (k in s) printf "%-18s %5d %9d %14d %7d %7d %8d\n", k, n[k], s[k], e[k], c[k], t[k], f[k] }' ledger.tsv | sort
  exit 0
fi
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
log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$(date +%s)
cargo fuzz run -O "$target" "corpus/$target" "seeds/$target" "${extra[@]}" -- \
  -max_total_time="$secs" -print_final_stats=1 -max_len=65536 >"$log" 2>&1 || true
elapsed=$(( $(date +%s) - start ))
grep -E "^(stat::|Done|#[0-9]+[[:space:]]+DONE|==|SUMMARY|.*panicked)" "$log" || true
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
last=$(grep -E "^#[0-9]+" "$log" | tail -1 || true)
cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
units=$(ls "corpus/$target" | wc -l)
findings=$(ls "artifacts/$target" 2>/dev/null | wc -l)
[ -f ledger.tsv ] || printf 'date\ttarget\tseconds\texecutions\tcov\tft\tcorpus\tfindings\n' >ledger.tsv
printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$target" "$elapsed" \
  "${execs:-0}" "${cov:-0}" "${ft:-0}" "$units" "$findings" >>ledger.tsv
if [ "$findings" != 0 ]; then
  ls "artifacts/$target"
  echo "FINDINGS in fuzz/artifacts/$target"
  exit 1
fi
