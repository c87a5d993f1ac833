"""Runtime a pretraining job asks the scheduler for, from the FLOPs model instead of a flat 2,880 minutes.

FLOPs = 6 x parameters x training tokens (forward + backward, bioprune.report.flops / bioprune.report.ledger's
FLOPS_PER_PARAM_TOKEN); tokens from pretrain.budget: steps x batch_size x (max_length + 2), pretrain.tokens,
or epochs x (the arm's fraction of the pool) x an upper bound of the pool's residues (the corpus files'
bytes, x4 for gzip). The rate is a deliberately low sustained throughput for these small models
(GPU_FLOPS on a GPU, CPU_FLOPS with device: cpu); the estimate is tripled, plus FIXED_MIN for start-up,
validation and checkpoints, and clamped to [MIN_MIN, MAX_MIN]. A retry multiplies it by the attempt.
"""
from __future__ import annotations

import math
import os

from bioprune.training.gpumem import esm2_params

GPU_FLOPS = 5e12  # sustained, small ESM2 models in bf16 (a few % of an A100/H100 dense peak)
CPU_FLOPS = 5e10
SAFETY = 3.0
FIXED_MIN = 15
MIN_MIN, MAX_MIN = 30, 2880
GZIP_FACTOR = 4


def corpus_residue_bound(config: dict) -> float:
    """An upper bound of the residues in corpus.path: bytes of the files (x GZIP_FACTOR when gzipped)."""
    from bioprune.config.params import corpus_files

    total = 0.0
    for f in corpus_files(config):
        try:
            size = os.path.getsize(f)
        except OSError:
            continue
        with open(f, "rb") as fh:
            gz = fh.read(2) == b"\x1f\x8b"
        total += size * (GZIP_FACTOR if gz else 1)
    return total


def pretrain_tokens(config: dict, fraction: float, residues: float | None = None) -> float:
    """Training tokens of one pretraining arm that sees `fraction` of the pool (1 for the full pool)."""
    p = config["pretrain"]
    if p["budget"] == "steps":
        return float(p["steps"]) * p["batch_size"] * (config["corpus"]["max_length"] + 2)
    if p["budget"] == "tokens":
        return float(p["tokens"])
    if residues is None:
        residues = corpus_residue_bound(config)
    return float(p["epochs"]) * fraction * residues


def pretrain_runtime_min(config: dict, fraction: float, residues: float | None = None) -> int:
    """Minutes one pretraining job is declared to need (module doc)."""
    p = config["pretrain"]
    flops = 6.0 * esm2_params(p["layers"], p["embed_dim"]) * pretrain_tokens(config, fraction, residues)
    rate = CPU_FLOPS if config["device"] == "cpu" else GPU_FLOPS * max(1, int(p.get("gpus") or 1))
    minutes = math.ceil(SAFETY * flops / rate / 60) + FIXED_MIN
    return int(min(max(minutes, MIN_MIN), MAX_MIN))
