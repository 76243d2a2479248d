"""The reference models (CNNClassifier, UNet, Generator, PatchDiscriminator) and the GAN loss:
shapes and parameter counts, medimg-vs-torch backend parity with one state_dict, a tiny
over-fit per model, torch.compile, ONNX export, and clear errors for bad configurations."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from helpers import needs_cpu_kernels
from torch import nn

from medimg.losses import AdversarialLoss
from medimg.nn import CNNClassifier, Conv2d, ConvTranspose2d, Generator, PatchDiscriminator, UNet


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _convs_use(model: nn.Module, backend: str) -> bool:
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    return bool(convs) and all(isinstance(m, (Conv2d, ConvTranspose2d)) and m.backend == backend for m in convs)


# ----------------------------------------------------------------------------- shapes

@pytest.mark.parametrize(("kwargs", "params"), [
    # 3x3 convs with bias (no norm) + linear head: the study's model
    (dict(), (1 * 9 + 1) * 32 + (32 * 9 + 1) * 64 + (64 * 9 + 1) * 128 + 129 * 2),
    (dict(in_channels=3, num_classes=5, widths=(16, 32), norm="batch"),
     3 * 9 * 16 + 2 * 16 + 16 * 9 * 32 + 2 * 32 + 33 * 5),
])
def test_cnn_shapes_and_parameter_count(kwargs, params):
    model = CNNClassifier(**kwargs)
    assert _params(model) == params and _convs_use(model, "auto")
    x = torch.randn(2, kwargs.get("in_channels", 1), 32, 40)
    logits, features = model(x, return_features=True)
    widths = kwargs.get("widths", (32, 64, 128))
    assert logits.shape == (2, kwargs.get("num_classes", 2))
    assert features.shape == (2, widths[-1], 32 // 2 ** len(widths), 40 // 2 ** len(widths))
    assert model.embed(x).shape == (2, widths[-1])


@pytest.mark.parametrize(("kwargs", "params"), [
    (dict(), 7_762_498),  # base 32, depth 4: a quarter of Ronneberger's 31M (base 64)
    (dict(base=8, depth=3, norm=None, up="bilinear"), 112_626),
    # widths 4, 8, 16: encoder 268 + 896 + 3520, up 520 + 132, decoder 1760 + 448, head 20
    (dict(in_channels=3, out_channels=4, base=4, depth=2, norm="group", dropout=0.1), 7_564),
])
def test_unet_shapes_and_parameter_count(kwargs, params):
    model = UNet(**kwargs).eval()
    assert _params(model) == params and _convs_use(model, "auto")
    step = 2 ** kwargs.get("depth", 4)
    x = torch.randn(1, kwargs.get("in_channels", 1), 3 * step, 2 * step)
    assert model(x).shape == (1, kwargs.get("out_channels", 2), 3 * step, 2 * step)


def test_unet_deep_supervision_returns_every_level_in_training_only():
    model = UNet(base=4, depth=3, deep_supervision=True)
    outputs = model(torch.randn(2, 1, 32, 32))
    assert isinstance(outputs, list) and len(outputs) == 3
    assert all(o.shape == (2, 2, 32, 32) for o in outputs)
    assert model.eval()(torch.randn(2, 1, 32, 32)).shape == (2, 2, 32, 32)


@pytest.mark.parametrize("scale", [1, 2])
def test_generator_starts_as_identity_and_stays_in_unit_range(scale):
    gen = Generator(channels=1, base=4, depth=2, scale=scale)
    x = torch.rand(2, 1, 16, 16)
    out = gen(x)
    assert out.shape == (2, 1, 16 * scale, 16 * scale)
    upscaled = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False) if scale > 1 else x
    torch.testing.assert_close(out, upscaled.clamp(1e-4, 1 - 1e-4), rtol=0, atol=1e-6)
    with torch.no_grad():
        gen.unet.head.bias.fill_(50.0)
    assert gen(x).min() > 0 and gen(x).max() <= 1


@pytest.mark.parametrize("spectral_norm", [False, True])
def test_patch_discriminator_scores_patches(spectral_norm):
    disc = PatchDiscriminator(in_channels=2, base=8, norm=None if spectral_norm else "batch",
                              spectral_norm=spectral_norm)
    assert disc(torch.rand(2, 2, 256, 256)).shape == (2, 1, 30, 30)  # 70x70 patches, as pix2pix
    assert disc(torch.rand(2, 2, 64, 64)).shape == (2, 1, 6, 6)


# ----------------------------------------------------------------------------- backend parity

def _pair(factory, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    ours = factory("medimg")
    theirs = factory("torch")
    theirs.load_state_dict(ours.state_dict())
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


FACTORIES = {
    "cnn": (lambda b: CNNClassifier(widths=(8, 16, 32), dropout=0.0, backend=b), (4, 1, 32, 32)),
    "cnn-bn": (lambda b: CNNClassifier(in_channels=3, widths=(16, 32), norm="batch", dropout=0.0, backend=b),
               (4, 3, 24, 24)),
    "unet": (lambda b: UNet(base=8, depth=2, backend=b), (2, 1, 32, 32)),
    "unet-bilinear": (lambda b: UNet(base=16, depth=2, norm=None, up="bilinear", backend=b), (2, 1, 16, 24)),
    "generator": (lambda b: Generator(base=8, depth=2, scale=2, backend=b), (2, 1, 16, 16)),
    "discriminator": (lambda b: PatchDiscriminator(2, base=8, spectral_norm=True, norm=None, backend=b),
                      (2, 2, 64, 64)),
}


@needs_cpu_kernels
@pytest.mark.parametrize("name", list(FACTORIES))
def test_backends_agree_on_outputs_and_gradients(name):
    factory, shape = FACTORIES[name]
    ours, theirs = _pair(factory)
    assert _convs_use(ours, "medimg") and _convs_use(theirs, "torch")
    if name == "generator":  # zero-initialised head: give the residual path something to carry
        for model in (ours, theirs):
            torch.manual_seed(1)
            nn.init.normal_(model.unet.head.weight, std=0.1)
    x = torch.rand(shape)
    y_ours, y_theirs = ours(x), theirs(x)
    torch.testing.assert_close(y_ours, y_theirs, rtol=1e-4, atol=1e-5)
    gy = torch.randn_like(y_ours)
    grads_ours = torch.autograd.grad(y_ours, list(ours.parameters()), gy)
    grads_theirs = torch.autograd.grad(y_theirs, list(theirs.parameters()), gy)
    for (pname, _), a, b in zip(ours.named_parameters(), grads_ours, grads_theirs, strict=True):
        scale = b.abs().max().item() + 1e-6
        torch.testing.assert_close(a / scale, b / scale, rtol=0, atol=2e-4, msg=pname)


def test_state_dicts_are_interchangeable_across_backends():
    for factory, _ in FACTORIES.values():
        assert factory("medimg").state_dict().keys() == factory("torch").state_dict().keys()


# ----------------------------------------------------------------------------- over-fitting

def _steps_to_tenth(model: nn.Module, loss_fn, max_steps: int, lr: float = 1e-2) -> int:
    """Adam steps until the loss is below a tenth of its first value (max_steps + 1 if never)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    first = None
    for step in range(max_steps):
        optimizer.zero_grad()
        loss = loss_fn()
        if first is None:
            first = loss.item()
        if loss.item() < first / 10:
            return step
        loss.backward()
        optimizer.step()
    return max_steps + 1


