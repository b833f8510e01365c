// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * libbpf_report: the libbpf oracle for structops' conformance tests.
 *
 * It reports, as JSON on stdout, what libbpf (built from linux-source-6.12 by
 * conformance/build.sh) makes of a BPF object file:
 *
 *   libbpf_report open [--insns] FILE.o
 *       bpf_object__open_file only; nothing touches the kernel.
 *   libbpf_report load [--prog NAME] [--no-insns] FILE.o
 *       bpf_object__load, then per program the instructions exactly as they were
 *       submitted to BPF_PROG_LOAD, and the map fd -> map name table needed to
 *       normalize the fds inside ld_imm64 instructions.
 *       --prog NAME loads only NAME: every other program gets autoload=false and
 *       every struct_ops map that does not reference NAME gets autocreate=false;
 *       the maps that do reference it get autocreate=true (also from
 *       "?.struct_ops") and the other members' programs set to NULL (libbpf's
 *       shadow-type mechanism), so that they are not force-loaded.
 *   libbpf_report load --each FILE.o
 *       --prog for every program in turn, each in a fresh bpf_object.
 *   libbpf_report testrun --prog NAME [--args A,B,..] [--state N] FILE.o
 *       bpf_object__load of the whole object, then BPF_PROG_TEST_RUN of NAME with
 *       the u64 arguments as ctx_in (and argument 0 pointing at an int holding N
 *       with --state, for bpf_dummy_ops): retval, state and ".bss" afterwards.
 *   libbpf_report attach FILE.o
 *       The attach transcript: bpf_object__load (its errno, 0 when it loads), then
 *       bpf_map__attach_struct_ops of every struct_ops map in object order (0 or
 *       the errno per map, later maps seeing the registrations of earlier ones,
 *       e.g. EEXIST for a second table with the same name). Every link is
 *       destroyed before exit, also when an attach fails: a struct_ops
 *       registration outlives the process otherwise.
 *       {"file":..., "open":E, "load":E, "maps":[{"name":..., "errno":E}, ...]}
 *
 * Every command takes --btf PATH (CO-RE relocations against the BTF of PATH
 * instead of the kernel's, as the core_reloc selftests do); "load" also takes
 * --max-entries MAP=N (as several selftests set sizes such as a ring buffer's page
 * size from user space).
 *
 * Except for "attach", struct_ops maps are created but never updated: libbpf 1.5
 * writes a struct_ops map value only in bpf_map__attach_struct_ops(), which only
 * "attach" calls, so nothing else gets registered. The object is always closed
 * before exit (and "attach" destroys its links first), so nothing stays in the
 * kernel, also on failure. Map pinning is disabled.
 *
 * Exit status: 0 when a report was printed (even when the kernel rejected the
 * object or the file: see "ok"/"errno"), 2 on usage errors, 1 on out-of-memory.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <linux/bpf.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#define MAX_TRACKED 1024

/* ----------------------------------------------------------------------------- */
/* Growable string buffer                                                         */

struct sbuf {
	char *p;
	size_t len, cap;
};

static void sb_append(struct sbuf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;

		while (cap < b->len + n + 1)
			cap *= 2;
		char *np = realloc(b->p, cap);

		if (!np) {
			fprintf(stderr, "libbpf_report: out of memory\n");
			exit(1);
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_reset(struct sbuf *b)
{
	b->len = 0;
	if (b->p)
		b->p[0] = '\0';
}

/* The last `lines` lines of s (whole string when it has fewer). */
static const char *tail_lines(const char *s, int lines)
{
	const char *end = s + strlen(s);
	const char *p = end;

	/* ignore trailing newlines */
	while (p > s && p[-1] == '\n')
		p--;
	while (p > s) {
		if (p[-1] == '\n' && --lines == 0)
			break;
		p--;
	}
	return p;
}

/* ----------------------------------------------------------------------------- */
/* JSON output                                                                    */

static void json_str(FILE *f, const char *s)
{
	if (!s) {
		fputs("null", f);
		return;
	}
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"': fputs("\\\"", f); break;
		case '\\': fputs("\\\\", f); break;
		case '\n': fputs("\\n", f); break;
		case '\t': fputs("\\t", f); break;
		case '\r': fputs("\\r", f); break;
		default:
			if (*p < 0x20)
				fprintf(f, "\\u%04x", *p);
			else
				fputc(*p, f);
		}
	}
	fputc('"', f);
}

