// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Global data in every section libbpf turns into a map, and externs resolved at load
 * time from the kernel's config and symbols.
 *
 * Exercises:
 *   - .data, .bss, .rodata (incl. a string), .data.custom, .rodata.custom, a
 *     file-local (static) variable, and a global array;
 *   - .kconfig externs: LINUX_KERNEL_VERSION, CONFIG_HZ (int), CONFIG_BPF_SYSCALL
 *     (bool), CONFIG_TCP_CONG_CUBIC (tristate), CONFIG_DEFAULT_TCP_CONG (string),
 *     LINUX_HAS_SYSCALL_WRAPPER (libbpf-provided) and a __weak option that does
 *     not exist (reads as zero);
 *   - .ksyms externs: kfuncs bpf_rcu_read_lock/unlock, a __weak kfunc that does
 *     not exist (bpf_ksym_exists() is false, the call is dead code), a __weak
 *     typed variable that does not exist (address 0), an untyped (void) ksym
 *     resolved from /proc/kallsyms, and a __weak untyped one that does not exist.
 *   Typed ksym *variables* that exist are in ksym_var.bpf.c: the kernel resolves
 *   them only with CONFIG_KALLSYMS_ALL.
 */
#include <stdbool.h>
#include "fixture.h"

FIXTURE_LICENSE;

#define TC_ACT_OK 0

/* ---- global data ---- */

__u64 packets;                                 /* .bss */
__u32 sizes[4];                                /* .bss, array */
int generation = 1;                            /* .data */
static volatile int file_local = 9;            /* .data, STB_LOCAL symbol */
const volatile __u32 max_len = 1500;           /* .rodata */
const char tag[] = "structops";                /* .rodata string */
int custom_counter SEC(".data.custom") = 100;  /* .data.custom */
const volatile __u64 custom_limit SEC(".rodata.custom") = 1ULL << 40; /* .rodata.custom */

/* ---- .kconfig ---- */

extern unsigned int LINUX_KERNEL_VERSION __kconfig;
extern int CONFIG_HZ __kconfig;
extern bool CONFIG_BPF_SYSCALL __kconfig;
extern enum libbpf_tristate CONFIG_TCP_CONG_CUBIC __kconfig;
extern const char CONFIG_DEFAULT_TCP_CONG[16] __kconfig __weak;
extern bool LINUX_HAS_SYSCALL_WRAPPER __kconfig;
extern int CONFIG_STRUCTOPS_NO_SUCH_OPTION __kconfig __weak;

struct config_snapshot {
	__u32 kernel_version;
	__s32 hz;
	__u8 bpf_syscall;
	__u8 cubic;        /* enum libbpf_tristate */
	__u8 syscall_wrapper;
	__u8 missing_is_zero;
	char default_cc[16];
};

struct config_snapshot config; /* .bss */

/* ---- .ksyms ---- */

extern void bpf_rcu_read_lock(void) __ksym;
extern void bpf_rcu_read_unlock(void) __ksym;
extern int structops_no_such_kfunc(int x) __ksym __weak;
extern const int structops_no_such_var __ksym __weak;
extern const void schedule __ksym;                     /* untyped: /proc/kallsyms */
extern const void structops_no_such_symbol __ksym __weak;

struct ksym_snapshot {
	__u64 schedule_addr;
	__u64 missing_addr;
	__u64 missing_untyped_addr;
	__u32 kfunc_missing;
};

struct ksym_snapshot ksyms; /* .bss */

SEC("tc")
int read_config(struct __sk_buff *skb)
{
	int i;

	config.kernel_version = LINUX_KERNEL_VERSION;
	config.hz = CONFIG_HZ;
	config.bpf_syscall = CONFIG_BPF_SYSCALL;
	config.cubic = CONFIG_TCP_CONG_CUBIC;
	config.syscall_wrapper = LINUX_HAS_SYSCALL_WRAPPER;
	config.missing_is_zero = CONFIG_STRUCTOPS_NO_SUCH_OPTION == 0;
	for (i = 0; i < 16; i++)
		config.default_cc[i] = CONFIG_DEFAULT_TCP_CONG[i];
	return TC_ACT_OK;
}

SEC("tc")
int count_data(struct __sk_buff *skb)
{
	__u32 len = skb->len;

	packets++;
	if (len > max_len)
		len = max_len;
	sizes[len & 3] += len;
	generation += file_local;
	custom_counter += tag[len & 7];
	if (packets > custom_limit)
		packets = 0;
	return TC_ACT_OK;
}

SEC("tc")
int use_ksyms(struct __sk_buff *skb)
{
	bpf_rcu_read_lock();
	packets++;
	bpf_rcu_read_unlock();

	ksyms.schedule_addr = (__u64)&schedule;
	ksyms.missing_addr = (__u64)&structops_no_such_var;
	ksyms.missing_untyped_addr = (__u64)&structops_no_such_symbol;
	if (bpf_ksym_exists(structops_no_such_kfunc))
		structops_no_such_kfunc(1);
	else
		ksyms.kfunc_missing = 1;
	return TC_ACT_OK;
}
