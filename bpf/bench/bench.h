/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The code-quality benchmark kernels of structops (issue 5): written once, compiled
 * twice from this header, by `clang -O2 --target=bpf` (code.bpf.c, committed as
 * code.bpf.o) and natively by the cc crate (native.c, in crates/structops-bench's
 * build.rs). Each kernel is a function `u64 f(const void *input, u32 arg)`: the BPF
 * wrappers read the two arguments from a struct_ops-style context array, the native
 * wrappers take them as C arguments, so the host calls both through the same native
 * signature.
 *
 * No headers: the BPF side must not depend on libbpf or vmlinux.h, and the native side
 * must not pull in libc (so both compile exactly the same code).
 */
#ifndef STRUCTOPS_BENCH_H
#define STRUCTOPS_BENCH_H

typedef unsigned char bench_u8;
typedef unsigned int bench_u32;
typedef unsigned long long bench_u64;

#define BENCH_BUF_LEN 256
#define BENCH_TABLE_LEN 256

/* A packet-like byte buffer (hash and tokenizer kernels). */
struct bench_buf {
	bench_u8 data[BENCH_BUF_LEN];
};

/* A sorted array as a map value would hold it (binary search kernel). */
struct bench_table {
	bench_u32 n;
	bench_u32 keys[BENCH_TABLE_LEN];
};

/* The state of a CUBIC-style congestion controller and its socket's window. */
struct bench_cubic {
	bench_u32 cnt;            /* ACKs per window increase */
	bench_u32 last_max_cwnd;  /* window before the last reduction */
	bench_u32 origin_point;   /* the cubic curve's plateau */
	bench_u32 k;              /* time to reach the plateau, ms << 10 */
	bench_u32 delay_min;      /* minimum RTT, ms */
	bench_u32 epoch_start;    /* start of the epoch, ms (0: none) */
	bench_u32 ack_cnt;        /* ACKs in this epoch */
	bench_u32 tcp_cwnd;       /* what Reno would have */
	bench_u32 snd_cwnd;
	bench_u32 snd_cwnd_cnt;
};