static void json_bool(FILE *f, bool v)
{
	fputs(v ? "true" : "false", f);
}

/* ----------------------------------------------------------------------------- */
/* libbpf message capture                                                         */

/* The object being loaded, so the print callback can snapshot fds while libbpf
 * still holds them: on failure bpf_object_load() closes every fd before
 * returning, but it reports the failing program (pr_warn) before that.
 */
static struct bpf_object *g_obj;

/* Options that change what libbpf does, as the selftests' user-space halves do. */
static const char *g_btf_custom_path;          /* --btf: CO-RE target BTF */
static const char *g_max_entries[64];          /* --max-entries NAME=N */
static int g_max_entries_cnt;
static int g_map_fd[MAX_TRACKED];
static bool g_prog_accepted[MAX_TRACKED];
static struct sbuf g_warn;     /* every WARN-level message */
static struct sbuf g_all;      /* every message, any level */
static bool g_verbose;
static char g_failed_prog[256];
static int g_failed_err;

/* Which programs the kernel accepted so far. bpf_program__fd() works during load;
 * bpf_map__fd() does not (it returns -1 until the object is marked loaded), so
 * map fds come from libbpf's "created successfully" message instead.
 */
static void snapshot_progs(void)
{
	struct bpf_program *prog;
	int i = 0;

	if (!g_obj)
		return;
	bpf_object__for_each_program(prog, g_obj) {
		if (i < MAX_TRACKED && bpf_program__fd(prog) >= 0)
			g_prog_accepted[i] = true;
		i++;
	}
}

static void note_map_fd(const char *name, int fd)
{
	struct bpf_map *map;
	int i = 0;

	if (!g_obj)
		return;
	bpf_object__for_each_map(map, g_obj) {
		if (i < MAX_TRACKED && !strcmp(bpf_map__name(map), name))
			g_map_fd[i] = fd;
		i++;
	}
}

