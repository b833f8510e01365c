// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Typed ksym variables (`extern <type> name __ksym;` naming a kernel variable): libbpf
 * binds them to the variable's BTF id (ld_imm64 with src_reg BPF_PSEUDO_BTF_ID), and the
 * kernel then needs the variable's address from kallsyms.
 *
 * Kernels built without CONFIG_KALLSYMS_ALL have no data symbols in kallsyms, so there
 * BPF_PROG_LOAD fails with ENOENT ("ldimm64 failed to find the address for kernel
 * symbol"): that is the expected result on the project's 6.18 machines, and it is the
 * errno structops must reproduce for a host that lacks the symbol.
 *
 * Exercises: a typed per-cpu ksym used with bpf_this_cpu_ptr and bpf_per_cpu_ptr, a
 * typed scalar ksym, a __weak typed ksym present in BTF, and the same program shape with
 * a __weak typed ksym absent from BTF (which loads everywhere).
 */
#include "fixture.h"

FIXTURE_LICENSE;

/* Local views: for typed ksyms libbpf only checks that the kinds are compatible. */
struct rq {
	int cpu;
} __attribute__((preserve_access_index));

extern const struct rq runqueues __ksym;           /* per-cpu variable */
extern const int bpf_prog_active __ksym;           /* per-cpu int */
extern const int bpf_bprintf_nest_level __ksym __weak;
extern const int structops_absent_percpu __ksym __weak;

__u64 out[4];

SEC("raw_tp/sys_enter")
int typed_ksyms(void *ctx)
{
	struct rq *rq = bpf_this_cpu_ptr(&runqueues);
	const int *active = bpf_per_cpu_ptr(&bpf_prog_active, 0);

	out[0] = rq->cpu;
	if (active)
		out[1] = *active;
	if (&bpf_bprintf_nest_level)
		out[2] = *(const int *)bpf_this_cpu_ptr(&bpf_bprintf_nest_level);
	return 0;
}

SEC("raw_tp/sys_enter")
int weak_absent_ksym(void *ctx)
{
	if (&structops_absent_percpu)
		out[3] = *(const int *)bpf_this_cpu_ptr(&structops_absent_percpu);
	else
		out[3] = 1;
	return 0;
}
