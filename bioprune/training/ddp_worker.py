"""torchrun worker of a data-parallel pretrain (`pretrain.gpus` > 1): `python -m bioprune.training.ddp_worker
<args.json>`, launched by bioprune.training.distributed.launch; each rank runs `pretrain(**args)` (cfg as a TrainConfig)."""
from __future__ import annotations

import json
import logging
import os
import sys

from bioprune.training.loop import TrainConfig
from bioprune.training.pretraining import pretrain


def main(args_path: str) -> None:
    """torchrun worker: `pretrain(**args)` from the JSON file the launching stage wrote."""
    logging.basicConfig(level=logging.INFO if os.environ.get("RANK", "0") == "0" else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with open(args_path) as f:
        args = json.load(f)
    pretrain(**{**args, "cfg": TrainConfig(**args["cfg"])})


if __name__ == "__main__":
    main(sys.argv[1])
