"""GPU memory a job needs, from the config: the value of the `gpu_mem_mb` resource of the GPU rules.

Snakemake runs jobs concurrently only while the sum of their declared resources stays within the
`--resources` given on the command line; with `--resources gpu=4 gpu_mem_mb=76000` up to four GPU
jobs share one 80 GB GPU and never ask for more memory together than 76,000 MB.

Estimate (training, bf16 autocast, fused attention, so no T x T attention matrix is stored):
  16 B per parameter (fp32 weights, gradients, AdamW moments)
  + tokens per batch x layers x 50 x embed_dim B (activations kept for backward, bf16 and fp32 copies)
  + tokens per batch x vocab x 16 B (logits and their gradient)
  x 1.3 (allocator slack) + 1,000 MB (CUDA context, cuBLAS workspace).
Scoring: 4 B per parameter, the same activations, plus the hooked factors and per-sample gradients
(tokens x (in + out) x 8 B and rows x in x out x 8 B per scored weight). Tokens per batch =
max_tokens, or batch_size x (corpus.max_length + 2). `bioprune bench-sketch` prints the estimate
beside the measured peak (`gpu_mem_mb_estimate`, `peak_mem_mb`) so it can be checked on a device.
"""
from __future__ import annotations

import math

SLACK = 1.3
CONTEXT_MB = 1000
VOCAB = 33  # fair-esm protein alphabet (the RNA alphabet is smaller)
ACT_BYTES = 50


def esm2_params(layers: int, embed_dim: int, vocab: int = VOCAB) -> int:
    """Parameters of a fair-esm ESM2 (per layer 12 E^2 + 13 E, plus embeddings and LM head)."""
    e = embed_dim
    return layers * (12 * e * e + 13 * e) + vocab * e + e * e + 5 * e + vocab


def training_mb(layers: int, embed_dim: int, tokens: int) -> int:
    p = esm2_params(layers, embed_dim)
    dynamic = 16 * p + tokens * layers * ACT_BYTES * embed_dim + tokens * VOCAB * 16
    return int(math.ceil(dynamic * SLACK / 2**20)) + CONTEXT_MB


def scoring_mb(layers: int, embed_dim: int, tokens: int, rows: int, weights: list[tuple[int, int]]) -> int:
    p = esm2_params(layers, embed_dim)
    hooked = sum(tokens * (i + o) * 8 + rows * i * o * 8 for o, i in weights)
    dynamic = 4 * p + tokens * layers * ACT_BYTES * embed_dim + tokens * VOCAB * 16 + hooked
    return int(math.ceil(dynamic * SLACK / 2**20)) + CONTEXT_MB


def _tokens(section: dict, max_length: int) -> tuple[int, int]:
    """(tokens per batch, rows per batch) of a config section."""
    if section.get("max_tokens"):
        return int(section["max_tokens"]), max(1, int(section["max_tokens"]) // 12)
    return int(section["batch_size"]) * (max_length + 2), int(section["batch_size"])


def gpu_mem_mb(config: dict, stage: str) -> int:
    """MB of GPU memory one job of `stage` (reference, pretrain, benchmark, curvature, sketch) is declared to need;
    benchmark declares what training the same model would need (an upper bound of its forward passes)."""
    max_length = int(config["corpus"]["max_length"])
    if stage in ("reference", "pretrain", "benchmark"):  # benchmark: a pretrained model's forward (bounded by training)
        sec = config["pretrain" if stage == "benchmark" else stage]
        tokens, _ = _tokens(sec, max_length)
        if stage == "pretrain" and int(sec.get("gpus") or 1) > 1:  # each rank holds its share of the batch
            tokens = math.ceil(tokens / int(sec["gpus"]))
        return training_mb(sec["layers"], sec["embed_dim"], tokens)
    if stage in ("curvature", "sketch"):
        ref, inf = config["reference"], config["influence"]
        tokens, rows = _tokens(inf, max_length)
        e = ref["embed_dim"]
        if inf["params"] == "all_linear" or (isinstance(inf["params"], list) and len(inf["params"]) > 1):
            weights = [(e, e)] * 4 * ref["layers"] + [(4 * e, e), (e, 4 * e)] * ref["layers"] + [(e, e)]
        else:
            weights = [(e, e)]
        return scoring_mb(ref["layers"], e, tokens, rows, weights)
    raise ValueError(f"no GPU memory estimate for stage {stage!r}")