def _smooth_images(n: int, size: int) -> torch.Tensor:
    grid = torch.linspace(0, 1, size)
    phase = torch.rand(n, 1, 1, 1, generator=torch.Generator().manual_seed(3)) * 6
    return (torch.sin(6 * grid[:, None] + phase) * torch.cos(5 * grid[None, :]) + 1) / 2


@needs_cpu_kernels
def test_cnn_overfits_eight_samples():
    torch.manual_seed(0)
    model = CNNClassifier(widths=(8, 16, 32), dropout=0.0, backend="medimg")
    x, y = torch.randn(8, 1, 32, 32), torch.arange(8) % 2
    assert _steps_to_tenth(model, lambda: F.cross_entropy(model(x), y), 300) <= 300


@needs_cpu_kernels
def test_unet_overfits_eight_masks():
    torch.manual_seed(0)
    model = UNet(base=8, depth=2, backend="medimg")
    x, masks = torch.randn(8, 1, 32, 32), (torch.randn(8, 32, 32) > 0).long()
    assert _steps_to_tenth(model, lambda: F.cross_entropy(model(x), masks), 300) <= 300


@needs_cpu_kernels
@pytest.mark.parametrize("scale", [1, 2])
def test_generator_learns_to_restore_contrast(scale):
    torch.manual_seed(0)
    clean = _smooth_images(8, 32)
    degraded = 0.25 + 0.5 * clean  # halved contrast
    if scale == 2:
        degraded = F.avg_pool2d(degraded, 2)
    gen = Generator(base=8, depth=2, scale=scale, backend="medimg")
    assert _steps_to_tenth(gen, lambda: F.l1_loss(gen(degraded), clean), 300) <= 300


