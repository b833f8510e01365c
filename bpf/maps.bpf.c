// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Networking programs (socket filter, XDP, TC) that use BTF-defined maps of many
 * kinds and every form of bpf-to-bpf call.
 *
 * Exercises:
 *   - SEC("socket"), SEC("xdp"), SEC("tc");
 *   - .maps: ARRAY, HASH (BPF_F_NO_PREALLOC), PERCPU_ARRAY, LRU_HASH, RINGBUF,
 *     a map sized with key_size/value_size instead of key/value types, a map
 *     declared with numa_node and BPF_F_RDONLY_PROG, ARRAY_OF_MAPS and
 *     HASH_OF_MAPS with named inner map definitions and initial values
 *     (.values), an ARRAY_OF_MAPS whose inner definition is an anonymous
 *     PERCPU_HASH, and a PROG_ARRAY initialised with a program;
 *   - static and global __noinline subprograms, subprogram -> subprogram calls,
 *     the same subprogram called from three programs (libbpf appends a copy to
 *     each), a callback passed by address to bpf_loop (ld_imm64 BPF_PSEUDO_FUNC)
 *     and a tail call.
 */
#include "fixture.h"

FIXTURE_LICENSE;

#define TC_ACT_OK 0
#define TC_ACT_SHOT 2

/* ---- plain maps ---- */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct flow_key {
	__u32 ifindex;
	__u16 proto;
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 128);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct flow_key);
	__type(value, __u64);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64[4]);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} recent SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

/* Sizes without BTF key/value types. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 24);
} raw_sized SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_RDONLY_PROG | BPF_F_NUMA_NODE);
	__uint(numa_node, 0);
	__type(key, __u32);
	__type(value, __u32);
} prog_readonly SEC(".maps");

/* ---- map in map ---- */

struct inner_array {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
};

struct inner_array inner_a SEC(".maps");
struct inner_array inner_b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 3);
	__type(key, __u32);
	__array(values, struct inner_array);
} outer_array SEC(".maps") = {
	.values = { [0] = &inner_a, [2] = &inner_b },
};

struct inner_hash {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u32);
};

struct inner_hash inner_h SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, struct inner_hash);
} outer_hash SEC(".maps") = {
	.values = { [1] = &inner_h },
};

/* Inner definition as an anonymous struct; no initial values. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
		__uint(max_entries, 16);
		__type(key, __u64);
		__type(value, __u32);
	});
} outer_anon SEC(".maps");

/* ---- program array ---- */

int tail_target(struct __sk_buff *skb);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, int(void *));
} jump_table SEC(".maps") = {
	.values = { [1] = (void *)&tail_target },
};

/* ---- subprograms ---- */

static __noinline __u64 bump(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);

	if (!v)
		return 0;
	return __sync_fetch_and_add(v, 1) + 1;
}

/* static -> static */
static __noinline __u64 bump_twice(__u32 idx)
{
	bump(idx);
	return bump(idx + 1);
}

/* global: verified separately; scalar args only */
__noinline int classify(__u32 len, __u32 proto)
{
	if (len < 64)
		return 0;
	if (proto == 0x0800)
		return 1;
	return 2 + (int)bump_twice(8); /* global -> static */
}

struct loop_ctx {
	__u64 sum;
};

static int loop_cb(__u32 i, void *data)
{
	struct loop_ctx *c = data;

	c->sum += i;
	return 0;
}

/* ---- programs ---- */

SEC("socket")
int tail_target(struct __sk_buff *skb)
{
	bump(15);
	return 0;
}

SEC("socket")
int sock_filter(struct __sk_buff *skb)
{
	struct flow_key k = { .ifindex = skb->ifindex, .proto = (__u16)skb->protocol };
	__u64 one = 1, *seen;
	__u32 zero = 0;
	void *inner;

	seen = bpf_map_lookup_elem(&flows, &k);
	if (seen)
		__sync_fetch_and_add(seen, 1);
	else
		bpf_map_update_elem(&flows, &k, &one, BPF_NOEXIST);

	inner = bpf_map_lookup_elem(&outer_array, &zero);
	if (inner) {
		__u64 *v = bpf_map_lookup_elem(inner, &zero);

		if (v)
			*v += 1;
	}
	bump(classify(skb->len, skb->protocol));
	bpf_tail_call(skb, &jump_table, 1);
	return skb->len;
}

SEC("xdp")
int xdp_count(struct xdp_md *ctx)
{
	struct loop_ctx lc = { 0 };
	__u32 zero = 0, key = 1, *r, *ro;
	__u64 *s, *ev;
	void *inner;

	bpf_loop(8, loop_cb, &lc, 0);
	s = bpf_map_lookup_elem(&scratch, &zero);
	if (s)
		s[0] += lc.sum;

	inner = bpf_map_lookup_elem(&outer_hash, &key);
	if (inner) {
		r = bpf_map_lookup_elem(inner, &key);
		if (r)
			*r += 1;
	}
	inner = bpf_map_lookup_elem(&outer_anon, &zero);
	if (inner) {
		__u64 k64 = key;

		r = bpf_map_lookup_elem(inner, &k64);
		if (r)
			*r += 1;
	}
	key = ctx->ingress_ifindex;
	r = bpf_map_lookup_elem(&recent, &key);
	if (!r)
		bpf_map_update_elem(&recent, &key, &zero, BPF_ANY);

	ro = bpf_map_lookup_elem(&prog_readonly, &zero);
	ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (ev) {
		*ev = (ro ? *ro : 0) + bump(2);
		bpf_ringbuf_submit(ev, 0);
	}
	return XDP_PASS;
}

SEC("tc")
int tc_classify(struct __sk_buff *skb)
{
	__u32 zero = 0;
	char *raw = bpf_map_lookup_elem(&raw_sized, &zero);

	if (raw)
		raw[23] = (char)skb->len;
	return classify(skb->len, skb->protocol) > 1 ? TC_ACT_SHOT : TC_ACT_OK;
}
