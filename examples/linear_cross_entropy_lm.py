"""Train a small next-token model on Python's own standard library, without the logits.

The corpus is the source of the standard library that ships with this
Python (nothing is downloaded), cut into tokens (identifiers, numbers and
single symbols).  The model reads the previous CONTEXT tokens (embeddings,
concatenated) through one tanh layer into a hidden state h, and predicts the
next token over a vocabulary of V tokens with an output layer (V, D): the
part whose (N, V) logits dominate training memory.  Its loss is
``fastloss.torch.linear_cross_entropy(h, head.weight, target, head.bias)``,
which never holds the logits; every ``check_every`` steps the same batch also
goes through torch's ``F.cross_entropy(head(h), target)``, and the script
prints both losses (they must agree to 1e-4 relative in float32) and the
peak memory of one training step each way.

Usage::

    python examples/linear_cross_entropy_lm.py            # V = 50_000, N = 4_096
    python examples/linear_cross_entropy_lm.py --quick    # a smoke run, < 30 s

At the default size the logits of one batch are 0.8 GB in float32 and torch's
unfused step peaks at about three times that; the fused step needs one chunk
of logits (at most a tenth of them plus the weight's size).  Exits with status 1 if the losses
disagree.
"""
from __future__ import annotations

import argparse
import collections
import math
import pathlib
import re
import sys
import sysconfig
import time

import numpy as np
import torch
import torch.nn.functional as F

import fastloss.torch as flt

CONTEXT = 3
TOLERANCE = 1e-4
TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+|\S")


def load_corpus(max_files=None):
    """The tokens of the standard library's .py files (sorted by path; the first max_files)."""
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)
    tokens = []
    for path in files[:max_files]:
        try:
            tokens.extend(TOKEN.findall(path.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, OSError):
            continue                    # a few test files are deliberately not UTF-8
    return tokens


def encode(tokens, vocab_size):
    """Token ids: the vocab_size - 1 most common tokens, and 0 for every other one."""
    counts = collections.Counter(tokens)
    vocabulary = {tok: i + 1 for i, (tok, _) in enumerate(counts.most_common(vocab_size - 1))}
    return np.array([vocabulary.get(tok, 0) for tok in tokens], dtype=np.int64)


class NextTokenModel(torch.nn.Module):
    """Embeddings of the CONTEXT previous tokens -> tanh layer -> output layer (V, D)."""

    def __init__(self, vocab_size, embedding_dim, hidden_dim):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab_size, embedding_dim)
        self.layer = torch.nn.Linear(CONTEXT * embedding_dim, hidden_dim)
        self.head = torch.nn.Linear(hidden_dim, vocab_size)

    def hidden(self, context):
        return torch.tanh(self.layer(self.embed(context).flatten(1)))


def fused_loss(model, context, target):
    return flt.linear_cross_entropy(model.hidden(context), model.head.weight, target,
                                    model.head.bias)


def unfused_loss(model, context, target):
    return F.cross_entropy(model.head(model.hidden(context)), target)


def _status_bytes(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return None


def step_peak_memory(step):
    """Run step(); return (its result, peak resident memory above the start in bytes or None).

    Linux only: /proc/self/clear_refs resets the high-water mark VmHWM.
    """
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        return step(), None
    before = _status_bytes("VmRSS")
    result = step()
    peak = _status_bytes("VmHWM")
    return result, None if before is None or peak is None else peak - before


def batches(ids, batch_size, generator):
    """Random (context, target) batches from the token ids, forever."""
    n = len(ids) - CONTEXT
    ids = torch.from_numpy(ids)
    offsets = torch.arange(CONTEXT)
    while True:
        start = torch.randint(0, n, (batch_size,), generator=generator)
        yield ids[start[:, None] + offsets], ids[start + CONTEXT]


def run(quick=False, steps=None, vocab_size=None, batch_size=None, check_every=None,
        verbose=True, seed=0):
    """Train; return a summary dict (losses, agreement, peak memory of each way)."""
    vocab_size = vocab_size or (4_000 if quick else 50_000)
    batch_size = batch_size or (512 if quick else 4_096)
    steps = steps or (30 if quick else 200)
    check_every = check_every or (10 if quick else 50)
    embedding_dim, hidden_dim = (32, 128) if quick else (64, 256)

    tokens = load_corpus(max_files=60 if quick else None)
    ids = encode(tokens, vocab_size)
    n_train = int(0.9 * len(ids))
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = NextTokenModel(vocab_size, embedding_dim, hidden_dim)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    logits_bytes = batch_size * vocab_size * 4
    if verbose:
        print(f"corpus: {len(tokens):_} tokens of the standard library, vocabulary "
              f"{vocab_size:_}; batch {batch_size:_} tokens: the logits of one batch are "
              f"{logits_bytes / 2**20:.0f} MiB")

    losses, differences, memory = [], [], {"fused": [], "unfused": []}
    train = batches(ids[:n_train], batch_size, generator)
    start_time = time.perf_counter()
    for step in range(steps):
        context, target = next(train)
        if step % check_every == 0 or step == steps - 1:
            # The same batch through torch's unfused loss: its value, gradients, memory.
            optimizer.zero_grad(set_to_none=True)

            def unfused_step():
                loss = unfused_loss(model, context, target)
                loss.backward()
                return loss.item()
            reference_loss, peak = step_peak_memory(unfused_step)
            memory["unfused"].append(peak)
        optimizer.zero_grad(set_to_none=True)

        def fused_step():
            loss = fused_loss(model, context, target)
            loss.backward()
            return loss.item()
        loss, peak = step_peak_memory(fused_step)
        memory["fused"].append(peak)
        losses.append(loss)
        if step % check_every == 0 or step == steps - 1:
            difference = abs(loss - reference_loss) / abs(reference_loss)
            differences.append(difference)
            if verbose:
                print(f"step {step:4d}: loss {loss:.4f} (fused) {reference_loss:.4f} "
                      f"(torch unfused), relative difference {difference:.1e}")
        optimizer.step()
    seconds = time.perf_counter() - start_time

    with torch.no_grad():       # held-out loss, by the fused layer without gradients
        held_out = batches(ids[n_train:], batch_size, torch.Generator().manual_seed(1))
        test_loss = float(np.mean([fused_loss(model, *next(held_out)).item()
                                   for _ in range(3)]))
    peaks = {way: max((m for m in values if m is not None), default=None)
             for way, values in memory.items()}
    summary = {"losses": np.array(losses), "max_difference": max(differences),
               "test_loss": test_loss, "uniform_loss": math.log(vocab_size),
               "peak_bytes": peaks, "logits_bytes": logits_bytes, "seconds": seconds}
    if verbose:
        print(f"held-out loss {test_loss:.3f} (a uniform guess: {math.log(vocab_size):.3f}); "
              f"{steps} steps in {seconds:.1f} s")
        if None not in peaks.values():
            print(f"peak memory of one training step above its start: fused "
                  f"{peaks['fused'] / 2**20:.0f} MiB, torch unfused "
                  f"{peaks['unfused'] / 2**20:.0f} MiB")
        print(f"largest relative difference of the losses: {max(differences):.1e} "
              f"(tolerance {TOLERANCE:g})")
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run (< 30 s)")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--vocab-size", type=int)
    parser.add_argument("--batch-size", type=int)
    args = parser.parse_args(argv)
    summary = run(quick=args.quick, steps=args.steps, vocab_size=args.vocab_size,
                  batch_size=args.batch_size)
    return 0 if summary["max_difference"] <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
