"""Model FLOPs of fair-esm transformers and dense peak throughput of GPUs: the MFU denominator.

Forward FLOPs per token = 2 x (weights of every matmul: the Linear layers and the tied LM-head
projection, contact head excluded) + 4 x layers x context x embed_dim (QK^T and AV). A training
step is 3 x forward (backward = 2 x forward). MFU = model FLOPs per token x tokens/s / peak.
"""
from __future__ import annotations

import torch

# Dense (no structured sparsity) BF16 tensor-core peaks, TFLOPS, from NVIDIA's product datasheets:
# H100 SXM5 / H200 SXM: 989.4 (the datasheet's 1,979 is with 2:4 sparsity); H100 PCIe 756.5;
# H100 NVL 835.5 (per GPU); A100 (SXM4 and PCIe): 312; L40S: 362.05; L4: 121; A10: 125.
# Order matters: the first substring found in torch.cuda.get_device_name() wins.
DENSE_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.5), ("H100 NVL", 835.5), ("H100", 989.4), ("H200", 989.4), ("GH200", 989.4),
    ("A100", 312.0), ("L40S", 362.05), ("L4", 121.0), ("A10", 125.0),
)


def peak_tflops(device_name: str) -> float | None:
    """Dense BF16 peak of a GPU by its CUDA name; None when unknown (CPU, other GPUs)."""
    for key, tf in DENSE_BF16_TFLOPS:
        if key in device_name:
            return tf
    return None


def matmul_weights(model: torch.nn.Module) -> int:
    """Weights that take part in a matmul of the forward pass (Linear layers + tied LM-head projection)."""
    n = sum(m.weight.numel() for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and not name.startswith("contact_head"))
    head = getattr(getattr(model, "lm_head", None), "weight", None)
    return n + (head.numel() if head is not None else 0)


def forward_flops_per_token(model: torch.nn.Module, context: int) -> float:
    """Forward FLOPs per token of `model` at `context` tokens per sequence."""
    layers = len(model.layers)
    embed = model.embed_tokens.embedding_dim
    return 2.0 * matmul_weights(model) + 4.0 * layers * context * embed


# model FLOPs of each bench mode, in forward passes: training = forward + backward (2x);
# sketch_all_linear = forward + input-gradient backward (weight gradients come from the hooked factors);
# sketch_paper and the per-sample baseline back-propagate only through the LM head (about one forward)
MODE_FORWARDS = {"train": 3.0, "train_compile": 3.0, "train_stock": 3.0, "sketch_paper": 1.0, "sketch_all_linear": 2.0,
                 "per_sample_baseline": 1.0}


def mfu(mode: str, model: torch.nn.Module, context: int, tokens_per_s: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation of one mode (None without a known peak)."""
    if not peak:
        return None
    return MODE_FORWARDS[mode] * forward_flops_per_token(model, context) * tokens_per_s / (peak * 1e12)
