"""The two stages that use per-sample gradients (bioprune.influence.gradients): the curvature fit (diagonal
empirical Fisher on D_sub, stored apart from the scores) and the per-shard sketches.

Per-sample gradients come from hooked factors (bioprune.influence.persample), never a per-sample backward.
Estimators:
- diag_fisher: s(z) = sum_j g_j^2 / (F_j + damping), F the diagonal empirical Fisher on D_sub;
- projected: Kronecker random projection g~ = vec(P_out G P_in^T), applied to the two factors
  (LoGra-style) so the per-sample gradient is never materialised for the sketch.
The scoring losses, seeds and D_sub are documented in bioprune.influence.gradients.
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict

import numpy as np
import torch

from bioprune.backbones import check_vocab
from bioprune.training.dataflow import Prefetcher
from bioprune.errors import BiopruneError
from bioprune.influence.gradients import (InfluenceConfig, averaged_grads, batch_losses, check_grads,  # noqa: F401 (re-exported)
                        length_batches, load_for_scoring, scoring_attrs, scoring_inputs, shard_batches)
from bioprune.h5io import atomic_h5, open_h5
from bioprune.hashing import in_subset
from bioprune.models import model_checksum, pick_device
from bioprune.influence.persample import GradCapture, KroneckerProjector, per_sample_grads, resolve_params  # noqa: F401 (re-exported)
from bioprune.ingest import iter_shard
from bioprune.influence import sketch_store as S
log = logging.getLogger(__name__)
def fit_diag_fisher(shard_paths: list[str], model_path: str, out_path: str, cfg: InfluenceConfig) -> dict:
    """Curvature: the diagonal empirical Fisher F_j = mean over D_sub of g_j^2, stored per weight."""
    device = pick_device(cfg.device)
    model, molecule = load_for_scoring(model_path, shard_paths[0], device)
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
        for idx in shard_batches(seqs, cfg.batch_size, cfg.max_tokens):
            b_ids = [ids[k] for k in idx]
            _, grad_of, _ = averaged_grads(model, capture, b_ids, [seqs[k] for k in idx], molecule, cfg,
                                           device, "curvature")
            sq = torch.zeros(len(idx), device=device)
            for n in names:
                g = grad_of(n)
                g2 = g * g
                acc[n] += g2.sum(0)
                sq += g2.flatten(1).sum(1)
            check_grads(sq, b_ids, "curvature")
            m += len(idx)
        log.info("curvature: %s done, %d D_sub samples so far (%.1fs)", path, m, time.time() - t0)
    capture.close()
    if m == 0:
        from bioprune.influence.reference import empty_dsub

        raise empty_dsub("curvature", shard_paths, cfg.subset_fraction, cfg.subset_seed)
    with atomic_h5(out_path, "curvature", estimator="diag_fisher", n_samples=m, params=names,
                   model_sha256=model_checksum(model), **scoring_attrs(cfg)) as f:
        for n in names:
            f.create_dataset(n, data=(acc[n] / m).cpu().numpy())
    return {"n_samples": m}


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
    from bioprune.h5io import sha256_file

    device = pick_device(cfg.device)
    model, molecule = load_for_scoring(model_path, shard_path, device)
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
    chunks = S.chunks(list(length_batches(lengths, cfg.batch_size, cfg.max_tokens)))
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
        check_grads(sq, b_ids, "sketch")
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
