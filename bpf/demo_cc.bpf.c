// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * so_demo: a Reno-like congestion control for `structops tcp serve`, with an ARRAY map
 * counting its calls so that a control-socket client can watch it work
 * (`structops --host PATH map dump name demo_calls`). Slow start, additive increase
 * and halving on loss, as reno.bpf.c; it calls no kfunc.
 *
 * demo_fixed.bpf.c registers the same name with a fixed window: `link update` from
 * this object to that one changes the flows visibly.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char _license[] SEC("license") = "Dual MIT/GPL";

#define TCP_CONG_NON_RESTRICTED 0x1

/* Keys of demo_calls. */
enum demo_call {
	DEMO_INIT = 0,
	DEMO_SSTHRESH = 1,
	DEMO_CONG_AVOID = 2,
	DEMO_UNDO_CWND = 3,
	DEMO_NR_CALLS = 4,
};

/* Calls per member, by enum demo_call. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, DEMO_NR_CALLS);
	__type(key, __u32);
	__type(value, __u64);
} demo_calls SEC(".maps");

static __always_inline void count(__u32 call)
{
	__u64 *n = bpf_map_lookup_elem(&demo_calls, &call);

	if (n)
		__sync_fetch_and_add(n, 1);
}

static __always_inline struct tcp_sock *tcp_sk(struct sock *sk)
{
	return (struct tcp_sock *)sk;
}

static __always_inline bool tcp_is_cwnd_limited(struct tcp_sock *tp)
{
	if (BPF_CORE_READ_BITFIELD(tp, is_cwnd_limited))
		return true;
	if (tp->snd_cwnd < tp->snd_ssthresh)
		return tp->snd_cwnd < 2 * tp->max_packets_out;
	return false;
}

SEC("struct_ops")
void BPF_PROG(so_demo_init, struct sock *sk)
{
	count(DEMO_INIT);
}

SEC("struct_ops")
__u32 BPF_PROG(so_demo_ssthresh, struct sock *sk)
{
	__u32 half = tcp_sk(sk)->snd_cwnd >> 1U;

	count(DEMO_SSTHRESH);
	return half > 2 ? half : 2;
}

SEC("struct_ops")
void BPF_PROG(so_demo_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
	struct tcp_sock *tp = tcp_sk(sk);
	__u32 cwnd, clamp;

	count(DEMO_CONG_AVOID);
	if (!tcp_is_cwnd_limited(tp))
		return;
	clamp = tp->snd_cwnd_clamp;
	if (tp->snd_cwnd < tp->snd_ssthresh) {
		/* Slow start: one packet more per packet acked, up to ssthresh. */
		cwnd = tp->snd_cwnd + acked;
		if (cwnd > tp->snd_ssthresh)
			cwnd = tp->snd_ssthresh;
		tp->snd_cwnd = cwnd < clamp ? cwnd : clamp;
		return;
	}
	/* Congestion avoidance: one packet more per window acked. */
	tp->snd_cwnd_cnt += acked;
	if (tp->snd_cwnd_cnt >= tp->snd_cwnd) {
		tp->snd_cwnd_cnt -= tp->snd_cwnd;
		if (tp->snd_cwnd < clamp)
			tp->snd_cwnd++;
	}
}

SEC("struct_ops")
__u32 BPF_PROG(so_demo_undo_cwnd, struct sock *sk)
{
	struct tcp_sock *tp = tcp_sk(sk);
	__u32 cwnd = tp->snd_cwnd, prior = tp->prior_cwnd;

	count(DEMO_UNDO_CWND);
	return cwnd > prior ? cwnd : prior;
}

SEC(".struct_ops.link")
struct tcp_congestion_ops demo = {
	.init = (void *)so_demo_init,
	.ssthresh = (void *)so_demo_ssthresh,
	.cong_avoid = (void *)so_demo_cong_avoid,
	.undo_cwnd = (void *)so_demo_undo_cwnd,
	.flags = TCP_CONG_NON_RESTRICTED,
	.name = "so_demo",
};
