#ifndef __VMLINUX_H__
#define __VMLINUX_H__

#ifndef BPF_NO_PRESERVE_ACCESS_INDEX
#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)
#endif

struct cache_entry;

struct cache_ctx;

struct cache_ops {
	int (*admit)(struct cache_entry *e);
	void (*access)(struct cache_entry *e);
	unsigned int (*evict)(struct cache_ctx *ctx);
	char name[16];
};

struct cache_entry {
	long long unsigned int key;
	long long unsigned int hits;
	unsigned int size;
	unsigned int slot;
};

struct cache_ctx {
	long long unsigned int requests;
	unsigned int capacity;
	unsigned int used;
};

enum bpf_struct_ops_state {
	BPF_STRUCT_OPS_STATE_INIT = 0,
	BPF_STRUCT_OPS_STATE_INUSE = 1,
	BPF_STRUCT_OPS_STATE_TOBEFREE = 2,
	BPF_STRUCT_OPS_STATE_READY = 3,
};

struct bpf_struct_ops_common_value {
	int refcnt;
	enum bpf_struct_ops_state state;
};

struct bpf_struct_ops_cache_ops {
	struct bpf_struct_ops_common_value common;
	long: 64;
	long: 64;
	long: 64;
	long: 64;
	long: 64;
	long: 64;
	long: 64;
	struct cache_ops data;
	long: 64;
	long: 64;
	long: 64;
};

#ifndef BPF_NO_PRESERVE_ACCESS_INDEX
#pragma clang attribute pop
#endif

#endif /* __VMLINUX_H__ */
