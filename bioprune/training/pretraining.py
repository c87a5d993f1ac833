"""Pretrain a model from scratch on one coreset (or the whole pool) with masked-LM; resumable."""
from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, replace

import numpy as np

from bioprune.errors import BiopruneError
from bioprune.ingest.read import load_sequences, read_shard, shard_molecule
from bioprune.selection.io import read_selection
from bioprune.training.loop import TrainConfig, total_steps, train_mlm

log = logging.getLogger(__name__)


def pretrain(shard_paths: list[str], holdout: str, out: str, curves: str, cfg: TrainConfig, gpus: int = 1,
             selection: str | None = None, label: str = "") -> dict:
    """Train one model (cfg: the pretrain section as a TrainConfig, seed included): `selection` is a
    selection HDF5, or None for the full pool.

    `gpus` > 1 (config key pretrain.gpus): re-run this call on that many local processes under torchrun
    (bioprune.training.distributed, bioprune.training.ddp_worker), one GPU each, with the same global batch.
    """
    from bioprune.training import distributed

    if gpus > 1 and not distributed.launched():
        fd, args_path = tempfile.mkstemp(suffix=".json", prefix=".ddp-", dir=os.path.dirname(os.path.abspath(out)))
        with os.fdopen(fd, "w") as f:
            json.dump({"shard_paths": shard_paths, "holdout": holdout, "out": out, "curves": curves,
                       "cfg": asdict(cfg), "gpus": gpus, "selection": selection, "label": label}, f)
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
    cfg = replace(cfg)  # eval_every is set per run below; the caller's config stays as given
    cfg.eval_every = max(1, total_steps(np.array([len(s) for s in seqs]), cfg) // 10)
    log.info("pretrain %s: %d sequences, seed %d, budget %s", label or out, len(seqs), cfg.seed, cfg.budget)
    return train_mlm(seqs, molecule, cfg, out, curves, val=val,
                     meta={"role": "pretrain", "selection": selection or "full", "label": label})
