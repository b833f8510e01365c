/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The few CO-RE builtins the core_relo tests use, written from clang's documentation
 * of the BPF builtins (no libbpf headers needed). The numeric kinds are the
 * relocation ABI (enum bpf_core_relo_kind and the builtins' second arguments).
 */
#ifndef STRUCTOPS_CORE_MIN_H
#define STRUCTOPS_CORE_MIN_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef signed char s8;
typedef int s32;
typedef long long s64;

#define SEC(name) __attribute__((section(name), used))
#define __pai __attribute__((preserve_access_index))

/* __builtin_preserve_field_info(field, kind) */
#define FIELD_BYTE_OFFSET 0
#define FIELD_BYTE_SIZE 1
#define FIELD_EXISTS 2
#define FIELD_SIGNED 3
#define FIELD_LSHIFT_U64 4
#define FIELD_RSHIFT_U64 5
/* __builtin_btf_type_id(x, kind) */
#define TYPE_ID_LOCAL 0
#define TYPE_ID_TARGET 1
/* __builtin_preserve_type_info(type, kind) */
#define TYPE_EXISTS 0
#define TYPE_SIZE 1
#define TYPE_MATCHES 2
/* __builtin_preserve_enum_value(*(type *)value, kind) */
#define ENUMVAL_EXISTS 0
#define ENUMVAL_VALUE 1

#define field_info(f, k) __builtin_preserve_field_info(f, k)
#define type_info(T, k) __builtin_preserve_type_info(*(T *)0, k)
#define type_id(T, k) __builtin_btf_type_id(*(T *)0, k)
#define enum_info(T, v, k) __builtin_preserve_enum_value(*(T *)v, k)

/* bpf_probe_read_kernel, helper #113 */
static long (*probe_read_kernel)(void *dst, u32 size, const void *src) = (void *)113;

#endif
