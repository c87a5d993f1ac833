"""Masked-LM training from scratch (or fine-tuning): AdamW, linear warmup, cosine decay, resumable.

Data order depends only on (seed, epoch) and masks only on (seed, step), so a run killed and
resumed from its last periodic checkpoint reproduces an uninterrupted run bit for bit on CPU.
Device path: fair-esm attention through SDPA (bioprune.training.attention), batches padded ahead in a
background thread (pinned on CUDA), masking on the device, losses read back only at logging, eval
and checkpoint steps, bf16 autocast on CUDA with fp32 weights, optional gradient clipping and
torch.compile, and data-parallel ranks under torchrun (bioprune.training.distributed).
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

from bioprune.training import distributed as ddp
from bioprune.training.attention import use_sdpa
from bioprune.training.batching import mask_by_id, mask_with_generator, pad_batch, per_sample_ce
from bioprune.training.dataflow import BatchPlan, Prefetcher, count_batches, host_batch, seq_tokens
from bioprune.errors import NumericalError
from bioprune.h5io import atomic_h5
from bioprune.models import build_model, load_model, save_checkpoint, save_torch

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
    budget: str = "epochs"  # "epochs", "steps" or "tokens"
    epochs: int = 10
    steps: int = 1000
    tokens: int = 0  # training tokens (residues + BOS/EOS, no padding) when budget is "tokens"
    max_tokens: int | None = None  # token-budget batches (padded size); None = batch_size sequences
    clip_norm: float | None = None  # gradient-norm clipping; None = off
    compile: bool = False  # torch.compile the model for the training steps
    seed: int = 0
    save_every: int = 200
    log_every: int = 25
    eval_every: int = 0
    device: str = "auto"


def plan_for(lengths: np.ndarray, cfg: TrainConfig) -> BatchPlan:
    """The run's step -> batch schedule (bioprune.training.dataflow.BatchPlan)."""
    return BatchPlan(np.asarray(lengths), cfg.seed, cfg.batch_size, cfg.max_tokens)


