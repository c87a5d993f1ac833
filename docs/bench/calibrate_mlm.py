"""Calibration behind docs/CPU_STUDY.md: held-out perplexity of a full-pool ESM2 against training steps and
model size, and of the k-mer baseline against its context half-width h, on one results folder's shards.

  PYTHONPATH=$PWD .venv/bin/python docs/bench/calibrate_mlm.py RESULTS TAG LAYERS DIM STEPS LR   # one MLM run
  PYTHONPATH=$PWD .venv/bin/python docs/bench/calibrate_mlm.py RESULTS kmer                       # the k-mer line

Held-out perplexity is computed exactly as the benchmark does (first 250 sequences of leakage/holdout_eval.h5,
the homology-filtered held-out file, when the run has it, else of shards/holdout.h5; masks of
batching.mask_by_id seed 0), every STEPS/8 steps; one CPU thread, or the GPU with DEVICE=cuda in the
environment; MAX_TOKENS=N in the environment trains on length-bucketed token batches (pretrain.max_tokens); appends JSON lines to RESULTS/calibration.jsonl."""
import glob
import json
import math
import os
import sys
import time

import torch

from bioprune.ingest import load_sequences
from bioprune.ingest import read_shard

res = sys.argv[1]
ids, seqs = load_sequences(sorted(glob.glob(f"{res}/shards/*-of-*.h5")), None)
# the benchmark's held-out file: the homology-filtered one (leakage.holdout) when the run made it
held = f"{res}/leakage/holdout_eval.h5"
vi, vs, _ = read_shard(held if os.path.exists(held) else f"{res}/shards/holdout.h5")
vi, vs = vi[:250], vs[:250]
out = {"results": res, "pool": len(seqs), "heldout": len(vi)}
t0 = time.time()
if sys.argv[2] == "kmer":
    from bioprune.benchmarks.kmer import fit_kmer_baseline, masked_cross_entropy, masked_positions

    from bioprune.leakage import GateConfig

    vf = GateConfig(molecule="rna", max_identity=0.9, min_coverage=0.8) if os.path.exists(held) else None
    model, val = fit_kmer_baseline(ids, seqs, "rna", 250, h_max=9, validation_filter=vf)
    pos = masked_positions(vi, vs, "rna")
    out.update(tag="kmer", chosen_h=model.h, val_loss={h: v for h, v in val.items()},
               heldout_ppl_by_h={h: math.exp(masked_cross_entropy(model, pos, h)) for h in range(model.h + 1)})
else:
    from bioprune.training.loop import TrainConfig, train_mlm

    torch.set_num_threads(1)
    tag, layers, dim, steps, lr = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
    heads = max(4, dim // 32)
    cfg = TrainConfig(layers=layers, embed_dim=dim, heads=heads, lr=lr, batch_size=32, budget="steps", steps=steps,
                      save_every=10**9, eval_every=max(1, steps // 8), seed=0,
                      max_tokens=int(os.environ["MAX_TOKENS"]) if os.environ.get("MAX_TOKENS") else None,
                      device=os.environ.get("DEVICE", "cpu"))
    import h5py

    train_mlm(seqs, "rna", cfg, f"/tmp/{tag}.pt", f"/tmp/{tag}_curves.h5", val=(vi, vs))
    with h5py.File(f"/tmp/{tag}_curves.h5") as f:
        state = torch.load(f"/tmp/{tag}.pt", weights_only=False)["state_dict"]
        out.update(tag=tag, max_tokens=cfg.max_tokens, layers=layers, dim=dim, lr=lr, steps=steps, params=sum(p.numel() for p in state.values()),
                   val_step=f["val_step"][()].tolist(), val_ppl=[math.exp(x) for x in f["val_loss"][()]])
out["wall_s"] = time.time() - t0
print(json.dumps(out))
with open(f"{res}/calibration.jsonl", "a") as fh:
    fh.write(json.dumps(out) + "\n")
