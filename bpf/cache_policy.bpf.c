// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Eviction policies for the cache_ops host of docs/HOSTS.md
 * (crates/structops/examples/cache_policy.rs): LRU and FIFO, which differ only in
 * when they stamp an entry. cache_ops.h is generated from the host's BTF.
 */
#include "fixture.h"
#include "cache_ops.h"

FIXTURE_LICENSE;

#define CACHE_SLOTS 8 /* the host's CACHE_SLOTS */
#define E2BIG 7

/* The policy's own state: when each slot was last stamped. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, CACHE_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} stamps SEC(".maps");

__u64 clock; /* one tick per stamp */

const volatile __u32 max_size = 65536; /* larger entries are not cached */

static void stamp(__u32 slot)
{
	__u64 *t = bpf_map_lookup_elem(&stamps, &slot);

	if (t)
		*t = ++clock;
}

SEC("struct_ops/admit")
int BPF_PROG(admit_small, struct cache_entry *e)
{
	return e->size <= max_size ? 0 : -E2BIG;
}

SEC("struct_ops/access")
void BPF_PROG(lru_access, struct cache_entry *e)
{
	stamp(e->slot); /* every access renews the entry */
}

SEC("struct_ops/access")
void BPF_PROG(fifo_access, struct cache_entry *e)
{
	if (e->hits == 0) /* only its insertion counts */
		stamp(e->slot);
}

SEC("struct_ops/evict")
__u32 BPF_PROG(evict_oldest, struct cache_ctx *c)
{
	__u64 oldest = ~0ULL;
	__u32 victim = 0;

	for (__u32 i = 0; i < CACHE_SLOTS && i < c->capacity; i++) {
		__u32 slot = i; /* the key's copy on the stack; i stays in a register */
		__u64 *t = bpf_map_lookup_elem(&stamps, &slot);

		if (t && *t < oldest) {
			oldest = *t;
			victim = i;
		}
	}
	return victim;
}

SEC(".struct_ops.link")
struct cache_ops lru = {
	.admit = (void *)admit_small,
	.access = (void *)lru_access,
	.evict = (void *)evict_oldest,
	.name = "lru",
};

SEC(".struct_ops.link")
struct cache_ops fifo = {
	.admit = (void *)admit_small,
	.access = (void *)fifo_access,
	.evict = (void *)evict_oldest,
	.name = "fifo",
};
