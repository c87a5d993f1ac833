"""Per-sample gradient sketches of linear weights from one batched forward and backward pass.

For a linear layer y = x W^T, a sample's weight gradient is sum_t gy_t x_t^T (output gradient
times input activation over its tokens). Forward hooks keep x, tensor hooks keep gy; no
per-sample backward is ever run. Estimators:
- diag_fisher: s(z) = sum_j g_j^2 / (F_j + damping), F the diagonal empirical Fisher on D_sub;
- projected: Kronecker random projection g~ = vec(P_out G P_in^T), applied to the two factors
  (LoGra-style) so the per-sample gradient is never materialised.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .batching import mask_by_id, pad_batch, per_sample_ce, reconstruction_targets
from .errors import BiopruneError, NumericalError
from .h5io import atomic_h5, open_h5, read_str, write_str
from .hashing import in_subset, int_hash
from .models import load_model, model_checksum, pick_device
from .shards import read_shard

log = logging.getLogger(__name__)
LOSSES = ("mlm", "reconstruction", "reconstruction_padded")
ESTIMATORS = ("diag_fisher", "projected")


@dataclass
class InfluenceConfig:
    """Settings of the influence stage (config section `influence`, plus D_sub from `reference`)."""

    estimator: str = "diag_fisher"
    params: list = field(default_factory=lambda: ["lm_head.dense.weight"])
    loss: str = "mlm"
    damping: float = 1e-8
    sketch_dim: int = 1024
    batch_size: int = 32
    seed: int = 0
    subset_fraction: float = 0.1
    pad_to: int = 0
    device: str = "auto"


def resolve_params(model: torch.nn.Module, params) -> list[str]:
    """Names of the weight tensors to differentiate; `all_linear` = every nn.Linear the LM loss reaches."""
    modules = dict(model.named_modules())
    if params == "all_linear" or params == ["all_linear"]:
        names = [f"{n}.weight" for n, m in modules.items()
                 if isinstance(m, torch.nn.Linear) and not n.startswith("contact_head")]
    else:
        names = list(params)
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


def batch_losses(model, ids: list[str], seqs: list[str], molecule: str, cfg: InfluenceConfig,
                 device: torch.device) -> torch.Tensor:
    """Per-sample scoring losses (B,) for one batch, with the graph kept for backward."""
    toks = pad_batch(seqs, molecule, pad_to=cfg.pad_to or None)
    if cfg.loss == "mlm":
        inputs, targets = mask_by_id(toks, ids, molecule, cfg.seed)
    elif cfg.loss in ("reconstruction", "reconstruction_padded"):
        inputs, targets = toks, reconstruction_targets(toks, molecule, count_pad=cfg.loss == "reconstruction_padded")
    else:
        raise BiopruneError(f"config key influence.loss: {cfg.loss!r} is not one of {LOSSES}")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    with autocast:
        logits = model(inputs.to(device))["logits"]
    return per_sample_ce(logits, targets.to(device))


def per_sample_factors(model, capture: GradCapture, ids, seqs, molecule, cfg, device):
    """Run one batched forward/backward; return per-sample losses and {param: (x, gy)} factors."""
    losses = batch_losses(model, ids, seqs, molecule, cfg, device)
    bad = ~torch.isfinite(losses)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise NumericalError(f"influence: non-finite loss for sequence {ids[i]} (stage sketch)")
    losses.sum().backward()
    factors = {p: (capture.x[p].float(), capture.gy[p].float()) for p in capture.modules.values()}
    return losses.detach(), factors


def per_sample_grads(x: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    """Materialise per-sample weight gradients (B, out, in) from the two factors."""
    return torch.einsum("bto,bti->boi", gy, x)


class KroneckerProjector:
    """Seeded Gaussian projections P_out (k_o x out), P_in (k_i x in) per weight; CPU or CUDA backend.

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
            p_out = torch.randn(ko, o, generator=g) / math.sqrt(ko)
            p_in = torch.randn(ki, i, generator=g) / math.sqrt(ki)
            self.mats[name] = (p_out.to(device), p_in.to(device))
        self.dim = sum(a.shape[0] * b.shape[0] for a, b in self.mats.values())

    def project(self, factors: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """(B, dim) sketches for a batch of per-sample factors."""
        parts = []
        for name, (p_out, p_in) in self.mats.items():
            x, gy = factors[name]
            parts.append(torch.einsum("bto,bti->boi", gy @ p_out.T, x @ p_in.T).flatten(1))
        return torch.cat(parts, 1)


def _shard_batches(seqs: list[str], batch_size: int):
    """Batches of indices grouped by length (less padding), in a fixed order."""
    order = np.argsort([len(s) for s in seqs], kind="stable")
    for i in range(0, len(order), batch_size):
        yield order[i : i + batch_size]


def _check_grads(sq: torch.Tensor, ids: list[str], stage: str) -> None:
    bad = ~torch.isfinite(sq)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise NumericalError(f"influence: non-finite gradient for sequence {ids[i]} (stage {stage})")


def fit_diag_fisher(shard_paths: list[str], model_path: str, out_path: str, cfg: InfluenceConfig) -> dict:
    """Curvature: the diagonal empirical Fisher F_j = mean over D_sub of g_j^2, stored per weight."""
    device = pick_device(cfg.device)
    model, molecule = _load_for_scoring(model_path, shard_paths[0], device)
    names = resolve_params(model, cfg.params)
    capture = GradCapture(model, names)
    acc = {n: torch.zeros_like(dict(model.named_parameters())[n], dtype=torch.float32) for n in names}
    m = 0
    t0 = time.time()
    for path in shard_paths:
        ids, seqs, _ = read_shard(path)
        keep = [k for k, i in enumerate(ids) if in_subset(i, cfg.subset_fraction, cfg.seed)]
        ids = [ids[k] for k in keep]
        seqs = [seqs[k] for k in keep]
        for idx in _shard_batches(seqs, cfg.batch_size):
            b_ids = [ids[k] for k in idx]
            _, factors = per_sample_factors(model, capture, b_ids, [seqs[k] for k in idx], molecule, cfg, device)
            sq = torch.zeros(len(idx), device=device)
            for n in names:
                g = per_sample_grads(*factors[n])
                acc[n] += (g * g).sum(0)
                sq += (g * g).flatten(1).sum(1)
            _check_grads(sq, b_ids, "curvature")
            m += len(idx)
        log.info("curvature: %s done, %d D_sub samples so far (%.1fs)", path, m, time.time() - t0)
    capture.close()
    if m == 0:
        raise BiopruneError("curvature: D_sub is empty; raise config key reference.subset_fraction")
    with atomic_h5(out_path, "curvature", estimator="diag_fisher", n_samples=m, params=names,
                   seed=cfg.seed, subset_fraction=cfg.subset_fraction, loss=cfg.loss,
                   model_sha256=model_checksum(model)) as f:
        for n in names:
            f.create_dataset(n, data=(acc[n] / m).cpu().numpy())
    return {"n_samples": m}


def _load_for_scoring(model_path: str, shard_path: str, device: torch.device):
    from .shards import shard_molecule

    molecule = shard_molecule(shard_path)
    model, _ = load_model(model_path, molecule)
    model.to(device).eval()  # eval: no dropout, as the official code
    for p in model.parameters():
        p.requires_grad_(False)  # per-sample gradients come from the hooks, not from .grad
    return model, molecule


def sketch_shard(shard_path: str, model_path: str, out_path: str, cfg: InfluenceConfig,
                 curvature_path: str | None = None) -> dict:
    """Score (diag_fisher) or sketch (projected) every sequence of one shard into an HDF5 file."""
    device = pick_device(cfg.device)
    model, molecule = _load_for_scoring(model_path, shard_path, device)
    names = resolve_params(model, cfg.params)
    ids, seqs, _ = read_shard(shard_path)
    n = len(ids)
    inv = None
    projector = None
    if cfg.estimator == "diag_fisher":
        if curvature_path is None:
            raise BiopruneError("influence.estimator diag_fisher needs the curvature file")
        with open_h5(curvature_path, "curvature", names) as f:
            inv = {p: 1.0 / (torch.from_numpy(f[p][()]).to(device) + cfg.damping) for p in names}
    elif cfg.estimator == "projected":
        params = dict(model.named_parameters())
        projector = KroneckerProjector({p: tuple(params[p].shape) for p in names}, cfg.sketch_dim, cfg.seed, device)
    else:
        raise BiopruneError(f"config key influence.estimator: {cfg.estimator!r} is not one of {ESTIMATORS}")
    capture = GradCapture(model, names)
    loss = np.zeros(n)
    sqnorm = np.zeros(n)
    score = np.zeros(n) if inv is not None else None
    sketch = np.zeros((n, projector.dim), dtype=np.float32) if projector is not None else None
    t0 = time.time()
    done = 0
    for idx in _shard_batches(seqs, cfg.batch_size):
        b_ids = [ids[k] for k in idx]
        losses, factors = per_sample_factors(model, capture, b_ids, [seqs[k] for k in idx], molecule, cfg, device)
        sq = torch.zeros(len(idx), device=device, dtype=torch.float64)
        sc = torch.zeros(len(idx), device=device, dtype=torch.float64)
        for p in names:
            g = per_sample_grads(*factors[p])
            g2 = (g * g).flatten(1)
            sq += g2.sum(1).double()
            if inv is not None:
                sc += (g2 * inv[p].flatten()).sum(1).double()
        _check_grads(sq, b_ids, "sketch")
        loss[idx] = losses.double().cpu().numpy()
        sqnorm[idx] = sq.cpu().numpy()
        if score is not None:
            score[idx] = sc.cpu().numpy()
        if sketch is not None:
            sketch[idx] = projector.project(factors).cpu().numpy()
        done += len(idx)
        if done % (cfg.batch_size * 50) < cfg.batch_size:
            log.info("sketch %s: %d/%d sequences (%.1f seq/s)", shard_path, done, n, done / (time.time() - t0))
    capture.close()
    in_sub = np.array([in_subset(i, cfg.subset_fraction, cfg.seed) for i in ids], dtype=bool)
    attrs = dict(estimator=cfg.estimator, params=names, loss=cfg.loss, seed=cfg.seed,
                 damping=cfg.damping if inv is not None else float("nan"), molecule=molecule,
                 model_sha256=model_checksum(model), config=str(asdict(cfg)),
                 projector=projector.backend if projector else "none")
    with atomic_h5(out_path, "sketches", **attrs) as f:
        write_str(f, "id", ids)
        f.create_dataset("length", data=np.array([len(s) for s in seqs], dtype=np.int32))
        f.create_dataset("loss", data=loss)
        f.create_dataset("grad_sqnorm", data=sqnorm)
        f.create_dataset("in_subset", data=in_sub)
        if score is not None:
            f.create_dataset("score", data=score)
        if sketch is not None:
            f.create_dataset("sketch", data=sketch)
    rate = n / max(time.time() - t0, 1e-9)
    log.info("sketch %s: %d sequences in %.1fs (%.1f seq/s)", shard_path, n, time.time() - t0, rate)
    return {"n": n, "seq_per_s": rate}
