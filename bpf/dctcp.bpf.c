// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * DCTCP (RFC 8257) as a tcp_congestion_ops struct_ops map: the project's own BPF
 * twin of crates/structops-tcp/src/cc/dctcp.rs, which follows the kernel's
 * net/ipv4/tcp_dctcp.c. Fed the same hooks on the same socket, it computes exactly
 * what the native code does: the same state bytes in icsk_ca_priv, the same integer
 * arithmetic in the same order, the same ACKs (bpf_tcp_send_ack, which the host
 * implements with the hook the native code calls).
 *
 * It stands alone: Reno's slow start and additive increase are written out here
 * instead of calling the tcp_reno_cong_avoid kfunc.
 *
 * One difference is forced: without ECN (TCP_ECN_OK clear) the kernel's dctcp_init
 * replaces the socket's ops with "dctcp-reno", which a program cannot do (it may
 * not write icsk_ca_ops). There this init leaves the socket untouched, as the
 * native one leaves icsk_ca_priv; the host may apply the native fallback
 * (structops_tcp::cc::dctcp::fallback_to_reno) itself.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char _license[] SEC("license") = "Dual MIT/GPL";

/* Kernel macros (vmlinux.h carries only types and enums). */
#define TCP_CONG_NEEDS_ECN 0x2
#define TCP_ECN_OK 1
#define TCP_ECN_DEMAND_CWR 4
#define ICSK_ACK_TIMER 2
#define ICSK_ACK_NOW 16
#define DCTCP_MAX_ALPHA 1024U

/* The module parameters, at their defaults (Rust: DCTCP_SHIFT_G, DCTCP_ALPHA_ON_INIT). */
const volatile __u32 dctcp_shift_g = 4;
const volatile __u32 dctcp_alpha_on_init = DCTCP_MAX_ALPHA;

/* struct dctcp, byte for byte (Rust: cc::dctcp::Dctcp). */
struct so_dctcp {
	__u32 old_delivered;
	__u32 old_delivered_ce;
	__u32 prior_rcv_nxt;
	__u32 dctcp_alpha;
	__u32 next_seq;
	__u32 ce_state;
	__u32 loss_cwnd;
	/* struct tcp_plb_state: consec_cong_rounds:5, unused:3; then pause_until */
	__u8 plb_bits;
	__u8 plb_pad[3];
	__u32 plb_pause_until;
};

static __always_inline struct tcp_sock *tcp_sk(struct sock *sk)
{
	return (struct tcp_sock *)sk;
}

static __always_inline struct inet_connection_sock *inet_csk(struct sock *sk)
{
	return (struct inet_connection_sock *)sk;
}

static __always_inline struct so_dctcp *dctcp_ca(struct sock *sk)
{
	return (struct so_dctcp *)inet_csk(sk)->icsk_ca_priv;
}

static __always_inline bool before(__u32 seq1, __u32 seq2)
{
	return (__s32)(seq1 - seq2) < 0;
}

static __always_inline void dctcp_reset(const struct tcp_sock *tp, struct so_dctcp *ca)
{
	ca->next_seq = tp->snd_nxt;
	ca->old_delivered = tp->delivered;
	ca->old_delivered_ce = tp->delivered_ce;
}

SEC("struct_ops")
void BPF_PROG(so_dctcp_init, struct sock *sk)
{
	struct tcp_sock *tp = tcp_sk(sk);
	struct so_dctcp *ca = dctcp_ca(sk);
	__u8 state = sk->__sk_common.skc_state;
	__u32 alpha = dctcp_alpha_on_init;

	if (!(tp->ecn_flags & TCP_ECN_OK) && state != TCP_LISTEN && state != TCP_CLOSE)
		return; /* the kernel switches to dctcp-reno here; see the top */

	ca->prior_rcv_nxt = tp->rcv_nxt;
	ca->dctcp_alpha = alpha < DCTCP_MAX_ALPHA ? alpha : DCTCP_MAX_ALPHA;
	ca->loss_cwnd = 0;
	ca->ce_state = 0;
	dctcp_reset(tp, ca);
	/* tcp_plb_init */
	ca->plb_bits &= ~0x1f;
	ca->plb_pause_until = 0;
}

SEC("struct_ops")
__u32 BPF_PROG(so_dctcp_ssthresh, struct sock *sk)
{
	struct so_dctcp *ca = dctcp_ca(sk);
	__u32 cwnd = tcp_sk(sk)->snd_cwnd;
	__u32 ss;

	ca->loss_cwnd = cwnd;
	ss = cwnd - ((cwnd * ca->dctcp_alpha) >> 11U);
	return ss > 2 ? ss : 2;
}

SEC("struct_ops")
void BPF_PROG(so_dctcp_update_alpha, struct sock *sk, __u32 flags)
{
	struct tcp_sock *tp = tcp_sk(sk);
	struct so_dctcp *ca = dctcp_ca(sk);
	__u32 shift_g = dctcp_shift_g;
	__u32 delivered, delivered_ce, alpha, decay;

	/* Expired RTT */
	if (before(tp->snd_una, ca->next_seq))
		return;

	delivered = tp->delivered - ca->old_delivered;
	delivered_ce = tp->delivered_ce - ca->old_delivered_ce;
	alpha = ca->dctcp_alpha;

	/* alpha = (1 - g) * alpha + g * F, with min_not_zero(alpha, alpha >> g) */
	decay = alpha >> shift_g;
	alpha -= decay ? decay : alpha;
	if (delivered_ce) {
		delivered_ce <<= (10 - shift_g);
		delivered_ce /= delivered > 1 ? delivered : 1;
		alpha += delivered_ce;
		if (alpha > DCTCP_MAX_ALPHA)
			alpha = DCTCP_MAX_ALPHA;
	}
	ca->dctcp_alpha = alpha;
	dctcp_reset(tp, ca);
}

