// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Field relocations against local ___flavor mirrors of kernel types, through direct
 * loads of BTF pointers (tp_btf), so libbpf patches load offsets and sizes, and through
 * the field-info builtins, so it patches immediates.
 */
#include "core_min.h"

char _license[] SEC("license") = "GPL";

struct load_weight___my {
	unsigned long weight;
} __pai;

struct sched_entity___my {
	struct load_weight___my load;
	u64 vruntime;
} __pai;

struct task_struct___my {
	int pid;
	int tgid;
	char comm[16];
	struct task_struct___my *real_parent;
	struct sched_entity___my se;
	/* u64 in the kernel: an unsigned load grows from 4 to 8 bytes */
	u32 utime;
	/* unsigned long in the kernel: a signed load cannot be resized, libbpf poisons it */
	int nvcsw;
	unsigned int sched_reset_on_fork : 1;
	unsigned int in_iowait : 1;
	unsigned int init_private_fork_class : 4;
} __pai;

/* A field no kernel has, and one that used to exist. */
struct task_struct___old {
	long state;
	int structops_no_such_field;
} __pai;

struct sk_buff___my {
	union {
		struct {
			struct sk_buff___my *next;
			struct sk_buff___my *prev;
		};
	};
	unsigned int len;
	unsigned int data_len;
} __pai;

SEC("tp_btf/sched_switch")
int direct_loads(u64 *ctx)
{
	struct task_struct___my *t = (void *)ctx[1];

	return t->pid + t->tgid + t->real_parent->tgid + t->comm[3] +
	       (int)t->se.vruntime + (int)t->se.load.weight + (int)t->utime;
}

SEC("tp_btf/sched_switch")
int signed_resize(u64 *ctx)
{
	struct task_struct___my *t = (void *)ctx[1];

	return t->nvcsw;
}

SEC("tp_btf/kfree_skb")
int anon_members(u64 *ctx)
{
	struct sk_buff___my *skb = (void *)ctx[0];

	return skb->len + skb->data_len + (skb->prev ? 1 : 0);
}



SEC("tp_btf/sched_switch")
int field_info_values(u64 *ctx)
{
	volatile u64 sink[16];
	struct task_struct___my *t = (void *)ctx[1];
	struct task_struct___old *o = (void *)t;

	sink[0] = field_info(t->pid, FIELD_BYTE_OFFSET);
	sink[1] = field_info(t->pid, FIELD_BYTE_SIZE);
	sink[2] = field_info(t->pid, FIELD_EXISTS);
	sink[3] = field_info(t->pid, FIELD_SIGNED);
	sink[4] = field_info(t->pid, FIELD_LSHIFT_U64);
	sink[5] = field_info(t->pid, FIELD_RSHIFT_U64);
	sink[6] = field_info(t->comm, FIELD_BYTE_SIZE);
	sink[7] = field_info(t->comm[5], FIELD_BYTE_OFFSET);
	sink[8] = field_info(t->se.vruntime, FIELD_BYTE_OFFSET);
	sink[9] = field_info(t->utime, FIELD_BYTE_SIZE);
	sink[10] = field_info(o->state, FIELD_EXISTS);
	sink[11] = field_info(o->structops_no_such_field, FIELD_EXISTS);
	sink[12] = field_info(t->real_parent, FIELD_BYTE_SIZE);
	sink[13] = field_info(t->nvcsw, FIELD_SIGNED);
	return 0;
}

SEC("tp_btf/sched_switch")
int bitfields(u64 *ctx)
{
	volatile u64 sink[16];
	struct task_struct___my *t = (void *)ctx[1];

	sink[0] = field_info(t->sched_reset_on_fork, FIELD_BYTE_OFFSET);
	sink[1] = field_info(t->sched_reset_on_fork, FIELD_BYTE_SIZE);
	sink[2] = field_info(t->sched_reset_on_fork, FIELD_LSHIFT_U64);
	sink[3] = field_info(t->sched_reset_on_fork, FIELD_RSHIFT_U64);
	sink[4] = field_info(t->sched_reset_on_fork, FIELD_SIGNED);
	sink[5] = field_info(t->in_iowait, FIELD_BYTE_OFFSET);
	sink[6] = field_info(t->in_iowait, FIELD_LSHIFT_U64);
	sink[7] = field_info(t->init_private_fork_class, FIELD_BYTE_OFFSET);
	sink[8] = field_info(t->init_private_fork_class, FIELD_BYTE_SIZE);
	sink[9] = field_info(t->init_private_fork_class, FIELD_LSHIFT_U64);
	sink[10] = field_info(t->init_private_fork_class, FIELD_RSHIFT_U64);
	return 0;
}

SEC("tp_btf/sched_switch")
int missing_field_guarded(u64 *ctx)
{
	struct task_struct___old *o = (void *)ctx[1];
	long v = 0;

	/* dead code after relocation: libbpf poisons the read, the verifier drops it */
	if (field_info(o->structops_no_such_field, FIELD_EXISTS))
		probe_read_kernel(&v, sizeof(v),
				  (char *)o + field_info(o->structops_no_such_field, FIELD_BYTE_OFFSET));
	return v;
}