/* 1. Hash loop: 64-bit FNV-1a over the first `len` bytes. */
static inline __attribute__((always_inline)) bench_u64
bench_fnv1a_impl(const struct bench_buf *b, bench_u32 len)
{
	bench_u64 h = 0xcbf29ce484222325ULL;
	bench_u32 i;

	for (i = 0; i < BENCH_BUF_LEN; i++) {
		if (i >= len)
			break;
		h ^= b->data[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* 2. Branchy state machine: a tokenizer counting words, numbers (and their sum) and
 * quoted strings with escapes. */
enum bench_state { ST_SPACE, ST_WORD, ST_NUM, ST_QUOTE, ST_ESC };

static inline __attribute__((always_inline)) int bench_is_alpha(bench_u8 c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static inline __attribute__((always_inline)) bench_u64
bench_tokens_impl(const struct bench_buf *b, bench_u32 len)
{
	bench_u64 words = 0, numbers = 0, quoted = 0, sum = 0, value = 0;
	bench_u32 state = ST_SPACE, i;

	for (i = 0; i < BENCH_BUF_LEN; i++) {
		bench_u8 c;

		if (i >= len)
			break;
		c = b->data[i];
		switch (state) {
		case ST_SPACE:
			if (c == '"') {
				state = ST_QUOTE;
				quoted++;
			} else if (c >= '0' && c <= '9') {
				state = ST_NUM;
				value = c - '0';
			} else if (bench_is_alpha(c)) {
				state = ST_WORD;
				words++;
			}
			break;
		case ST_WORD:
			if (c == '"') {
				state = ST_QUOTE;
				quoted++;
			} else if (!bench_is_alpha(c) && !(c >= '0' && c <= '9')) {
				state = ST_SPACE;
			}
			break;
		case ST_NUM:
			if (c >= '0' && c <= '9') {
				value = value * 10 + (c - '0');
				break;
			}
			sum += value;
			numbers++;
			if (c == '"') {
				state = ST_QUOTE;
				quoted++;
			} else if (bench_is_alpha(c)) {
				state = ST_WORD;
				words++;
			} else {
				state = ST_SPACE;
			}
			break;
		case ST_QUOTE:
			if (c == '\\')
				state = ST_ESC;
			else if (c == '"')
				state = ST_SPACE;
			break;
		default: /* ST_ESC */
			state = ST_QUOTE;
			break;
		}
	}
	if (state == ST_NUM) {
		sum += value;
		numbers++;
	}
	return (words << 48) ^ (numbers << 32) ^ (quoted << 24) ^ sum;
}

/* 3. Binary search: 32 lookups of keys derived from `seed` in a sorted array of at most
 * BENCH_TABLE_LEN keys; returns the sum of (index + 1) of the keys found. */
static inline __attribute__((always_inline)) bench_u64
bench_bsearch_impl(const struct bench_table *t, bench_u32 seed)
{
	bench_u32 n = t->n, q;
	bench_u64 acc = 0;

	if (n > BENCH_TABLE_LEN)
		n = BENCH_TABLE_LEN;
	for (q = 0; q < 32; q++) {
		bench_u32 key = (seed + q * 2654435761u) >> 20; /* 0..4095 */
		bench_u32 lo = 0, hi = n, it;

		for (it = 0; it < 9 && lo < hi; it++) {
			bench_u32 mid = ((lo + hi) >> 1) & (BENCH_TABLE_LEN - 1);

			if (t->keys[mid] < key)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo < n && t->keys[lo & (BENCH_TABLE_LEN - 1)] == key)
			acc += lo + 1;
	}
	return acc;
}

/* 4. CUBIC-style congestion avoidance. */

/* Integer cube root, one result bit per step (three bits of the radicand). */
static inline __attribute__((always_inline)) bench_u64 bench_cbrt(bench_u64 x)
{
	bench_u64 y = 0;
	int s;

	for (s = 63; s >= 0; s -= 3) {
		bench_u64 b;

		y += y;
		b = 3 * y * (y + 1) + 1;
		if ((x >> s) >= b) {
			x -= b << s;
			y++;
		}
	}
	return y;
}

#define CUBIC_HZ 1000          /* time unit: ms */
#define CUBIC_SHIFT 10         /* time in the curve is ms << 10 / HZ */
#define CUBIC_C_SCALED 41      /* C = 0.4, times 2^10 / 10 */
#define CUBIC_BETA 717         /* 0.7 << 10 */
/* 2^(3 * CUBIC_SHIFT) * 10 / C: K = cbrt(CUBE_FACTOR * (Wmax - cwnd)) */
#define CUBIC_CUBE_FACTOR ((1ULL << (3 * CUBIC_SHIFT)) / CUBIC_C_SCALED)

/* One ACK of `acked` packets at time `now` (ms). */
static inline __attribute__((always_inline)) void
bench_cubic_ack(struct bench_cubic *ca, bench_u32 acked, bench_u32 now)
{
	bench_u32 cwnd = ca->snd_cwnd, target, cnt, max_cnt;
	bench_u64 t, offs, delta;

	ca->ack_cnt += acked;
	if (ca->epoch_start == 0) {
		ca->epoch_start = now;
		ca->ack_cnt = acked;
		ca->tcp_cwnd = cwnd;
		if (ca->last_max_cwnd <= cwnd) {
			ca->k = 0;
			ca->origin_point = cwnd;
		} else {
			ca->k = bench_cbrt(CUBIC_CUBE_FACTOR *
					   (bench_u64)(ca->last_max_cwnd - cwnd));
			ca->origin_point = ca->last_max_cwnd;
		}
	}
	/* Elapsed time one minimum RTT ahead, in 2^-10 s. */
	t = ((bench_u64)(now + ca->delay_min - ca->epoch_start) << CUBIC_SHIFT) / CUBIC_HZ;
	offs = t < ca->k ? ca->k - t : t - ca->k;
	delta = (CUBIC_C_SCALED * offs * offs * offs) >> (3 * CUBIC_SHIFT);
	target = t < ca->k ? ca->origin_point - (bench_u32)delta
			   : ca->origin_point + (bench_u32)delta;
	if (target > cwnd)
		cnt = cwnd / (target - cwnd);
	else
		cnt = 100 * cwnd;
	if (ca->last_max_cwnd == 0 && cnt > 20)
		cnt = 20;
	/* Never slower than Reno would grow. */
	{
		bench_u32 per_pkt = (cwnd * 3 * 1024 / (1024 + CUBIC_BETA)) * 2 / (1024 - CUBIC_BETA) + 1;

		if (per_pkt == 0)
			per_pkt = 1;
		if (ca->ack_cnt > per_pkt) {
			ca->tcp_cwnd += ca->ack_cnt / per_pkt;
			ca->ack_cnt %= per_pkt;
		}
		if (ca->tcp_cwnd > cwnd) {
			max_cnt = cwnd / (ca->tcp_cwnd - cwnd);
			if (cnt > max_cnt)
				cnt = max_cnt;
		}
	}
	if (cnt < 2)
		cnt = 2;
	ca->cnt = cnt;
	/* Additive increase by one packet per `cnt` acknowledged. */
	ca->snd_cwnd_cnt += acked;
	if (ca->snd_cwnd_cnt >= cnt) {
		ca->snd_cwnd += ca->snd_cwnd_cnt / cnt;
		ca->snd_cwnd_cnt %= cnt;
	}
}

/* Eight ACKs on a copy of `in` starting at `now`, with a loss (window reduction and a new
 * epoch, so another cube root) after the fourth; returns the window and `cnt`. */
static inline __attribute__((always_inline)) bench_u64
bench_cubic_impl(const struct bench_cubic *in, bench_u32 now)
{
	struct bench_cubic ca = *in;
	bench_u32 i;

	for (i = 0; i < 8; i++) {
		if (i == 4) {
			ca.last_max_cwnd = ca.snd_cwnd;
			ca.snd_cwnd = ca.snd_cwnd * CUBIC_BETA / 1024;
			if (ca.snd_cwnd < 2)
				ca.snd_cwnd = 2;
			ca.epoch_start = 0;
		}
		bench_cubic_ack(&ca, 2, now + i * 10);
	}
	return ((bench_u64)ca.snd_cwnd << 32) | ca.cnt;
}

#endif
