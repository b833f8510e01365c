// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The kernel side of `structops bench load`: times libbpf's bpf_object__open_file() +
 * bpf_object__load() (+ close) of one object, as a libbpf application loads it, N times.
 * Built and run by crates/structops-bench (load.rs) against conformance/build's libbpf.
 *
 *   libbpf_load FILE.o N
 *
 * Prints one line: `ok OPEN_NS LOAD_NS` (the fastest run of each phase, nanoseconds),
 * or `error ERRNO` when a load fails. libbpf's messages are silenced.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <bpf/libbpf.h>

static int quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	(void)level;
	(void)fmt;
	(void)ap;
	return 0;
}

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	long long best_open = -1, best_load = -1;
	int i, n;

	if (argc != 3) {
		fprintf(stderr, "usage: libbpf_load FILE.o N\n");
		return 2;
	}
	n = atoi(argv[2]);
	if (n < 1)
		n = 1;
	libbpf_set_print(quiet);
	for (i = 0; i < n; i++) {
		long long t0, t1, t2;
		struct bpf_object *obj;
		int err;

		t0 = now_ns();
		obj = bpf_object__open_file(argv[1], NULL);
		t1 = now_ns();
		if (!obj) {
			printf("error %d\n", errno);
			return 1;
		}
		err = bpf_object__load(obj);
		t2 = now_ns();
		bpf_object__close(obj);
		if (err) {
			printf("error %d\n", -err);
			return 1;
		}
		if (best_open < 0 || t1 - t0 < best_open)
			best_open = t1 - t0;
		if (best_load < 0 || t2 - t1 < best_load)
			best_load = t2 - t1;
	}
	printf("ok %lld %lld\n", best_open, best_load);
	return 0;
}
