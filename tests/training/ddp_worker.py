"""Run under torchrun by test_distributed.py: two DDP steps, then each rank writes a state hash."""

import hashlib
import json
import os
import sys

import torch

from flowrestore.training.trainer import TrainConfig, train


def digest(state):
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main(out):
    torch.set_num_threads(1)
    cfg = TrainConfig(
        task="denoise",
        steps=2,
        batch_size=4,
        patch_size=16,
        lr=1e-2,
        unet={"base_channels": 8, "channel_mults": [1, 2]},
        checkpoint=os.path.join(out, "ddp.pt"),
    )
    model, hist = train(cfg, progress=False)
    rank = int(os.environ["RANK"])
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(
            {
                "rank": rank,
                "world": hist.world_size,
                "model": digest(model.state_dict()),
                "ema": digest(hist.ema.shadow),
                "loss": hist.loss,
            },
            f,
        )


if __name__ == "__main__":
    main(sys.argv[1])
