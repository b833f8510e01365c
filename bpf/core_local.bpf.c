// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Every CO-RE relocation kind, against local ___flavor definitions of kernel types
 * (no vmlinux.h), so the compiler's layouts differ from the kernel's and libbpf has
 * to move every offset, size and shift. Also the relocations that resolve to
 * "missing": absent fields, types and enumerators.
 *
 * Relocation kinds: FIELD_BYTE_OFFSET, FIELD_BYTE_SIZE, FIELD_EXISTS, FIELD_SIGNED,
 * FIELD_LSHIFT_U64, FIELD_RSHIFT_U64 (probed bitfield reads of task_struct and a
 * direct bitfield read of sk_buff through bpf_cast_to_kern_ctx), TYPE_ID_LOCAL,
 * TYPE_ID_TARGET, TYPE_EXISTS, TYPE_MATCHES, TYPE_SIZE, ENUMVAL_EXISTS and
 * ENUMVAL_VALUE, on flavored struct, union-free and enum types.
 */
#include <stdbool.h>
#include "fixture.h"

FIXTURE_LICENSE;

/* Reordered, with shrunken and missing members, so every offset needs patching. */
struct task_struct___so {
	char comm[16];
	unsigned int in_execve : 1;
	unsigned int sched_reset_on_fork : 1;
	int tgid;
	int pid;
	struct task_struct___so *real_parent;
	struct mm_struct___so *mm;
	unsigned long structops_never_a_field;
} __attribute__((preserve_access_index));

struct mm_struct___so {
	unsigned long total_vm;
} __attribute__((preserve_access_index));

/* Local view of sk_buff, for a direct (non-probed) bitfield read. */
struct sk_buff___so {
	unsigned int len;
	__u8 pkt_type : 3;
	__u32 mark;
} __attribute__((preserve_access_index));

struct sk_buff;
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

/* A type the kernel does not have, under a flavor and without. */
struct structops_absent___so {
	int x;
};

/* Matches: same kind and member names/kinds as the kernel's (a subset). */
struct bpf_dummy_ops_state___so {
	int val;
};

/* Does not match: the kernel's member is an int. */
struct bpf_dummy_ops_state___bad {
	char val[2];
};

enum bpf_func_id___so {
	BPF_FUNC_map_lookup_elem___so = 100,
	BPF_FUNC_loop___so = 200,
	BPF_FUNC_structops_never___so = 300,
};

enum perf_callchain_context___so {
	PERF_CONTEXT_KERNEL___so = 1,
	PERF_CONTEXT_MAX___so = 2,
};

typedef unsigned long long u64___so;

struct results {
	int pid;
	int parent_pid;
	char comm0;
	__u64 total_vm;
	__u64 in_execve;
	__u64 sched_reset_on_fork;
	__u32 pid_offset;
	__u32 comm_size;
	__u32 mm_size;
	__u32 task_size;
	__u32 local_id;
	__u32 kernel_id;
	__u32 absent_kernel_id;
	__u32 typedef_size;
	__u8 has_pid;
	__u8 has_never;
	__u8 has_absent;
	__u8 has_task;
	__u8 matches;
	__u8 bad_matches;
	__u8 has_loop;
	__u8 has_never_enum;
	__u64 map_lookup_elem;
	__u64 loop;
	__u64 perf_kernel;
	__u32 pkt_type;
	__u32 skb_len;
};

struct results res; /* .bss */

SEC("raw_tp/sys_enter")
int core_local_probed(void *ctx)
{
	struct task_struct___so *task = (void *)bpf_get_current_task();

	/* FIELD_BYTE_OFFSET, single and chained through two pointers */
	res.pid = BPF_CORE_READ(task, pid);
	res.parent_pid = BPF_CORE_READ(task, real_parent, pid);
	res.total_vm = BPF_CORE_READ(task, mm, total_vm);
	bpf_core_read(&res.comm0, 1, &task->comm[0]);
	res.pid_offset = bpf_core_field_offset(task->pid);

	/* bitfields */
	res.in_execve = BPF_CORE_READ_BITFIELD_PROBED(task, in_execve);
	res.sched_reset_on_fork = BPF_CORE_READ_BITFIELD_PROBED(task, sched_reset_on_fork);

	/* FIELD_BYTE_SIZE */
	res.comm_size = bpf_core_field_size(task->comm);
	res.mm_size = bpf_core_field_size(task->mm);

	/* FIELD_EXISTS, true and false */
	res.has_pid = bpf_core_field_exists(task->pid);
	res.has_never = bpf_core_field_exists(task->structops_never_a_field);

	/* TYPE_* */
	res.local_id = bpf_core_type_id_local(struct task_struct___so);
	res.kernel_id = bpf_core_type_id_kernel(struct task_struct___so);
	res.absent_kernel_id = bpf_core_type_id_kernel(struct structops_absent___so);
	res.task_size = bpf_core_type_size(struct task_struct___so);
	res.typedef_size = bpf_core_type_size(u64___so);
	res.has_absent = bpf_core_type_exists(struct structops_absent___so);
	res.has_task = bpf_core_type_exists(struct task_struct___so);
	res.matches = bpf_core_type_matches(struct bpf_dummy_ops_state___so);
	res.bad_matches = bpf_core_type_matches(struct bpf_dummy_ops_state___bad);

	/* ENUMVAL_*: the enumerator names carry the flavor too */
	res.has_loop = bpf_core_enum_value_exists(enum bpf_func_id___so, BPF_FUNC_loop___so);
	res.has_never_enum =
		bpf_core_enum_value_exists(enum bpf_func_id___so, BPF_FUNC_structops_never___so);
	res.map_lookup_elem =
		bpf_core_enum_value(enum bpf_func_id___so, BPF_FUNC_map_lookup_elem___so);
	res.loop = bpf_core_enum_value(enum bpf_func_id___so, BPF_FUNC_loop___so);
	res.perf_kernel =
		bpf_core_enum_value(enum perf_callchain_context___so, PERF_CONTEXT_KERNEL___so);
	return 0;
}

/* Direct loads through a trusted kernel pointer: BPF_CORE_READ_BITFIELD (not
 * probed) and plain member access, both relocated.
 */
SEC("tc")
int core_local_direct(struct __sk_buff *ctx)
{
	struct sk_buff___so *skb = bpf_cast_to_kern_ctx(ctx);

	res.pkt_type = BPF_CORE_READ_BITFIELD(skb, pkt_type);
	res.skb_len = skb->len;
	return 0;
}
