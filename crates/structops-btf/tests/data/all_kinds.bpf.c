// SPDX-License-Identifier: MIT OR Apache-2.0
// Test fixture for the BTF dumpers: its BTF holds every BTF kind (int, ptr, array, struct,
// union, enum, enum64, fwd, typedef, volatile, const, restrict, func, func_proto, var,
// datasec, float, decl_tag, type_tag). Self-contained: no kernel or libbpf headers.
// Rebuild with ./build.sh.

#define SEC(name) __attribute__((section(name), used))
#define __tag(x) __attribute__((btf_decl_tag(x)))
#define __user __attribute__((btf_type_tag("user")))

typedef unsigned long long u64;
typedef unsigned int u32;
typedef signed char s8;

struct never_defined;
union never_defined_u;

enum color { RED, GREEN = 5, BLUE = 0x7fffffff };
enum negative { NEG = -3, POS = 3 };
enum unsigned_big { UBIG = 0xfffffff0u };
enum __attribute__((packed)) small { SMALL_A = 1, SMALL_B = 200 };
enum wide { WIDE_LO = 1, WIDE_HI = 0x1234567890ULL };
enum swide { SWIDE_NEG = -0x100000000LL, SWIDE_POS = 7 };
enum { ANON_CONST_A = 10, ANON_CONST_B = 20 };

struct point {
	int x;
	int y __tag("member_tag");
} __tag("struct_tag");

union number {
	long l;
	double d;
	float f;
	unsigned char bytes[8];
};

struct everything {
	char c;
	signed char sc;
	unsigned char uc;
	short s;
	unsigned short us;
	int i;
	unsigned int ui;
	long l;
	unsigned long ul;
	long long ll;
	unsigned long long ull;
	_Bool b;
	float f;
	double d;
	const int ci;
	volatile int vi;
	const volatile u64 cvu;
	int *restrict rp;
	int matrix[3][4];
	struct point pts[2];
	union number num;
	enum color col;
	enum small sm;
	enum wide w;
	enum swide sw;
	struct never_defined *fwd;
	union never_defined_u *fwd_u;
	int __user *uptr;
	int (*callback)(int, const char *);
	void (*handlers[4])(void *ctx, ...);
	s8 tiny;
	u32 flags;
};

struct everything everything_var;
enum negative negative_var = NEG;
enum unsigned_big unsigned_big_var;
enum { ANON_VAR_A = -1, ANON_VAR_B = 1 } anon_enum_var;
const struct point origin = { 0, 0 };
u64 counter __tag("var_tag");
static volatile int static_var;
int bss_array[16];
float ratio = 1.5f;
double precise = 2.25;
char LICENSE[] SEC("license") = "GPL";

extern int CONFIG_HZ __attribute__((section(".kconfig"), weak));
extern int bpf_fixture_kfunc(int x) __attribute__((section(".ksyms")));

static __attribute__((noinline)) int helper(int x __tag("param_tag"))
{
	return x * 2 + static_var;
}

__tag("func_tag") int restrict_params(int *restrict a, const int *restrict b)
{
	return *a + *b;
}

SEC("tp/fixture")
int entry(void *ctx)
{
	int a = helper(counter) + CONFIG_HZ + bpf_fixture_kfunc(1);
	return restrict_params(&a, &everything_var.i) + (int)sizeof(ratio);
}
