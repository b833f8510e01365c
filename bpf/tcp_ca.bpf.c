// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * A Reno-style TCP congestion control as `tcp_congestion_ops` struct_ops, with every
 * kernel type declared locally (CO-RE relocates the field accesses against the host).
 *
 * Exercises:
 *   - a ".struct_ops" variable of tcp_congestion_ops with .name and .flags set and
 *     several members left NULL (in_ack_event, min_tso_segs, cong_control,
 *     sndbuf_expand, get_info, release);
 *   - a ".struct_ops.link" variable whose type has a "___flavor" suffix and that
 *     shares programs with the first one;
 *   - tcp kfuncs (tcp_slow_start, tcp_cong_avoid_ai, tcp_reno_undo_cwnd) and a
 *     __weak kfunc that this kernel may lack (dctcp_cwnd_event, only with
 *     CONFIG_TCP_CONG_DCTCP=y), guarded by bpf_ksym_exists();
 *   - direct (non-probed) CO-RE reads through the trusted `struct sock *`,
 *     including bitfields (BPF_CORE_READ_BITFIELD) and writes to the fields
 *     bpf_tcp_ca lets programs write (snd_cwnd, snd_ssthresh, icsk_ca_priv);
 *   - a BPF_MAP_TYPE_SK_STORAGE map with bpf_sk_storage_get.
 */
#include "fixture.h"

FIXTURE_LICENSE;

/* ---- local views of kernel types: names must match, layouts need not ---- */

struct sock {
	int sk_err;
} __attribute__((preserve_access_index));

struct inet_connection_sock {
	__u8 icsk_ca_state : 5;
	__u8 icsk_ca_initialized : 1;
	__u64 icsk_ca_priv[13];
} __attribute__((preserve_access_index));

struct tcp_sock {
	struct inet_connection_sock inet_conn;
	__u32 snd_cwnd;
	__u32 snd_ssthresh;
	__u32 snd_cwnd_cnt;
	__u32 prior_cwnd;
	__u8 is_cwnd_limited : 1;
	__u32 max_packets_out;
} __attribute__((preserve_access_index));

struct ack_sample {
	__u32 pkts_acked;
	__s32 rtt_us;
	__u32 in_flight;
} __attribute__((preserve_access_index));

enum tcp_ca_event {
	CA_EVENT_TX_START = 0,
	CA_EVENT_CWND_RESTART = 1,
	CA_EVENT_COMPLETE_CWR = 2,
	CA_EVENT_LOSS = 3,
	CA_EVENT_ECN_NO_CE = 4,
	CA_EVENT_ECN_IS_CE = 5,
};

#define TCP_CONG_NON_RESTRICTED 0x1
#define TCP_INFINITE_SSTHRESH 0x7fffffff

struct tcp_congestion_ops {
	__u32 (*ssthresh)(struct sock *sk);
	void (*cong_avoid)(struct sock *sk, __u32 ack, __u32 acked);
	void (*set_state)(struct sock *sk, __u8 new_state);
	void (*cwnd_event)(struct sock *sk, enum tcp_ca_event ev);
	void (*in_ack_event)(struct sock *sk, __u32 flags);
	void (*pkts_acked)(struct sock *sk, const struct ack_sample *sample);
	__u32 (*min_tso_segs)(struct sock *sk);
	void (*cong_control)(struct sock *sk, __u32 ack, int flag, const void *rs);
	__u32 (*undo_cwnd)(struct sock *sk);
	__u32 (*sndbuf_expand)(struct sock *sk);
	__u64 (*get_info)(struct sock *sk, __u32 ext, int *attr, void *info);
	char name[16];
	__u32 flags;
	void (*init)(struct sock *sk);
	void (*release)(struct sock *sk);
};

/* The same kernel type under a flavor, declaring only what it sets. */
struct tcp_congestion_ops___lean {
	__u32 (*ssthresh)(struct sock *sk);
	void (*cong_avoid)(struct sock *sk, __u32 ack, __u32 acked);
	__u32 (*undo_cwnd)(struct sock *sk);
	char name[16];
};

/* ---- kfuncs ---- */

