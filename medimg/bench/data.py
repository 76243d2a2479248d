"""``medimg bench data``: rendering a batch of each synthetic dataset against one training step
of the reference study's CNN on a batch of the same size.

Data generation must never be what a training loop waits for: the ratio printed is
(training-step time) / (rendering time) for a batch of 32 at 256 x 256 (cine: 32 sequences of
16 frames at 64 x 64), both on this machine's CPU in the same run.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from medimg.bench.timing import measure
from medimg.data.synthetic import BrainMRI, ChestXRay, CineSequences, EnhancementPairs, RetinaVessels
from medimg.nn import CNNClassifier

BATCH, SIZE = 32, 256


def training_step(batch: int = BATCH, size: int = SIZE) -> Callable[[], object]:
    """One Adam step (lr 1e-3, cross-entropy) of the study's CNNClassifier on a fixed batch."""
    model = CNNClassifier()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = torch.rand(batch, 1, size, size)
    labels = torch.randint(0, 2, (batch,))

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(images), labels).backward()
        optimiser.step()

    return step


def renderers() -> dict[str, Callable[[], object]]:
    """Name -> a callable rendering one fresh batch."""
    generator = torch.Generator().manual_seed(0)
    datasets = {
        "BrainMRI 32x256^2": BrainMRI(10_000, size=SIZE),
        "ChestXRay 32x256^2": ChestXRay(10_000, size=SIZE),
        "RetinaVessels 32x256^2": RetinaVessels(10_000, size=SIZE),
        "EnhancementPairs (mixed) 32x256^2": EnhancementPairs(10_000, size=SIZE, degradation="mixed"),
        "CineSequences 32x16x64^2": CineSequences(10_000, frames=16, size=64),
    }
    return {name: (lambda ds=ds: ds.batch(BATCH, generator)) for name, ds in datasets.items()}


DEVICES = ("cpu",)


def run(min_run_time: float = 0.5, devices: tuple[str, ...] = ("cpu",)) -> str:
    """Run every case on the CPU (the only entry of DEVICES) and return the report."""
    step = measure(training_step(), min_run_time)
    lines = [f"synthetic data on the CPU, {torch.get_num_threads()} threads; one training step of the study's CNN "
             f"(batch {BATCH} x 1x{SIZE}^2, forward + backward + Adam): {step.median * 1e3:.1f} ms",
             f"  {'dataset':<36}{'render ms':>11}{'IQR ms':>9}{'step / render':>15}"]
    for name, fn in renderers().items():
        timing = measure(fn, min_run_time)
        lines.append(f"  {name:<36}{timing.median * 1e3:>11.2f}{timing.iqr * 1e3:>9.2f}"
                     f"{step.median / timing.median:>14.1f}x")
    return "\n".join(lines)