static int print_cb(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char stackbuf[1024];
	char *msg = stackbuf;
	int saved_errno = errno;
	va_list ap2;
	int n;

	va_copy(ap2, ap);
	n = vsnprintf(stackbuf, sizeof(stackbuf), fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return 0;
	if ((size_t)n >= sizeof(stackbuf)) {
		msg = malloc((size_t)n + 1);
		if (!msg) {
			errno = saved_errno;
			return 0;
		}
		vsnprintf(msg, (size_t)n + 1, fmt, ap);
	}

	snapshot_progs();

	{
		/* libbpf prefixes its own messages with "libbpf: " */
		const char *m = strncmp(msg, "libbpf: ", 8) ? msg : msg + 8;
		char name[256];
		int err, fd;

		/* libbpf 1.5 bpf_object__create_maps(): pr_debug after BPF_MAP_CREATE */
		if (sscanf(m, "map '%255[^']': created successfully, fd=%d", name, &fd) == 2)
			note_map_fd(name, fd);
		/* "prog 'NAME': failed to load: -ERR" names the program the kernel rejected */
		if (sscanf(m, "prog '%255[^']': failed to load: %d", name, &err) == 2) {
			snprintf(g_failed_prog, sizeof(g_failed_prog), "%s", name);
			g_failed_err = err;
		}
	}

	sb_append(&g_all, msg, strlen(msg));
	if (level == LIBBPF_WARN)
		sb_append(&g_warn, msg, strlen(msg));
	if (g_verbose)
		fputs(msg, stderr);
	if (msg != stackbuf)
		free(msg);
	/* libbpf reads errno after some of its messages; the getters above may set it */
	errno = saved_errno;
	return 0;
}

static void reset_capture(void)
{
	sb_reset(&g_warn);
	sb_reset(&g_all);
	for (int i = 0; i < MAX_TRACKED; i++) {
		g_map_fd[i] = -1;
		g_prog_accepted[i] = false;
	}
	g_failed_prog[0] = '\0';
	g_failed_err = 0;
}

/* ----------------------------------------------------------------------------- */
/* Object inspection                                                              */

/* Local (object BTF) name of a struct_ops map's value type, e.g.
 * "tcp_congestion_ops___v2"; NULL for other maps.
 */
static const char *struct_ops_local_type(const struct bpf_object *obj, const struct bpf_map *map)
{
	const struct btf *btf = bpf_object__btf(obj);
	const struct btf_type *t;
	__u32 id;

	if (bpf_map__type(map) != BPF_MAP_TYPE_STRUCT_OPS || !btf)
		return NULL;
	id = bpf_map__btf_value_type_id(map);
	t = btf__type_by_id(btf, id);
	if (!t)
		return NULL;
	return btf__name_by_offset(btf, t->name_off);
}

/* The kernel type name libbpf looks up: the local name without its "___flavor"
 * suffix. As in libbpf's bpf_core_essential_name_len(), the suffix starts at the
 * last "___" that has a non-underscore character on both sides.
 */
static void essential_name(const char *name, char *out, size_t out_sz)
{
	size_t n = strlen(name);
	size_t keep = n;

	for (size_t i = n >= 5 ? n - 5 + 1 : 0; i-- > 0;) {
		const char *s = name + i;

		if (s[0] != '_' && s[1] == '_' && s[2] == '_' && s[3] == '_' && s[4] != '_') {
			keep = i + 1;
			break;
		}
	}
	snprintf(out, out_sz, "%.*s", (int)keep, name);
}

static void print_insns(FILE *f, const struct bpf_program *prog)
{
	const struct bpf_insn *insns = bpf_program__insns(prog);
	size_t cnt = bpf_program__insn_cnt(prog);

	fputs("[", f);
	for (size_t i = 0; i < cnt; i++) {
		const struct bpf_insn *in = &insns[i];

		fprintf(f, "%s[%u,%u,%u,%d,%d]", i ? "," : "", in->code, in->dst_reg,
			in->src_reg, in->off, in->imm);
	}
	fputs("]", f);
}

static void print_prog_common(FILE *f, const struct bpf_program *prog)
{
	fputs("\"name\":", f);
	json_str(f, bpf_program__name(prog));
	fputs(",\"section\":", f);
	json_str(f, bpf_program__section_name(prog));
	fprintf(f, ",\"type\":%d,\"expected_attach_type\":%d,\"insn_cnt\":%zu,\"autoload\":",
		(int)bpf_program__type(prog), (int)bpf_program__expected_attach_type(prog),
		bpf_program__insn_cnt(prog));
	json_bool(f, bpf_program__autoload(prog));
}

static void print_map_common(FILE *f, const struct bpf_object *obj, const struct bpf_map *map)
{
	const char *local = struct_ops_local_type(obj, map);
	char kern[256];

	fputs("\"name\":", f);
	json_str(f, bpf_map__name(map));
	fprintf(f, ",\"type\":%d,\"key_size\":%u,\"value_size\":%u,\"max_entries\":%u,"
		   "\"map_flags\":%u,\"internal\":",
		(int)bpf_map__type(map), bpf_map__key_size(map), bpf_map__value_size(map),
		bpf_map__max_entries(map), bpf_map__map_flags(map));
	json_bool(f, bpf_map__is_internal(map));
	fputs(",\"struct_ops_type\":", f);
	if (local) {
		essential_name(local, kern, sizeof(kern));
		json_str(f, kern);
	} else {
		fputs("null", f);
	}
	fputs(",\"struct_ops_local_type\":", f);
	json_str(f, local);
	fputs(",\"link\":", f);
	json_bool(f, local && (bpf_map__map_flags(map) & BPF_F_LINK));
	fputs(",\"autocreate\":", f);
	json_bool(f, bpf_map__autocreate(map));
	fprintf(f, ",\"btf_key_type_id\":%u,\"btf_value_type_id\":%u",
		bpf_map__btf_key_type_id(map), bpf_map__btf_value_type_id(map));
}

static struct bpf_object *open_obj(const char *path, int *err)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts, .btf_custom_path = g_btf_custom_path);
	struct bpf_object *obj;

	obj = bpf_object__open_file(path, &opts);
	*err = obj ? 0 : -errno;
	if (!obj && *err == 0)
		*err = -EINVAL;
	return obj;
}

