// SPDX-License-Identifier: MIT OR Apache-2.0
// Test fixture for the BTF dumpers: layouts a C header must reproduce exactly (packing,
// alignment, bitfields, anonymous members, arrays of function pointers, flexible arrays).
// Self-contained: no kernel or libbpf headers. Rebuild with ./build.sh.

#define SEC(name) __attribute__((section(name), used))

struct packed_hdr {
	unsigned char kind;
	unsigned int len;
	unsigned short port;
} __attribute__((packed));

struct packed_aligned {
	char a;
	long b;
	char c;
} __attribute__((packed, aligned(4)));

struct bits {
	unsigned int a : 3;
	unsigned int b : 5;
	int c : 12;
	unsigned long long wide : 40;
	unsigned char tail : 1;
	unsigned short : 0;
	unsigned short after_zero : 4;
	char plain;
};

struct over_aligned {
	char tag;
	int value __attribute__((aligned(16)));
	char end;
} __attribute__((aligned(64)));

struct holder {
	char first;
	struct over_aligned oa;
	struct packed_hdr hdr;
	char last;
};

struct nested {
	int kind;
	union {
		struct {
			int x, y;
		} pos;
		struct {
			long lo;
			long hi;
		};
		unsigned char raw[16];
	};
	struct {
		short s1 : 7;
		short s2 : 9;
	} flags;
	enum { NESTED_A, NESTED_B } anon_enum;
};

typedef int (*op_fn)(struct nested *n, int arg);

struct ops_table {
	op_fn ops[3];
	void (*cleanup[2])(void);
	int (*(*get_handler)(int which))(long);
	char name[16];
};

struct with_flex {
	unsigned int count;
	unsigned long long items[];
};

struct list_node {
	struct list_node *next;
	struct list_node *prev;
	struct tree *owner;
};

struct tree {
	struct list_node head;
	struct tree *parent;
};

union odd_union {
	char c[5];
	short s;
} __attribute__((aligned(8)));

struct packed_hdr packed_var;
struct packed_aligned packed_aligned_var;
struct bits bits_var;
struct holder holder_var;
struct nested nested_var;
struct ops_table ops_var;
struct with_flex *flex_ptr;
struct tree tree_var;
union odd_union odd_var;
char LICENSE[] SEC("license") = "GPL";

SEC("tp/fixture")
int entry(void *ctx)
{
	return bits_var.a + nested_var.pos.x + packed_var.len;
}
