#!/usr/bin/env python3
"""How far transformers itself lands from the float64 references of the test fixtures when it
runs in bf16 and in fp32: the largest per-token prompt logprob error of each, per fixture. The
yardstick for eyrie's own tolerances (run on the GPU machine).

    python3 tools/hf_precision_error.py tests/data/models/*/
"""
import json
import os
import sys

import torch
from transformers import FalconForCausalLM


def worst_error(model, cases):
    worst = 0.0
    for case in cases:
        ids = case["ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids], device="cuda")).logits[0].double()
        lp = torch.log_softmax(logits, dim=-1)
        for i in range(1, len(ids)):
            worst = max(worst, abs(lp[i - 1, ids[i]].item() - case["logprobs"][i]))
    return worst


def main():
    for model_dir in sys.argv[1:]:
        with open(os.path.join(model_dir, "reference.json")) as f:
            cases = json.load(f)["cases"]
        row = [os.path.basename(os.path.normpath(model_dir))]
        for dtype in (torch.bfloat16, torch.float32):
            model = FalconForCausalLM.from_pretrained(model_dir, dtype=dtype).to("cuda").eval()
            row.append(f"{str(dtype).replace('torch.', '')} {worst_error(model, cases):.4f}")
        print("hf prompt logprob error vs float64:", ", ".join(row))


if __name__ == "__main__":
    main()
