// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Every CO-RE relocation kind libbpf supports, written against vmlinux.h (generated
 * from the running kernel's BTF by conformance/build.sh), so the local types are the
 * kernel's own and most relocations resolve to the values the compiler already
 * used. core_local.bpf.c does the same with local ___flavor types.
 *
 * Because vmlinux.h comes from the running kernel, this object's bytes depend on it;
 * bpf/check.sh compares it only when the kernel BTF matches the one it was built
 * with (see bpf/BUILD_INFO).
 *
 * Relocation kinds (enum bpf_core_relo_kind) and where they come from:
 *   FIELD_BYTE_OFFSET   BPF_CORE_READ chains, array element access, bpf_core_field_offset
 *   FIELD_BYTE_SIZE     bpf_core_field_size, BPF_CORE_READ_BITFIELD_PROBED
 *   FIELD_EXISTS        bpf_core_field_exists (true, and false via a ___flavor)
 *   FIELD_SIGNED        BPF_CORE_READ_BITFIELD_PROBED
 *   FIELD_LSHIFT_U64    BPF_CORE_READ_BITFIELD_PROBED
 *   FIELD_RSHIFT_U64    BPF_CORE_READ_BITFIELD_PROBED
 *   TYPE_ID_LOCAL       bpf_core_type_id_local
 *   TYPE_ID_TARGET      bpf_core_type_id_kernel
 *   TYPE_EXISTS         bpf_core_type_exists (true and false)
 *   TYPE_MATCHES        bpf_core_type_matches (true and false)
 *   TYPE_SIZE           bpf_core_type_size
 *   ENUMVAL_EXISTS      bpf_core_enum_value_exists (true and false)
 *   ENUMVAL_VALUE       bpf_core_enum_value, on an ENUM and on an ENUM64 target
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char _license[] SEC("license") = "Dual MIT/GPL";

/* The pre-5.14 name of task_struct::__state: absent from modern kernels. */
struct task_struct___pre514 {
	long state;
} __attribute__((preserve_access_index));

/* A type no kernel has. */
struct structops_not_in_kernel {
	int x;
};

/* Same name as the kernel's, incompatible member type: matches is false. */
struct task_struct___mismatch {
	char pid[3];
} __attribute__((preserve_access_index));

struct results {
	int pid;
	int tgid;
	int parent_tgid;
	char comm3;
	__u64 in_execve;
	__u64 sched_reset_on_fork;
	__u32 tgid_offset;
	__u32 comm_size;
	__u32 task_size;
	__u32 local_id;
	__u32 kernel_id;
	__u8 has_state;
	__u8 has_old_state;
	__u8 has_ops_value_type;
	__u8 has_fake_type;
	__u8 matches;
	__u8 mismatch_matches;
	__u8 has_func_loop;
	__u8 has_fake_enumval;
	__u64 func_loop;
	__u64 perf_context_user;
};

struct results res; /* .bss */

SEC("raw_tp/sys_enter")
int core_kinds(void *ctx)
{
	struct task_struct *task = (void *)bpf_get_current_task();

	/* FIELD_BYTE_OFFSET: single, nested (through a pointer) and array element */
	res.pid = BPF_CORE_READ(task, pid);
	res.parent_tgid = BPF_CORE_READ(task, real_parent, tgid);
	bpf_core_read(&res.comm3, 1, &task->comm[3]);
	bpf_core_read(&res.tgid, sizeof(res.tgid), &task->tgid);
	res.tgid_offset = bpf_core_field_offset(struct task_struct, tgid);

	/* bitfields: BYTE_OFFSET, BYTE_SIZE, LSHIFT_U64, RSHIFT_U64, SIGNED */
	res.in_execve = BPF_CORE_READ_BITFIELD_PROBED(task, in_execve);
	res.sched_reset_on_fork = BPF_CORE_READ_BITFIELD_PROBED(task, sched_reset_on_fork);

	/* FIELD_BYTE_SIZE */
	res.comm_size = bpf_core_field_size(task->comm);

	/* FIELD_EXISTS */
	res.has_state = bpf_core_field_exists(task->__state);
	res.has_old_state = bpf_core_field_exists(((struct task_struct___pre514 *)task)->state);

	/* TYPE_ID_LOCAL / TYPE_ID_TARGET / TYPE_SIZE */
	res.local_id = bpf_core_type_id_local(struct task_struct);
	res.kernel_id = bpf_core_type_id_kernel(struct task_struct);
	res.task_size = bpf_core_type_size(struct task_struct);

	/* TYPE_EXISTS */
	res.has_ops_value_type = bpf_core_type_exists(struct tcp_congestion_ops);
	res.has_fake_type = bpf_core_type_exists(struct structops_not_in_kernel);

	/* TYPE_MATCHES */
	res.matches = bpf_core_type_matches(struct bpf_dummy_ops_state);
	res.mismatch_matches = bpf_core_type_matches(struct task_struct___mismatch);

	/* ENUMVAL_EXISTS / ENUMVAL_VALUE (ENUM and ENUM64 targets) */
	res.has_func_loop = bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_loop);
	res.func_loop = bpf_core_enum_value(enum bpf_func_id, BPF_FUNC_loop);
	res.perf_context_user = bpf_core_enum_value(enum perf_callchain_context, PERF_CONTEXT_USER);
	return 0;
}
