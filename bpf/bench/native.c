/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The native side of the code-quality benchmark: each kernel of bench.h as a plain C
 * function with the member's signature, compiled by crates/structops-bench/build.rs.
 */
#include "bench.h"

#define NATIVE(name)                                                    \
	bench_u64 structops_native_##name(const void *input, bench_u32 arg) \
	{                                                                   \
		return name##_impl(input, arg);                             \
	}

NATIVE(bench_fnv1a)
NATIVE(bench_tokens)
NATIVE(bench_bsearch)
NATIVE(bench_cubic)