/* ----------------------------------------------------------------------------- */
/* open                                                                           */

static int cmd_open(const char *path, bool with_insns)
{
	struct bpf_program *prog;
	struct bpf_map *map;
	struct bpf_object *obj;
	bool first;
	int err;

	reset_capture();
	obj = open_obj(path, &err);
	printf("{\"file\":");
	json_str(stdout, path);
	printf(",\"libbpf_version\":\"%u.%u\"", libbpf_major_version(), libbpf_minor_version());
	if (!obj) {
		printf(",\"ok\":false,\"errno\":%d,\"error\":", -err);
		json_str(stdout, tail_lines(g_warn.p ? g_warn.p : "", 30));
		printf(",\"programs\":[],\"maps\":[]}\n");
		return 0;
	}
	printf(",\"ok\":true,\"errno\":0,\"error\":null,\"name\":");
	json_str(stdout, bpf_object__name(obj));
	printf(",\"kversion\":%u,\"programs\":[", bpf_object__kversion(obj));
	first = true;
	bpf_object__for_each_program(prog, obj) {
		printf("%s{", first ? "" : ",");
		first = false;
		print_prog_common(stdout, prog);
		if (with_insns) {
			fputs(",\"insns\":", stdout);
			print_insns(stdout, prog);
		}
		fputs("}", stdout);
	}
	printf("],\"maps\":[");
	first = true;
	bpf_object__for_each_map(map, obj) {
		printf("%s{", first ? "" : ",");
		first = false;
		print_map_common(stdout, obj, map);
		fputs("}", stdout);
	}
	printf("]}\n");
	bpf_object__close(obj);
	return 0;
}

/* ----------------------------------------------------------------------------- */
/* load                                                                           */

/* Does struct_ops map `map` name `target` in one of its function pointer slots?
 * libbpf keeps a `struct bpf_program *` in each slot of the shadow value
 * (bpf_map__initial_value) after open. When `null_others`, every other slot is
 * set to NULL so that only `target` is loaded for this map.
 */
static bool st_ops_references(const struct bpf_object *obj, struct bpf_map *map,
			      const struct bpf_program *target, bool null_others)
{
	const struct btf *btf = bpf_object__btf(obj);
	const struct btf_type *t, *mt;
	const struct btf_member *m;
	bool found = false;
	size_t sz = 0;
	char *data;

	data = bpf_map__initial_value(map, &sz);
	t = btf__type_by_id(btf, bpf_map__btf_value_type_id(map));
	if (!data || !t || !btf_is_struct(t))
		return false;
	m = btf_members(t);
	for (int i = 0; i < btf_vlen(t); i++, m++) {
		__u32 off = btf_member_bit_offset(t, i) / 8;

		mt = btf__type_by_id(btf, m->type);
		while (mt && (btf_is_mod(mt) || btf_is_typedef(mt)))
			mt = btf__type_by_id(btf, mt->type);
		if (!mt || !btf_is_ptr(mt) || off + sizeof(void *) > sz)
			continue;
		struct bpf_program **slot = (struct bpf_program **)(data + off);

		if (*slot == target)
			found = true;
	}
	if (found && null_others) {
		m = btf_members(t);
		for (int i = 0; i < btf_vlen(t); i++, m++) {
			__u32 off = btf_member_bit_offset(t, i) / 8;

			mt = btf__type_by_id(btf, m->type);
			while (mt && (btf_is_mod(mt) || btf_is_typedef(mt)))
				mt = btf__type_by_id(btf, mt->type);
			if (!mt || !btf_is_ptr(mt) || off + sizeof(void *) > sz)
				continue;
			struct bpf_program **slot = (struct bpf_program **)(data + off);

			if (*slot && *slot != target)
				*slot = NULL;
		}
	}
	return found;
}

