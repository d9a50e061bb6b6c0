#!/usr/bin/env python3
"""Hugging Face transformers baseline on the shapes bench_cuda measures, random bf16 weights
created on the GPU: time to first token (128 / 2048 prompt tokens), time per output token at
batch 1, and decode throughput at the given batch sizes (512 prompt tokens, 128 new).

    python3 tools/bench_hf_falcon.py --config tests/data/configs/falcon-7b.json --batches 16,64
"""
import argparse
import time

import torch
from transformers import FalconConfig, FalconForCausalLM


def timed(fn):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--batches", default="16,64")
    args = ap.parse_args()
    cfg = FalconConfig.from_json_file(args.config)
    with torch.device("cuda"):
        model = FalconForCausalLM._from_config(cfg, dtype=torch.bfloat16)
    model.eval()
    g = torch.Generator(device="cuda").manual_seed(0)

    def gen(batch, prompt, new):
        ids = torch.randint(12, 65000, (batch, prompt), device="cuda", generator=g)
        with torch.no_grad():
            model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new,
                           min_new_tokens=new, do_sample=False, pad_token_id=0)

    gen(1, 16, 2)  # warm-up
    for prompt in (128, 2048):
        t = min(timed(lambda: gen(1, prompt, 1)) for _ in range(3))
        print(f"hf ttft batch 1, {prompt} prompt tokens: {t * 1e3:.2f} ms")
    t1 = timed(lambda: gen(1, 128, 1))
    t129 = timed(lambda: gen(1, 128, 129))
    print(f"hf tpot batch 1: {(t129 - t1) / 128 * 1e3:.3f} ms ({128 / (t129 - t1):.1f} tok/s)")
    for b in (int(x) for x in args.batches.split(",")):
        t1 = timed(lambda: gen(b, 512, 1))
        t129 = timed(lambda: gen(b, 512, 129))
        print(f"hf decode batch {b}: {(t129 - t1) / 128 * 1e3:.2f} ms/step, {b * 128 / (t129 - t1):.0f} tok/s")


if __name__ == "__main__":
    main()
