// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * CUBIC with HyStart as a tcp_congestion_ops struct_ops ("so_cubic"): structops' own BPF
 * implementation of the algorithm of the kernel's net/ipv4/tcp_cubic.c, computing exactly
 * what the native structops_tcp::cc::cubic computes for the same hooks on the same socket
 * (same state layout in icsk_ca_priv, same integer arithmetic in the same order). It calls
 * no kfunc: tcp_slow_start, tcp_cong_avoid_ai and tcp_reno_undo_cwnd are written out.
 *
 * Clocks: tcp_jiffies32 is the low half of bpf_jiffies64(), HZ is the CONFIG_HZ kconfig
 * extern, and HyStart's microsecond clock is tp->tcp_mstamp (bictcp_clock_us()).
 *
 * The module parameters are compile-time constants with the kernel's defaults (the
 * native mirrors them as consts). Nothing here loops: the cube root is a table lookup
 * plus one Newton-Raphson step, fls64 a binary search, and the Reno-friendly ack_cnt loop
 * is in closed form.
 *
 * The map is named after the algorithm; the ops name is "so_cubic" so that it can be
 * registered next to the kernel selftests' "bpf_cubic".
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char _license[] SEC("license") = "Dual MIT/GPL";

extern int CONFIG_HZ __kconfig;

#define BICTCP_BETA_SCALE 1024u
#define BICTCP_HZ 10

#define HYSTART_ACK_TRAIN 0x1
#define HYSTART_DELAY 0x2
#define HYSTART_MIN_SAMPLES 8
#define HYSTART_DELAY_MIN 4000u
#define HYSTART_DELAY_MAX 16000u

/* module parameters (defaults) */
#define FAST_CONVERGENCE 1
#define BETA 717u
#define INITIAL_SSTHRESH 0u
#define BIC_SCALE 41u
#define TCP_FRIENDLINESS 1
#define HYSTART 1
#define HYSTART_DETECT (HYSTART_ACK_TRAIN | HYSTART_DELAY)
#define HYSTART_LOW_WINDOW 16u
#define HYSTART_ACK_DELTA_US 2000

/* as cubictcp_register() derives them */
#define BETA_SCALE (8u * (BICTCP_BETA_SCALE + BETA) / 3u / (BICTCP_BETA_SCALE - BETA))
#define CUBE_RTT_SCALE (BIC_SCALE * 10u)
#define CUBE_FACTOR ((1ULL << (10 + 3 * BICTCP_HZ)) / (BIC_SCALE * 10ULL))

#define USEC_PER_SEC 1000000ULL
#define USEC_PER_MSEC 1000ULL

/* struct bictcp, byte for byte */
struct so_bictcp {
	__u32 cnt;
	__u32 last_max_cwnd;
	__u32 last_cwnd;
	__u32 last_time;
	__u32 bic_origin_point;
	__u32 bic_K;
	__u32 delay_min;
	__u32 epoch_start;
	__u32 ack_cnt;
	__u32 tcp_cwnd;
	__u16 unused;
	__u8 sample_cnt;
	__u8 found;
	__u32 round_start;
	__u32 end_seq;
	__u32 last_ack;
	__u32 curr_rtt;
};

/* cbrt(x) MSB values for x MSB values in [0..63]: v[x] ~ cbrt(x << 18) - 1 */
static const __u8 cbrt_msb[64] = {
	0,   54,  54,  54,  118, 118, 118, 118, 123, 129, 134, 138, 143, 147, 151, 156,
	157, 161, 164, 168, 170, 173, 176, 179, 181, 185, 187, 190, 192, 194, 197, 199,
	200, 202, 204, 206, 209, 211, 213, 215, 217, 219, 221, 222, 224, 225, 227, 229,
	231, 232, 234, 236, 237, 239, 240, 242, 244, 245, 246, 248, 250, 251, 252, 254,
};

static __always_inline struct tcp_sock *tcp_of(struct sock *sk)
{
	return (struct tcp_sock *)sk;
}

static __always_inline struct so_bictcp *ca_of(struct sock *sk)
{
	return (struct so_bictcp *)((struct inet_connection_sock *)sk)->icsk_ca_priv;
}

static __always_inline __u32 jiffies32(void)
{
	return (__u32)bpf_jiffies64();
}

static __always_inline __u32 clock_us(struct tcp_sock *tp)
{
	return (__u32)tp->tcp_mstamp;
}

/* after(seq1, seq2) */
static __always_inline int seq_after(__u32 seq1, __u32 seq2)
{
	return (__s32)(seq2 - seq1) < 0;
}

