"""bioprune: influence-guided data pruning before pretraining biological foundation models."""

import os

# CPU float results must not depend on thread timing or on where an array happens to sit in memory: MKL,
# left alone, picks kernels by alignment and balances work by load, so a batch could score 4e-5 apart
# between two runs of one config on a busy machine (measured: 3 of 10 fresh processes under load).
# Conditional Numerical Reproducibility fixes the code path; read by MKL at its first call, so this must
# run before torch does any math. A user's own setting wins.
os.environ.setdefault("MKL_CBWR", "AUTO")
os.environ.setdefault("MKL_DYNAMIC", "FALSE")

__all__ = ["load_model", "__version__"]
__version__ = "0.1.0"


def __getattr__(name: str):
    """`bioprune.load_model` on first use: the stages that need no model (ingest, merge, selection)
    never import torch (about 200 MB and a second of start-up per job)."""
    if name == "load_model":
        from bioprune.models import load_model

        return load_model
    raise AttributeError(f"module 'bioprune' has no attribute {name!r}")