/* Restrict loading to program `name`. Returns 0, or -ENOENT when there is none. */
static int restrict_to_prog(struct bpf_object *obj, const char *name)
{
	struct bpf_program *prog, *target;
	struct bpf_map *map;

	target = bpf_object__find_program_by_name(obj, name);
	if (!target)
		return -ENOENT;
	bpf_object__for_each_program(prog, obj)
		bpf_program__set_autoload(prog, prog == target);
	bpf_object__for_each_map(map, obj) {
		if (bpf_map__type(map) != BPF_MAP_TYPE_STRUCT_OPS)
			continue;
		/* a struct_ops program gets its attach type only from a created map */
		bpf_map__set_autocreate(map, st_ops_references(obj, map, target, true));
	}
	return 0;
}

/* Print one load result as the members of a JSON object (no braces). */
static void print_load_result(FILE *f, struct bpf_object *obj, const char *only, int err,
			      bool with_insns)
{
	struct bpf_program *prog;
	struct bpf_map *map;
	bool first;
	int i;

	fprintf(f, "\"ok\":");
	json_bool(f, err == 0);
	fprintf(f, ",\"errno\":%d,\"error\":", err < 0 ? -err : 0);
	if (err)
		json_str(f, tail_lines(g_warn.p ? g_warn.p : "", 30));
	else
		fputs("null", f);
	fputs(",\"failed_prog\":", f);
	json_str(f, g_failed_prog[0] ? g_failed_prog : NULL);
	fputs(",\"prog_filter\":", f);
	json_str(f, only);

	fputs(",\"programs\":[", f);
	first = true;
	i = 0;
	bpf_object__for_each_program(prog, obj) {
		bool attempted = bpf_program__autoload(prog);
		bool failed = g_failed_prog[0] && !strcmp(g_failed_prog, bpf_program__name(prog));
		bool accepted = (i < MAX_TRACKED && g_prog_accepted[i]) || bpf_program__fd(prog) >= 0;

		i++;
		if (only && strcmp(only, bpf_program__name(prog)))
			continue;
		fprintf(f, "%s{", first ? "" : ",");
		first = false;
		print_prog_common(f, prog);
		fputs(",\"loaded\":", f);
		json_bool(f, accepted);
		/* errno of this program's BPF_PROG_LOAD: 0 accepted, the error when the
		 * kernel (or libbpf, just before the syscall) rejected it, null when it
		 * was never tried because the object failed first or autoload is off.
		 */
		fputs(",\"errno\":", f);
		if (failed)
			fprintf(f, "%d", g_failed_err < 0 ? -g_failed_err : g_failed_err);
		else if (accepted)
			fputs("0", f);
		else
			fputs("null", f);
		if (with_insns && attempted) {
			fputs(",\"insns\":", f);
			print_insns(f, prog);
		}
		fputs("}", f);
	}
	fputs("],\"maps\":[", f);
	first = true;
	i = 0;
	bpf_object__for_each_map(map, obj) {
		int fd = bpf_map__fd(map);

		if (fd < 0 && i < MAX_TRACKED)
			fd = g_map_fd[i];
		fprintf(f, "%s{\"index\":%d,", first ? "" : ",", i);
		first = false;
		print_map_common(f, obj, map);
		fprintf(f, ",\"fd\":%d}", fd);
		i++;
	}
	fputs("]", f);
}

