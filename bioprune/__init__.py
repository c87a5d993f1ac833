"""bioprune: influence-guided data pruning before pretraining biological foundation models."""

__all__ = ["load_model", "__version__"]
__version__ = "0.1.0"


def __getattr__(name: str):
    """`bioprune.load_model` on first use: the stages that need no model (ingest, merge, selection)
    never import torch (about 200 MB and a second of start-up per job)."""
    if name == "load_model":
        from .models import load_model

        return load_model
    raise AttributeError(f"module 'bioprune' has no attribute {name!r}")
