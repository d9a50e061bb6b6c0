#!/usr/bin/env python3
"""Builds the tiny random-weight Falcon fixtures and their float64 reference outputs.

Runs where torch and transformers are installed (the GPU machine; CPU is enough). For each variant
it writes a Hugging Face model directory (config.json + model.safetensors in bf16) and a
reference.json with float64 per-token logprobs of several prompts, the top-10 at the last position
and a 24-step greedy continuation with the top-2 margin of every step. It also writes
logits_processors.json: outputs of transformers' own logits processors on fixed inputs, so the
sampler's maths is checked against Hugging Face rather than against itself.

    python3 tools/make_reference.py --tokenizer tests/data/tokenizer.json --out DIR
"""
import argparse
import json
import math
import os
import tarfile

import torch
import transformers
from tokenizers import Tokenizer
from transformers import FalconConfig, FalconForCausalLM

VOCAB = 65024

VARIANTS = {
    # Falcon-7B: multi-query (one KV head), one LayerNorm, parallel attention + MLP, rotary.
    "falcon-7b-tiny": dict(hidden_size=64, num_attention_heads=4, num_hidden_layers=2,
                           multi_query=True, new_decoder_architecture=False, parallel_attn=True,
                           bias=False, alibi=False),
    # Falcon-40B / 180B: grouped KV heads, ln_attn + ln_mlp.
    "falcon-40b-tiny": dict(hidden_size=64, num_attention_heads=8, num_kv_heads=2,
                            num_hidden_layers=2, new_decoder_architecture=True, multi_query=True,
                            parallel_attn=True, bias=False, alibi=False),
    # Falcon2-11B: grouped KV heads, one LayerNorm, large rope_theta, untied lm_head.
    "falcon2-11b-tiny": dict(hidden_size=32, num_attention_heads=4, num_kv_heads=2,
                             num_hidden_layers=2, new_decoder_architecture=True, multi_query=True,
                             parallel_attn=True, num_ln_in_parallel_attn=1, bias=False,
                             alibi=False, rope_theta=500042.0, tie_word_embeddings=False),
    # Falcon-RW: sequential block, full multi-head attention, biases, ALiBi.
    "falcon-rw-tiny": dict(hidden_size=64, num_attention_heads=4, num_hidden_layers=2,
                           multi_query=False, new_decoder_architecture=False, parallel_attn=False,
                           bias=True, alibi=True),
}

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    ">>QUESTION<< What is 12345 + 678? >>ANSWER<<",
    "Zürich, Москва, 東京 and القاهرة are cities 🌍.",
    "x",
    # Long enough to cross several 16-token KV blocks.
    ("Falcon models were trained on RefinedWeb, a large web dataset filtered and deduplicated "
     "with care. " * 12).strip(),
]

GREEDY_STEPS = 24