static int load_one(const char *path, const char *only, bool with_insns, bool braces)
{
	struct bpf_object *obj;
	struct bpf_map *map;
	int err;

	reset_capture();
	obj = open_obj(path, &err);
	if (braces) {
		printf("{\"file\":");
		json_str(stdout, path);
		printf(",\"libbpf_version\":\"%u.%u\",", libbpf_major_version(),
		       libbpf_minor_version());
	}
	if (!obj) {
		printf("\"ok\":false,\"errno\":%d,\"error\":", -err);
		json_str(stdout, tail_lines(g_warn.p ? g_warn.p : "", 30));
		printf(",\"failed_prog\":null,\"prog_filter\":");
		json_str(stdout, only);
		printf(",\"programs\":[],\"maps\":[]%s", braces ? "}\n" : "");
		return 0;
	}
	/* never pin: pinning would leave state behind in bpffs */
	bpf_object__for_each_map(map, obj)
		bpf_map__set_pin_path(map, NULL);
	for (int k = 0; k < g_max_entries_cnt; k++) {
		const char *eq = strchr(g_max_entries[k], '=');
		char name[256];

		snprintf(name, sizeof(name), "%.*s", (int)(eq - g_max_entries[k]), g_max_entries[k]);
		map = bpf_object__find_map_by_name(obj, name);
		if (map)
			bpf_map__set_max_entries(map, (__u32)strtoul(eq + 1, NULL, 0));
	}

	if (only) {
		err = restrict_to_prog(obj, only);
		if (err) {
			printf("\"ok\":false,\"errno\":%d,\"error\":\"no such program\"", -err);
			printf(",\"failed_prog\":null,\"prog_filter\":");
			json_str(stdout, only);
			printf(",\"programs\":[],\"maps\":[]%s", braces ? "}\n" : "");
			bpf_object__close(obj);
			return 0;
		}
	}

	g_obj = obj;
	err = bpf_object__load(obj);
	if (err > 0)
		err = -err;
	snapshot_progs();
	g_obj = NULL;

	print_load_result(stdout, obj, only, err, with_insns);
	if (braces)
		printf("}\n");
	bpf_object__close(obj);
	return 0;
}

static int cmd_load_each(const char *path, bool with_insns)
{
	struct bpf_object *obj;
	struct bpf_program *prog;
	char **names = NULL;
	size_t n = 0;
	int err;

	obj = open_obj(path, &err);
	printf("{\"file\":");
	json_str(stdout, path);
	printf(",\"libbpf_version\":\"%u.%u\",\"each\":[", libbpf_major_version(),
	       libbpf_minor_version());
	if (!obj) {
		printf("],\"ok\":false,\"errno\":%d}\n", -err);
		return 0;
	}
	bpf_object__for_each_program(prog, obj) {
		names = realloc(names, (n + 1) * sizeof(*names));
		if (!names)
			return 1;
		names[n++] = strdup(bpf_program__name(prog));
	}
	bpf_object__close(obj);

	for (size_t i = 0; i < n; i++) {
		printf("%s{", i ? "," : "");
		load_one(path, names[i], with_insns, false);
		printf("}");
		free(names[i]);
	}
	free(names);
	printf("],\"ok\":true,\"errno\":0}\n");
	return 0;
}

/* ----------------------------------------------------------------------------- */
/* testrun                                                                        */

/*
 * testrun --prog NAME [--args A,B,...] [--state N] FILE.o: loads the whole object (as
 * a selftest's skeleton does; struct_ops maps are created, never attached), then
 * BPF_PROG_TEST_RUN of NAME with ctx_in = the u64 arguments. With --state, argument 0
 * is the address of a local `int` holding N (bpf_dummy_ops_state), which the kernel
 * copies in and back. Prints retval, the state afterwards, and the value of every
 * ".bss" map as hex.
 */
