"""`bioprune bench-sketch`: throughput, MFU and peak memory of training steps, our sketches and a
per-sample baseline.

All modes run on the same model, batch and sequence length, each in its own subprocess (so peak RSS
on CPU is its own; on CUDA peak memory is torch.cuda.max_memory_allocated):
- train: the training loop's path: SDPA attention, batches padded ahead in a thread (pinned on
  CUDA), masking on the device, no host sync per step (losses kept on the device), bf16 autocast on
  CUDA, optionally torch.compile (--compile);
- train_stock: stock fair-esm attention and the previous loop: padding and masking on the host in
  the step, a host sync per step (finiteness check and float(loss));
- sketch_paper / sketch_all_linear: the scoring path (SDPA; masks built ahead in a thread);
- per_sample_baseline: the official code's per-sample torch.func gradients (stock attention).
Each mode reports seq_per_s, tokens_per_s (tokens = length + BOS/EOS), mfu (bioprune.report.flops: model
FLOPs per token x tokens/s / the device's dense bf16 peak; null on CPU unless --peak-tflops),
peak_mem_mb, and seq_per_cpu_s (sequences per CPU second of the process, all threads: the fairer
comparison on a CPU shared with other jobs).

Modes run in --repeats rounds (default 5): round r runs every mode once, each in its own subprocess,
starting at mode r mod M (the order rotates, so no mode always follows another). A mode's entry holds
the medians over its repeats (peak memory: the max), `repeats` (per-round seq_per_s), seq_per_s_min /
_max and ok_repeats. `ratios` (seq_per_s) and `ratios_cpu` (seq_per_cpu_s) are computed within each
round and reported as {median, min, max, n}: pairing within a round cancels load that drifts over
minutes on a shared machine.
"""
from __future__ import annotations

import itertools
import json
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

from bioprune.errors import BiopruneError

MODES = ("train", "train_compile", "train_stock", "sketch_paper", "sketch_all_linear", "per_sample_baseline")
DEFAULT_MODES = tuple(m for m in MODES if m != "train_compile")  # train_compile joins with --compile


def _setup(a: dict, sdpa: bool):
    from bioprune.training.attention import use_sdpa
    from bioprune.training.batching import mask_by_id, pad_batch
    from bioprune.models import build_model, pick_device

    device = pick_device(a["device"])
    model = use_sdpa(build_model(a["molecule"], a["layers"], a["embed_dim"], a["heads"], seed=0), sdpa).to(device)
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


