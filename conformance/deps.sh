#!/usr/bin/env bash
# Installs the Debian packages the project's tests, fixtures and conformance corpus need.
# Idempotent: packages already present are skipped by apt. Run as root (CI and the dev
# machines are root); without root it prints what is missing and exits 0, so that tests
# that need these tools skip with a reason instead of failing.
set -euo pipefail

PKGS=(
  clang-19 llvm-19          # compile BPF C (fixtures and the kernel selftest corpus)
  bpftool                   # the oracle for `btf dump` and vmlinux.h generation
  libelf-dev zlib1g-dev     # to build libbpf from linux-source-6.12
  pkg-config make gcc      # host compiler for libbpf and conformance/tools
  python3                   # libbpf's build generates bpf_helper_defs.h with it
  linux-source-6.12         # kernel selftests, libbpf, reference sources
  linux-source-6.1          # the older test_verifier corpus
  xz-utils
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all present"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "deps: not root; missing: ${missing[*]} (tests needing them will skip)"
  exit 0
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: done"
