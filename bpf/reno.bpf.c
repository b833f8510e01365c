// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Reno as a tcp_congestion_ops struct_ops map: the project's own BPF twin of
 * crates/structops-tcp/src/cc/reno.rs (the kernel's tcp_reno_* from
 * net/ipv4/tcp_cong.c). It calls no kfunc: slow start, additive increase and
 * tcp_is_cwnd_limited are written out with the native code's integer arithmetic and
 * order of operations, so both produce the same socket state for the same hooks.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char _license[] SEC("license") = "Dual MIT/GPL";

#define TCP_CONG_NON_RESTRICTED 0x1

static __always_inline struct tcp_sock *tcp_sk(struct sock *sk)
{
	return (struct tcp_sock *)sk;
}

/* tcp_is_cwnd_limited */
static __always_inline bool tcp_is_cwnd_limited(struct tcp_sock *tp)
{
	if (BPF_CORE_READ_BITFIELD(tp, is_cwnd_limited))
		return true;
	/* In slow start, make sure cwnd grows to twice what was ACKed. */
	if (tp->snd_cwnd < tp->snd_ssthresh)
		return tp->snd_cwnd < 2 * tp->max_packets_out;
	return false;
}

/* tcp_slow_start: grow cwnd by acked up to ssthresh; returns what is left over. */
static __always_inline __u32 tcp_slow_start(struct tcp_sock *tp, __u32 acked)
{
	__u32 cwnd = tp->snd_cwnd + acked;
	__u32 ssthresh = tp->snd_ssthresh;
	__u32 clamp = tp->snd_cwnd_clamp;

	if (cwnd > ssthresh)
		cwnd = ssthresh;
	acked -= cwnd - tp->snd_cwnd;
	tp->snd_cwnd = cwnd < clamp ? cwnd : clamp;
	return acked;
}

/* tcp_cong_avoid_ai: one packet more per w acked. */
static __always_inline void tcp_cong_avoid_ai(struct tcp_sock *tp, __u32 w, __u32 acked)
{
	__u32 clamp;

	/* If credits accumulated at a higher w, apply them gently now. */
	if (tp->snd_cwnd_cnt >= w) {
		tp->snd_cwnd_cnt = 0;
		tp->snd_cwnd++;
	}
	tp->snd_cwnd_cnt += acked;
	if (tp->snd_cwnd_cnt >= w) {
		/* w == 0 divides by zero in the kernel; the native code takes 0, as BPF does */
		__u32 delta = w ? tp->snd_cwnd_cnt / w : 0;

		tp->snd_cwnd_cnt -= delta * w;
		tp->snd_cwnd += delta;
	}
	clamp = tp->snd_cwnd_clamp;
	if (tp->snd_cwnd > clamp)
		tp->snd_cwnd = clamp;
}

SEC("struct_ops")
__u32 BPF_PROG(so_reno_ssthresh, struct sock *sk)
{
	__u32 half = tcp_sk(sk)->snd_cwnd >> 1U;

	return half > 2 ? half : 2;
}

SEC("struct_ops")
void BPF_PROG(so_reno_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
	struct tcp_sock *tp = tcp_sk(sk);

	if (!tcp_is_cwnd_limited(tp))
		return;
	/* In "safe" area, increase. */
	if (tp->snd_cwnd < tp->snd_ssthresh) {
		acked = tcp_slow_start(tp, acked);
		if (!acked)
			return;
	}
	/* In dangerous area, increase slowly. */
	tcp_cong_avoid_ai(tp, tp->snd_cwnd, acked);
}

SEC("struct_ops")
__u32 BPF_PROG(so_reno_undo_cwnd, struct sock *sk)
{
	struct tcp_sock *tp = tcp_sk(sk);
	__u32 cwnd = tp->snd_cwnd, prior = tp->prior_cwnd;

	return cwnd > prior ? cwnd : prior;
}

SEC(".struct_ops.link")
struct tcp_congestion_ops reno = {
	.ssthresh = (void *)so_reno_ssthresh,
	.cong_avoid = (void *)so_reno_cong_avoid,
	.undo_cwnd = (void *)so_reno_undo_cwnd,
	.flags = TCP_CONG_NON_RESTRICTED,
	.name = "so_reno",
};
