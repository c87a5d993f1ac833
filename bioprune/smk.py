"""Glue for `script:` rules: log to the rule's log file, turn BiopruneError into a clear exit."""
from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Callable


def run_script(snakemake, fn: Callable[[], None]) -> None:
    """Send logging and stderr to snakemake.log[0], run `fn`, and exit 1 with the message on error."""
    from bioprune.errors import BiopruneError, exit_on_sigterm

    exit_on_sigterm()

    log_path = snakemake.log[0]
    fh = open(log_path, "w")
    handler = logging.StreamHandler(fh)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    try:
        import torch

        torch.set_num_threads(max(1, int(snakemake.threads)))  # no oversubscription when jobs run side by side
    except ImportError:
        pass
    from bioprune import __file__ as package_file, __version__

    # provenance: which bioprune ran (the workflow's own copy, found through Snakemake's script search path)
    logging.getLogger("bioprune").info("bioprune %s from %s", __version__, Path(package_file).parent)
    with contextlib.redirect_stderr(fh):
        try:
            fn()
        except BiopruneError as e:
            logging.getLogger("bioprune").error("%s", e)
            print(f"bioprune error: {e}", file=sys.__stderr__)
            fh.flush()
            sys.exit(1)
        finally:
            fh.flush()
