"""Masked-LM training from scratch (or fine-tuning): AdamW, linear warmup, cosine decay, resumable.

Data order depends only on (seed, epoch) and masks only on (seed, step), so a run killed and
resumed from its last periodic checkpoint reproduces an uninterrupted run bit for bit on CPU.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .batching import mask_by_id, mask_with_generator, pad_batch, per_sample_ce
from .errors import NumericalError
from .h5io import atomic_h5, atomic_path
from .models import build_model, load_model, save_checkpoint

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Hyper-parameters of one masked-LM training run."""

    layers: int = 2
    embed_dim: int = 64
    heads: int = 4
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.06
    batch_size: int = 32
    budget: str = "epochs"  # "epochs" or "steps"
    epochs: int = 10
    steps: int = 1000
    seed: int = 0
    save_every: int = 200
    log_every: int = 25
    eval_every: int = 0
    device: str = "auto"


def total_steps(n: int, cfg: TrainConfig) -> int:
    """Optimizer steps for `n` sequences under the configured budget policy."""
    if cfg.budget == "steps":
        return int(cfg.steps)
    return int(math.ceil(n / cfg.batch_size)) * int(cfg.epochs)


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warmup then cosine decay to zero."""
    warm = max(1, int(round(cfg.warmup_fraction * total)))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def epoch_batches(epoch: int, lengths: np.ndarray, cfg: TrainConfig, bucket: int = 50) -> list[np.ndarray]:
    """Batches of one epoch: a permutation seeded by (seed, epoch), sorted by length within buckets of
    `bucket` batches (less padding), then the batch order shuffled with the same generator."""
    n = len(lengths)
    rng = np.random.default_rng([cfg.seed, epoch])
    perm = rng.permutation(n)
    chunk = cfg.batch_size * bucket
    batches = []
    for i in range(0, n, chunk):
        part = perm[i : i + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[j : j + cfg.batch_size] for j in range(0, len(part), cfg.batch_size)]
    order = rng.permutation(len(batches))
    return [batches[k] for k in order]


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


@torch.no_grad()
def mlm_eval_loss(model, ids: list[str], seqs: list[str], molecule: str, seed: int = 0,
                  batch_size: int = 64) -> float:
    """Mean masked-LM loss per masked token over fixed per-id masks (so all models see the same masks)."""
    device = next(model.parameters()).device
    model.eval()
    tot, cnt = 0.0, 0
    order = np.argsort([len(s) for s in seqs])
    for i in range(0, len(seqs), batch_size):
        idx = order[i : i + batch_size]
        toks = pad_batch([seqs[j] for j in idx], molecule)
        inputs, targets = mask_by_id(toks, [ids[j] for j in idx], molecule, seed)
        with _autocast(device):
            logits = model(inputs.to(device))["logits"]
        ce = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), targets.to(device).clamp_min(0),
                                               reduction="none")
        valid = targets.to(device) != -100
        tot += float(ce[valid].sum())
        cnt += int(valid.sum())
    return tot / max(cnt, 1)


def train_mlm(seqs: list[str], molecule: str, cfg: TrainConfig, out_path: str | os.PathLike,
              curves_path: str | os.PathLike | None = None, init_checkpoint: str | None = None,
              val: tuple[list[str], list[str]] | None = None, meta: dict | None = None) -> dict:
    """Train a masked-LM on `seqs`; write `out_path` (checkpoint) and `curves_path` (HDF5 loss curves).

    A periodic checkpoint `<out_path>.partial` is written every `save_every` steps and resumed from.
    """
    from .models import pick_device

    if not seqs:
        raise ValueError("no training sequences")
    device = pick_device(cfg.device)
    out_path = Path(out_path)
    stage = (meta or {}).get("role", "training")  # named in errors: "reference" or "pretrain"
    partial = out_path.with_name(out_path.name + ".partial")
    if init_checkpoint:
        model, _ = load_model(init_checkpoint, molecule)
    else:
        model = build_model(molecule, cfg.layers, cfg.embed_dim, cfg.heads, cfg.seed)
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(seqs)
    total = total_steps(n, cfg)
    step0, curve = 0, {"step": [], "loss": [], "lr": [], "val_step": [], "val_loss": []}
    tokens_seen = 0  # residues + the 2 special tokens of every trained sequence, padding excluded (the ledger's T)
    if partial.exists():
        state = torch.load(partial, map_location="cpu", weights_only=False)
        if state.get("config") == asdict(cfg) and state.get("n") == n:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            step0, curve = state["step"], state["curve"]
            tokens_seen = int(state.get("tokens_seen", 0))
            log.info("resuming from %s at step %d/%d", partial, step0, total)
        else:
            log.warning("ignoring %s: written for another config or dataset", partial)
    log.info("training %s model (%d params) on %d sequences, %d steps, device %s",
             molecule, sum(p.numel() for p in model.parameters()), n, total, device)
    t0 = time.time()
    lengths = np.array([len(s) for s in seqs])
    per_epoch = int(math.ceil(n / cfg.batch_size))
    epoch, batches = -1, []
    for step in range(step0, total):
        model.train()
        if step // per_epoch != epoch:  # batch order depends only on (seed, epoch): resumable
            epoch = step // per_epoch
            batches = epoch_batches(epoch, lengths, cfg)
        idx = batches[step % per_epoch]
        toks = pad_batch([seqs[j] for j in idx], molecule)
        tokens_seen += int(lengths[idx].sum()) + 2 * len(idx)
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        inputs, targets = mask_with_generator(toks, molecule, gen)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total, cfg)
        with _autocast(device):
            logits = model(inputs.to(device))["logits"]
        loss = per_sample_ce(logits, targets.to(device)).mean()
        if not torch.isfinite(loss):
            hint = f"config key {stage}.lr" if stage in ("reference", "pretrain") else "the learning rate"
            raise NumericalError(f"{stage} ({out_path.name}): non-finite loss at step {step + 1} of {total} "
                                 f"(batch of {len(idx)} sequences); lower {hint} or check the input")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        curve["step"].append(step)
        curve["loss"].append(float(loss.detach()))
        curve["lr"].append(opt.param_groups[0]["lr"])
        if val is not None and cfg.eval_every and ((step + 1) % cfg.eval_every == 0 or step + 1 == total):
            curve["val_step"].append(step + 1)
            curve["val_loss"].append(mlm_eval_loss(model, val[0], val[1], molecule))
        if (step + 1) % cfg.log_every == 0 or step + 1 == total:
            rate = (step + 1 - step0) / max(time.time() - t0, 1e-9)
            log.info("step %d/%d loss %.4f lr %.2e (%.1f steps/s)", step + 1, total, float(loss.detach()),
                     opt.param_groups[0]["lr"], rate)
        if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < total:
            with atomic_path(partial) as tmp:
                torch.save({"config": asdict(cfg), "n": n, "step": step + 1, "curve": curve, "tokens_seen": tokens_seen,
                            "model": model.state_dict(), "optimizer": opt.state_dict()}, tmp)
    model.cpu().eval()
    save_checkpoint(out_path, model, molecule, meta={**(meta or {}), "train_config": asdict(cfg),
                                                     "n_sequences": n, "steps": total,
                                                     "tokens_seen": tokens_seen})
    if curves_path:
        with atomic_h5(curves_path, "curves", total_steps=total, n_sequences=n, budget=cfg.budget,
                       tokens_seen=tokens_seen) as f:
            for k, v in curve.items():
                f.create_dataset(k, data=np.asarray(v, dtype=np.float64 if "loss" in k or k == "lr" else np.int64))
    if partial.exists():
        partial.unlink()
    return {"steps": total, "final_loss": curve["loss"][-1] if curve["loss"] else float("nan")}
