/* Every kind of reference libbpf relocates: maps (plain, map-in-map, prog array,
 * ring buffer), global data in .data/.rodata/.bss and custom sections, kconfig and
 * ksym externs (strong, weak, typeless, kfuncs), static and global subprograms,
 * callbacks, and several program types including an autoload-off one. */
#include "common.h"

struct {
	__uint(type, 1 /* HASH */);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
	__uint(map_flags, 1 /* BPF_F_NO_PREALLOC */);
} hmap SEC(".maps");

struct inner {
	__uint(type, 2 /* ARRAY */);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} inner1 SEC(".maps"), inner2 SEC(".maps");

struct {
	__uint(type, 12 /* ARRAY_OF_MAPS */);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, struct inner);
} outer SEC(".maps") = {
	.values = { [0] = &inner1, [2] = &inner2 },
};

int tail_a(void *ctx);

struct {
	__uint(type, 3 /* PROG_ARRAY */);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, int (void *));
} jmp SEC(".maps") = {
	.values = { [1] = (void *)&tail_a },
};

struct {
	__uint(type, 27 /* RINGBUF */);
	__uint(max_entries, 5000);
} rb SEC(".maps");

int counter = 1;
const volatile int limit = 7;
__u64 zeroed;
__u64 more_zeroes[4];
int custom SEC(".data.custom") = 3;
const volatile int custom_ro SEC(".rodata.custom") = 9;
__hidden int hidden_global = 5;

extern _Bool CONFIG_BPF_SYSCALL __kconfig;
extern enum libbpf_tristate CONFIG_BPF_JIT __kconfig __weak;
extern int CONFIG_HZ __kconfig;
extern char CONFIG_LOCALVERSION[16] __kconfig __weak;
extern unsigned int LINUX_KERNEL_VERSION __kconfig;
extern int CONFIG_STRUCTOPS_DOES_NOT_EXIST __kconfig __weak;

extern const void bpf_prog_active __ksym __weak;
extern void bpf_rcu_read_lock(void) __ksym;
extern void bpf_rcu_read_unlock(void) __ksym;
extern void bpf_structops_no_such_kfunc(void) __ksym __weak;

static __noinline int static_helper(int x)
{
	return x * counter + hidden_global;
}

__noinline int global_helper(int x)
{
	return static_helper(x) + limit + custom + custom_ro;
}

static long loop_cb(__u32 i, void *ctx)
{
	zeroed += i;
	return 0;
}

SEC("xdp")
int xdp_main(void *ctx)
{
	__u32 key = 0;
	__u64 *v = bpf_map_lookup_elem(&hmap, &key);
	void *in = bpf_map_lookup_elem(&outer, &key);

	bpf_loop(4, loop_cb, 0, 0);
	if (v)
		*v += global_helper(2);
	if (in)
		more_zeroes[1] = 1;
	if (CONFIG_BPF_SYSCALL && CONFIG_BPF_JIT == TRI_YES && CONFIG_HZ > 0)
		counter += LINUX_KERNEL_VERSION + CONFIG_STRUCTOPS_DOES_NOT_EXIST;
	if (CONFIG_LOCALVERSION[0] == 'x')
		return 1;
	return 2;
}

SEC("socket")
int sock_main(void *ctx)
{
	return static_helper(3) + global_helper(1) + (int)(long)&rb;
}

SEC("?tc")
int tc_off(void *ctx)
{
	return static_helper(0);
}

SEC("kprobe/do_nanosleep")
int kp(void *ctx)
{
	__u64 addr = (__u64)&bpf_prog_active;

	bpf_rcu_read_lock();
	if (bpf_structops_no_such_kfunc)
		bpf_structops_no_such_kfunc();
	bpf_rcu_read_unlock();
	return addr == 0;
}

SEC("tp/syscalls/sys_enter_getppid")
int tail_a(void *ctx)
{
	bpf_tail_call(ctx, &jmp, 1);
	return 0;
}

SEC("structops_unknown_section")
int weird(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