/* fls64 by binary search (BPF has no count-leading-zeros) */
static __always_inline __u32 fls64(__u64 x)
{
	__u32 n = 64;

	if (!x)
		return 0;
	if (!(x & 0xffffffff00000000ULL)) {
		x <<= 32;
		n -= 32;
	}
	if (!(x & 0xffff000000000000ULL)) {
		x <<= 16;
		n -= 16;
	}
	if (!(x & 0xff00000000000000ULL)) {
		x <<= 8;
		n -= 8;
	}
	if (!(x & 0xf000000000000000ULL)) {
		x <<= 4;
		n -= 4;
	}
	if (!(x & 0xc000000000000000ULL)) {
		x <<= 2;
		n -= 2;
	}
	if (!(x & 0x8000000000000000ULL))
		n -= 1;
	return n;
}

static __noinline __u32 cubic_root(__u64 a)
{
	__u32 b, shift, x;
	__u64 q;

	b = fls64(a);
	if (b < 7)
		return ((__u32)cbrt_msb[a & 63] + 35) >> 6;

	b = ((b * 84) >> 8) - 1;
	shift = (__u32)(a >> (b * 3)) & 63;
	x = ((__u32)cbrt_msb[shift] + 10) << b;
	x >>= 6;

	/* one Newton-Raphson step: x = (2x + a / (x (x - 1))) / 3 */
	q = a / ((__u64)x * (__u64)(x - 1));
	x = 2 * x + (__u32)q;
	return (x * 341) >> 10;
}

static __always_inline void bictcp_reset(struct so_bictcp *ca)
{
	ca->cnt = 0;
	ca->last_max_cwnd = 0;
	ca->last_cwnd = 0;
	ca->last_time = 0;
	ca->bic_origin_point = 0;
	ca->bic_K = 0;
	ca->delay_min = 0;
	ca->epoch_start = 0;
	ca->ack_cnt = 0;
	ca->tcp_cwnd = 0;
	ca->found = 0;
}

static __always_inline void bictcp_hystart_reset(struct tcp_sock *tp, struct so_bictcp *ca)
{
	__u32 now = clock_us(tp);

	ca->round_start = now;
	ca->last_ack = now;
	ca->end_seq = tp->snd_nxt;
	ca->curr_rtt = ~0U;
	ca->sample_cnt = 0;
}

/* tcp_is_cwnd_limited() */
static __always_inline int is_cwnd_limited(struct tcp_sock *tp)
{
	if (BPF_CORE_READ_BITFIELD(tp, is_cwnd_limited))
		return 1;
	if (tp->snd_cwnd < tp->snd_ssthresh)
		return tp->snd_cwnd < 2 * tp->max_packets_out;
	return 0;
}

/* tcp_slow_start() */
static __always_inline __u32 slow_start(struct tcp_sock *tp, __u32 acked)
{
	__u32 cwnd = tp->snd_cwnd + acked;
	__u32 clamp = tp->snd_cwnd_clamp;

	if (cwnd > tp->snd_ssthresh)
		cwnd = tp->snd_ssthresh;
	acked -= cwnd - tp->snd_cwnd;
	tp->snd_cwnd = cwnd < clamp ? cwnd : clamp;
	return acked;
}

/* tcp_cong_avoid_ai() */
static __always_inline void cong_avoid_ai(struct tcp_sock *tp, __u32 w, __u32 acked)
{
	__u32 clamp;

	if (tp->snd_cwnd_cnt >= w) {
		tp->snd_cwnd_cnt = 0;
		tp->snd_cwnd = tp->snd_cwnd + 1;
	}
	tp->snd_cwnd_cnt = tp->snd_cwnd_cnt + acked;
	if (tp->snd_cwnd_cnt >= w) {
		/* a BPF division by 0 gives 0, as the native's does */
		__u32 delta = tp->snd_cwnd_cnt / w;

		tp->snd_cwnd_cnt = tp->snd_cwnd_cnt - delta * w;
		tp->snd_cwnd = tp->snd_cwnd + delta;
	}
	clamp = tp->snd_cwnd_clamp;
	if (tp->snd_cwnd > clamp)
		tp->snd_cwnd = clamp;
}

