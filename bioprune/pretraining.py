"""Pretrain a model from scratch on one coreset (or the whole pool) with masked-LM; resumable."""
from __future__ import annotations

import json
import logging
import os
import tempfile

import numpy as np

from .errors import BiopruneError
from .selections import read_selection
from .shards import iter_shard, read_shard, shard_molecule
from .training import TrainConfig, train_mlm

log = logging.getLogger(__name__)


def load_sequences(shard_paths: list[str], ids: set[str] | None) -> tuple[list[str], list[str]]:
    """(ids, sequences) of the chosen ids (all when `ids` is None), in shard order."""
    out_ids, out_seqs = [], []
    for p in shard_paths:
        for i, s in iter_shard(p, batch=65536):  # one block of a shard at a time, not the whole shard
            for a, b in zip(i, s):
                if ids is None or a in ids:
                    out_ids.append(a)
                    out_seqs.append(b)
    return out_ids, out_seqs


def pretrain(shard_paths: list[str], holdout: str, out: str, curves: str, params: dict, seed: int,
             selection: str | None = None, label: str = "") -> dict:
    """Train one model: `selection` is a selection HDF5, or None for the full pool.

    `params["gpus"]` > 1 (config key pretrain.gpus): re-run this call on that many local processes
    under torchrun (bioprune.distributed), one GPU each, with the same global batch.
    """
    from . import distributed

    gpus = int(params.get("gpus") or 1)
    if gpus > 1 and not distributed.launched():
        fd, args_path = tempfile.mkstemp(suffix=".json", prefix=".ddp-", dir=os.path.dirname(os.path.abspath(out)))
        with os.fdopen(fd, "w") as f:
            json.dump({"shard_paths": shard_paths, "holdout": holdout, "out": out, "curves": curves,
                       "params": params, "seed": seed, "selection": selection, "label": label}, f)
        try:
            distributed.launch(gpus, args_path)
        finally:
            os.unlink(args_path)
        return {"steps": None, "world_size": gpus}
    molecule = shard_molecule(shard_paths[0])
    wanted = set(read_selection(selection)) if selection else None
    ids, seqs = load_sequences(shard_paths, wanted)
    if wanted is not None and len(ids) != len(wanted):
        missing = sorted(wanted - set(ids))[:3]
        raise BiopruneError(f"{selection}: {len(wanted) - len(ids)} selected ids are not in the shards (e.g. {missing})")
    val_ids, val_seqs = read_shard(holdout)[:2]
    val = (val_ids[:256], val_seqs[:256]) if val_ids else None
    cfg = TrainConfig(**{k: params[k] for k in ("layers", "embed_dim", "heads", "lr", "weight_decay", "warmup_fraction",
                                                "batch_size", "budget", "epochs", "steps", "save_every", "device")},
                      **{k: params[k] for k in ("tokens", "max_tokens", "clip_norm", "compile") if k in params},
                      seed=seed)
    from .training import total_steps

    cfg.eval_every = max(1, total_steps(np.array([len(s) for s in seqs]), cfg) // 10)
    log.info("pretrain %s: %d sequences, seed %d, budget %s", label or out, len(seqs), seed, cfg.budget)
    return train_mlm(seqs, molecule, cfg, out, curves, val=val,
                     meta={"role": "pretrain", "selection": selection or "full", "label": label})
