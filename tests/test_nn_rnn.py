"""Sequence models: ElmanRNN is the seed's equation and torch.nn.RNN with the same weights;
SequenceClassifier and ConvGRU have the expected shapes and sizes, give the same results on both
convolution backends, share checkpoints across them, can fit a tiny data set, and reject bad
configurations and inputs with clear errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import needs_cpu_kernels
from torch import nn

from medimg.nn.cnn import CNNClassifier
from medimg.nn.conv import Conv2d
from medimg.nn.rnn import ConvGRU, ConvGRUCell, ElmanCell, ElmanRNN, SequenceClassifier

# ----------------------------------------------------------------------------- oracles


def seed_loop(rnn: ElmanRNN, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The seed's h_t = tanh(W_xh x_t + W_hh h_{t-1} + b_h), one sample and one column vector at a
    time; x (B, T, input) -> output (B, T, D*H), h_n (L*D, B, H)."""
    directions = 2 if rnn.bidirectional else 1
    outputs, finals = [], []
    for sample in x:
        layer_input, sample_finals = list(sample), []
        for layer in range(rnn.num_layers):
            per_direction = []
            for direction in range(directions):
                cell = rnn.cells[layer * directions + direction]
                w_xh, w_hh, b_h = cell.weight_xh, cell.weight_hh, cell.bias_h
                h = torch.zeros(rnn.hidden_size, 1, dtype=x.dtype)
                states = [None] * len(layer_input)
                times = range(len(layer_input))
                for t in reversed(times) if direction == 1 else times:
                    h = torch.tanh(w_xh @ layer_input[t][:, None] + w_hh @ h + b_h[:, None])
                    states[t] = h[:, 0]
                per_direction.append(states)
                sample_finals.append(h[:, 0])
            layer_input = [torch.cat([states[t] for states in per_direction]) for t in range(len(layer_input))]
        outputs.append(torch.stack(layer_input))
        finals.append(torch.stack(sample_finals))
    return torch.stack(outputs), torch.stack(finals, dim=1)


