"""Masked-LM training (rules/pretrain.smk and the reference model). Modules: loop (TrainConfig, train_mlm),
pretraining (one pretrain arm from shards and a selection), distributed and ddp_worker (torchrun data
parallelism), dataflow (token batches, prefetch), batching (padding, masks, per-sample loss), attention
(SDPA), gpumem (memory model)."""
from bioprune.lazy import lazy_exports

_EXPORTS = {
    "TrainConfig": "loop",
    "mlm_eval_loss": "loop",
    "pretrain": "pretraining",
    "total_steps": "loop",
    "train_mlm": "loop",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
