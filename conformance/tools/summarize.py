#!/usr/bin/env python3
"""Runs libbpf_report open + load --each over BPF objects and prints a summary table.

usage: summarize.py [--markdown] FILE.bpf.o...
Needs conformance/build/bin/libbpf_report (conformance/build.sh) and, for `load`, root.
Options from a LOAD_OPTIONS file next to an object (conformance/build/corpus has one)
are passed to libbpf_report for it.
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPORT = os.path.join(HERE, "..", "build", "bin", "libbpf_report")
ERRNAMES = {1: "EPERM", 2: "ENOENT", 3: "ESRCH", 7: "E2BIG", 13: "EACCES", 14: "EFAULT",
            22: "EINVAL", 95: "EOPNOTSUPP", 524: "ENOTSUPP", 4007: "LIBBPF_ERRNO__PROG2BIG"}


def load_options(path):
    """Options for `path` from LOAD_OPTIONS in its directory, paths made absolute."""
    d = os.path.dirname(os.path.abspath(path))
    f = os.path.join(d, "LOAD_OPTIONS")
    if not os.path.exists(f):
        return []
    for line in open(f):
        if line.startswith("#") or "\t" not in line:
            continue
        name, opts = line.rstrip("\n").split("\t", 1)
        if name == os.path.basename(path):
            out = opts.split()
            for i, o in enumerate(out):
                if i > 0 and out[i - 1] == "--btf":
                    out[i] = os.path.join(d, o)
            return out
    return []


def run(*args):
    out = subprocess.run([REPORT, *args], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def main():
    md = "--markdown" in sys.argv
    files = [a for a in sys.argv[1:] if a != "--markdown"]
    rows = []
    bad = 0
    for f in files:
        opts = load_options(f)
        o = run("open", *opts, f)
        if not o["ok"]:
            rows.append((os.path.basename(f), "OPEN FAILED errno %d" % o["errno"], "", "", ""))
            bad += 1
            continue
        nmaps = len(o["maps"])
        st = sum(1 for m in o["maps"] if m["struct_ops_type"])
        whole = run("load", "--no-insns", *opts, f)
        each = run("load", "--no-insns", "--each", *opts, f)
        ok, rej = [], []
        for e in each["each"]:
            p = e["programs"][0] if e["programs"] else {}
            name = e["prog_filter"]
            # the kernel accepted the program even if the object failed afterwards
            if p.get("loaded"):
                ok.append(name)
            else:
                en = p.get("errno") or e["errno"]
                rej.append("%s(%s)" % (name, ERRNAMES.get(en, en)))
        whole_s = "ok" if whole["ok"] else "fails errno %d (%s)" % (
            whole["errno"], whole["failed_prog"] or "before prog load")
        rows.append((os.path.basename(f), " ".join(opts).replace(os.path.dirname(os.path.abspath(f)) + "/", ""),
            "%d progs, %d maps (%d struct_ops)" % (len(o["programs"]), nmaps, st), whole_s,
            "%d ok" % len(ok) + ("; rejected: " + ", ".join(rej) if rej else "")))
    if md:
        print("| object | options | open | load (whole) | load (each program alone) |")
        print("|---|---|---|---|---|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        for r in rows:
            print("%-36s %-20s %-28s %-40s %s" % r)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
