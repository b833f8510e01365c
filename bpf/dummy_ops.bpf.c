// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * struct_ops for the kernel's `bpf_dummy_ops` (net/bpf/bpf_dummy_struct_ops.c), with
 * the kernel types declared locally instead of taken from vmlinux.h: libbpf matches
 * struct_ops members by name, so the local layout only has to name them.
 *
 * Exercises:
 *   - every struct_ops section spelling: "struct_ops/NAME", "struct_ops.s/NAME"
 *     (sleepable), plain "struct_ops", and "?struct_ops/NAME" (autoload off);
 *   - struct_ops variables in ".struct_ops", ".struct_ops.link" and "?.struct_ops";
 *   - a variable whose type carries a "___flavor" suffix (bpf_dummy_ops___lite),
 *     with fewer members than the kernel type;
 *   - one program shared by two maps (same member, same kernel type);
 *   - a member left NULL;
 *   - static and global (__noinline) subprograms, a subprogram calling another;
 *   - .data / .bss / .rodata accessed from struct_ops programs;
 *   - kfuncs bpf_rcu_read_lock/unlock from a sleepable program.
 */
#include "fixture.h"

FIXTURE_LICENSE;

/* Local copies of the kernel's types: only what the programs touch. */
struct bpf_dummy_ops_state {
	int val;
};

struct bpf_dummy_ops {
	int (*test_1)(struct bpf_dummy_ops_state *cb);
	int (*test_2)(struct bpf_dummy_ops_state *cb, int a1, unsigned short a2, char a3,
		      unsigned long a4);
	int (*test_sleepable)(struct bpf_dummy_ops_state *cb);
};

/* Same kernel type, seen through a flavor with only one member. */
struct bpf_dummy_ops___lite {
	int (*test_1)(struct bpf_dummy_ops_state *cb);
};

extern void bpf_rcu_read_lock(void) __ksym;
extern void bpf_rcu_read_unlock(void) __ksym;

int calls;                     /* .bss */
int bias = 3;                  /* .data */
const volatile int scale = 2;  /* .rodata */

/* A static subprogram: the call is a bpf-to-bpf call, never inlined. */
static __noinline int clamp_val(int v)
{
	if (v < 0)
		return 0;
	if (v > 1000)
		return 1000;
	return v;
}

/* A global subprogram, verified on its own against its BTF signature. It calls
 * the static one, so the object has a subprogram-to-subprogram call.
 */
__noinline int dummy_weigh(int v)
{
	return clamp_val(v * scale + bias);
}

SEC("struct_ops/test_1")
int BPF_PROG(dummy_test_1, struct bpf_dummy_ops_state *state)
{
	int v = 0;

	__sync_fetch_and_add(&calls, 1);
	/* test_1's argument may be NULL (the kernel marks it __nullable) */
	if (state)
		v = state->val;
	return dummy_weigh(v);
}

SEC("struct_ops/test_2")
int BPF_PROG(dummy_test_2, struct bpf_dummy_ops_state *state, int a1, unsigned short a2,
	     char a3, unsigned long a4)
{
	int sum = a1 + a2 + a3 + (int)a4;

	calls++;
	if (state)
		state->val = clamp_val(sum);
	return sum;
}

SEC("struct_ops.s/test_sleepable")
int BPF_PROG(dummy_test_sleepable, struct bpf_dummy_ops_state *state)
{
	int v;

	bpf_rcu_read_lock();
	v = bias;
	bpf_rcu_read_unlock();
	return v;
}

/* Plain "struct_ops" section: the member comes from the variable that names it. */
SEC("struct_ops")
int BPF_PROG(dummy_plain_test_1, struct bpf_dummy_ops_state *state)
{
	return dummy_weigh(state ? state->val : -1);
}

/* Optional: autoload is off unless a created struct_ops map references it; the
 * only map that does lives in "?.struct_ops", so it is not created by default.
 */
SEC("?struct_ops/test_1")
int BPF_PROG(dummy_optional_test_1, struct bpf_dummy_ops_state *state)
{
	return 42;
}

SEC(".struct_ops")
struct bpf_dummy_ops dummy_ops = {
	.test_1 = (void *)dummy_test_1,
	.test_2 = (void *)dummy_test_2,
	.test_sleepable = (void *)dummy_test_sleepable,
};

/* test_2 and test_sleepable stay NULL. */
SEC(".struct_ops.link")
struct bpf_dummy_ops dummy_ops_link = {
	.test_1 = (void *)dummy_plain_test_1,
};

SEC(".struct_ops")
struct bpf_dummy_ops___lite dummy_ops_lite = {
	.test_1 = (void *)dummy_plain_test_1,
};

SEC("?.struct_ops")
struct bpf_dummy_ops dummy_ops_optional = {
	.test_1 = (void *)dummy_optional_test_1,
};