def conv_gru_reference(cell: ConvGRUCell, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Ballas et al.'s ConvGRU step written out with F.conv2d."""
    pad = cell.conv_n.kernel_size[0] // 2
    gates = torch.sigmoid(F.conv2d(torch.cat([x, h], 1), cell.conv_zr.weight, cell.conv_zr.bias, padding=pad))
    z, r = gates[:, :cell.hidden_channels], gates[:, cell.hidden_channels:]
    n = torch.tanh(F.conv2d(torch.cat([x, r * h], 1), cell.conv_n.weight, cell.conv_n.bias, padding=pad))
    return (1 - z) * n + z * h


def recurrent_parameters(kind: str, features: int, hidden: int, layers: int, directions: int) -> int:
    """Parameters of an Elman (one bias), GRU or LSTM (two biases per gate group) stack."""
    gates = {"elman": 1, "gru": 3, "lstm": 4}[kind]
    biases = hidden if kind == "elman" else 2 * gates * hidden
    total = 0
    for layer in range(layers):
        inputs = features if layer == 0 else directions * hidden
        total += directions * (gates * hidden * (inputs + hidden) + biases)
    return total


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def small_encoder(backend: str = "auto") -> CNNClassifier:
    return CNNClassifier(1, widths=(4, 8), backend=backend)


# ----------------------------------------------------------------------------- Elman recurrence


def test_elman_cell_is_the_seed_equation():
    torch.manual_seed(0)
    cell = ElmanCell(5, 7).double()
    assert [name for name, _ in cell.named_parameters()] == ["weight_xh", "weight_hh", "bias_h"]
    assert cell.weight_xh.shape == (7, 5) and cell.weight_hh.shape == (7, 7) and cell.bias_h.shape == (7,)
    assert all(p.abs().max() <= 1 / math.sqrt(7) for p in cell.parameters())  # RNNCell's init
    x, h = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 7, dtype=torch.float64)
    expected = torch.tanh(x @ cell.weight_xh.T + h @ cell.weight_hh.T + cell.bias_h)
    torch.testing.assert_close(cell(x, h), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(cell(x), cell(x, torch.zeros_like(h)), rtol=0, atol=0)
    assert ElmanCell(5, 7, bias=False).bias_h is None


@pytest.mark.parametrize(("num_layers", "bidirectional"), [(1, False), (1, True), (2, False), (2, True)])
def test_elman_rnn_equals_the_seed_loop(num_layers, bidirectional):
    torch.manual_seed(num_layers + 2 * bidirectional)
    rnn = ElmanRNN(3, 4, num_layers=num_layers, bidirectional=bidirectional).double()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    output, h_n = rnn(x)
    expected_output, expected_h_n = seed_loop(rnn, x)
    directions = 2 if bidirectional else 1
    assert output.shape == (2, 5, directions * 4) and h_n.shape == (num_layers * directions, 2, 4)
    torch.testing.assert_close(output, expected_output, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h_n, expected_h_n, rtol=1e-12, atol=1e-12)


def test_torch_rnn_weights_copied_by_hand_give_the_same_outputs():
    torch.manual_seed(1)
    theirs = nn.RNN(3, 6, nonlinearity="tanh", batch_first=True).double()
    ours = ElmanRNN(3, 6).double()
    with torch.no_grad():
        ours.cells[0].weight_xh.copy_(theirs.weight_ih_l0)
        ours.cells[0].weight_hh.copy_(theirs.weight_hh_l0)
        ours.cells[0].bias_h.copy_(theirs.bias_ih_l0 + theirs.bias_hh_l0)
    x = torch.randn(4, 7, 3, dtype=torch.float64)
    for a, b in zip(ours(x), theirs(x), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


RNN_CONFIGS = [
    dict(num_layers=1, bidirectional=False, batch_first=True, bias=True),
    dict(num_layers=1, bidirectional=True, batch_first=True, bias=False),
    dict(num_layers=2, bidirectional=False, batch_first=False, bias=True),
    dict(num_layers=2, bidirectional=True, batch_first=True, bias=True),
    dict(num_layers=3, bidirectional=True, batch_first=False, bias=True),
]


@pytest.mark.parametrize("config", RNN_CONFIGS, ids=str)
@pytest.mark.parametrize("with_h0", [False, True])
def test_elman_rnn_equals_torch_rnn(config, with_h0):
    torch.manual_seed(2)
    theirs = nn.RNN(5, 4, nonlinearity="tanh", **config).double()
    ours = ElmanRNN.from_torch(theirs)
    assert (ours.num_layers, ours.bidirectional, ours.batch_first, ours.bias) == tuple(config.values())
    assert ours.cells[0].weight_xh.dtype == torch.float64
    directions = 2 if config["bidirectional"] else 1
    x = torch.randn((3, 6, 5) if config["batch_first"] else (6, 3, 5), dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(config["num_layers"] * directions, 3, 4, dtype=torch.float64) if with_h0 else None
    (out_ours, h_ours), (out_theirs, h_theirs) = ours(x, h0), theirs(x, h0)
    torch.testing.assert_close(out_ours, out_theirs, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(h_ours, h_theirs, rtol=1e-10, atol=1e-10)
    grad_out = torch.randn_like(out_ours)
    (g_ours,) = torch.autograd.grad((out_ours * grad_out).sum() + h_ours.sum(), x)
    (g_theirs,) = torch.autograd.grad((out_theirs * grad_out).sum() + h_theirs.sum(), x)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-10, atol=1e-10)


def test_elman_rnn_unbatched_input_as_torch():
    torch.manual_seed(3)
    theirs = nn.RNN(2, 3, num_layers=2, bidirectional=True).double()
    ours = ElmanRNN.from_torch(theirs)
    x, h0 = torch.randn(5, 2, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    for a, b in zip(ours(x, h0), theirs(x, h0), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_elman_rnn_dropout_between_layers_in_training_only():
    torch.manual_seed(4)
    rnn = ElmanRNN(3, 8, num_layers=2, dropout=0.5)
    x = torch.randn(2, 4, 3)
    reference = ElmanRNN(3, 8, num_layers=2)
    reference.load_state_dict(rnn.state_dict())
    torch.testing.assert_close(rnn.eval()(x), reference(x))
    assert not torch.allclose(rnn.train()(x)[0], reference(x)[0])


def test_elman_rnn_gradcheck():
    torch.manual_seed(5)
    rnn = ElmanRNN(2, 3, num_layers=2, bidirectional=True).double()
    x = torch.randn(2, 3, 2, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, h0: rnn(x, h0), (x, h0))


# ----------------------------------------------------------------------------- SequenceClassifier


SEQUENCE_CONFIGS = [
    dict(rnn=kind, bidirectional=bidirectional, num_layers=num_layers)
    for kind in ("elman", "gru", "lstm") for bidirectional, num_layers in [(False, 1), (True, 1), (True, 2)]
]


@pytest.mark.parametrize("config", SEQUENCE_CONFIGS, ids=str)
def test_sequence_classifier_shapes_and_parameter_counts(config):
    torch.manual_seed(6)
    encoder = small_encoder()
    model = SequenceClassifier(num_classes=3, encoder=encoder, hidden_size=6, **config)
    directions = 2 if config["bidirectional"] else 1
    expected = (count(encoder) + recurrent_parameters(config["rnn"], 8, 6, config["num_layers"], directions)
                + directions * 6 * 3 + 3)
    assert count(model) == expected
    assert model(torch.randn(2, 3, 1, 8, 8)).shape == (2, 3)
    assert model.embed(torch.randn(2, 3, 1, 8, 8)).shape == (2, directions * 6)


def test_sequence_classifier_default_encoder():
    model = SequenceClassifier(num_classes=4, in_channels=3, hidden_size=16, task="regress")
    assert isinstance(model.encoder, CNNClassifier) and isinstance(model.rnn, ElmanRNN)
    convolutions = (3 * 32 + 32 * 64 + 64 * 128) * 9 + 32 + 64 + 128  # no classification head
    assert count(model.encoder) == convolutions
    assert count(model) == convolutions + recurrent_parameters("elman", 128, 16, 1, 1) + 16 * 4 + 4
    out = model(torch.randn(2, 2, 3, 8, 8))
    assert out.shape == (2, 4)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())  # nothing unused (DDP-friendly)


def test_sequence_classifier_is_its_recurrent_net_on_the_encoded_frames():
    torch.manual_seed(7)
    model = SequenceClassifier(num_classes=2, encoder=small_encoder(), rnn="lstm", hidden_size=5,
                               bidirectional=True).eval()
    x = torch.randn(2, 4, 1, 8, 8)
    features = model.encoder.embed(x.flatten(0, 1)).unflatten(0, (2, 4))
    output, _ = model.rnn(features)
    last = torch.cat([output[:, -1, :5], output[:, 0, 5:]], dim=1)  # forward after t=T-1, backward after t=0
    torch.testing.assert_close(model(x), model.head(last))


def test_sequence_classifier_with_any_encoder():
    encoder = nn.Sequential(Conv2d(2, 4, 3, padding=1, backend="torch"), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model = SequenceClassifier(num_classes=1, in_channels=2, encoder=encoder, encoder_features=4, rnn="gru",
                               hidden_size=3, task="regress")
    assert model(torch.randn(3, 2, 2, 5, 7)).shape == (3, 1)
    wrong = SequenceClassifier(in_channels=2, encoder=encoder, encoder_features=5, hidden_size=3)
    with pytest.raises(ValueError, match=r"encoder: expected \(B\*T, F\) = \(6, 5\)"):
        wrong(torch.randn(3, 2, 2, 5, 7))


def assert_same_outputs_and_gradients(make, x: torch.Tensor, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    """`make(backend)` on "medimg" and "torch" with one state_dict: same outputs, input and parameter
    gradients."""
    torch.manual_seed(8)
    ours = make("medimg")
    theirs = make("torch")
    theirs.load_state_dict(ours.state_dict())
    results = []
    for model in (ours, theirs):
        xi = x.clone().requires_grad_(True)
        out = model(xi)
        out = out[0] if isinstance(out, tuple) else out
        grads = torch.autograd.grad((out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum(),
                                    (xi, *model.parameters()))
        results.append((out, grads))
    (out_ours, g_ours), (out_theirs, g_theirs) = results
    torch.testing.assert_close(out_ours, out_theirs, rtol=rtol, atol=atol)
    for a, b in zip(g_ours, g_theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


@needs_cpu_kernels
@pytest.mark.parametrize("kind", ["elman", "gru", "lstm"])
def test_sequence_classifier_backend_parity(kind):
    torch.manual_seed(9)
    assert_same_outputs_and_gradients(
        lambda backend: SequenceClassifier(num_classes=3, rnn=kind, hidden_size=8, bidirectional=kind == "gru",
                                           backend=backend),
        torch.randn(2, 3, 1, 16, 16))


@needs_cpu_kernels
def test_conv_gru_backend_parity():
    torch.manual_seed(10)
    assert_same_outputs_and_gradients(lambda backend: ConvGRU(2, 4, kernel_size=3, backend=backend),
                                      torch.randn(2, 3, 2, 9, 11))


@pytest.mark.parametrize("backend", ["auto", "medimg", "torch"])  # construction only: no kernel runs
def test_every_convolution_is_medimgs_with_the_backend(backend):
    for model in (SequenceClassifier(backend=backend), ConvGRU(1, 4, backend=backend)):
        convolutions = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        assert convolutions and all(type(m) is Conv2d and m.backend == backend for m in convolutions)


@pytest.mark.parametrize("make", [lambda b: SequenceClassifier(rnn="lstm", hidden_size=8, backend=b),
                                  lambda b: ConvGRU(2, 3, backend=b)], ids=["SequenceClassifier", "ConvGRU"])
def test_state_dicts_are_interchangeable_between_backends(make):
    models = {backend: make(backend) for backend in ("auto", "medimg", "torch")}
    keys = {backend: list(model.state_dict()) for backend, model in models.items()}
    assert keys["auto"] == keys["medimg"] == keys["torch"]
    for source in models.values():
        for target in models.values():
            target.load_state_dict(source.state_dict())  # strict: same names and shapes


# ----------------------------------------------------------------------------- ConvGRU


def test_conv_gru_cell_is_ballas_equation():
    torch.manual_seed(11)
    cell = ConvGRUCell(2, 3, kernel_size=5, backend="torch").double()
    x, h = torch.randn(2, 2, 6, 7, dtype=torch.float64), torch.randn(2, 3, 6, 7, dtype=torch.float64)
    torch.testing.assert_close(cell(x, h), conv_gru_reference(cell, x, h), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(cell(x), cell(x, torch.zeros_like(h)), rtol=0, atol=0)


@pytest.mark.parametrize(("cin", "hidden", "k"), [(1, 4, 3), (3, 2, 1), (2, 5, 5)])
def test_conv_gru_shapes_and_parameter_counts(cin, hidden, k):
    gru = ConvGRU(cin, hidden, kernel_size=k, backend="torch")
    both = cin + hidden
    assert count(gru) == both * 2 * hidden * k * k + 2 * hidden + both * hidden * k * k + hidden
    x = torch.randn(2, 3, cin, 6, 5)
    outputs, last = gru(x)
    assert outputs.shape == (2, 3, hidden, 6, 5) and last.shape == (2, hidden, 6, 5)
    torch.testing.assert_close(outputs[:, -1], last, rtol=0, atol=0)
    h = None  # the sequence is the cell applied frame after frame
    for t in range(3):
        h = gru.cell(x[:, t], h)
        torch.testing.assert_close(outputs[:, t], h)
    h0 = torch.randn(2, hidden, 6, 5)
    torch.testing.assert_close(gru(x, h0)[0][:, 0], gru.cell(x[:, 0], h0))


@pytest.mark.parametrize("backend", [pytest.param("medimg", marks=needs_cpu_kernels), "torch"])
def test_conv_gru_cell_gradcheck(backend):
    torch.manual_seed(12)
    cell = ConvGRUCell(1, 2, backend=backend).double()
    x = torch.randn(1, 1, 4, 3, dtype=torch.float64, requires_grad=True)
    h = torch.randn(1, 2, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(cell, (x, h))


# ----------------------------------------------------------------------------- tiny over-fits


def fit(model: nn.Module, loss_fn, steps: int, lr: float) -> tuple[float, float]:
    """Adam on one fixed batch until the loss is 10x below its start: (first, lowest) loss."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    first = lowest = None
    for _ in range(steps):
        loss = loss_fn()
        first = loss.item() if first is None else first
        lowest = loss.item() if lowest is None else min(lowest, loss.item())
        if lowest < first / 10:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return first, lowest


@pytest.mark.parametrize(("kind", "default_encoder"),
                         [("elman", False), ("gru", False), ("lstm", False), ("elman", True)])
def test_sequence_classifier_fits_eight_sequences(kind, default_encoder):
    torch.manual_seed(13)
    x = torch.randn(8, 4, 1, 16, 16)  # 8 sequences of 4 noise frames, balanced random labels
    y = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
    encoder = None if default_encoder else CNNClassifier(1, widths=(8, 16))
    model = SequenceClassifier(num_classes=2, encoder=encoder, rnn=kind, hidden_size=32)
    # the 3-block default CNN without normalisation dies (all ReLUs off) at lr 1e-2
    first, lowest = fit(model, lambda: F.cross_entropy(model(x), y), steps=200, lr=3e-3 if default_encoder else 1e-2)
    assert first > 0.5 and lowest < first / 10, (first, lowest)


def test_conv_gru_fits_a_temporal_mean():
    torch.manual_seed(14)
    x = torch.randn(8, 4, 1, 12, 12)
    target = x.mean(dim=1)  # needs every frame: only reachable through the recurrence
    model = nn.ModuleDict(dict(gru=ConvGRU(1, 8), head=Conv2d(8, 1, 1)))
    first, lowest = fit(model, lambda: F.mse_loss(model.head(model.gru(x)[1]), target), steps=200, lr=1e-2)
    assert lowest < first / 10, (first, lowest)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(rnn="transformer"), r"rnn: expected one of \('elman', 'gru', 'lstm'\), got 'transformer'"),
    (dict(task="segment"), r"task: expected one of \('classify', 'regress'\)"),
    (dict(backend="cudnn"), "backend: expected one of"),
    (dict(hidden_size=0), "hidden_size: expected a positive int, got 0"),
    (dict(num_classes=0), "num_classes: expected a positive int"),
    (dict(dropout=1.5), r"dropout: expected a probability in \[0, 1\], got 1.5"),
    (dict(encoder=nn.Flatten()), "encoder_features: Flatten has no `num_features`"),
    (dict(encoder_features=64), "encoder_features: only for a user-supplied encoder"),
    (dict(encoder=CNNClassifier(3, widths=(4,))), "in_channels: 1 but the encoder takes 3 channels"),
])
def test_sequence_classifier_rejects_bad_configurations(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SequenceClassifier(**kwargs)


@pytest.mark.parametrize(("shape", "match"), [
    ((2, 3, 16, 16), r"input: expected \(B, T, 1, H, W\), got shape \(2, 3, 16, 16\)"),
    ((2, 3, 3, 16, 16), r"input: expected \(B, T, 1, H, W\), got shape \(2, 3, 3, 16, 16\)"),
    ((2, 0, 1, 16, 16), r"input: empty sequence \(T == 0\)"),
    ((0, 3, 1, 16, 16), r"input: empty batch \(B == 0\)"),
])
def test_sequence_classifier_rejects_bad_input(shape, match):
    model = SequenceClassifier(encoder=small_encoder(), hidden_size=4)
    with pytest.raises(ValueError, match=match):
        model(torch.randn(shape))


def test_elman_rejects_bad_configuration_and_input():
    with pytest.raises(ValueError, match="input_size: expected a positive int, got 0"):
        ElmanRNN(0, 4)
    with pytest.raises(ValueError, match=r"num_layers: expected a positive int, got 1\.5"):
        ElmanRNN(3, 4, num_layers=1.5)
    rnn = ElmanRNN(3, 4, num_layers=2)
    with pytest.raises(ValueError, match=r"input: expected \(B, T, input_size\) .* = 3, got shape \(2, 5, 2\)"):
        rnn(torch.randn(2, 5, 2))
    with pytest.raises(ValueError, match=r"got shape \(1, 2, 5, 3\)"):
        rnn(torch.randn(1, 2, 5, 3))
    with pytest.raises(ValueError, match=r"input: empty sequence \(T == 0\)"):
        rnn(torch.randn(2, 0, 3))
    with pytest.raises(ValueError, match=r"h0: expected shape \(2, 2, 4\), got \(1, 2, 4\)"):
        rnn(torch.randn(2, 5, 3), torch.zeros(1, 2, 4))
    with pytest.raises(TypeError, match=r"input: expected a torch\.Tensor, got list"):
        rnn([[0.0, 1.0, 2.0]])
    with pytest.raises(ValueError, match=r"x: expected \(B, 3\)"):
        ElmanCell(3, 4)(torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"h: expected shape \(2, 4\)"):
        ElmanCell(3, 4)(torch.randn(2, 3), torch.randn(2, 5))
    with pytest.raises(ValueError, match="nonlinearity='relu'"):
        ElmanRNN.from_torch(nn.RNN(3, 4, nonlinearity="relu"))
    with pytest.raises(TypeError, match=r"rnn: expected a torch\.nn\.RNN, got GRU"):
        ElmanRNN.from_torch(nn.GRU(3, 4))


def test_conv_gru_rejects_bad_configuration_and_input():
    with pytest.raises(ValueError, match="kernel_size: expected an odd size, got 4"):
        ConvGRUCell(1, 2, kernel_size=4)
    with pytest.raises(ValueError, match="hidden_channels: expected a positive int, got 0"):
        ConvGRU(1, 0)
    with pytest.raises(ValueError, match="backend: expected one of"):
        ConvGRU(1, 2, backend="cuda")
    gru = ConvGRU(2, 3, backend="torch")
    with pytest.raises(ValueError, match=r"input: expected \(B, T, 2, H, W\), got shape \(4, 2, 8, 8\)"):
        gru(torch.randn(4, 2, 8, 8))
    with pytest.raises(ValueError, match=r"input: expected \(B, T, 2, H, W\), got shape \(4, 5, 1, 8, 8\)"):
        gru(torch.randn(4, 5, 1, 8, 8))
    with pytest.raises(ValueError, match=r"input: empty sequence \(T == 0\)"):
        gru(torch.randn(4, 0, 2, 8, 8))
    with pytest.raises(ValueError, match=r"h0: expected shape \(4, 3, 8, 8\), got \(4, 3, 8, 9\)"):
        gru(torch.randn(4, 5, 2, 8, 8), torch.zeros(4, 3, 8, 9))
    with pytest.raises(ValueError, match=r"x: expected \(B, 2, H, W\)"):
        gru.cell(torch.randn(4, 3, 8, 8))
