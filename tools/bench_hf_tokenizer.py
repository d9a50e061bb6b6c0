#!/usr/bin/env python3
"""Times Hugging Face tokenizers (Python) encoding the text bench_tokenizer uses, one thread.

    python3 tools/bench_hf_tokenizer.py [--seconds 3]
"""
import argparse
import os
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")
from tokenizers import Tokenizer  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def english_text():
    """Same construction as english_text() in bench/tokenizer/bench_tokenizer.cpp."""
    with open(os.path.join(ROOT, "bench/tokenizer/english_sample.txt"), encoding="utf-8") as f:
        lines = [l for l in f.read().split("\n") if l]
    text, pass_ = "", 0
    while len(text.encode()) < 400 * 1024:
        for i in range(len(lines)):
            words = lines[(i + pass_ * 7) % len(lines)].split(" ")
            words = [w[0].upper() + w[1:] if (j + pass_) % 7 == 0 and w else w
                     for j, w in enumerate(words)]
            text += f"Section {pass_}.{i}: {' '.join(words)}\n"
        pass_ += 1
    return text


def rate(fn, nbytes, seconds):
    fn()
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        runs += 1
    elapsed = time.perf_counter() - start
    return nbytes * runs / elapsed / 1048576


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    tok = Tokenizer.from_file(os.path.join(ROOT, "tests/data/tokenizer.json"))
    text = english_text()
    nbytes = len(text.encode())
    lines = [l + "\n" for l in text.split("\n")[:-1]]
    print(f"text: {nbytes} bytes, {len(tok.encode(text).ids)} tokens")
    print(f"hf_python_encode_whole: {rate(lambda: tok.encode(text), nbytes, args.seconds):.2f} MiB/s")
    print(f"hf_python_encode_lines: "
          f"{rate(lambda: [tok.encode(l) for l in lines], nbytes, args.seconds):.2f} MiB/s")


if __name__ == "__main__":
    main()
