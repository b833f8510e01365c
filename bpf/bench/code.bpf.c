/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The BPF side of the code-quality benchmark: each kernel of bench.h behind a
 * struct_ops-style program, whose context is the u64 array of the member's arguments
 * (`u64 f(const void *input, u32 arg)`: ctx[0] the input, ctx[1] the argument).
 */
#include "bench.h"

#define SEC(name) __attribute__((section(name), used))

#define BENCH_PROG(name)                                                          \
	SEC("struct_ops/" #name) bench_u64 name(bench_u64 *ctx)                     \
	{                                                                           \
		return name##_impl((const void *)(unsigned long)ctx[0], (bench_u32)ctx[1]); \
	}

BENCH_PROG(bench_fnv1a)
BENCH_PROG(bench_tokens)
BENCH_PROG(bench_bsearch)
BENCH_PROG(bench_cubic)

char LICENSE[] SEC("license") = "Dual MIT/GPL";
