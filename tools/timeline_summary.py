#!/usr/bin/env python3
"""Reads a kernel timeline written by bench/cuda/kernel_timeline.cpp and prints, for the steps
in it (a step starts at each kernel whose name contains --step-marker, the embedding by
default): the spans of the steps and the idle gaps between them, the time per step by kernel
name, and every kernel of one step (the median-length one of the last --last steps), in start
order with its stream, so that concurrent branches and idle stretches show.

    python3 tools/timeline_summary.py kernels.csv [--step-marker embed] [--last 20] [--kernels 80]

A timeline of graph launches (EYRIE_TIMELINE_LEVEL=graphs or graphs,api) takes --step-marker
graph, and --pieces 2 where a decode step is launched as two graphs (the engine's are); with
graphs,api it also lists the host's CUDA runtime calls from the end of the median step's graphs
to the start of the next. Streams are named device.stream; --device 1 keeps the second GPU's
kernels alone (a tensor-parallel run records every rank's).
"""
import argparse
import collections
import csv
import gzip
import re
import signal
import statistics


def short_name(name):
    """gemv_kernel<2, 2, 2, (Gelu)0> from 'void eyrie::cuda::(anonymous namespace)::gemv_kernel<2, 2,
    2, (eyrie::cuda::(anonymous namespace)::Gelu)0>(__nv_bfloat16 const*, ...)': namespaces and
    the parameter list dropped."""
    name = re.sub(r"^void ", "", name.replace("(anonymous namespace)::", ""))
    depth = 0
    for i, c in enumerate(name):
        depth += (c == "<") - (c == ">")
        if c == "(" and depth == 0:
            name = name[:i]
            break
    head, angle, rest = name.partition("<")
    return head.split("::")[-1] + angle + re.sub(r"\((?:\w+::)+(\w+)\)", r"(\1)", rest)


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quiet when piped into head
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--step-marker", default="embed")
    ap.add_argument("--last", type=int, default=20)
    ap.add_argument("--kernels", type=int, default=80, help="kernels of the chosen step to list")
    ap.add_argument("--pieces", type=int, default=1, help="step markers per step")
    ap.add_argument("--device", help="keep this device's kernels alone")
    args = ap.parse_args()
    if args.pieces < 1:
        raise SystemExit("--pieces: at least 1")

    opener = gzip.open if args.csv.endswith(".gz") else open
    with opener(args.csv, "rt") as f:
        rows = [(int(r["start_ns"]), int(r["end_ns"]), r["stream"], int(r["grid"]), int(r["block"]),
                 short_name(r["name"])) for r in csv.DictReader(f)]
    host = sorted(r for r in rows if r[2] == "host")
    rows = sorted(r for r in rows if r[2] != "host" and (args.device is None or r[2].split(".")[0] == args.device))
    starts = [i for i, r in enumerate(rows) if args.step_marker in r[5]][::args.pieces]
    if len(starts) < 2:
        raise SystemExit(f"fewer than two kernels named like '{args.step_marker}': no whole step to show")
    steps = list(zip(starts, starts[1:]))[-args.last:]
    spans, gaps = [], []
    for a, b in steps:
        end = max(r[1] for r in rows[a:b])
        spans.append((end - rows[a][0]) / 1e3)
        gaps.append((rows[b][0] - end) / 1e3)
    print(f"{len(steps)} steps: kernel span median {statistics.median(spans):.1f} us, "
          f"idle before the next step median {statistics.median(gaps):.1f} us (tracing itself lengthens both)")

    per_name = collections.defaultdict(float)
    for a, b in steps:
        for r in rows[a:b]:
            per_name[r[5]] += (r[1] - r[0]) / 1e3 / len(steps)
    print("\nkernel time per step (us, summed over streams):")
    for name, t in sorted(per_name.items(), key=lambda kv: -kv[1]):
        print(f"  {t:10.1f}  {name}")

    order = sorted(range(len(steps)), key=lambda i: spans[i])
    a, b = steps[order[len(order) // 2]]
    t0 = rows[a][0]
    if host:
        end = max(r[1] for r in rows[a:b])
        print(f"\nhost runtime calls between the median step's end and the next step (us from that end):")
        for r in host:
            if r[1] > end and r[0] < rows[b][0]:
                print(f"  {(r[0] - end) / 1e3:8.2f}  {(r[1] - end) / 1e3:8.2f}  {(r[1] - r[0]) / 1e3:8.2f}  {r[5]}")
        print(f"  next step at {(rows[b][0] - end) / 1e3:.2f}")
    if args.kernels <= 0:
        return
    print(f"\nthe median step, first {args.kernels} kernels (us from its start):")
    print("     start       end  duration  stream     grid  block  kernel")
    for r in rows[a:b][:args.kernels]:
        print(f"  {(r[0] - t0) / 1e3:8.2f}  {(r[1] - t0) / 1e3:8.2f}  {(r[1] - r[0]) / 1e3:8.2f}  {r[2]:>6}  "
              f"{r[3]:>7}  {r[4]:>5}  {r[5]}")


if __name__ == "__main__":
    main()
