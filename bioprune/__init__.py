"""bioprune: influence-guided data pruning before pretraining biological foundation models."""
from .models import load_model

__all__ = ["load_model", "__version__"]
__version__ = "0.1.0"
