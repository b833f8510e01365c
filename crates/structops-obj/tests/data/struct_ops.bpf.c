/* struct_ops maps: a flavored local copy of tcp_congestion_ops with a data member, a
 * member the kernel lacks (left zero) and a program shared with an autocreate-off map;
 * bpf_dummy_ops in .struct_ops.link with a sleepable program; and a struct_ops program
 * no map references. */
#include "common.h"

struct sock;

struct tcp_congestion_ops___local {
	__u32 (*ssthresh)(struct sock *sk);
	void (*cong_avoid)(struct sock *sk, __u32 ack, __u32 acked);
	__u32 (*undo_cwnd)(struct sock *sk);
	void (*init)(struct sock *sk);
	void (*structops_not_in_kernel)(struct sock *sk);
	__u32 flags;
	char name[16];
};

struct bpf_dummy_ops_state;
struct bpf_dummy_ops {
	int (*test_1)(struct bpf_dummy_ops_state *cb);
	int (*test_2)(struct bpf_dummy_ops_state *cb, int a1, unsigned short a2, char a3,
		      unsigned long a4);
	int (*test_sleepable)(struct bpf_dummy_ops_state *cb);
};

SEC("struct_ops/ssthresh")
__u32 so_ssthresh(unsigned long long *ctx)
{
	return 2;
}

SEC("struct_ops/cong_avoid")
void so_cong_avoid(unsigned long long *ctx)
{
}

SEC("struct_ops/undo_cwnd")
__u32 so_undo_cwnd(unsigned long long *ctx)
{
	return 10;
}

SEC("struct_ops/init")
void so_init(unsigned long long *ctx)
{
}

SEC("struct_ops/test_1")
int so_test_1(unsigned long long *ctx)
{
	return 1;
}

SEC("struct_ops.s/test_sleepable")
int so_sleepable(unsigned long long *ctx)
{
	return 0;
}

SEC("struct_ops/unused")
int so_unused(unsigned long long *ctx)
{
	return 0;
}

SEC(".struct_ops")
struct tcp_congestion_ops___local structops_cc = {
	.ssthresh = (void *)so_ssthresh,
	.cong_avoid = (void *)so_cong_avoid,
	.undo_cwnd = (void *)so_undo_cwnd,
	.init = (void *)so_init,
	.flags = 0,
	.name = "structops_cc",
};

SEC("?.struct_ops")
struct tcp_congestion_ops___local structops_off = {
	.ssthresh = (void *)so_ssthresh,
	.cong_avoid = (void *)so_cong_avoid,
	.undo_cwnd = (void *)so_undo_cwnd,
	.name = "structops_off",
};

SEC(".struct_ops.link")
struct bpf_dummy_ops structops_dummy = {
	.test_1 = (void *)so_test_1,
	.test_sleepable = (void *)so_sleepable,
};

char LICENSE[] SEC("license") = "GPL";
