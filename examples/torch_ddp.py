"""Train across processes: DistributedDataParallel with fastloss.torch.CrossEntropyLoss.

Two CPU processes on this machine (the gloo backend, a free localhost port)
train the same small MLP for a few SGD steps.  Every step each process takes
its own half of the batch; DistributedDataParallel averages the gradients
between the processes in backward, so both keep identical weights.  The
whole run is made twice from the same seed, with
``fastloss.torch.CrossEntropyLoss`` and with ``torch.nn.CrossEntropyLoss``,
in the same processes; the script prints the largest difference between the
final weights of the two runs and exits with status 1 if it exceeds 1e-6.

Nothing in the training loop is specific to fastloss: the loss module is a
drop-in, so a DDP script switches by changing one constructor.  The module
pickles like torch's (``torch.multiprocessing`` may send it to the workers).

Usage::

    python examples/torch_ddp.py [--world-size 2] [--steps 20] [--json]
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import sys
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

import fastloss.torch as flt

TOLERANCE = 1e-6
LOSSES = {"fastloss": flt.CrossEntropyLoss, "torch": nn.CrossEntropyLoss}
N_FEATURES, N_CLASSES, BATCH = 20, 10, 64


def free_port():
    """A TCP port nobody listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(N_FEATURES, 32), nn.ReLU(), nn.Linear(32, N_CLASSES))


def batches(steps):
    """The same batches in every process: features and labels of a toy problem."""
    generator = torch.Generator().manual_seed(1)
    centers = torch.randn(N_CLASSES, N_FEATURES, generator=generator) * 2
    for _ in range(steps):
        labels = torch.randint(0, N_CLASSES, (BATCH,), generator=generator)
        features = centers[labels] + torch.randn(BATCH, N_FEATURES, generator=generator)
        yield features, labels


def train_with(loss_class, rank, world_size, steps):
    """SGD steps of a DistributedDataParallel model: its final weights and grad_fn's name."""
    model = DistributedDataParallel(make_model())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss_fn = loss_class(label_smoothing=0.05)
    for features, labels in batches(steps):
        # This process's share of the batch.
        mine = slice(rank, None, world_size)
        optimizer.zero_grad()
        loss = loss_fn(model(features[mine]), labels[mine])
        loss.backward()
        optimizer.step()
    return {"weights": model.module.state_dict(), "grad_fn": type(loss.grad_fn).__name__}


def train(rank, world_size, port, steps, out_dir):
    """One process: both runs (fastloss's loss, then torch's); rank 0 saves the weights."""
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        for name, loss_class in LOSSES.items():
            result = train_with(loss_class, rank, world_size, steps)
            if rank == 0:
                torch.save(result, os.path.join(out_dir, name + ".pt"))
    finally:
        # The DDP models hold the process group.  Collect them now, so that
        # destroying the group joins gloo's worker threads while Python still
        # runs: left to interpreter shutdown, a worker that drops its last
        # reference to a finished allreduce takes the GIL of a finalizing
        # interpreter and the process aborts ("terminate called without an
        # active exception", about 1 run in 10 with torch 2.13).
        gc.collect()
        dist.destroy_process_group()


def run(world_size=2, steps=20):
    """Train with both losses; the largest weight difference and the final loss."""
    with tempfile.TemporaryDirectory() as out_dir:
        mp.spawn(train, args=(world_size, free_port(), steps, out_dir), nprocs=world_size,
                 join=True)
        saved = {name: torch.load(os.path.join(out_dir, name + ".pt")) for name in LOSSES}
    weights = {name: saved[name]["weights"] for name in LOSSES}
    difference = max((weights["fastloss"][k] - weights["torch"][k]).abs().max().item()
                     for k in weights["torch"])
    model = make_model()
    model.load_state_dict(weights["fastloss"])
    features, labels = next(batches(1))
    with torch.no_grad():
        final_loss = nn.functional.cross_entropy(model(features), labels).item()
    return {"max_difference": difference, "final_loss": final_loss, "steps": steps,
            "world_size": world_size,
            "grad_fn": {name: saved[name]["grad_fn"] for name in LOSSES}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args()
    summary = run(args.world_size, args.steps)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{args.world_size} processes, {args.steps} steps of DistributedDataParallel")
        print(f"largest weight difference, fastloss vs torch loss: "
              f"{summary['max_difference']:.2e} (tolerance {TOLERANCE:.0e})")
        print(f"loss on the first batch after training: {summary['final_loss']:.4f}")
    return 0 if summary["max_difference"] <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