static int cmd_testrun(const char *path, const char *name, const char *args,
		       const char *state)
{
	__u64 ctx[12] = {0};
	int nargs = 0, err, st = state ? (int)strtol(state, NULL, 0) : 0;
	struct bpf_program *prog;
	struct bpf_object *obj;
	struct bpf_map *map;

	for (const char *a = args; a && *a && nargs < 12;) {
		char *end;

		ctx[nargs++] = strtoull(a, &end, 0);
		a = *end == ',' ? end + 1 : end;
		if (end == a && *a)
			break;
	}
	if (state) {
		if (nargs == 0)
			nargs = 1;
		ctx[0] = (__u64)(unsigned long)&st;
	}
	obj = open_obj(path, &err);
	printf("{\"file\":");
	json_str(stdout, path);
	if (!obj) {
		printf(",\"ok\":false,\"errno\":%d}\n", -err);
		return 0;
	}
	bpf_object__for_each_map(map, obj)
		bpf_map__set_pin_path(map, NULL);
	err = bpf_object__load(obj);
	prog = bpf_object__find_program_by_name(obj, name);
	if (err || !prog) {
		printf(",\"ok\":false,\"errno\":%d}\n", err ? -err : ENOENT);
		bpf_object__close(obj);
		return 0;
	}
	{
		LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = ctx,
			    .ctx_size_in = (__u32)(nargs * sizeof(__u64)));

		err = bpf_prog_test_run_opts(bpf_program__fd(prog), &opts);
		printf(",\"ok\":%s,\"errno\":%d,\"retval\":%u,\"state\":%d,\"bss\":[",
		       err ? "false" : "true", err ? errno : 0, opts.retval, st);
	}
	{
		bool first = true;

		bpf_object__for_each_map(map, obj) {
			const char *mname = bpf_map__name(map);
			size_t len = strlen(mname), vsz = bpf_map__value_size(map);
			unsigned char *buf;
			__u32 zero = 0;

			if (len < 4 || strcmp(mname + len - 4, ".bss"))
				continue;
			buf = calloc(1, vsz ? vsz : 1);
			if (!buf)
				return 1;
			if (!bpf_map_lookup_elem(bpf_map__fd(map), &zero, buf)) {
				printf("%s\"", first ? "" : ",");
				for (size_t k = 0; k < vsz; k++)
					printf("%02x", buf[k]);
				printf("\"");
				first = false;
			}
			free(buf);
		}
	}
	printf("]}\n");
	bpf_object__close(obj);
	return 0;
}

/* ----------------------------------------------------------------------------- */
/* attach                                                                         */