def total_steps(n: int | np.ndarray, cfg: TrainConfig) -> int:
    """Optimizer steps under the budget policy; `n` is the number of sequences or, for token batches
    or the tokens budget, their lengths."""
    if cfg.budget == "steps":
        return int(cfg.steps)
    if cfg.budget == "epochs" and not cfg.max_tokens:
        count = n if isinstance(n, int) else len(n)
        return int(math.ceil(count / cfg.batch_size)) * int(cfg.epochs)
    if isinstance(n, int):
        raise ValueError("total_steps needs the sequence lengths for token batches or the tokens budget")
    return plan_for(n, cfg).total_steps(cfg.budget, cfg.epochs, cfg.steps, cfg.tokens)


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warmup then cosine decay to zero."""
    warm = max(1, int(round(cfg.warmup_fraction * total)))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def epoch_batches(epoch: int, lengths: np.ndarray, cfg: TrainConfig, bucket: int = 50) -> list[np.ndarray]:
    """Fixed-count batches of one epoch: a permutation seeded by (seed, epoch), sorted by length within
    buckets of `bucket` batches (less padding), then the batch order shuffled with the same generator."""
    return count_batches(epoch, lengths, cfg.seed, cfg.batch_size, bucket)


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


def _resume(partial: Path, cfg: TrainConfig, n: int, model, opt, total: int):
    """(step, curve) from a periodic checkpoint written for this config and dataset, else (0, empty)."""
    curve = {"step": [], "loss": [], "lr": [], "tokens": [], "grad_norm": [], "val_step": [], "val_loss": []}
    if not partial.exists():
        return 0, curve
    state = torch.load(partial, map_location="cpu", weights_only=False)
    if state.get("config") != asdict(cfg) or state.get("n") != n:
        log.warning("ignoring %s: written for another config or dataset", partial)
        return 0, curve
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"]["cpu"])
    if torch.cuda.is_available() and state["rng"].get("cuda"):
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    log.info("resuming from %s at step %d/%d", partial, state["step"], total)
    return state["step"], state["curve"]


def _save_partial(partial: Path, cfg: TrainConfig, n: int, step: int, curve: dict, model, opt) -> None:
    rng = {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
    save_torch({"config": asdict(cfg), "n": n, "step": step, "curve": curve, "model": model.state_dict(),
                "optimizer": opt.state_dict(), "rng": rng}, partial)


def train_mlm(seqs: list[str], molecule: str, cfg: TrainConfig, out_path: str | os.PathLike,
              curves_path: str | os.PathLike | None = None, init_checkpoint: str | None = None,
              val: tuple[list[str], list[str]] | None = None, meta: dict | None = None) -> dict:
    """Train a masked-LM on `seqs`; write `out_path` (checkpoint) and `curves_path` (HDF5 loss curves).

    A periodic checkpoint `<out_path>.partial` is written every `save_every` steps and resumed from
    (weights, optimizer, step, curves and RNG state). Under torchrun every rank runs this function
    (bioprune.training.distributed); rank 0 writes the files.
    """
    if not seqs:
        raise ValueError("no training sequences")
    ctx = ddp.init(cfg.device)
    device = ctx.device
    out_path = Path(out_path)
    stage = (meta or {}).get("role", "training")  # named in errors: "reference" or "pretrain"
    partial = out_path.with_name(out_path.name + ".partial")
    if init_checkpoint:
        model, _ = load_model(init_checkpoint, molecule)
    else:
        model = build_model(molecule, cfg.layers, cfg.embed_dim, cfg.heads, cfg.seed)
    use_sdpa(model).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(seqs)
    lengths = np.array([len(s) for s in seqs])
    tok = seq_tokens(lengths)
    plan = plan_for(lengths, cfg)
    total = plan.total_steps(cfg.budget, cfg.epochs, cfg.steps, cfg.tokens)
    step0, curve = _resume(partial, cfg, n, model, opt, total)
    if ctx.main:
        log.info("training %s model (%d params) on %d sequences, %d steps, device %s, %d process(es)", molecule,
                 sum(p.numel() for p in model.parameters()), n, total, device, ctx.world)
    if ctx.world > 1:  # the contact head never gets a gradient in masked-LM training; DDP must not wait for it
        for name, p in model.named_parameters():
            if name.startswith("contact_head."):
                p.requires_grad_(False)
    net = torch.nn.parallel.DistributedDataParallel(model) if ctx.world > 1 else model
    fwd = torch.compile(net) if cfg.compile else net
    pin = device.type == "cuda"
    batches = Prefetcher(plan.steps(step0, total), lambda it: (it[0], it[2], host_batch(seqs, molecule, it[2], pin)))
    pending: list[tuple[int, int, float, int, torch.Tensor]] = []  # (step, rows, lr, tokens so far, loss)
    seen = curve["tokens"][-1] if curve["tokens"] else 0

    def flush() -> None:
        """One host-device sync: record the steps since the last flush; stop at a non-finite loss."""
        if not pending:
            return
        vals = torch.stack([p[4] for p in pending]).double()
        vals[:, 0] = ddp.all_sum(vals[:, 0].contiguous(), ctx)  # per-rank loss sums -> global
        for (step, rows, lr, tokens, _), (v, gn) in zip(pending, vals.tolist()):
            v = v / rows if ctx.world > 1 else v
            if not math.isfinite(v):
                hint = f"config key {stage}.lr" if stage in ("reference", "pretrain") else "the learning rate"
                raise NumericalError(f"{stage} ({out_path.name}): non-finite loss at step {step + 1} of {total} "
                                     f"(batch of {rows} sequences); lower {hint} or check the input")
            for k, x in (("step", step), ("loss", v), ("lr", lr), ("tokens", tokens), ("grad_norm", gn)):
                curve[k].append(x)
        pending.clear()

    t0 = time.time()
    try:
        for step, idx, toks in batches:
            model.train()
            toks = toks.to(device, non_blocking=True)
            gen = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + step)
            inputs, targets = mask_with_generator(toks, molecule, gen)  # masks of the global batch
            if ctx.world > 1:
                rows, weight = ddp.local_rows(len(idx), ctx)
                width = int(tok[idx[rows]].max())  # trim this rank's padding
                inputs, targets = inputs[rows, :width], targets[rows, :width]
            lr = lr_at(step, total, cfg)
            for g in opt.param_groups:
                g["lr"] = lr
            with _autocast(device):
                logits = fwd(inputs)["logits"]
            per = per_sample_ce(logits, targets)
            if ctx.world > 1:
                summed = per.sum() * weight
                loss, record = summed * (ctx.world / len(idx)), summed.detach()
            else:
                loss = per.mean()
                record = loss.detach()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_norm:  # the norm before clipping is recorded either way (no sync: read at flush)
                gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
            else:
                gnorm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])
            opt.step()
            seen += int(tok[idx].sum())
            pending.append((step, len(idx), lr, seen, torch.stack([record, gnorm.detach().to(record.dtype)])))
            last = step + 1 == total
            do_eval = val is not None and cfg.eval_every and ((step + 1) % cfg.eval_every == 0 or last)
            do_log = (step + 1) % cfg.log_every == 0 or last
            do_save = cfg.save_every and (step + 1) % cfg.save_every == 0 and not last
            if do_eval or do_log or do_save:
                flush()
            if do_eval and ctx.main:
                curve["val_step"].append(step + 1)
                curve["val_loss"].append(mlm_eval_loss(model, val[0], val[1], molecule))
            if do_log and ctx.main:
                rate = (step + 1 - step0) / max(time.time() - t0, 1e-9)
                log.info("step %d/%d loss %.4f lr %.2e tokens %d (%.1f steps/s)", step + 1, total, curve["loss"][-1],
                         lr, seen, rate)
            if do_save and ctx.main:
                _save_partial(partial, cfg, n, step + 1, curve, model, opt)
        flush()
    finally:
        batches.close()
    counts = plan.token_counts(total)
    if ctx.main:
        model.cpu().eval()
        save_checkpoint(out_path, model, molecule, meta={**(meta or {}), "train_config": asdict(cfg), "n_sequences": n,
                                                         "steps": total, "world_size": ctx.world, **counts})
        if curves_path:
            with atomic_h5(curves_path, "curves", total_steps=total, n_sequences=n, budget=cfg.budget,
                           **counts) as f:
                for k, v in curve.items():
                    f.create_dataset(k, data=np.asarray(v, dtype=np.float64 if "loss" in k or k in ("lr", "grad_norm") else np.int64))
        if partial.exists():
            partial.unlink()
    ddp.finish(ctx)
    return {"steps": total, "final_loss": curve["loss"][-1] if curve["loss"] else float("nan"), **counts}
