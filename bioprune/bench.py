"""`bioprune bench-sketch`: throughput and peak memory of a training step, our sketches and a per-sample baseline.

All four run on the same model, batch and sequence length. Each mode runs in its own subprocess on
CPU so that peak RSS is its own; on CUDA peak memory is torch.cuda.max_memory_allocated.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

import torch

MODES = ("train", "sketch_paper", "sketch_all_linear", "per_sample_baseline")


def _setup(a: dict):
    from .batching import mask_by_id, pad_batch
    from .models import build_model, pick_device

    device = pick_device(a["device"])
    model = build_model(a["molecule"], a["layers"], a["embed_dim"], a["heads"], seed=0).to(device)
    letters = "ACGU" if a["molecule"] == "rna" else "ACDEFGHIKLMNPQRSTVWY"
    g = torch.Generator().manual_seed(0)
    seqs = ["".join(letters[i] for i in torch.randint(len(letters), (a["length"],), generator=g).tolist())
            for _ in range(a["batch_size"])]
    ids = [f"b{i}" for i in range(len(seqs))]
    toks = pad_batch(seqs, a["molecule"])
    inputs, targets = mask_by_id(toks, ids, a["molecule"], 0)
    return device, model, seqs, ids, inputs.to(device), targets.to(device)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, device, batches: int, n_per_call: int) -> float:
    fn()  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(batches):
        fn()
    _sync(device)
    return batches * n_per_call / (time.perf_counter() - t0)


def run_mode(mode: str, a: dict) -> dict:
    """Sequences per second of one mode (and what it computed)."""
    from .batching import per_sample_ce
    from .sketches import GradCapture, InfluenceConfig, KroneckerProjector, per_sample_factors, resolve_params

    device, model, seqs, ids, inputs, targets = _setup(a)
    ac = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    note = ""
    if mode == "train":
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def fn():
            with ac:
                loss = per_sample_ce(model(inputs)["logits"], targets).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        n = len(seqs)
    elif mode in ("sketch_paper", "sketch_all_linear"):
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        params = ["lm_head.dense.weight"] if mode == "sketch_paper" else "all_linear"
        names = resolve_params(model, params)
        cfg = InfluenceConfig(params=params, batch_size=len(seqs))
        cap = GradCapture(model, names)
        shapes = {p: tuple(dict(model.named_parameters())[p].shape) for p in names}
        if mode == "sketch_paper":
            inv = {p: torch.rand(shapes[p], device=device) for p in names}

            def fn():
                _, f = per_sample_factors(model, cap, ids, seqs, a["molecule"], cfg, device)
                for p in names:
                    g = torch.einsum("bto,bti->boi", f[p][1], f[p][0])
                    (g * g * inv[p]).flatten(1).sum(1).cpu()

            note = "diag_fisher score, lm_head.dense.weight, per-sample G materialised from hooked factors"
        else:
            proj = KroneckerProjector(shapes, a["sketch_dim"], 0, device)

            def fn():
                _, f = per_sample_factors(model, cap, ids, seqs, a["molecule"], cfg, device)
                proj.project(f).cpu()

            note = f"Kronecker projection of {len(names)} linear weights to k={proj.dim}"
        n = len(seqs)
    elif mode == "per_sample_baseline":
        model.eval()
        target = "lm_head.dense.weight"
        params = {k: v.detach() for k, v in model.named_parameters()}
        from torch.func import functional_call, grad, vmap

        def loss_one(w, x, y):
            out = functional_call(model, {**params, target: w}, (x[None],))["logits"]
            return per_sample_ce(out, y[None])[0]

        try:
            with ac:
                vmap(grad(loss_one), in_dims=(None, 0, 0))(params[target], inputs[:2], targets[:2])
            per = vmap(grad(loss_one), in_dims=(None, 0, 0))
            chunk = 20  # the official code's batch of 20

            def fn():
                for i in range(0, a["baseline_samples"], chunk):
                    with ac:
                        per(params[target], inputs[i % len(seqs) : i % len(seqs) + chunk],
                            targets[i % len(seqs) : i % len(seqs) + chunk])

            note = "torch.func vmap(grad) over lm_head.dense.weight, chunks of 20 (the official code's method)"
        except Exception as e:  # noqa: BLE001 - fair-esm's data-dependent padding check defeats vmap
            g1 = grad(loss_one)

            def fn():
                for i in range(a["baseline_samples"]):
                    k = i % len(seqs)
                    with ac:
                        g1(params[target], inputs[k], targets[k])

            note = f"per-sample torch.func.grad loop (vmap failed: {type(e).__name__}: {str(e)[:80]})"
        n = a["baseline_samples"]
    else:
        raise ValueError(mode)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rate = _time(fn, device, a["batches"], n)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seq_per_s": round(rate, 2), "peak_mem_mb": round(peak, 1), "method": note}


def bench_sketch(args) -> dict:
    """Run every mode (each in a subprocess) and collect one JSON object."""
    a = {"molecule": args.molecule, "layers": args.layers, "embed_dim": args.embed_dim, "heads": args.heads,
         "length": args.length, "batch_size": args.batch_size, "batches": args.batches,
         "sketch_dim": args.sketch_dim, "baseline_samples": args.baseline_samples, "device": args.device}
    out: dict = {}
    for mode in MODES:
        res = subprocess.run([sys.executable, "-m", "bioprune.bench", mode, json.dumps(a)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"bench-sketch {mode} failed:\n{res.stderr[-3000:]}")
        out[mode] = json.loads(res.stdout.strip().splitlines()[-1])
    from .models import build_model, pick_device

    device = pick_device(args.device)
    m = build_model(args.molecule, args.layers, args.embed_dim, args.heads, 0)
    out["device"] = torch.cuda.get_device_name(0) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    out["model_params"] = sum(p.numel() for p in m.parameters())
    out["settings"] = a
    t = out["train"]["seq_per_s"]
    out["ratios"] = {"sketch_paper/train": round(out["sketch_paper"]["seq_per_s"] / t, 2),
                     "sketch_all_linear/train": round(out["sketch_all_linear"]["seq_per_s"] / t, 2),
                     "sketch_paper/per_sample_baseline": round(out["sketch_paper"]["seq_per_s"]
                                                               / out["per_sample_baseline"]["seq_per_s"], 2)}
    return out


if __name__ == "__main__":
    print(json.dumps(run_mode(sys.argv[1], json.loads(sys.argv[2]))))