/* the cubic part of bictcp_update() */
static __noinline void cubic_cnt(struct so_bictcp *ca, __u32 cwnd, __u32 acked, __u32 now)
{
	__u32 hz = (__u32)CONFIG_HZ;
	__u32 delta, bic_target;
	__u64 t, offs, k;

	ca->last_cwnd = cwnd;
	ca->last_time = now;

	if (ca->epoch_start == 0) {
		ca->epoch_start = now;
		ca->ack_cnt = acked;
		ca->tcp_cwnd = cwnd;
		if (ca->last_max_cwnd <= cwnd) {
			ca->bic_K = 0;
			ca->bic_origin_point = cwnd;
		} else {
			ca->bic_K = cubic_root(CUBE_FACTOR * (__u64)(ca->last_max_cwnd - cwnd));
			ca->bic_origin_point = ca->last_max_cwnd;
		}
	}

	t = (__u64)(__s64)(__s32)(now - ca->epoch_start);
	/* usecs_to_jiffies(delay_min), rounded up */
	t += ((__u64)ca->delay_min * hz + USEC_PER_SEC - 1) / USEC_PER_SEC;
	t <<= BICTCP_HZ;
	t /= hz;

	k = ca->bic_K;
	offs = t < k ? k - t : t - k;

	delta = (__u32)((CUBE_RTT_SCALE * offs * offs * offs) >> (10 + 3 * BICTCP_HZ));
	if (t < k)
		bic_target = ca->bic_origin_point - delta;
	else
		bic_target = ca->bic_origin_point + delta;

	if (bic_target > cwnd)
		ca->cnt = cwnd / (bic_target - cwnd);
	else
		ca->cnt = 100 * cwnd;

	if (ca->last_max_cwnd == 0 && ca->cnt > 20)
		ca->cnt = 20;
}

/* bictcp_update() */
static __always_inline void bictcp_update(struct so_bictcp *ca, __u32 cwnd, __u32 acked)
{
	__u32 now = jiffies32();
	__u32 hz = (__u32)CONFIG_HZ;
	__u32 delta, max_cnt, n;

	ca->ack_cnt += acked;

	if (ca->last_cwnd == cwnd && (__s32)(now - ca->last_time) <= (__s32)(hz / 32))
		return;

	if (!(ca->epoch_start && now == ca->last_time))
		cubic_cnt(ca, cwnd, acked, now);

	if (TCP_FRIENDLINESS) {
		delta = (cwnd * BETA_SCALE) >> 3;
		/* while (ack_cnt > delta) { ack_cnt -= delta; tcp_cwnd++; } */
		if (delta && ca->ack_cnt > delta) {
			n = (ca->ack_cnt - 1) / delta;
			ca->ack_cnt -= n * delta;
			ca->tcp_cwnd += n;
		}
		if (ca->tcp_cwnd > cwnd) {
			delta = ca->tcp_cwnd - cwnd;
			max_cnt = cwnd / delta;
			if (ca->cnt > max_cnt)
				ca->cnt = max_cnt;
		}
	}

	if (ca->cnt < 2)
		ca->cnt = 2;
}

SEC("struct_ops")
void BPF_PROG(so_cubic_init, struct sock *sk)
{
	struct tcp_sock *tp = tcp_of(sk);
	struct so_bictcp *ca = ca_of(sk);

	bictcp_reset(ca);
	if (HYSTART)
		bictcp_hystart_reset(tp, ca);
	if (!HYSTART && INITIAL_SSTHRESH)
		tp->snd_ssthresh = INITIAL_SSTHRESH;
}

SEC("struct_ops")
void BPF_PROG(so_cubic_cwnd_event, struct sock *sk, enum tcp_ca_event event)
{
	struct tcp_sock *tp = tcp_of(sk);
	struct so_bictcp *ca = ca_of(sk);
	__u32 now;
	__s32 delta;

	if (event != CA_EVENT_TX_START)
		return;
	now = jiffies32();
	delta = now - tp->lsndtime;
	if (ca->epoch_start && delta > 0) {
		ca->epoch_start += delta;
		if (seq_after(ca->epoch_start, now))
			ca->epoch_start = now;
	}
}

SEC("struct_ops")
void BPF_PROG(so_cubic_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
	struct tcp_sock *tp = tcp_of(sk);
	struct so_bictcp *ca = ca_of(sk);

	if (!is_cwnd_limited(tp))
		return;
	if (tp->snd_cwnd < tp->snd_ssthresh) {
		acked = slow_start(tp, acked);
		if (!acked)
			return;
	}
	bictcp_update(ca, tp->snd_cwnd, acked);
	cong_avoid_ai(tp, ca->cnt, acked);
}

SEC("struct_ops")
__u32 BPF_PROG(so_cubic_recalc_ssthresh, struct sock *sk)
{
	struct tcp_sock *tp = tcp_of(sk);
	struct so_bictcp *ca = ca_of(sk);
	__u32 cwnd = tp->snd_cwnd;
	__u32 ssthresh;

	ca->epoch_start = 0;
	if (cwnd < ca->last_max_cwnd && FAST_CONVERGENCE)
		ca->last_max_cwnd = (cwnd * (BICTCP_BETA_SCALE + BETA)) / (2 * BICTCP_BETA_SCALE);
	else
		ca->last_max_cwnd = cwnd;

	ssthresh = (cwnd * BETA) / BICTCP_BETA_SCALE;
	return ssthresh > 2 ? ssthresh : 2;
}

