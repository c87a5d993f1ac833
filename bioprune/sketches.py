"""Per-sample gradient sketches of linear weights from batched forward and backward passes.

Per-sample gradients come from hooked factors (bioprune.persample), never a per-sample backward.
Estimators:
- diag_fisher: s(z) = sum_j g_j^2 / (F_j + damping), F the diagonal empirical Fisher on D_sub;
- projected: Kronecker random projection g~ = vec(P_out G P_in^T), applied to the two factors
  (LoGra-style) so the per-sample gradient is never materialised for the sketch.
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

import logging
import shutil
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .backbones import check_vocab
from .batching import (REDUCTIONS, coverage_masks_by_id, mask_by_id, pad_batch, per_sample_ce,
                       reconstruction_targets)
from .attention import use_sdpa
from .dataflow import Prefetcher, check_max_tokens, cut_by_tokens
from .errors import BiopruneError, NumericalError
from .h5io import atomic_h5, open_h5
from .hashing import in_subset
from .models import load_model, model_checksum, pick_device
from .persample import GradCapture, KroneckerProjector, per_sample_grads, resolve_params  # noqa: F401 (re-exported)
from .shards import iter_shard
from . import sketch_store as S

log = logging.getLogger(__name__)
LOSSES = ("mlm", "mlm_coverage", "reconstruction", "reconstruction_padded")
ESTIMATORS = ("diag_fisher", "projected")
NORMALIZE = ("none", "rayleigh")


@dataclass
class InfluenceConfig:
    """Settings of the influence stage (config section `influence`, plus D_sub from `reference`).

    damping: absolute lambda of diag_fisher (paper 1e-8); relative_damping: lambda of projected as a
    multiple of the mean eigenvalue of the k x k sketch Fisher (0 = use `damping` absolute instead);
    normalize "rayleigh": score / g^T g (magnitude-free). paper_exact: the loss comes from
    bioprune.paper.paper_batch_losses (the released code's loss) instead of `loss`/`reduction`.
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
            from .paper import paper_batch_losses
        except ImportError as e:
            raise BiopruneError(f"config key influence.paper_exact: bioprune.paper is not available ({e})") from None
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


def _shard_batches(seqs: list[str], batch_size: int, max_tokens: int | None = None):
    """Batches of indices grouped by length (less padding), in a fixed order: `batch_size` sequences,
    or with `max_tokens` as many as fit rows x longest row (BOS/EOS included) <= max_tokens."""
    yield from _length_batches(np.array([len(s) for s in seqs]), batch_size, max_tokens)


def _length_batches(lengths: np.ndarray, batch_size: int, max_tokens: int | None = None):
    """_shard_batches from the sequence lengths alone (a shard's `length` dataset)."""
    order = np.argsort(lengths, kind="stable")
    if max_tokens:
        check_max_tokens(lengths, max_tokens, "influence.max_tokens")
        yield from cut_by_tokens(order, lengths, max_tokens)
        return
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
        ids, seqs = [], []  # D_sub of this shard, read block by block (not the whole shard)
        for b_ids, b_seqs in iter_shard(path, batch=65536):
            check_vocab(model, b_ids, b_seqs, path)
            keep = [k for k, i in enumerate(b_ids) if in_subset(i, cfg.subset_fraction, cfg.subset_seed)]
            ids += [b_ids[k] for k in keep]
            seqs += [b_seqs[k] for k in keep]
        for idx in _shard_batches(seqs, cfg.batch_size, cfg.max_tokens):
            b_ids = [ids[k] for k in idx]
            _, grad_of, _ = averaged_grads(model, capture, b_ids, [seqs[k] for k in idx], molecule, cfg,
                                           device, "curvature")
            sq = torch.zeros(len(idx), device=device)
            for n in names:
                g = grad_of(n)
                g2 = g * g
                acc[n] += g2.sum(0)
                sq += g2.flatten(1).sum(1)
            _check_grads(sq, b_ids, "curvature")
            m += len(idx)
        log.info("curvature: %s done, %d D_sub samples so far (%.1fs)", path, m, time.time() - t0)
    capture.close()
    if m == 0:
        raise BiopruneError("curvature: D_sub is empty; raise config key reference.subset_fraction")
    with atomic_h5(out_path, "curvature", estimator="diag_fisher", n_samples=m, params=names,
                   model_sha256=model_checksum(model), **scoring_attrs(cfg)) as f:
        for n in names:
            f.create_dataset(n, data=(acc[n] / m).cpu().numpy())
    return {"n_samples": m}


def _load_for_scoring(model_path: str, shard_path: str, device: torch.device):
    from .shards import shard_molecule

    molecule = shard_molecule(shard_path)
    model, _ = load_model(model_path, molecule)
    use_sdpa(model).to(device).eval()  # eval: no dropout, as the official code
    for p in model.parameters():
        p.requires_grad_(False)  # per-sample gradients come from the hooks, not from .grad
    return model, molecule


def _inverse_curvature(path: str, names: list[str], cfg: InfluenceConfig, sha: str, device) -> dict:
    """1 / (F + damping) per weight, after checking the curvature was fitted for this model and loss."""
    with open_h5(path, "curvature", names) as f:
        want = dict(scoring_attrs(cfg), model_sha256=sha)
        for key, value in want.items():
            if key in f.attrs and f.attrs[key] != value:
                raise BiopruneError(f"{path}: curvature fitted with {key}={f.attrs[key]!r}, this sketch uses "
                                    f"{value!r} (config key influence/reference); re-run the curvature stage")
        return {p: 1.0 / (torch.from_numpy(f[p][()]).to(device) + cfg.damping) for p in names}


def sketch_shard(shard_path: str, model_path: str, out_path: str, cfg: InfluenceConfig,
                 curvature_path: str | None = None) -> dict:
    """Score (diag_fisher) or sketch (projected) every sequence of one shard into an HDF5 file.

    Datasets: id, length, loss, grad_sqnorm (g^T g of the exact averaged gradient), in_subset, and
    score (diag_fisher, unnormalised: `normalize` is applied by scores.merge_scores) or sketch (projected).
    Streams: the shard's sequences are read chunk by chunk (length-sorted batches, as a whole-shard
    pass), each finished chunk is saved atomically in `.NAME.chunks/` next to the output, and a job
    killed half-way resumes from its finished chunks (same model, shard and settings, else it
    starts over); the output is assembled from the chunks and the folder removed.
    """
    from .h5io import sha256_file

    device = pick_device(cfg.device)
    model, molecule = _load_for_scoring(model_path, shard_path, device)
    names = resolve_params(model, cfg.params)
    sha = model_checksum(model)
    with open_h5(shard_path, S.shard_kind(shard_path), ["id", "sequence", "length"]) as f:
        lengths = f["length"][()]
        origin = f"{f.attrs.get('shard_index', 0)}-of-{f.attrs.get('n_shards', 0)}:{f.attrs.get('source_sha256', '')}"
    n = len(lengths)
    for b_ids, b_seqs in iter_shard(shard_path, batch=65536):  # before any chunk (a no-op for ESM models)
        check_vocab(model, b_ids, b_seqs, shard_path)
    inv = None
    projector = None
    if cfg.estimator == "diag_fisher":
        if curvature_path is None:
            raise BiopruneError("influence.estimator diag_fisher needs the curvature file")
        inv = _inverse_curvature(curvature_path, names, cfg, sha, device)
    else:
        params = dict(model.named_parameters())
        projector = KroneckerProjector({p: tuple(params[p].shape) for p in names}, cfg.sketch_dim, cfg.seed, device)
    attrs = dict(estimator=cfg.estimator, params=names, normalize=cfg.normalize,
                 damping=cfg.damping if inv is not None else float("nan"),
                 relative_damping=cfg.relative_damping, molecule=molecule, model_sha256=sha,
                 config=str(asdict(cfg)), projector=projector.backend if projector else "none", source_shard=origin,
                 **scoring_attrs(cfg))
    chunks = S.chunks(list(_length_batches(lengths, cfg.batch_size, cfg.max_tokens)))
    work = S.chunk_dir(out_path, {**attrs, "shard_sha256": sha256_file(shard_path),
                                 "curvature_sha256": sha256_file(curvature_path) if curvature_path else ""})
    capture = GradCapture(model, names)
    t0 = time.time()
    done = resumed = 0
    for c, batches in enumerate(chunks):
        path = work / f"{c:06d}.h5"
        if path.exists():
            resumed += sum(len(b) for b in batches)
            continue
        _sketch_chunk(shard_path, batches, path, model, capture, molecule, cfg, device, names, inv, projector)
        done += sum(len(b) for b in batches)
        log.info("sketch %s: chunk %d/%d, %d sequences (%.1f seq/s)", shard_path, c + 1, len(chunks), done,
                 done / max(time.time() - t0, 1e-9))
    capture.close()
    if resumed:
        log.info("sketch %s: resumed, %d of %d sequences from finished chunks", shard_path, resumed, n)
    S.assemble(shard_path, work, len(chunks), out_path, attrs, (cfg.subset_fraction, cfg.subset_seed), n,
               projector.dim if projector else None)
    shutil.rmtree(work)
    rate = done / max(time.time() - t0, 1e-9)
    log.info("sketch %s: %d sequences in %.1fs (%.1f seq/s)", shard_path, n, time.time() - t0, rate)
    return {"n": n, "seq_per_s": rate, "resumed": resumed}


def _sketch_chunk(shard_path, batches, out, model, capture, molecule, cfg, device, names, inv, projector) -> None:
    """Score one chunk of batches and save (rows, loss, grad_sqnorm, score | sketch) atomically."""
    rows = np.sort(np.concatenate(batches))
    with open_h5(shard_path, S.shard_kind(shard_path), ["id", "sequence"]) as f:
        ids_c = f["id"].asstr()[rows].tolist()
        seqs_c = f["sequence"].asstr()[rows].tolist()
    pos = {int(r): k for k, r in enumerate(rows)}
    m = len(rows)
    loss, sqnorm = np.zeros(m), np.zeros(m)
    score = np.zeros(m) if inv is not None else None
    sketch = np.zeros((m, projector.dim), dtype=np.float32) if projector is not None else None

    def prepare(idx):  # host work (padding, per-id masks) done a few batches ahead in a thread
        local = np.array([pos[int(r)] for r in idx])
        b_ids, b_seqs = [ids_c[k] for k in local], [seqs_c[k] for k in local]
        return local, b_ids, b_seqs, None if cfg.paper_exact else scoring_inputs(b_ids, b_seqs, molecule, cfg)

    for local, b_ids, b_seqs, masked in Prefetcher(iter(batches), prepare, depth=4):
        losses, grad_of, sk = averaged_grads(model, capture, b_ids, b_seqs, molecule, cfg,
                                             device, "sketch", projector, masked)
        sq = torch.zeros(len(local), device=device, dtype=torch.float64)
        sc = torch.zeros(len(local), device=device, dtype=torch.float64)
        for p in names:
            g = grad_of(p)
            g2 = (g * g).flatten(1)
            sq += g2.sum(1).double()
            if inv is not None:
                sc += (g2 * inv[p].flatten()).sum(1).double()
        _check_grads(sq, b_ids, "sketch")
        loss[local] = losses.double().cpu().numpy()
        sqnorm[local] = sq.cpu().numpy()
        if score is not None:
            score[local] = sc.cpu().numpy()
        if sketch is not None:
            sketch[local] = sk.cpu().numpy()
    with atomic_h5(out, "sketch_chunk") as g:
        g.create_dataset("rows", data=rows)
        g.create_dataset("loss", data=loss)
        g.create_dataset("grad_sqnorm", data=sqnorm)
        if score is not None:
            g.create_dataset("score", data=score)
        if sketch is not None:
            g.create_dataset("sketch", data=sketch)
