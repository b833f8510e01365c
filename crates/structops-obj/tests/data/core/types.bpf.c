// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Type and enumerator relocations against local ___flavor mirrors of kernel types.
 */
#include "core_min.h"

char _license[] SEC("license") = "GPL";

struct task_struct___my {
	int pid;
	/* u64 in the kernel: the types exist alike but do not match */
	u32 utime;
} __pai;

struct list_head___my {
	struct list_head___my *next;
	struct list_head___my *prev;
} __pai;

struct structops_no_such_type {
	int x;
};

typedef int pid_t;

enum bpf_cmd___my {
	BPF_MAP_CREATE___my,
	BPF_PROG_LOAD___my = 77,
	STRUCTOPS_NOT_A_CMD___my,
};

/* ENUM64 in the kernel */
enum perf_callchain_context___my {
	PERF_CONTEXT_KERNEL___my = (u64)-128,
	PERF_CONTEXT_USER___my = (u64)-512,
};

/* ENUM64 in the kernel, a 32-bit enum here */
enum net_iov_type___my {
	NET_IOV_DMABUF___my = 1,
};



SEC("tp_btf/sched_switch")
int type_values(u64 *ctx)
{
	volatile u64 sink[16];
	sink[0] = type_info(struct task_struct___my, TYPE_EXISTS);
	sink[1] = type_info(struct task_struct___my, TYPE_SIZE);
	sink[2] = type_info(struct task_struct___my, TYPE_MATCHES);
	sink[3] = type_info(struct list_head___my, TYPE_MATCHES);
	sink[4] = type_info(struct structops_no_such_type, TYPE_EXISTS);
	sink[5] = type_info(struct structops_no_such_type, TYPE_SIZE);
	sink[6] = type_info(pid_t, TYPE_SIZE);
	sink[7] = type_info(pid_t, TYPE_EXISTS);
	sink[8] = type_id(struct task_struct___my, TYPE_ID_TARGET);
	sink[9] = type_id(struct task_struct___my, TYPE_ID_LOCAL);
	sink[10] = type_id(struct list_head___my, TYPE_ID_TARGET);
	sink[11] = type_id(struct structops_no_such_type, TYPE_ID_TARGET);
	return 0;
}

SEC("tp_btf/sched_switch")
int enum_values(u64 *ctx)
{
	volatile u64 sink[16];
	sink[0] = enum_info(enum bpf_cmd___my, BPF_PROG_LOAD___my, ENUMVAL_EXISTS);
	sink[1] = enum_info(enum bpf_cmd___my, BPF_PROG_LOAD___my, ENUMVAL_VALUE);
	sink[2] = enum_info(enum bpf_cmd___my, BPF_MAP_CREATE___my, ENUMVAL_VALUE);
	sink[3] = enum_info(enum bpf_cmd___my, STRUCTOPS_NOT_A_CMD___my, ENUMVAL_EXISTS);
	sink[4] = enum_info(enum perf_callchain_context___my, PERF_CONTEXT_KERNEL___my, ENUMVAL_VALUE);
	sink[5] = enum_info(enum perf_callchain_context___my, PERF_CONTEXT_USER___my, ENUMVAL_EXISTS);
	sink[6] = enum_info(enum net_iov_type___my, NET_IOV_DMABUF___my, ENUMVAL_VALUE);
	return 0;
}

SEC("tp_btf/sched_switch")
int missing_enum_guarded(u64 *ctx)
{
	if (enum_info(enum bpf_cmd___my, STRUCTOPS_NOT_A_CMD___my, ENUMVAL_EXISTS))
		return enum_info(enum bpf_cmd___my, STRUCTOPS_NOT_A_CMD___my, ENUMVAL_VALUE);
	return 0;
}