static int cmd_attach(const char *path)
{
	struct bpf_link *links[MAX_TRACKED];
	int nlinks = 0, err;
	struct bpf_object *obj;
	struct bpf_map *map;
	bool first = true;

	obj = open_obj(path, &err);
	printf("{\"file\":");
	json_str(stdout, path);
	if (!obj) {
		printf(",\"open\":%d,\"load\":0,\"maps\":[]}\n", -err);
		return 0;
	}
	bpf_object__for_each_map(map, obj)
		bpf_map__set_pin_path(map, NULL);
	err = bpf_object__load(obj);
	printf(",\"open\":0,\"load\":%d,\"maps\":[", err ? -err : 0);
	if (!err) {
		bpf_object__for_each_map(map, obj) {
			struct bpf_link *link;
			int e = 0;

			if (bpf_map__type(map) != BPF_MAP_TYPE_STRUCT_OPS)
				continue;
			link = bpf_map__attach_struct_ops(map);
			if (!link)
				e = errno ? errno : EINVAL;
			else if (nlinks < MAX_TRACKED)
				links[nlinks++] = link;
			else {
				/* cannot keep it: undo it now rather than leak a registration */
				bpf_link__destroy(link);
				e = E2BIG;
			}
			printf("%s{\"name\":", first ? "" : ",");
			json_str(stdout, bpf_map__name(map));
			printf(",\"errno\":%d}", e);
			first = false;
		}
	}
	printf("]}\n");
	fflush(stdout);
	while (nlinks > 0)
		bpf_link__destroy(links[--nlinks]);
	bpf_object__close(obj);
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: libbpf_report [-v] open [--insns] [OPTIONS] FILE.o\n"
		"       libbpf_report [-v] load [--prog NAME | --each] [--no-insns] [OPTIONS] FILE.o\n"
		"  -v                     copy libbpf's messages (all levels) to stderr\n"
		"  --insns                (open) include the instructions as they are in the ELF\n"
		"  --no-insns             (load) leave out the relocated instructions\n"
		"  --prog NAME            (load) load only program NAME\n"
		"  --each                 (load) --prog for every program in turn\n"
		"  --btf PATH             CO-RE target BTF instead of vmlinux (btf_custom_path)\n"
		"  --max-entries MAP=N    bpf_map__set_max_entries before load (repeatable)\n"
		"       libbpf_report testrun --prog NAME [--args A,B,..] [--state N] FILE.o\n"
		"  --args A,B,..          (testrun) the u64 arguments (ctx_in)\n"
		"  --state N              (testrun) argument 0 points at an int holding N\n"
		"       libbpf_report attach FILE.o\n"
		"  (attach) load, attach every struct_ops map in order, report each errno\n");
}

int main(int argc, char **argv)
{
	const char *cmd, *path = NULL, *only = NULL, *args = NULL, *state = NULL;
	bool each = false, insns_open = false, insns_load = true;
	int i = 1;

	if (i < argc && !strcmp(argv[i], "-v")) {
		g_verbose = true;
		i++;
	}
	if (i >= argc) {
		usage();
		return 2;
	}
	cmd = argv[i++];
	for (; i < argc; i++) {
		if (!strcmp(argv[i], "--prog") && i + 1 < argc)
			only = argv[++i];
		else if (!strcmp(argv[i], "--args") && i + 1 < argc)
			args = argv[++i];
		else if (!strcmp(argv[i], "--state") && i + 1 < argc)
			state = argv[++i];
		else if (!strcmp(argv[i], "--each"))
			each = true;
		else if (!strcmp(argv[i], "--insns"))
			insns_open = true;
		else if (!strcmp(argv[i], "--no-insns"))
			insns_load = false;
		else if (!strcmp(argv[i], "-v"))
			g_verbose = true;
		else if (!strcmp(argv[i], "--btf") && i + 1 < argc)
			g_btf_custom_path = argv[++i];
		else if (!strcmp(argv[i], "--max-entries") && i + 1 < argc &&
			 strchr(argv[i + 1], '=') && g_max_entries_cnt < 64)
			g_max_entries[g_max_entries_cnt++] = argv[++i];
		else if (argv[i][0] == '-' || path) {
			usage();
			return 2;
		} else
			path = argv[i];
	}
	if (!path) {
		usage();
		return 2;
	}

	libbpf_set_print(print_cb);
	reset_capture();

	if (!strcmp(cmd, "open"))
		return cmd_open(path, insns_open);
	if (!strcmp(cmd, "attach"))
		return cmd_attach(path);
	if (!strcmp(cmd, "testrun")) {
		if (!only) {
			usage();
			return 2;
		}
		return cmd_testrun(path, only, args, state);
	}
	if (!strcmp(cmd, "load")) {
		if (each && only) {
			usage();
			return 2;
		}
		if (each)
			return cmd_load_each(path, insns_load);
		return load_one(path, only, insns_load, true);
	}
	usage();
	return 2;
}
