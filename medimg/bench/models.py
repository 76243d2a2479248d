"""``medimg bench models``: one training step (forward + backward + Adam) of each reference
model with ``backend="medimg"`` against the same model with ``backend="torch"``, same weights,
same batch, in one run.

Cases (float32, on the CPU and on a CUDA device): CNNClassifier (the study's defaults) on
32 x 1x256^2; UNet (base 32, depth 4, batch norm) on 4 x 1x256^2 with 2-class masks; the
enhancement GAN (Generator base 32 depth 3 + PatchDiscriminator, pix2pix losses, both optimiser
steps) on 8 x 1x256^2 pairs; SequenceClassifier (CNN encoder + GRU) on 32 sequences of 16 frames at 64^2. The ratio is
(torch-backend time) / (medimg-backend time): above 1 means medimg trains faster.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medimg.bench.report import Row, device_name, format_rows
from medimg.bench.timing import measure_interleaved
from medimg.losses import AdversarialLoss
from medimg.nn import CNNClassifier, Generator, PatchDiscriminator, SequenceClassifier, UNet

BACKENDS = ("medimg", "torch")
Step = Callable[[], None]


def _adam_step(model: nn.Module, loss_fn: Callable[[], Tensor]) -> Step:
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        loss_fn().backward()
        optimiser.step()

    return step


def cnn_step(backend: str, device: str = "cpu", batch: int = 32, size: int = 256) -> Step:
    """Cross-entropy step of the study's CNN classifier."""
    torch.manual_seed(0)
    model = CNNClassifier(backend=backend).to(device)
    images, labels = torch.rand(batch, 1, size, size).to(device), torch.randint(0, 2, (batch,)).to(device)
    return _adam_step(model, lambda: F.cross_entropy(model(images), labels))


def unet_step(backend: str, device: str = "cpu", batch: int = 4, size: int = 256) -> Step:
    """Cross-entropy step of the U-Net on 2-class masks."""
    torch.manual_seed(0)
    model = UNet(backend=backend).to(device)
    images, masks = torch.rand(batch, 1, size, size).to(device), torch.randint(0, 2, (batch, size, size)).to(device)
    return _adam_step(model, lambda: F.cross_entropy(model(images), masks))


def gan_step(backend: str, device: str = "cpu", batch: int = 8, size: int = 256) -> Step:
    """One pix2pix iteration: a discriminator step on (degraded, clean) vs (degraded, G(degraded)),
    then a generator step on the adversarial + 100 x L1 loss."""
    torch.manual_seed(0)
    gen = Generator(base=32, depth=3, backend=backend).to(device)
    disc = PatchDiscriminator(2, base=64, backend=backend).to(device)
    opt_g = torch.optim.Adam(gen.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.5, 0.999))
    loss = AdversarialLoss("bce", l1_weight=100.0)
    clean = torch.rand(batch, 1, size, size).to(device)
    degraded = (clean + 0.1 * torch.randn_like(clean)).clamp(0, 1)

    def step() -> None:
        fake = gen(degraded)
        opt_d.zero_grad(set_to_none=True)
        loss.discriminator(disc(torch.cat([degraded, clean], 1)), disc(torch.cat([degraded, fake.detach()], 1))
                           ).backward()
        opt_d.step()
        opt_g.zero_grad(set_to_none=True)
        loss.generator(disc(torch.cat([degraded, fake], 1)), fake, clean).backward()
        opt_g.step()

    return step


def sequence_step(backend: str, device: str = "cpu", batch: int = 32, frames: int = 16, size: int = 64) -> Step:
    """Cross-entropy step of a CNN + GRU cine-sequence classifier."""
    torch.manual_seed(0)
    model = SequenceClassifier(num_classes=2, rnn="gru", backend=backend).to(device)
    clips, labels = torch.rand(batch, frames, 1, size, size).to(device), torch.randint(0, 2, (batch,)).to(device)
    return _adam_step(model, lambda: F.cross_entropy(model(clips), labels))


@dataclass(frozen=True)
class Case:
    name: str
    step: Callable[[str, str], Step]  # (backend, device) -> one training step
    items: int  # images (or sequences) per step


CASES = (
    Case("CNNClassifier, batch 32 x 1x256^2", cnn_step, 32),
    Case("UNet (base 32, depth 4, BN), batch 4 x 1x256^2", unet_step, 4),
    Case("GAN (Generator + PatchDiscriminator), batch 8 x 1x256^2", gan_step, 8),
    Case("SequenceClassifier (CNN + GRU), 32 x 16 frames x 64^2", sequence_step, 32),
)


def label(backend: str) -> str:
    return f'backend="{backend}"'


DEVICES = ("cpu", "cuda")


def run(min_run_time: float = 0.5, devices: tuple[str, ...] = ("cpu",)) -> str:
    """Run every case on each of `devices` ("cpu", "cuda") and return the report."""
    reports = []
    for device in devices:
        prefix = "" if device == "cpu" else f"{device} "
        rows = []
        for case in CASES:
            steps = {label(backend): case.step(backend, device) for backend in BACKENDS}
            rows += [Row(prefix + case.name, name, timing, None, case.items)
                     for name, timing in measure_interleaved(steps, min_run_time).items()]
        header = (f"training step (forward + backward + Adam) on {device_name(device)}; "
                  f"speed-up = torch-backend time / medimg-backend time, same weights and batch")
        reports.append(header + format_rows(rows, label("medimg"), None))
    return "\n\n".join(reports)
