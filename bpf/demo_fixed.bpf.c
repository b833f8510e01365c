// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * so_demo with a fixed congestion window: the same table name as demo_cc.bpf.c, so it
 * can replace it through `link update` (tcp_update_congestion_control keeps the name),
 * with a visibly different behaviour: every flow holds `fixed_cwnd` packets in flight
 * (10 by default; a .data global, so `map update` on demo_fix.data changes it live),
 * whatever the losses. Its calls are counted in fixed_calls.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char _license[] SEC("license") = "Dual MIT/GPL";

#define TCP_CONG_NON_RESTRICTED 0x1

/* The window, in packets (at least 2). */
__u32 fixed_cwnd = 10;

/* Keys of fixed_calls. */
enum fixed_call {
	FIXED_INIT = 0,
	FIXED_SSTHRESH = 1,
	FIXED_CONG_AVOID = 2,
	FIXED_UNDO_CWND = 3,
	FIXED_NR_CALLS = 4,
};

/* Calls per member, by enum fixed_call. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FIXED_NR_CALLS);
	__type(key, __u32);
	__type(value, __u64);
} fixed_calls SEC(".maps");

static __always_inline void count(__u32 call)
{
	__u64 *n = bpf_map_lookup_elem(&fixed_calls, &call);

	if (n)
		__sync_fetch_and_add(n, 1);
}

static __always_inline __u32 window(void)
{
	__u32 w = fixed_cwnd;

	return w < 2 ? 2 : w;
}

SEC("struct_ops")
void BPF_PROG(so_demo_fixed_init, struct sock *sk)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;

	count(FIXED_INIT);
	tp->snd_cwnd = window();
}

SEC("struct_ops")
__u32 BPF_PROG(so_demo_fixed_ssthresh, struct sock *sk)
{
	count(FIXED_SSTHRESH);
	return window();
}

SEC("struct_ops")
void BPF_PROG(so_demo_fixed_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;

	count(FIXED_CONG_AVOID);
	tp->snd_cwnd = window();
}

SEC("struct_ops")
__u32 BPF_PROG(so_demo_fixed_undo_cwnd, struct sock *sk)
{
	count(FIXED_UNDO_CWND);
	return window();
}

SEC(".struct_ops.link")
struct tcp_congestion_ops demo = {
	.init = (void *)so_demo_fixed_init,
	.ssthresh = (void *)so_demo_fixed_ssthresh,
	.cong_avoid = (void *)so_demo_fixed_cong_avoid,
	.undo_cwnd = (void *)so_demo_fixed_undo_cwnd,
	.flags = TCP_CONG_NON_RESTRICTED,
	.name = "so_demo",
};