extern __u32 tcp_slow_start(struct tcp_sock *tp, __u32 acked) __ksym;
extern void tcp_cong_avoid_ai(struct tcp_sock *tp, __u32 w, __u32 acked) __ksym;
extern __u32 tcp_reno_undo_cwnd(struct sock *sk) __ksym;
extern void dctcp_cwnd_event(struct sock *sk, enum tcp_ca_event ev) __ksym __weak;

/* ---- state ---- */

struct ca_stats {
	__u64 acked;
	__u32 losses;
	__u32 last_state;
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct ca_stats);
} ca_stats_map SEC(".maps");

__u32 events[8];     /* .bss, indexed by enum tcp_ca_event */
__u32 dctcp_present; /* .bss */

static struct tcp_sock *tcp_sk(struct sock *sk)
{
	return (struct tcp_sock *)sk;
}

static struct inet_connection_sock *inet_csk(struct sock *sk)
{
	return (struct inet_connection_sock *)sk;
}

SEC("struct_ops/so_init")
void BPF_PROG(so_init, struct sock *sk)
{
	struct tcp_sock *tp = tcp_sk(sk);

	tp->snd_ssthresh = TCP_INFINITE_SSTHRESH;
	inet_csk(sk)->icsk_ca_priv[0] = 0;
	bpf_sk_storage_get(&ca_stats_map, sk, NULL, BPF_SK_STORAGE_GET_F_CREATE);
}

SEC("struct_ops/so_ssthresh")
__u32 BPF_PROG(so_ssthresh, struct sock *sk)
{
	__u32 cwnd = tcp_sk(sk)->snd_cwnd;

	return cwnd >> 1 > 2 ? cwnd >> 1 : 2;
}

SEC("struct_ops/so_cong_avoid")
void BPF_PROG(so_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
	struct tcp_sock *tp = tcp_sk(sk);

	if (!BPF_CORE_READ_BITFIELD(tp, is_cwnd_limited))
		return;
	if (tp->snd_cwnd < tp->snd_ssthresh) {
		acked = tcp_slow_start(tp, acked);
		if (!acked)
			return;
	}
	tcp_cong_avoid_ai(tp, tp->snd_cwnd, acked);
}

SEC("struct_ops/so_undo_cwnd")
__u32 BPF_PROG(so_undo_cwnd, struct sock *sk)
{
	return tcp_reno_undo_cwnd(sk);
}

SEC("struct_ops/so_set_state")
void BPF_PROG(so_set_state, struct sock *sk, __u8 new_state)
{
	struct ca_stats *st = bpf_sk_storage_get(&ca_stats_map, sk, NULL, 0);

	if (!st)
		return;
	st->last_state = BPF_CORE_READ_BITFIELD(inet_csk(sk), icsk_ca_state);
	if (new_state == 4 /* TCP_CA_Loss */)
		st->losses++;
}

SEC("struct_ops/so_cwnd_event")
void BPF_PROG(so_cwnd_event, struct sock *sk, enum tcp_ca_event ev)
{
	if (ev < 8)
		events[ev]++;
	if (bpf_ksym_exists(dctcp_cwnd_event)) {
		dctcp_present = 1;
		dctcp_cwnd_event(sk, ev);
	}
}

SEC("struct_ops/so_pkts_acked")
void BPF_PROG(so_pkts_acked, struct sock *sk, const struct ack_sample *sample)
{
	struct ca_stats *st = bpf_sk_storage_get(&ca_stats_map, sk, NULL, 0);

	if (st)
		st->acked += sample->pkts_acked;
}

SEC(".struct_ops")
struct tcp_congestion_ops so_reno = {
	.init = (void *)so_init,
	.ssthresh = (void *)so_ssthresh,
	.cong_avoid = (void *)so_cong_avoid,
	.undo_cwnd = (void *)so_undo_cwnd,
	.set_state = (void *)so_set_state,
	.cwnd_event = (void *)so_cwnd_event,
	.pkts_acked = (void *)so_pkts_acked,
	.flags = TCP_CONG_NON_RESTRICTED,
	.name = "so_reno",
};

SEC(".struct_ops.link")
struct tcp_congestion_ops___lean so_reno_link = {
	.ssthresh = (void *)so_ssthresh,
	.cong_avoid = (void *)so_cong_avoid,
	.undo_cwnd = (void *)so_undo_cwnd,
	.name = "so_reno_link",
};