def _time(fn, device, batches: int, n_per_call: int, warmup: int = 1) -> tuple[float, float]:
    """(items per wall-clock second, items per CPU second of this process, all its threads)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(batches):
        fn()
    _sync(device)
    return batches * n_per_call / (time.perf_counter() - t0), batches * n_per_call / (time.process_time() - c0)


def run_mode(mode: str, a: dict) -> dict:
    """Sequences per second of one mode (and what it computed)."""
    from bioprune.training.batching import per_sample_ce
    from bioprune.influence.gradients import InfluenceConfig, per_sample_factors
    from bioprune.influence.persample import GradCapture, KroneckerProjector, resolve_params

    from bioprune.training.batching import mask_with_generator, pad_batch
    from bioprune.training.dataflow import Prefetcher, host_batch

    device, model, seqs, ids, inputs, targets = _setup(a, sdpa=mode not in ("train_stock", "per_sample_baseline"))
    ac = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    mol, note, step = a["molecule"], "", itertools.count()
    if mode in ("train", "train_compile"):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        fwd = torch.compile(model) if mode == "train_compile" else model
        every = np.arange(len(seqs))
        batches = Prefetcher(itertools.repeat(every), lambda i: host_batch(seqs, mol, i, device.type == "cuda"))
        losses = []

        def fn():
            toks = next(batches).to(device, non_blocking=True)
            gen = torch.Generator(device=device).manual_seed(next(step))
            x, y = mask_with_generator(toks, mol, gen)
            with ac:
                loss = per_sample_ce(fwd(x)["logits"], y).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])
            opt.step()
            losses.append(loss.detach())  # read back at logging intervals only

        note = "SDPA, prefetched pinned batches, device masking, no per-step sync" + (", torch.compile" if fwd is not model else "")
        n = len(seqs)
    elif mode == "train_stock":
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def fn():
            toks = pad_batch(seqs, mol)
            x, y = mask_with_generator(toks, mol, torch.Generator().manual_seed(next(step)))
            with ac:
                loss = per_sample_ce(model(x.to(device))["logits"], y.to(device)).mean()
            if not torch.isfinite(loss):
                raise RuntimeError("non-finite loss")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            float(loss.detach())

        note = "stock fair-esm attention, host padding and masking in the step, host sync per step"
        n = len(seqs)
    elif mode in ("sketch_paper", "sketch_all_linear"):
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        params = ["lm_head.dense.weight"] if mode == "sketch_paper" else "all_linear"
        names = resolve_params(model, params)
        cfg = InfluenceConfig(params=params, batch_size=len(seqs))
        cap = GradCapture(model, names)
        from bioprune.influence.gradients import scoring_inputs

        masks = Prefetcher(itertools.repeat(None), lambda _: scoring_inputs(ids, seqs, mol, cfg), depth=2)
        shapes = {p: tuple(dict(model.named_parameters())[p].shape) for p in names}
        if mode == "sketch_paper":
            inv = {p: torch.rand(shapes[p], device=device) for p in names}

            def fn():
                _, f = per_sample_factors(model, cap, ids, seqs, mol, cfg, device, masked=next(masks))
                for p in names:
                    g = torch.einsum("bto,bti->boi", f[p][1], f[p][0])
                    (g * g * inv[p]).flatten(1).sum(1).cpu()

            note = "diag_fisher score, lm_head.dense.weight, per-sample G materialised from hooked factors"
        else:
            proj = KroneckerProjector(shapes, a["sketch_dim"], 0, device)

            def fn():
                _, f = per_sample_factors(model, cap, ids, seqs, mol, cfg, device, masked=next(masks))
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
    if a.get("threads"):
        torch.set_num_threads(int(a["threads"]))
    rate, cpu_rate = _time(fn, device, a["batches"], n, warmup=3 if mode == "train_compile" else 1)
    for v in list(locals().values()):  # stop the endless prefetch threads: one left mid-op aborts the exit
        if isinstance(v, Prefetcher):
            v.close()
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    from bioprune.report.flops import mfu, peak_tflops

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    context = a["length"] + 2
    tps = rate * context
    util = mfu(mode, model, context, tps, a.get("peak_tflops") or peak_tflops(name))
    out = {"seq_per_s": round(rate, 2), "seq_per_cpu_s": round(cpu_rate, 2), "tokens_per_s": round(tps, 1),
           "mfu": None if util is None else round(util, 4), "peak_mem_mb": round(peak, 1), "method": note}
    if mode.startswith("train"):
        from bioprune.training.gpumem import training_mb

        out["gpu_mem_mb_estimate"] = training_mb(a["layers"], a["embed_dim"], len(seqs) * context)
    return out


def _run_mode_subprocess(mode: str, a: dict) -> dict:
    """One repeat of one mode in its own Python process (so peak RSS is its own); {"error": ...} on failure."""
    res = subprocess.run([sys.executable, "-m", "bioprune.tools.bench_sketch", mode, json.dumps(a)],
                         capture_output=True, text=True)
    if res.returncode != 0:  # e.g. out of memory in the stock attention: report it, go on with the rest
        lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
        return {"error": lines[-1][:300] if lines else f"exit code {res.returncode}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def round_order(modes: list[str], r: int) -> list[str]:
    """Round r runs every mode once, starting at mode r mod M (so no mode always runs first or last)."""
    k = r % len(modes)
    return list(modes[k:]) + list(modes[:k])


# (median-over-repeats key, rounding); peak_mem_mb takes the max over repeats, not the median
_MEDIAN_KEYS = (("seq_per_s", 2), ("seq_per_cpu_s", 2), ("tokens_per_s", 1), ("mfu", 4))
RATIOS = (("train/train_stock", "train", "train_stock"), ("train_compile/train", "train_compile", "train"),
          ("sketch_paper/train", "sketch_paper", "train"), ("sketch_all_linear/train", "sketch_all_linear", "train"),
          ("sketch_paper/per_sample_baseline", "sketch_paper", "per_sample_baseline"))


def summarise_mode(runs: list[dict]) -> dict:
    """One mode's JSON entry from its per-round results (in round order): medians over the successful
    repeats, peak memory the max, `repeats` the per-round seq_per_s (null where that round failed),
    `ok_repeats`, and the first failure's `error` if any round failed."""
    ok = [x for x in runs if "error" not in x]
    out: dict = dict(ok[0]) if ok else {}
    for key, nd in _MEDIAN_KEYS:
        vals = [x[key] for x in ok if x.get(key) is not None]
        if ok:
            out[key] = round(statistics.median(vals), nd) if vals else None
    if ok:
        out["peak_mem_mb"] = max(x["peak_mem_mb"] for x in ok)
        rates = [x["seq_per_s"] for x in ok]
        out["seq_per_s_min"], out["seq_per_s_max"] = min(rates), max(rates)
    out["repeats"] = [None if "error" in x else x["seq_per_s"] for x in runs]
    out["ok_repeats"] = len(ok)
    errors = [x["error"] for x in runs if "error" in x]
    if errors:
        out["error"] = errors[0]
    return out