SEC("struct_ops")
void BPF_PROG(so_cubic_state, struct sock *sk, __u8 new_state)
{
	if (new_state == TCP_CA_Loss) {
		struct so_bictcp *ca = ca_of(sk);

		bictcp_reset(ca);
		bictcp_hystart_reset(tcp_of(sk), ca);
	}
}

/* hystart_ack_delay() */
static __always_inline __u32 hystart_ack_delay(struct sock *sk)
{
	__u64 rate = sk->sk_pacing_rate;
	__u64 cushion;

	if (!rate)
		return 0;
	cushion = (__u64)sk->sk_gso_max_size * 4 * USEC_PER_SEC / rate;
	return cushion < USEC_PER_MSEC ? (__u32)cushion : (__u32)USEC_PER_MSEC;
}

static __noinline void hystart_update(struct sock *sk, __u32 delay)
{
	struct tcp_sock *tp = tcp_of(sk);
	struct so_bictcp *ca = ca_of(sk);
	__u32 threshold, now, thresh;

	if (seq_after(tp->snd_una, ca->end_seq))
		bictcp_hystart_reset(tp, ca);

	if (tp->snd_cwnd < HYSTART_LOW_WINDOW)
		return;

	if (HYSTART_DETECT & HYSTART_ACK_TRAIN) {
		now = clock_us(tp);
		if ((__s32)(now - ca->last_ack) <= HYSTART_ACK_DELTA_US) {
			ca->last_ack = now;
			threshold = ca->delay_min + hystart_ack_delay(sk);
			if (sk->sk_pacing_status == SK_PACING_NONE)
				threshold >>= 1;
			/* s32 against u32 in the kernel: an unsigned comparison */
			if (now - ca->round_start > threshold) {
				ca->found = 1;
				tp->snd_ssthresh = tp->snd_cwnd;
			}
		}
	}

	if (HYSTART_DETECT & HYSTART_DELAY) {
		if (ca->curr_rtt > delay)
			ca->curr_rtt = delay;
		if (ca->sample_cnt < HYSTART_MIN_SAMPLES) {
			ca->sample_cnt++;
		} else {
			thresh = ca->delay_min >> 3;
			if (thresh < HYSTART_DELAY_MIN)
				thresh = HYSTART_DELAY_MIN;
			if (thresh > HYSTART_DELAY_MAX)
				thresh = HYSTART_DELAY_MAX;
			if (ca->curr_rtt > ca->delay_min + thresh) {
				ca->found = 1;
				tp->snd_ssthresh = tp->snd_cwnd;
			}
		}
	}
}

SEC("struct_ops")
void BPF_PROG(so_cubic_acked, struct sock *sk, const struct ack_sample *sample)
{
	struct tcp_sock *tp = tcp_of(sk);
	struct so_bictcp *ca = ca_of(sk);
	__s32 rtt_us = sample->rtt_us;
	__u32 delay;

	if (rtt_us < 0)
		return;
	if (ca->epoch_start && (__s32)(jiffies32() - ca->epoch_start) < (__s32)CONFIG_HZ)
		return;

	delay = rtt_us;
	if (delay == 0)
		delay = 1;
	if (ca->delay_min == 0 || ca->delay_min > delay)
		ca->delay_min = delay;

	if (!ca->found && tp->snd_cwnd < tp->snd_ssthresh && HYSTART)
		hystart_update(sk, delay);
}

SEC("struct_ops")
__u32 BPF_PROG(so_cubic_undo_cwnd, struct sock *sk)
{
	struct tcp_sock *tp = tcp_of(sk);

	return tp->snd_cwnd > tp->prior_cwnd ? tp->snd_cwnd : tp->prior_cwnd;
}

SEC(".struct_ops.link")
struct tcp_congestion_ops cubic = {
	.init = (void *)so_cubic_init,
	.ssthresh = (void *)so_cubic_recalc_ssthresh,
	.cong_avoid = (void *)so_cubic_cong_avoid,
	.set_state = (void *)so_cubic_state,
	.undo_cwnd = (void *)so_cubic_undo_cwnd,
	.cwnd_event = (void *)so_cubic_cwnd_event,
	.pkts_acked = (void *)so_cubic_acked,
	.name = "so_cubic",
};