@needs_cpu_kernels
@pytest.mark.parametrize("mode", ["bce", "lsgan"])
def test_discriminator_learns_real_from_fake(mode):
    torch.manual_seed(0)
    disc, loss = PatchDiscriminator(2, base=8, backend="medimg"), AdversarialLoss(mode)
    clean = _smooth_images(8, 64)
    real, fake = torch.cat([clean, clean], 1), torch.cat([clean, torch.rand_like(clean)], 1)
    assert _steps_to_tenth(disc, lambda: loss.discriminator(disc(real), disc(fake)), 300) <= 300


# ----------------------------------------------------------------------------- losses

def test_adversarial_loss_values():
    logits = torch.tensor([[2.0, -1.0]])
    bce = AdversarialLoss("bce", l1_weight=10.0)
    torch.testing.assert_close(bce(logits, True), F.binary_cross_entropy_with_logits(logits, torch.ones(1, 2)))
    torch.testing.assert_close(bce.discriminator(logits, -logits), bce(logits, True))
    fake, target = torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 0.5)
    torch.testing.assert_close(bce.generator(logits, fake, target), bce(logits, True) + 10.0 * 0.5)
    lsgan = AdversarialLoss("lsgan")
    torch.testing.assert_close(lsgan(logits, False), (logits**2).mean())
    torch.testing.assert_close(lsgan.generator(logits), ((logits - 1) ** 2).mean())


def test_adversarial_loss_errors():
    with pytest.raises(ValueError, match="mode: expected one of"):
        AdversarialLoss("wgan")
    with pytest.raises(ValueError, match="l1_weight"):
        AdversarialLoss(l1_weight=-1.0)
    loss, logits = AdversarialLoss(), torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match="pass both"):
        loss.generator(logits, fake=torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="target: shape"):
        loss.generator(logits, fake=torch.zeros(1, 1, 8, 8), target=torch.zeros(1, 1, 4, 4))


# ----------------------------------------------------------------------------- compile and export

@needs_cpu_kernels
@pytest.mark.parametrize("name", ["cnn", "unet"])
def test_torch_compile_runs_the_models_on_medimg_ops(name):
    factory, shape = FACTORIES[name]
    torch.manual_seed(0)
    model = factory("medimg").eval()
    x = torch.rand(shape, requires_grad=True)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    out = compiled(x)
    torch.testing.assert_close(out, model(x))
    (grad,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(grad, torch.autograd.grad(model(x).sum(), x)[0])


@pytest.mark.parametrize("name", ["cnn", "unet"])
def test_onnx_export_with_torch_backend(name):
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    factory, shape = FACTORIES[name]
    model = factory("torch").eval()
    x = torch.rand(shape)
    program = torch.onnx.export(model, (x,), dynamo=True, verbose=False)
    buffer = io.BytesIO()
    program.save(buffer)
    session = onnxruntime.InferenceSession(buffer.getvalue())
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    torch.testing.assert_close(torch.from_numpy(got), model(x), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- bad configurations

@pytest.mark.parametrize(("build", "call_shape", "match"), [
    (lambda: UNet(depth=4), (1, 1, 40, 40), r"not divisible by 2\^depth = 16"),
    (lambda: UNet(in_channels=3), (1, 1, 32, 32), r"input: expected \(N, 3, H, W\)"),
    (lambda: CNNClassifier(in_channels=1), (1, 3, 32, 32), r"input: expected \(N, 1, H, W\)"),
    (lambda: CNNClassifier(widths=(8, 8, 8, 8)), (1, 1, 8, 8), "smaller than 16 pixels"),
    (lambda: Generator(channels=1), (1, 3, 32, 32), r"input: expected \(N, 1, H, W\)"),
    (lambda: PatchDiscriminator(in_channels=2), (1, 1, 64, 64), r"input: expected \(N, 2, H, W\)"),
])
def test_bad_inputs_raise_clear_errors(build, call_shape, match):
    with pytest.raises(ValueError, match=match):
        build()(torch.rand(call_shape))


@pytest.mark.parametrize(("build", "match"), [
    (lambda: UNet(up="nearest"), "up: expected one of"),
    (lambda: UNet(norm="layer"), "norm: expected one of"),
    (lambda: UNet(depth=0), "depth and base"),
    (lambda: UNet(backend="cudnn"), "backend: expected one of"),
    (lambda: CNNClassifier(widths=()), "widths: expected positive"),
    (lambda: CNNClassifier(kernel_size=4), "kernel_size: expected an odd size"),
    (lambda: Generator(scale=3), "scale: expected 1 or 2"),
    (lambda: PatchDiscriminator(layers=0), "layers: expected >= 1"),
])
def test_bad_configurations_raise_clear_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build()