static __always_inline void dctcp_react_to_loss(struct sock *sk)
{
	struct tcp_sock *tp = tcp_sk(sk);
	__u32 cwnd = tp->snd_cwnd;

	dctcp_ca(sk)->loss_cwnd = cwnd;
	tp->snd_ssthresh = cwnd >> 1U > 2 ? cwnd >> 1U : 2;
}

SEC("struct_ops")
void BPF_PROG(so_dctcp_state, struct sock *sk, __u8 new_state)
{
	if (new_state == TCP_CA_Recovery &&
	    new_state != BPF_CORE_READ_BITFIELD(inet_csk(sk), icsk_ca_state))
		dctcp_react_to_loss(sk);
}

static __always_inline void dctcp_ece_ack_cwr(struct tcp_sock *tp, __u32 ce_state)
{
	if (ce_state == 1)
		tp->ecn_flags |= TCP_ECN_DEMAND_CWR;
	else
		tp->ecn_flags &= ~TCP_ECN_DEMAND_CWR;
}

/* The CE state machine (tcp_dctcp.h): on a change, send the delayed ACK for what
 * arrived in the old state, and ask for an immediate one.
 */
static __always_inline void dctcp_ece_ack_update(struct sock *sk, enum tcp_ca_event ev)
{
	struct tcp_sock *tp = tcp_sk(sk);
	struct so_dctcp *ca = dctcp_ca(sk);
	__u32 new_ce_state = ev == CA_EVENT_ECN_IS_CE ? 1 : 0;
	__u32 ce_state = ca->ce_state;

	if (ce_state != new_ce_state) {
		if (inet_csk(sk)->icsk_ack.pending & ICSK_ACK_TIMER) {
			dctcp_ece_ack_cwr(tp, ce_state);
			bpf_tcp_send_ack(tp, ca->prior_rcv_nxt);
		}
		inet_csk(sk)->icsk_ack.pending |= ICSK_ACK_NOW;
	}
	ca->prior_rcv_nxt = tp->rcv_nxt;
	ca->ce_state = new_ce_state;
	dctcp_ece_ack_cwr(tp, new_ce_state);
}

SEC("struct_ops")
void BPF_PROG(so_dctcp_cwnd_event, struct sock *sk, enum tcp_ca_event ev)
{
	switch (ev) {
	case CA_EVENT_ECN_IS_CE:
	case CA_EVENT_ECN_NO_CE:
		dctcp_ece_ack_update(sk, ev);
		break;
	case CA_EVENT_LOSS:
		dctcp_react_to_loss(sk);
		break;
	default:
		break;
	}
}

SEC("struct_ops")
__u32 BPF_PROG(so_dctcp_cwnd_undo, struct sock *sk)
{
	__u32 cwnd = tcp_sk(sk)->snd_cwnd;
	__u32 loss_cwnd = dctcp_ca(sk)->loss_cwnd;

	return cwnd > loss_cwnd ? cwnd : loss_cwnd;
}

/* tcp_reno_cong_avoid, written out */
static __always_inline bool tcp_is_cwnd_limited(struct tcp_sock *tp)
{
	if (BPF_CORE_READ_BITFIELD(tp, is_cwnd_limited))
		return true;
	/* In slow start, make sure cwnd grows to twice what was ACKed. */
	if (tp->snd_cwnd < tp->snd_ssthresh)
		return tp->snd_cwnd < 2 * tp->max_packets_out;
	return false;
}

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

static __always_inline void tcp_cong_avoid_ai(struct tcp_sock *tp, __u32 w, __u32 acked)
{
	__u32 clamp;

	if (tp->snd_cwnd_cnt >= w) {
		tp->snd_cwnd_cnt = 0;
		tp->snd_cwnd++;
	}
	tp->snd_cwnd_cnt += acked;
	if (tp->snd_cwnd_cnt >= w) {
		__u32 delta = w ? tp->snd_cwnd_cnt / w : 0;

		tp->snd_cwnd_cnt -= delta * w;
		tp->snd_cwnd += delta;
	}
	clamp = tp->snd_cwnd_clamp;
	if (tp->snd_cwnd > clamp)
		tp->snd_cwnd = clamp;
}

SEC("struct_ops")
void BPF_PROG(so_dctcp_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
	struct tcp_sock *tp = tcp_sk(sk);

	if (!tcp_is_cwnd_limited(tp))
		return;
	if (tp->snd_cwnd < tp->snd_ssthresh) {
		acked = tcp_slow_start(tp, acked);
		if (!acked)
			return;
	}
	tcp_cong_avoid_ai(tp, tp->snd_cwnd, acked);
}

SEC(".struct_ops.link")
struct tcp_congestion_ops dctcp = {
	.init = (void *)so_dctcp_init,
	.in_ack_event = (void *)so_dctcp_update_alpha,
	.cwnd_event = (void *)so_dctcp_cwnd_event,
	.ssthresh = (void *)so_dctcp_ssthresh,
	.cong_avoid = (void *)so_dctcp_cong_avoid,
	.undo_cwnd = (void *)so_dctcp_cwnd_undo,
	.set_state = (void *)so_dctcp_state,
	.flags = TCP_CONG_NEEDS_ECN,
	.name = "so_dctcp",
};
