// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * A cache_ops policy that the host's rules reject: it writes to an entry, which
 * the host declares read-only (docs/HOSTS.md).
 */
#include "fixture.h"
#include "cache_ops.h"

FIXTURE_LICENSE;

SEC("struct_ops/access")
void BPF_PROG(forget_hits, struct cache_entry *e)
{
	e->hits = 0;
}

SEC("struct_ops/evict")
__u32 BPF_PROG(evict_first, struct cache_ctx *c)
{
	return 0;
}

SEC(".struct_ops.link")
struct cache_ops bad = {
	.access = (void *)forget_hits,
	.evict = (void *)evict_first,
	.name = "bad",
};
