"""What a per-sample gradient is for scoring: the influence settings (InfluenceConfig), the scoring
loss per sample and its mask draws, the batched per-sample gradient averaged over draws, length
batches, and the model loaded for scoring. Used by the curvature fit and the sketches (sketches.py).

Scoring losses (`loss`, per sample, `reduction` "mean" or "sum" over the scored tokens):
- mlm: one 15% mask seeded by (id, `seed`); mlm_coverage: `mask_draws` = K complementary masks that
  mask every residue exactly once (batching.coverage_mask_by_id); the per-sample gradient is the mean
  of the K per-draw gradients over the draws that mask something (min(K, residues) of them), and the
  reported loss is the same mean; reconstruction: unmasked input = target on every non-pad token
  (BOS/EOS included); reconstruction_padded: pads counted too (the released code's loss).
Per-sample gradients of mlm_coverage are summed over draws in memory: B x (weights' size) floats.
Seeds: `seed` (influence.seed) drives only masks and projections; `subset_seed` (reference.seed)
and `subset_fraction` only D_sub membership.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from bioprune.training.attention import use_sdpa
from bioprune.training.batching import (REDUCTIONS, coverage_masks_by_id, mask_by_id, pad_batch, per_sample_ce,
                       reconstruction_targets)
from bioprune.training.dataflow import check_max_tokens, cut_by_tokens
from bioprune.errors import BiopruneError, NumericalError
from bioprune.models import load_model
from bioprune.influence.persample import GradCapture, KroneckerProjector, per_sample_grads

LOSSES = ("mlm", "mlm_coverage", "reconstruction", "reconstruction_padded")
ESTIMATORS = ("diag_fisher", "projected")
NORMALIZE = ("none", "rayleigh", "length_rank")


@dataclass
class InfluenceConfig:
    """Settings of the influence stage (config section `influence`, plus D_sub from `reference`).

    damping: absolute lambda of diag_fisher (paper 1e-8); relative_damping: lambda of projected as a
    multiple of the mean eigenvalue of the k x k sketch Fisher (0 = use `damping` absolute instead);
    normalize "rayleigh": score / g^T g (magnitude-free); "length_rank": the score's percentile within its
    length decile (scores.length_rank, applied by the merge). paper_exact: the loss comes from
    bioprune.influence.paper.paper_batch_losses (the released code's loss) instead of `loss`/`reduction`.
    """

    estimator: str = "diag_fisher"
    params: list = field(default_factory=lambda: ["lm_head.dense.weight"])
    loss: str = "mlm"
    reduction: str = "mean"
    normalize: str = "none"
    mask_draws: int = 7
    damping: float = 1e-8
    relative_damping: float = 0.1
    sketch_dim: int = 1024
    batch_size: int = 32
    max_tokens: int | None = None
    seed: int = 0
    subset_seed: int = 0
    subset_fraction: float = 0.1
    pad_to: int = 0
    paper_exact: bool = False
    device: str = "auto"

    def __post_init__(self) -> None:
        for key, allowed in (("estimator", ESTIMATORS), ("loss", LOSSES), ("reduction", REDUCTIONS),
                             ("normalize", NORMALIZE)):
            if getattr(self, key) not in allowed:
                raise BiopruneError(f"config key influence.{key}: {getattr(self, key)!r} is not one of {allowed}")
        if int(self.mask_draws) < 1:
            raise BiopruneError(f"config key influence.mask_draws: {self.mask_draws} must be >= 1")
        if self.damping < 0 or self.relative_damping < 0:
            raise BiopruneError("config keys influence.damping / influence.relative_damping must be >= 0")
        if not 0 < self.subset_fraction <= 1:
            raise BiopruneError(f"config key reference.subset_fraction: {self.subset_fraction} not in (0, 1]")

    def n_draws(self) -> int:
        """Forward/backward passes per batch: K for mlm_coverage, else 1."""
        return int(self.mask_draws) if self.loss == "mlm_coverage" and not self.paper_exact else 1


def scoring_attrs(cfg: InfluenceConfig) -> dict:
    """What defines the per-sample gradient and D_sub, stored in curvature and sketch files."""
    return dict(loss=cfg.loss, reduction=cfg.reduction, mask_draws=cfg.n_draws(), paper_exact=bool(cfg.paper_exact),
                influence_seed=cfg.seed, subset_seed=cfg.subset_seed, subset_fraction=cfg.subset_fraction)


def scoring_inputs(ids: list[str], seqs: list[str], molecule: str, cfg: InfluenceConfig):
    """[(inputs, targets)] of a batch, one pair per mask draw of the scoring loss."""
    toks = pad_batch(seqs, molecule, pad_to=cfg.pad_to or None)
    if cfg.loss == "mlm":
        return [mask_by_id(toks, ids, molecule, cfg.seed)]
    if cfg.loss == "mlm_coverage":
        return coverage_masks_by_id(toks, ids, molecule, cfg.seed, cfg.n_draws())
    if cfg.loss in ("reconstruction", "reconstruction_padded"):
        return [(toks, reconstruction_targets(toks, molecule, count_pad=cfg.loss == "reconstruction_padded"))]
    raise BiopruneError(f"config key influence.loss: {cfg.loss!r} is not one of {LOSSES}")


def batch_losses(model, ids: list[str], seqs: list[str], molecule: str, cfg: InfluenceConfig,
                 device: torch.device, draw: int = 0, masked=None) -> torch.Tensor:
    """Per-sample scoring losses (B,) of mask draw `draw` for one batch, with the graph kept for backward.

    `masked`: the batch's scoring_inputs, when the caller already built them (one build for K draws).
    """
    if cfg.paper_exact:
        try:
            from bioprune.influence.paper import paper_batch_losses
        except ImportError as e:
            raise BiopruneError(f"config key influence.paper_exact: bioprune.influence.paper is not available ({e})") from None
        return paper_batch_losses(model, ids, seqs, molecule, cfg, device)
    inputs, targets = (masked or scoring_inputs(ids, seqs, molecule, cfg))[draw]
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    with autocast:
        logits = model(inputs.to(device))["logits"]
    return per_sample_ce(logits, targets.to(device), cfg.reduction)


def per_sample_factors(model, capture: GradCapture, ids, seqs, molecule, cfg, device, draw: int = 0,
                       stage: str = "sketch", masked=None):
    """Run one batched forward/backward (mask draw `draw`); return per-sample losses and {param: (x, gy)}."""
    losses = batch_losses(model, ids, seqs, molecule, cfg, device, draw, masked)
    bad = ~torch.isfinite(losses)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise NumericalError(f"influence: non-finite loss for sequence {ids[i]} (stage {stage})")
    losses.sum().backward()
    factors = {p: (capture.x[p].float(), capture.gy[p].float()) for p in capture.modules.values()}
    return losses.detach(), factors


def averaged_grads(model, capture: GradCapture, ids, seqs, molecule, cfg: InfluenceConfig, device, stage: str,
                   projector: "KroneckerProjector | None" = None, masked=None):
    """Per-sample losses (B,), a function weight name -> per-sample gradients (B, out, in), and the
    sketches (B, k) or None, each averaged over the loss's mask draws (a sample over the draws that mask
    at least one of its residues). With one draw a weight's gradients are materialised only when asked."""
    k = cfg.n_draws()
    names = list(capture.modules.values())
    loss_sum, acc, sketch = None, {}, None
    if masked is None and not cfg.paper_exact:
        masked = scoring_inputs(ids, seqs, molecule, cfg)
    for draw in range(k):
        losses, factors = per_sample_factors(model, capture, ids, seqs, molecule, cfg, device, draw, stage, masked)
        if k == 1:
            sk = projector.project(factors) if projector is not None else None
            return losses, lambda p: per_sample_grads(*factors[p]), sk
        loss_sum = losses if loss_sum is None else loss_sum + losses
        for p in names:
            g = per_sample_grads(*factors[p])
            acc[p] = g if p not in acc else acc[p].add_(g)
        if projector is not None:  # the projection is linear in the gradient: averaging commutes
            sk = projector.project(factors)
            sketch = sk if sketch is None else sketch.add_(sk)
    # draw j of a row with m residues masks something iff j < m (batching.coverage_mask_by_id)
    active = torch.tensor([max(1, min(k, len(s))) for s in seqs], dtype=torch.float32, device=loss_sum.device)
    return (loss_sum / active, lambda p: acc[p] / active.view(-1, 1, 1),
            sketch / active.view(-1, 1) if sketch is not None else None)


