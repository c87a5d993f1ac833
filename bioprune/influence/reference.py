"""Reference model: a proxy trained from scratch on D_sub, or a user checkpoint fine-tuned one epoch on D_sub."""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from bioprune.backbones import check_vocab
from bioprune.errors import BiopruneError
from bioprune.h5io import atomic_h5
from bioprune.hashing import in_subset
from bioprune.models import load_model, save_checkpoint
from bioprune.ingest import iter_shard, shard_molecule
from bioprune.training.loop import TrainConfig, train_mlm

log = logging.getLogger(__name__)


def dsub_sequences(shard_paths: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(ids, sequences) of D_sub across all shards."""
    ids, seqs = [], []
    for p in shard_paths:
        for i, s in iter_shard(p, batch=65536):  # one block of a shard at a time, not the whole shard
            for a, b in zip(i, s):
                if in_subset(a, fraction, seed):
                    ids.append(a)
                    seqs.append(b)
    return ids, seqs


def empty_dsub(stage: str, shard_paths: list[str], fraction: float, seed: int) -> BiopruneError:
    """The error for an empty D_sub: an empty pool (after ingest and the leakage gate), or the
    reference.subset_fraction that would draw at least one sequence of this pool."""
    from bioprune.hashing import unit_hash

    n, least = 0, 1.0
    for p in shard_paths:
        for i, _ in iter_shard(p, batch=65536):
            n += len(i)
            least = min([least, *(unit_hash(a, "dsub", seed) for a in i)])
    if n == 0:
        return BiopruneError(f"{stage}: the pool is empty after ingest and the leakage gate "
                             f"({', '.join(shard_paths)}); see shards/ingest.json and leakage/report.csv")
    return BiopruneError(
        f"{stage}: D_sub is empty: reference.subset_fraction = {fraction:g} draws none of the {n} pool sequences "
        f"(D_sub drawn with seed {seed}); raise reference.subset_fraction to at least {least + 1e-9:.4g}, or add "
        "sequences")


@dataclass
class ReferenceConfig:
    """The reference section for one reference model (reference_params), typed once in bioprune.stages:
    D_sub = `subset_fraction` of the pool drawn with train.seed; the proxy's shape and training (`train`,
    budget epochs); or a `checkpoint` to fine-tune one epoch (`finetune`) or use as is."""

    subset_fraction: float
    train: TrainConfig
    checkpoint: str | None = None
    finetune: bool = True

    @classmethod
    def from_params(cls, params: dict) -> "ReferenceConfig":
        keys = ("layers", "embed_dim", "heads", "lr", "batch_size", "epochs", "seed", "device")
        train = TrainConfig(**{k: params[k] for k in keys if k in params}, budget="epochs")
        return cls(params["subset_fraction"], train, params.get("checkpoint"), bool(params.get("finetune", True)))


def build_reference(shard_paths: list[str], out: str, curves: str, rc: ReferenceConfig) -> dict:
    """Train (or fine-tune) the reference model on D_sub and write `out` and its loss curves."""
    molecule = shard_molecule(shard_paths[0])
    seed = rc.train.seed
    ids, seqs = dsub_sequences(shard_paths, rc.subset_fraction, seed)
    if not seqs:
        raise empty_dsub("reference", shard_paths, rc.subset_fraction, seed)
    log.info("reference: D_sub holds %d sequences (fraction %.3g, seed %d)", len(seqs), rc.subset_fraction, seed)
    cfg = replace(rc.train)  # fine-tuning below changes epochs and lr of this run's copy
    ckpt = rc.checkpoint
    meta = {"role": "reference", "dsub_size": len(seqs), "subset_fraction": rc.subset_fraction}
    if ckpt:
        model, _ = load_model(ckpt, molecule)  # checks the alphabet matches the corpus
        check_vocab(model, ids, seqs, "reference (D_sub)")
        if not rc.finetune:
            save_checkpoint(out, model, molecule, meta={**meta, "source": str(ckpt), "finetuned": False})
            with atomic_h5(curves, "curves", total_steps=0, n_sequences=len(seqs), budget="none") as f:
                for k in ("step", "loss", "lr", "val_step", "val_loss"):  # no training: empty curves
                    f.create_dataset(k, data=np.zeros(0, dtype=np.int64 if "step" in k else np.float64))
            return {"dsub": len(seqs), "finetuned": False}
        cfg.epochs = 1
        cfg.lr = min(cfg.lr, 1e-4)
        meta.update(source=str(ckpt), finetuned=True)
        res = train_mlm(seqs, molecule, cfg, out, curves, init_checkpoint=ckpt, meta=meta)
    else:
        res = train_mlm(seqs, molecule, cfg, out, curves, meta=meta)
    check_against_unigram(seqs, curves)
    return res


def unigram_loss(seqs: list[str]) -> float:
    """Cross-entropy (nats per residue) of predicting every masked residue by D_sub's residue frequencies:
    the loss a model that ignores context reaches."""
    from collections import Counter

    counts = Counter()
    for s in seqs:
        counts.update(s)
    p = np.array(list(counts.values()), dtype=np.float64)
    p /= p.sum()
    return float(-(p * np.log(p)).sum())


def check_against_unigram(seqs: list[str], curves: str) -> None:
    """Record the final training loss (mean of the last tenth of the steps) beside the unigram loss in the
    curves' attrs, and log a WARNING when the reference model is no better than the unigram model:
    its scores then rank sequences by little more than residue composition."""
    import h5py

    with h5py.File(curves, "a", locking=False) as f:
        loss = np.asarray(f["loss"][()], dtype=np.float64) if "loss" in f else np.zeros(0)
        if not len(loss):
            return
        final = float(np.mean(loss[-max(1, len(loss) // 10):]))
        uni = unigram_loss(seqs)
        f.attrs["final_loss"], f.attrs["unigram_loss"] = final, uni
    if final >= uni:
        log.warning("reference model is no better than a unigram model: final training loss %.3f >= %.3f "
                    "(residue frequencies of D_sub alone); its influence scores carry little beyond composition. "
                    "Train longer (reference.epochs), use a larger D_sub (reference.subset_fraction) or a "
                    "pretrained reference.checkpoint", final, uni)
    else:
        log.info("reference model: final training loss %.3f, unigram model %.3f", final, uni)
