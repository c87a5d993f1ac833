"""Per-sample gradients of linear weights from hooks, and their seeded Kronecker random projection.

For a linear layer y = x W^T, a sample's weight gradient is sum_t gy_t x_t^T (output gradient
times input activation over its tokens). Forward hooks keep x, tensor hooks keep gy; no
per-sample backward is ever run.
"""
from __future__ import annotations

import math

import torch

from bioprune.errors import BiopruneError
from bioprune.hashing import int_hash


def resolve_params(model: torch.nn.Module, params) -> list[str]:
    """Names of the weight tensors to differentiate; `all_linear` = every nn.Linear the LM loss reaches."""
    modules = dict(model.named_modules())
    if params == "all_linear" or params == ["all_linear"]:
        # not the contact head (the LM loss never reaches it) nor decoders tied to the input embedding
        tied = {id(m.weight) for m in modules.values() if isinstance(m, torch.nn.Embedding)}
        names = [f"{n}.weight" for n, m in modules.items() if isinstance(m, torch.nn.Linear)
                 and "contact_head" not in n and id(m.weight) not in tied]
    else:
        aliases = getattr(model, "param_aliases", {})  # backbones: the architecture's lm_head.dense
        names = [aliases.get(p, p) for p in params]
    for name in names:
        mod_name, _, leaf = name.rpartition(".")
        if leaf != "weight" or not isinstance(modules.get(mod_name), torch.nn.Linear):
            linear = [f"{n}.weight" for n, m in modules.items() if isinstance(m, torch.nn.Linear)][:5]
            raise BiopruneError(
                f"config key influence.params: {name!r} is not the weight of an nn.Linear in this model "
                f"(e.g. {', '.join(linear)}, or the word all_linear)"
            )
    return names


class GradCapture:
    """Hooks that record input activations and output gradients of chosen linear layers, batch-first."""

    def __init__(self, model: torch.nn.Module, param_names: list[str]):
        self.modules = {n.rpartition(".")[0]: n for n in param_names}
        self.x: dict[str, torch.Tensor] = {}
        self.gy: dict[str, torch.Tensor] = {}
        self.handles = []
        for mod in model.modules():
            # ESM-1b attention (no rotary embedding) may call F.multi_head_attention_forward with the
            # q/k/v weights directly, bypassing the Linear modules and their hooks: keep the module path
            if hasattr(mod, "enable_torch_version"):
                mod.enable_torch_version = False
        for mod_name, mod in model.named_modules():
            if mod_name in self.modules:
                # ESM transformer layers run time-first (T, B, E); the LM head runs batch-first
                time_first = mod_name.startswith("layers.")
                self.handles.append(mod.register_forward_hook(self._hook(self.modules[mod_name], time_first)))

    def _hook(self, pname: str, time_first: bool):
        def fwd(module, inputs, output):
            x = inputs[0].detach()
            self.x[pname] = x.transpose(0, 1) if time_first else x
            if not output.requires_grad:
                # weights are frozen: the graph starts at the first hooked output, so backward never
                # runs through layers below it and never forms batch weight gradients
                output = output.detach().requires_grad_(True)

            def bwd(g):
                self.gy[pname] = (g.transpose(0, 1) if time_first else g).detach()

            output.register_hook(bwd)
            # hand the model a copy: ESM scales q in place (q *= scaling), which a leaf or a hooked
            # tensor must not undergo
            return output.clone()

        return fwd

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def per_sample_grads(x: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    """Materialise per-sample weight gradients (B, out, in) from the two factors."""
    return torch.einsum("bto,bti->boi", gy, x)


def _orthonormal_rows(k: int, n: int, gen: torch.Generator) -> torch.Tensor:
    """A seeded random k x n matrix with orthogonal rows of norm sqrt(n/k), so E[P^T P] = I."""
    q, r = torch.linalg.qr(torch.randn(n, k, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))  # Haar-distributed: fix the sign ambiguity of QR
    return (q.T * math.sqrt(n / k)).float()


class KroneckerProjector:
    """Seeded random projections P_out (k_o x out), P_in (k_i x in) per weight; CPU or CUDA backend.

    Rows are orthogonal (a Haar-random subspace, scaled so squared norms are preserved in
    expectation); at k_o = out and k_i = in the projection is orthogonal, so the projected score
    with any damping equals the exact g^T (F + lambda I)^-1 g.

    The sketch of a sample is vec(P_out G P_in^T) = sum_t (P_out gy_t)(P_in x_t)^T, computed from the
    factors, so its cost is linear in tokens and never O(out * in) per sample.
    """

    def __init__(self, shapes: dict[str, tuple[int, int]], sketch_dim: int, seed: int, device: torch.device):
        self.device = device
        self.backend = f"torch-{device.type}"
        per = max(1, sketch_dim // max(1, len(shapes)))
        self.mats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for name, (o, i) in shapes.items():
            ko = min(o, max(1, math.isqrt(per)))
            ki = min(i, max(1, per // ko))
            g = torch.Generator().manual_seed(int_hash(name, "projection", seed))
            self.mats[name] = (_orthonormal_rows(ko, o, g).to(device), _orthonormal_rows(ki, i, g).to(device))
        self.dim = sum(a.shape[0] * b.shape[0] for a, b in self.mats.values())

    def project(self, factors: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """(B, dim) sketches for a batch of per-sample factors."""
        parts = []
        for name, (p_out, p_in) in self.mats.items():
            x, gy = factors[name]
            parts.append(torch.einsum("bto,bti->boi", gy @ p_out.T, x @ p_in.T).flatten(1))
        return torch.cat(parts, 1)