def shard_batches(seqs: list[str], batch_size: int, max_tokens: int | None = None):
    """Batches of indices grouped by length (less padding), in a fixed order: `batch_size` sequences,
    or with `max_tokens` as many as fit rows x longest row (BOS/EOS included) <= max_tokens."""
    yield from length_batches(np.array([len(s) for s in seqs]), batch_size, max_tokens)


def length_batches(lengths: np.ndarray, batch_size: int, max_tokens: int | None = None):
    """shard_batches from the sequence lengths alone (a shard's `length` dataset)."""
    order = np.argsort(lengths, kind="stable")
    if max_tokens:
        check_max_tokens(lengths, max_tokens, "influence.max_tokens")
        yield from cut_by_tokens(order, lengths, max_tokens)
        return
    for i in range(0, len(order), batch_size):
        yield order[i : i + batch_size]


def check_grads(sq: torch.Tensor, ids: list[str], stage: str) -> None:
    bad = ~torch.isfinite(sq)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise NumericalError(f"influence: non-finite gradient for sequence {ids[i]} (stage {stage})")


def load_for_scoring(model_path: str, shard_path: str, device: torch.device):
    from bioprune.ingest import shard_molecule

    molecule = shard_molecule(shard_path)
    model, _ = load_model(model_path, molecule)
    use_sdpa(model).to(device).eval()  # eval: no dropout, as the official code
    for p in model.parameters():
        p.requires_grad_(False)  # per-sample gradients come from the hooks, not from .grad
    return model, molecule
