"""MFU inputs (model FLOPs per token, GPU peak table) and the gpu_mem_mb resource estimate."""
from __future__ import annotations

import pytest

from bioprune.config import load_config
from bioprune.report.flops import forward_flops_per_token, matmul_weights, mfu, peak_tflops
from bioprune.training.gpumem import esm2_params, gpu_mem_mb, training_mb
from bioprune.models import build_model, get_alphabet


def test_peak_table_matches_cuda_names():
    assert peak_tflops("NVIDIA H100 80GB HBM3") == 989.4
    assert peak_tflops("NVIDIA H100 PCIe") == 756.5
    assert peak_tflops("NVIDIA H200") == 989.4
    assert peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_tflops("NVIDIA A10") == 125.0
    assert peak_tflops("cpu (2 threads)") is None


def test_model_flops_per_token_from_the_architecture():
    m = build_model("protein", 12, 480, 20, seed=0)  # the ESM-2 35M shape
    n = sum(p.numel() for p in m.parameters())
    assert 0.9 * n < matmul_weights(m) < n  # embeddings are tied to the LM head; norms and biases excluded
    f = forward_flops_per_token(m, 514)
    assert f == pytest.approx(2 * matmul_weights(m) + 4 * 12 * 514 * 480)
    assert mfu("train", m, 514, 1e6, 989.4) == pytest.approx(3 * f * 1e6 / 989.4e12)
    assert mfu("train", m, 514, 1e6, None) is None
    assert esm2_params(12, 480) == pytest.approx(n, rel=1e-3)


@pytest.mark.parametrize("molecule,layers,embed_dim,heads", [("protein", 2, 32, 4), ("rna", 3, 16, 2)])
def test_matmul_weights_equal_the_closed_form_of_an_esm2_layer_stack(molecule, layers, embed_dim, heads):
    """Each ESM-2 layer multiplies by q, k, v, out (4 d^2) and fc1, fc2 (2 x 4 d^2 = 8 d^2); the LM head by its
    dense d x d and by the tied V x d embedding (the output projection, not a Linear); the contact head's
    regression is not part of the forward pass FLOPs. So 12 L d^2 + d^2 + V d, V the alphabet size."""
    m = build_model(molecule, layers, embed_dim, heads, seed=0)
    v = len(get_alphabet(molecule))
    d = embed_dim
    assert matmul_weights(m) == 12 * layers * d * d + d * d + v * d
    assert forward_flops_per_token(m, 50) == 2 * (12 * layers * d * d + d * d + v * d) + 4 * layers * 50 * d


def test_mfu_counts_the_forward_passes_of_each_mode():
    """Model FLOPs per token of each bench mode in forwards: a training step = forward + backward (3);
    sketch_all_linear = forward + the input-gradient backward (2; weight gradients come from the hooked
    factors); sketch_paper and the per-sample baseline back-propagate only through the LM head (1)."""
    m = build_model("rna", 2, 32, 4, seed=0)
    f = forward_flops_per_token(m, 100)
    forwards = {"train": 3, "train_compile": 3, "train_stock": 3, "sketch_all_linear": 2, "sketch_paper": 1,
                "per_sample_baseline": 1}
    for mode, k in forwards.items():
        assert mfu(mode, m, 100, 5e4, 2.0) == pytest.approx(k * f * 5e4 / 2e12), mode


def test_gpu_mem_estimate_grows_with_the_batch_and_shrinks_per_rank():
    c = load_config()
    for stage in ("reference", "pretrain", "curvature", "sketch"):
        assert gpu_mem_mb(c, stage) > 1000
    small = gpu_mem_mb(c, "pretrain")
    c["pretrain"]["max_tokens"] = 100_000
    big = gpu_mem_mb(c, "pretrain")
    c["pretrain"]["gpus"] = 4
    assert small < gpu_mem_mb(c, "pretrain") < big
    assert training_mb(12, 480, 32 * 514) < training_mb(12, 480, 64 * 514)
