"""medimg.nn.Conv2d is a drop-in torch.nn.Conv2d: same state_dict both ways, same outputs and
gradients as torch's module with the same weights, and `convert` swaps it into models."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from helpers import needs_cpu_kernels
from torch import nn

from medimg.nn import Conv2d, convert

CONFIGS = [
    dict(in_channels=1, out_channels=8, kernel_size=3, padding=1),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 5), stride=2, padding=(1, 2), bias=False),
    dict(in_channels=4, out_channels=8, kernel_size=3, padding="same", dilation=2, groups=2),
    dict(in_channels=3, out_channels=3, kernel_size=3, padding=1, groups=3, padding_mode="reflect"),
    dict(in_channels=2, out_channels=4, kernel_size=3, padding=2, padding_mode="circular"),
]


@needs_cpu_kernels
@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_same_outputs_and_gradients_as_torch(config):
    torch.manual_seed(0)
    ours = Conv2d(**config, backend="medimg")
    theirs = nn.Conv2d(**config)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, config["in_channels"], 13, 11, requires_grad=True)
    y_ours, y_theirs = ours(x), theirs(x)
    torch.testing.assert_close(y_ours, y_theirs, rtol=1e-5, atol=1e-5)
    gy = torch.randn_like(y_ours)
    g_ours = torch.autograd.grad(y_ours, (x, *ours.parameters()), gy)
    g_theirs = torch.autograd.grad(y_theirs, (x, *theirs.parameters()), gy)
    for a, b in zip(g_ours, g_theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_state_dict_loads_both_ways():
    ours, theirs = Conv2d(3, 5, 3, padding=1), nn.Conv2d(3, 5, 3, padding=1)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    theirs.load_state_dict(ours.state_dict())
    torch.testing.assert_close(theirs.weight, ours.weight)
    ours.load_state_dict(nn.Conv2d(3, 5, 3, padding=1).state_dict())


@pytest.mark.parametrize("backend", [pytest.param("medimg", marks=needs_cpu_kernels), "torch", "auto"])
def test_backend_attribute_and_repr(backend):
    conv = Conv2d(2, 4, 3, backend=backend)
    assert conv.backend == backend
    assert f"backend={backend!r}" in repr(conv)
    assert conv(torch.randn(2, 6, 6)).shape == (4, 4, 4)  # unbatched input, as torch.nn.Conv2d


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="backend: expected one of"):
        Conv2d(1, 1, 3, backend="cudnn")


def test_survives_deepcopy_and_torch_save():
    conv = Conv2d(2, 3, 3, backend="torch")
    assert copy.deepcopy(conv).backend == "torch"
    buffer = io.BytesIO()
    torch.save(conv, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert isinstance(loaded, Conv2d) and loaded.backend == "torch"


def _model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),  # no bias before BN:
        # its gradient is rounding noise that Adam would blow up to full steps
        nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU()),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2),
    )


@needs_cpu_kernels
def test_convert_swaps_every_conv_and_keeps_parameters():
    torch.manual_seed(0)
    model = _model().eval()
    params = list(model.parameters())
    x = torch.randn(4, 1, 16, 16)
    before = model(x)
    converted = convert(model, backend="medimg")
    assert converted is model
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 2 and all(type(m) is Conv2d and m.backend == "medimg" for m in convs)
    assert all(a is b for a, b in zip(model.parameters(), params, strict=True))  # optimizers stay valid
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)
    convert(model, backend="torch")
    assert all(m.backend == "torch" for m in convs)


def test_convert_of_a_bare_conv_and_of_other_subclasses():
    assert type(convert(nn.Conv2d(1, 2, 3))) is Conv2d

    class Custom(nn.Conv2d):
        pass

    custom = Custom(1, 2, 3)
    assert convert(custom) is custom


@needs_cpu_kernels
def test_training_step_with_converted_model_matches_torch():
    torch.manual_seed(1)
    reference = _model()
    ours = convert(copy.deepcopy(reference), backend="medimg")
    x, y = torch.randn(8, 1, 12, 12), torch.randint(0, 2, (8,))
    for model in (reference, ours):
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(3):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    for a, b in zip(ours.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", [pytest.param("medimg", marks=needs_cpu_kernels), "torch"])
def test_fused_relu(backend):
    conv = Conv2d(2, 4, 3, padding=1, activation="relu", backend=backend)
    x = torch.randn(2, 2, 8, 8)
    torch.testing.assert_close(conv(x), torch.relu(nn.functional.conv2d(x, conv.weight, conv.bias, padding=1)))
    assert "activation='relu'" in repr(conv)
    with pytest.raises(ValueError, match="activation: expected one of"):
        Conv2d(2, 4, 3, activation="tanh")
