/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Shared by the structops BPF fixtures that do not use vmlinux.h: uapi types from
 * linux/bpf.h (libbpf's copy, extracted by conformance/build.sh) and libbpf's BPF-side
 * headers. Nothing here is kernel-specific, so objects built with it are the same on
 * every machine.
 */
#ifndef STRUCTOPS_FIXTURE_H
#define STRUCTOPS_FIXTURE_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#ifndef NULL
#define NULL ((void *)0)
#endif

/* Every fixture is GPL-compatible so that it may call GPL-only helpers and kfuncs. */
#define FIXTURE_LICENSE char _license[] SEC("license") = "Dual MIT/GPL"

#endif
