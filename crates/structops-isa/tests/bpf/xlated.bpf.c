// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Two socket filters for tests/kernel_bpftool.rs: one in C (map lookup,
 * global data, helpers, atomics, branches) and one in inline assembly
 * covering the cpu v3 ALU, JMP, load/store and atomic forms. Compiled at
 * test time with clang -mcpu=v3, because the installed bpftool predates
 * the cpu v4 spellings. No system headers are needed.
 */
#define SEC(x) __attribute__((section(x), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
typedef unsigned long long u64;
static long (*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_ktime_get_ns)(void) = (void *)5;
static long (*bpf_get_prandom_u32)(void) = (void *)7;
char _license[] SEC("license") = "GPL";

struct {
	__uint(type, 2); /* BPF_MAP_TYPE_ARRAY */
	__uint(max_entries, 4);
	__type(key, int);
	__type(value, u64);
} values SEC(".maps");

u64 counter;
u64 seed = 42;

SEC("socket")
int c_prog(void *ctx)
{
	int key = bpf_get_prandom_u32() & 3;
	u64 *v = (u64 *)bpf_map_lookup_elem(&values, &key);
	u64 t = bpf_ktime_get_ns();

	if (!v)
		return 0;
	__sync_fetch_and_add(v, t);
	__sync_fetch_and_or(&counter, seed);
	if (t > 1000 && (int)t < -5)
		seed ^= t;
	return (int)(*v & 0xff);
}

SEC("socket")
__attribute__((naked)) int asm_prog(void)
{
	asm volatile (
	"r6 = r1;"
	"call 7;"
	"r7 = r0;"
	"r1 = r7; r2 = r7; r3 = 3; w4 = w7;"
	"r1 += -7; r1 -= 5; r1 *= 3; r1 /= 7; r1 %= 9; r1 |= 16; r1 &= 255; r1 ^= -1;"
	"r1 <<= 3; r1 >>= 2; r1 s>>= 1; r1 = -r1;"
	"r2 += r3; r2 -= r3; r2 *= r3; r2 /= r3; r2 %= r3; r2 |= r3; r2 &= r3; r2 ^= r3;"
	"r2 <<= r3; r2 >>= r3; r2 s>>= r3; r2 = r3;"
	"w1 += -7; w1 -= 5; w1 *= 3; w1 /= 7; w1 %= 9; w1 |= 16; w1 &= 255; w1 ^= -1;"
	"w1 <<= 3; w1 >>= 2; w1 s>>= 1; w1 = -w1; w1 = 100;"
	"w2 += w3; w2 -= w3; w2 *= w3; w2 /= w3; w2 %= w3; w2 |= w3; w2 &= w3; w2 ^= w3;"
	"w2 <<= w3; w2 >>= w3; w2 s>>= w3; w2 = w3;"
	"r4 = be16 r4; r4 = be32 r4; r4 = be64 r4; r4 = le16 r4; r4 = le32 r4; r4 = le64 r4;"
	"r5 = 0x123456789abcdef ll;"
	"*(u64 *)(r10 - 8) = r1;"
	"*(u32 *)(r10 - 12) = r2;"
	"*(u16 *)(r10 - 14) = r3;"
	"*(u8 *)(r10 - 15) = r4;"
	"*(u64 *)(r10 - 24) = 7;"
	"*(u32 *)(r10 - 28) = -1;"
	"*(u16 *)(r10 - 30) = 5;"
	"*(u8 *)(r10 - 31) = 1;"
	"r1 = *(u64 *)(r10 - 8);"
	"r2 = *(u32 *)(r10 - 12);"
	"r3 = *(u16 *)(r10 - 14);"
	"r4 = *(u8 *)(r10 - 15);"
	"lock *(u64 *)(r10 - 8) += r1;"
	"lock *(u32 *)(r10 - 12) += w2;"
	"r1 = atomic_fetch_add((u64 *)(r10 - 8), r1);"
	"r1 = atomic_fetch_and((u64 *)(r10 - 8), r1);"
	"r1 = atomic_fetch_or((u64 *)(r10 - 8), r1);"
	"r1 = atomic_fetch_xor((u64 *)(r10 - 8), r1);"
	"w2 = atomic_fetch_add((u32 *)(r10 - 12), w2);"
	"r1 = xchg_64(r10 - 8, r1);"
	"w2 = xchg32_32(r10 - 12, w2);"
	"r0 = 0;"
	"r0 = cmpxchg_64(r10 - 8, r0, r1);"
	"w0 = 0;"
	"w0 = cmpxchg32_32(r10 - 12, w0, w2);"
	"if r1 == 5 goto L1;"
	"r0 = 1;"
"L1:"
	"if r1 != r2 goto L2;"
	"r0 = 2;"
"L2:"
	"if r1 > 0xfffffffe goto L3;"
	"r0 = 3;"
"L3:"
	"if r1 s< r2 goto L4;"
	"r0 = 4;"
"L4:"
	"if w1 s>= -3 goto L5;"
	"r0 = 5;"
"L5:"
	"if w1 & w2 goto L6;"
	"r0 = 6;"
"L6:"
	"if r1 <= r2 goto L7;"
	"goto L7;"
"L7:"
	"r0 = *(u8 *)skb[0];"
	"r0 = 0;"
	"exit;"
	);
}
