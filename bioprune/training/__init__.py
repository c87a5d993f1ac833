"""Masked-LM training (rules/pretrain.smk and the reference model). Modules: loop (TrainConfig, train_mlm),
pretraining (one pretrain arm from shards and a selection), distributed and ddp_worker (torchrun data
parallelism), dataflow (token batches, prefetch), batching (padding, masks, per-sample loss), attention
(SDPA), gpumem (memory model)."""
from bioprune.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "loop": "TrainConfig mlm_eval_loss total_steps train_mlm",
    "pretraining": "pretrain",
})