def randomize(model, seed):
    """Peaked next-token distributions: scale weights up and randomize every LayerNorm."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2 and "word_embeddings" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            elif p.dim() == 2 and "lm_head" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            elif p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * 2.0 / math.sqrt(p.shape[1]))
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            elif name.startswith("transformer.ln_f"):
                # Signed final-norm weights keep a tied lm_head from echoing the last input token.
                p.copy_(torch.randn(p.shape, generator=g))
            else:  # LayerNorm weights inside the blocks
                p.copy_(1.0 + 0.5 * torch.randn(p.shape, generator=g))


def logprobs_of(model, ids):
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    return torch.log_softmax(logits, dim=-1)


def reference_for(model, tok, prompt):
    ids = tok.encode(prompt).ids
    lp = logprobs_of(model, ids)
    per_token = [None] + [lp[i - 1, ids[i]].item() for i in range(1, len(ids))]
    top = torch.topk(lp[-1], 10)
    seq = list(ids)
    greedy, greedy_lp, margins = [], [], []
    step_lp = lp[-1]
    for _ in range(GREEDY_STEPS):
        two = torch.topk(step_lp, 2)
        nxt = int(two.indices[0])
        greedy.append(nxt)
        greedy_lp.append(two.values[0].item())
        margins.append((two.values[0] - two.values[1]).item())
        seq.append(nxt)
        step_lp = logprobs_of(model, seq)[-1]
    return {
        "prompt": prompt,
        "ids": ids,
        "logprobs": per_token,
        "top10_ids": top.indices.tolist(),
        "top10_logprobs": top.values.tolist(),
        "greedy_ids": greedy,
        "greedy_logprobs": greedy_lp,
        "greedy_margins": margins,
        "greedy_text": tok.decode(greedy, skip_special_tokens=False),
    }


def make_variant(name, overrides, tok, out_dir, seed):
    cfg = FalconConfig(vocab_size=VOCAB, bos_token_id=11, eos_token_id=11, **overrides)
    model = FalconForCausalLM(cfg)
    randomize(model, seed)
    model_dir = os.path.join(out_dir, name)
    model.to(torch.bfloat16).save_pretrained(model_dir, safe_serialization=True)
    ref_model = FalconForCausalLM.from_pretrained(model_dir, dtype=torch.float64)
    ref_model.eval()
    impl = ref_model.config._attn_implementation
    refs = [reference_for(ref_model, tok, p) for p in PROMPTS]
    with open(os.path.join(model_dir, "reference.json"), "w") as f:
        json.dump({"model": name, "transformers": transformers.__version__,
                   "torch": torch.__version__, "attn_implementation": impl,
                   "cases": refs}, f, indent=1, ensure_ascii=False)
    for extra in ("generation_config.json",):
        path = os.path.join(model_dir, extra)
        if os.path.exists(path):
            os.remove(path)
    with tarfile.open(os.path.join(out_dir, name + ".tar"), "w") as tar:
        tar.add(model_dir, arcname=name)
    print(name, "attn", impl, "greedy", refs[0]["greedy_ids"][:8],
          "min margin", min(min(r["greedy_margins"]) for r in refs))


def processor_cases():
    """transformers' logits processors on fixed inputs (HF semantics for the sampler)."""
    from transformers.generation.logits_process import (
        RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper,
        TopPLogitsWarper, TypicalLogitsWarper)
    g = torch.Generator().manual_seed(7)
    cases = []
    for n in (16, 50):
        logits = (torch.randn(1, n, generator=g, dtype=torch.float64) * 3.0)
        history = torch.tensor([[1, 3, 3, 7, 0, 12]])
        specs = [
            ("temperature", {"temperature": 0.7}, TemperatureLogitsWarper(0.7)),
            ("top_k", {"top_k": 5}, TopKLogitsWarper(5)),
            ("top_p", {"top_p": 0.8}, TopPLogitsWarper(0.8)),
            ("top_p", {"top_p": 0.3}, TopPLogitsWarper(0.3)),
            ("typical_p", {"typical_p": 0.6}, TypicalLogitsWarper(0.6)),
            ("typical_p", {"typical_p": 0.95}, TypicalLogitsWarper(0.95)),
            ("repetition_penalty", {"repetition_penalty": 1.3},
             RepetitionPenaltyLogitsProcessor(1.3)),
        ]
        for kind, params, proc in specs:
            out = proc(history, logits.clone())[0]
            cases.append({
                "kind": kind, "params": params, "history": history[0].tolist(),
                "logits": logits[0].tolist(),
                "expected": [None if math.isinf(v) else v for v in out.tolist()],
            })
    return cases


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    tok = Tokenizer.from_file(args.tokenizer)
    for i, (name, overrides) in enumerate(VARIANTS.items()):
        make_variant(name, overrides, tok, args.out, seed=1000 + i)
    with open(os.path.join(args.out, "logits_processors.json"), "w") as f:
        json.dump({"transformers": transformers.__version__, "cases": processor_cases()}, f,
                  indent=1)


if __name__ == "__main__":
    main()