def paired_ratio(runs: dict, x: str, y: str, key: str = "seq_per_s") -> dict | None:
    """x/y computed within each round (both from the same minutes of load), then summarised:
    {"median", "min", "max", "n"} over the rounds where both succeeded; None when no round has both."""
    rs = [a[key] / b[key] for a, b in zip(runs.get(x, []), runs.get(y, []))
          if "error" not in a and "error" not in b and a.get(key) is not None and b.get(key)]
    if not rs:
        return None
    return {"median": round(statistics.median(rs), 3), "min": round(min(rs), 3), "max": round(max(rs), 3),
            "n": len(rs)}


def bench_sketch(args) -> dict:
    """Run the chosen modes in interleaved rounds (each repeat in its own subprocess) and collect one
    JSON object: per mode the medians over the repeats, and ratios paired within each round."""
    a = {"molecule": args.molecule, "layers": args.layers, "embed_dim": args.embed_dim, "heads": args.heads,
         "length": args.length, "batch_size": args.batch_size, "batches": args.batches,
         "sketch_dim": args.sketch_dim, "baseline_samples": args.baseline_samples, "device": args.device,
         "compile": bool(getattr(args, "compile", False)), "peak_tflops": getattr(args, "peak_tflops", None),
         "threads": getattr(args, "threads", None)}
    repeats = getattr(args, "repeats", None)
    repeats = 5 if repeats is None else repeats
    if not isinstance(repeats, int) or repeats < 1:
        raise BiopruneError(f"--repeats must be an integer >= 1 (got {repeats!r})")
    default = DEFAULT_MODES + (("train_compile",) if a["compile"] else ())
    modes = [m for m in (getattr(args, "modes", None) or ",".join(default)).split(",") if m]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        raise ValueError(f"bench-sketch: unknown modes {unknown}; choose from {MODES}")
    modes = list(dict.fromkeys(modes))  # a mode named twice runs once a round
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    order = []
    for r in range(repeats):
        order.append(round_order(modes, r))
        for mode in order[-1]:
            runs[mode].append(_run_mode_subprocess(mode, a))
    out: dict = {m: summarise_mode(runs[m]) for m in modes}
    from bioprune.report.flops import forward_flops_per_token, peak_tflops
    from bioprune.models import build_model, pick_device

    device = pick_device(args.device)
    m = build_model(args.molecule, args.layers, args.embed_dim, args.heads, 0)
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    out["device"] = name
    out["peak_tflops"] = a["peak_tflops"] or peak_tflops(name)
    out["model_params"] = sum(p.numel() for p in m.parameters())
    out["forward_flops_per_token"] = forward_flops_per_token(m, args.length + 2)
    out["settings"] = {**a, "repeats": repeats}
    out["round_order"] = order
    out["ratios"] = {n: paired_ratio(runs, x, y) for n, x, y in RATIOS}
    out["ratios_cpu"] = {n: paired_ratio(runs, x, y, "seq_per_cpu_s") for n, x, y in RATIOS}
    return out


if __name__ == "__main__":
    print(json.dumps(run_mode(sys.argv[1], json.loads(sys.argv[2]))))
