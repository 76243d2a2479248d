"""Sequence models for image sequences (echo/ultrasound cine loops, follow-up scans).

- ``ElmanCell`` / ``ElmanRNN``: the seed paper's recurrence (its equation 1),
  ``h_t = tanh(W_xh x_t + W_hh h_{t-1} + b_h)``, on our own cells, with ``torch.nn.RNN``'s
  conventions so that its weights load (``ElmanRNN.from_torch``) and give the same results.
- ``SequenceClassifier``: a CNN encodes every frame, a recurrent net (Elman, GRU or LSTM) reads
  the per-frame features, a linear head classifies or regresses the whole sequence.
- ``ConvGRUCell`` / ``ConvGRU`` (Ballas et al., 2016): a GRU whose gates are convolutions, for
  recurrences over feature *maps* (spatio-temporal segmentation, motion, denoising of cines).

Every convolution is ``medimg.nn.Conv2d``; every model with convolutions takes ``backend=``
("auto", "medimg", "torch") and passes it down.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medimg.nn.cnn import CNNClassifier
from medimg.nn.conv import Conv2d
from medimg.ops._boundary import check_backend, check_tensor

__all__ = ["RNN_KINDS", "TASKS", "ConvGRU", "ConvGRUCell", "ElmanCell", "ElmanRNN", "SequenceClassifier"]

RNN_KINDS = ("elman", "gru", "lstm")
TASKS = ("classify", "regress")


def _check_positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return value


def _check_probability(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}: expected a probability in [0, 1], got {value!r}")
    return float(value)


def _check_state(name: str, h: Tensor, expected: tuple[int, ...]) -> Tensor:
    check_tensor(name, h)
    if tuple(h.shape) != expected:
        raise ValueError(f"{name}: expected shape {expected}, got {tuple(h.shape)}")
    return h


# ----------------------------------------------------------------------------- Elman recurrence


class ElmanCell(nn.Module):
    """One step of the Elman recurrence: ``h' = tanh(x W_xh^T + h W_hh^T + b_h)``.

    The seed paper's equation (1) with its names. It equals ``torch.nn.RNNCell(nonlinearity="tanh")``
    whose two biases are summed into one (``b_h = b_ih + b_hh``): the two are not identifiable
    anyway, so one bias is the honest parametrisation.

    Args:
        input_size: features of x_t.
        hidden_size: features of h_t.
        bias: learn b_h (else it is zero and ``bias_h`` is None).

    Attributes:
        weight_xh: (hidden_size, input_size), W_xh.
        weight_hh: (hidden_size, hidden_size), W_hh.
        bias_h: (hidden_size,), b_h, or None.
        All initialised uniform(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), as torch.nn.RNNCell.

    Shape:
        x (B, input_size), h (B, hidden_size) or None (zeros) -> h' (B, hidden_size).

    Example:
        >>> cell = ElmanCell(16, 32)
        >>> h = cell(torch.randn(4, 16))
        >>> cell(torch.randn(4, 16), h).shape
        torch.Size([4, 32])
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        self.input_size = _check_positive("input_size", input_size)
        self.hidden_size = _check_positive("hidden_size", hidden_size)
        self.weight_xh = nn.Parameter(torch.empty(hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.bias_h = nn.Parameter(torch.empty(hidden_size)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def input_term(self, x: Tensor) -> Tensor:
        """``x W_xh^T + b_h`` for any leading dims: for a whole sequence in one matrix product."""
        return F.linear(x, self.weight_xh, self.bias_h)

    def step(self, xw: Tensor, h: Tensor) -> Tensor:
        """``tanh(xw + h W_hh^T)`` given the input term ``xw = input_term(x)``."""
        return torch.tanh(torch.addmm(xw, h, self.weight_hh.t()))

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        check_tensor("x", x)
        if x.dim() != 2 or x.shape[1] != self.input_size:
            raise ValueError(f"x: expected (B, {self.input_size}), got shape {tuple(x.shape)}")
        if h is None:
            h = x.new_zeros(x.shape[0], self.hidden_size)
        else:
            _check_state("h", h, (x.shape[0], self.hidden_size))
        return self.step(self.input_term(x), h)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias_h is not None else ", bias=False")


class ElmanRNN(nn.Module):
    """A stack of Elman recurrences over time, ``h_t = tanh(W_xh x_t + W_hh h_{t-1} + b_h)`` per
    layer and direction, on its own ``ElmanCell``s.

    Conventions are ``torch.nn.RNN``'s (nonlinearity "tanh"): layer l > 0 reads the outputs of
    layer l - 1 (both directions concatenated), the backward direction reads the sequence
    reversed, dropout acts between layers in training only, states are ordered
    ``layer * num_directions + direction``. ``ElmanRNN.from_torch(torch_rnn)`` copies a
    torch.nn.RNN's weights (W_ih -> W_xh, W_hh -> W_hh, b_ih + b_hh -> b_h) and gives its
    outputs. The input term of all time steps is one matrix product; only ``h W_hh^T`` is
    sequential.

    Args:
        input_size: features of x_t.
        hidden_size: features of h_t, per direction.
        num_layers: stacked recurrences.
        bidirectional: add a second recurrence that runs from the last step to the first.
        dropout: on the outputs of every layer but the last, in training.
        batch_first: input and output are (B, T, F) (else (T, B, F)); states are always (L*D, B, H).
        bias: learn b_h.

    Attributes:
        cells: ``nn.ModuleList`` of num_layers * num_directions ``ElmanCell``; index
            ``layer * num_directions + direction``.

    Shape:
        input (B, T, input_size) if batch_first else (T, B, input_size), or unbatched
        (T, input_size); h0 (num_layers * D, B, hidden_size) or None (zeros) ->
        output (B, T, D * hidden_size) (the last layer's h_t for every t; (T, B, ...) if not
        batch_first), h_n (num_layers * D, B, hidden_size) (every layer's and direction's final
        state), with D = 2 if bidirectional else 1.

    Example:
        >>> rnn = ElmanRNN(16, 32, num_layers=2, bidirectional=True)
        >>> output, h_n = rnn(torch.randn(4, 10, 16))
        >>> output.shape, h_n.shape
        (torch.Size([4, 10, 64]), torch.Size([4, 4, 32]))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = False,
                 dropout: float = 0.0, batch_first: bool = True, bias: bool = True) -> None:
        super().__init__()
        self.input_size = _check_positive("input_size", input_size)
        self.hidden_size = _check_positive("hidden_size", hidden_size)
        self.num_layers = _check_positive("num_layers", num_layers)
        self.dropout = _check_probability("dropout", dropout)
        self.bidirectional = bool(bidirectional)
        self.batch_first = bool(batch_first)
        self.bias = bool(bias)
        self.num_directions = 2 if bidirectional else 1
        self.cells = nn.ModuleList(
            ElmanCell(input_size if layer == 0 else self.num_directions * hidden_size, hidden_size, bias)
            for layer in range(num_layers) for _ in range(self.num_directions))

    @classmethod
    def from_torch(cls, rnn: nn.RNN) -> ElmanRNN:
        """An ElmanRNN with a copy of `rnn`'s weights (same configuration, dtype and device), whose
        outputs equal `rnn`'s: W_ih -> weight_xh, W_hh -> weight_hh, b_ih + b_hh -> bias_h.

        Example:
            >>> torch_rnn = torch.nn.RNN(8, 16, num_layers=2, batch_first=True)
            >>> ElmanRNN.from_torch(torch_rnn).cells[0].weight_xh.shape
            torch.Size([16, 8])
        """
        if not isinstance(rnn, nn.RNN):
            raise TypeError(f"rnn: expected a torch.nn.RNN, got {type(rnn).__name__}")
        if rnn.nonlinearity != "tanh":
            raise ValueError(f"rnn: the Elman recurrence is tanh, got nonlinearity={rnn.nonlinearity!r}")
        model = cls(rnn.input_size, rnn.hidden_size, rnn.num_layers, rnn.bidirectional, rnn.dropout,
                    rnn.batch_first, rnn.bias).to(rnn.weight_ih_l0)
        with torch.no_grad():
            for layer in range(rnn.num_layers):
                for direction, suffix in enumerate(["", "_reverse"][:model.num_directions]):
                    cell = model.cells[layer * model.num_directions + direction]
                    cell.weight_xh.copy_(getattr(rnn, f"weight_ih_l{layer}{suffix}"))
                    cell.weight_hh.copy_(getattr(rnn, f"weight_hh_l{layer}{suffix}"))
                    if rnn.bias:
                        cell.bias_h.copy_(getattr(rnn, f"bias_ih_l{layer}{suffix}")
                                          + getattr(rnn, f"bias_hh_l{layer}{suffix}"))
        return model

    @staticmethod
    def _scan(cell: ElmanCell, x: Tensor, h: Tensor, reverse: bool) -> tuple[Tensor, Tensor]:
        """One layer and direction over time-major x (T, B, F): outputs (T, B, H) and the final state."""
        xw = cell.input_term(x)  # (T, B, H): W_xh x_t + b_h for every t in one product
        steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
        outputs: list[Tensor] = [h] * x.shape[0]
        for t in steps:
            h = cell.step(xw[t], h)
            outputs[t] = h
        return torch.stack(outputs), h

    def forward(self, input: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_tensor("input", input)
        layout = "(B, T, input_size)" if self.batch_first else "(T, B, input_size)"
        if input.dim() not in (2, 3) or input.shape[-1] != self.input_size:
            raise ValueError(f"input: expected {layout} or unbatched (T, input_size) with input_size = "
                             f"{self.input_size}, got shape {tuple(input.shape)}")
        unbatched = input.dim() == 2
        time_major = input.transpose(0, 1) if self.batch_first and not unbatched else input
        x = time_major.unsqueeze(1) if unbatched else time_major  # (T, B, input_size)
        steps, batch = x.shape[:2]
        if steps == 0:
            raise ValueError(f"input: empty sequence (T == 0), shape {tuple(input.shape)}")
        states = self.num_layers * self.num_directions
        if h0 is None:
            h0 = x.new_zeros(states, batch, self.hidden_size)
        elif unbatched:
            h0 = _check_state("h0", h0, (states, self.hidden_size)).unsqueeze(1)
        else:
            _check_state("h0", h0, (states, batch, self.hidden_size))

        finals: list[Tensor] = []
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.num_directions):
                index = layer * self.num_directions + direction
                out, h = self._scan(self.cells[index], x, h0[index], reverse=direction == 1)
                outputs.append(out)
                finals.append(h)
            x = torch.cat(outputs, dim=2) if self.num_directions == 2 else outputs[0]
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)

        h_n = torch.stack(finals)
        if unbatched:
            return x.squeeze(1), h_n.squeeze(1)
        return (x.transpose(0, 1) if self.batch_first else x), h_n

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if not self.batch_first:
            s += ", batch_first=False"
        return s + ("" if self.bias else ", bias=False")


# ----------------------------------------------------------------------------- frame encoder + recurrence


class SequenceClassifier(nn.Module):
    """Classifies (or regresses) an image sequence: each frame through a CNN encoder, the per-frame
    features through a recurrent net, its final state through a linear head.

    The final state is the last layer's h_n: for a bidirectional net the forward direction's
    state after the last frame and the backward direction's after the first, concatenated, so
    both have read the whole sequence. Dropout acts between stacked recurrent layers and before
    the head.

    Args:
        num_classes: logits per sequence (task "classify") or regressed values (task "regress").
        in_channels: channels of every frame.
        encoder: None (a ``CNNClassifier(in_channels, widths=(32, 64, 128))`` whose pooled
            ``embed`` features are used; its classification head is dropped) or any module
            mapping (B*T, in_channels, H, W) frames to (B*T, F) features. A ``CNNClassifier``
            contributes its ``embed`` (its own head is left unused); other modules their output.
        rnn: "elman" (``ElmanRNN``), "gru" (``torch.nn.GRU``) or "lstm" (``torch.nn.LSTM``).
        hidden_size: recurrent features per direction.
        num_layers: stacked recurrent layers.
        bidirectional: also read the sequence backwards.
        dropout: probability, see above.
        task: "classify" (outputs are logits) or "regress" (outputs are values); only the
            meaning of the output differs, the network is the same.
        backend: passed to every convolution of the default encoder ("auto", "medimg", "torch");
            a user-supplied encoder is used as given (``medimg.nn.convert(encoder, backend)``
            moves its torch convolutions onto medimg's).
        encoder_features: F for a user-supplied encoder without a ``num_features`` attribute.

    Shape:
        input (B, T, in_channels, H, W), T >= 1 (H, W >= 8 for the default encoder)
        -> (B, num_classes).

    Example:
        >>> model = SequenceClassifier(num_classes=3, rnn="gru", hidden_size=64)
        >>> model(torch.randn(2, 5, 1, 32, 32)).shape
        torch.Size([2, 3])
    """

    def __init__(self, num_classes: int = 2, in_channels: int = 1, encoder: nn.Module | None = None,
                 rnn: str = "elman", hidden_size: int = 128, num_layers: int = 1, bidirectional: bool = False,
                 dropout: float = 0.0, task: str = "classify", backend: str = "auto",
                 encoder_features: int | None = None) -> None:
        super().__init__()
        check_backend(backend)
        if rnn not in RNN_KINDS:
            raise ValueError(f"rnn: expected one of {RNN_KINDS}, got {rnn!r}")
        if task not in TASKS:
            raise ValueError(f"task: expected one of {TASKS}, got {task!r}")
        _check_positive("num_classes", num_classes)
        self.in_channels = _check_positive("in_channels", in_channels)
        _check_positive("hidden_size", hidden_size)
        _check_positive("num_layers", num_layers)
        dropout = _check_probability("dropout", dropout)

        if encoder is None:
            if encoder_features is not None:
                raise ValueError("encoder_features: only for a user-supplied encoder; the default has 128")
            encoder = CNNClassifier(in_channels, widths=(32, 64, 128), dropout=0.0, backend=backend)
            encoder.head = nn.Identity()  # only embed() is used: no parameters without gradients
            encoder_features = encoder.num_features
        elif not isinstance(encoder, nn.Module):
            raise TypeError(f"encoder: expected an nn.Module or None, got {type(encoder).__name__}")
        else:
            encoder_in = getattr(encoder, "in_channels", None)
            if isinstance(encoder_in, int) and encoder_in != in_channels:
                raise ValueError(f"in_channels: {in_channels} but the encoder takes {encoder_in} channels")
            if encoder_features is None:
                encoder_features = getattr(encoder, "num_features", None)
                if encoder_features is None:
                    raise ValueError(f"encoder_features: {type(encoder).__name__} has no `num_features`; "
                                     "pass encoder_features=F, its output features per frame")
        self.encoder = encoder
        self.num_features = _check_positive("encoder_features", encoder_features)

        self.rnn_kind, self.task, self.num_classes = rnn, task, num_classes
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.num_directions = 2 if bidirectional else 1
        between = dropout if num_layers > 1 else 0.0  # torch warns about dropout on a single layer
        if rnn == "elman":
            self.rnn = ElmanRNN(self.num_features, hidden_size, num_layers, bidirectional, between, batch_first=True)
        else:
            recurrent = nn.GRU if rnn == "gru" else nn.LSTM
            self.rnn = recurrent(self.num_features, hidden_size, num_layers, batch_first=True, dropout=between,
                                 bidirectional=bidirectional)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.num_directions * hidden_size, num_classes)

    def _encode(self, frames: Tensor) -> Tensor:
        if isinstance(self.encoder, CNNClassifier):
            return self.encoder.embed(frames)
        return self.encoder(frames)

    def embed(self, x: Tensor) -> Tensor:
        """The sequence's features before the head: (B, num_directions * hidden_size)."""
        check_tensor("input", x)
        if x.dim() != 5 or x.shape[2] != self.in_channels:
            raise ValueError(f"input: expected (B, T, {self.in_channels}, H, W), got shape {tuple(x.shape)}")
        batch, steps = x.shape[:2]
        if steps == 0:
            raise ValueError(f"input: empty sequence (T == 0), shape {tuple(x.shape)}")
        if batch == 0:
            raise ValueError(f"input: empty batch (B == 0), shape {tuple(x.shape)}")
        features = self._encode(x.reshape(batch * steps, *x.shape[2:]))
        if tuple(features.shape) != (batch * steps, self.num_features):
            raise ValueError(f"encoder: expected (B*T, F) = ({batch * steps}, {self.num_features}) features, "
                             f"got shape {tuple(features.shape)}")
        _, state = self.rnn(features.reshape(batch, steps, self.num_features))
        h_n = state[0] if isinstance(state, tuple) else state  # LSTM: (h_n, c_n)
        return h_n[-self.num_directions:].transpose(0, 1).reshape(batch, -1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.dropout(self.embed(x)))

    def extra_repr(self) -> str:
        return f"rnn={self.rnn_kind!r}, task={self.task!r}, num_classes={self.num_classes}"


# ----------------------------------------------------------------------------- convolutional recurrence


class ConvGRUCell(nn.Module):
    """A GRU over feature maps (Ballas et al., 2016): the gates are "same" convolutions, so the
    state keeps its spatial layout and every pixel's update sees its neighbourhood.

    ``z, r = sigmoid(conv_zr([x, h]))``, ``n = tanh(conv_n([x, r * h]))``,
    ``h' = (1 - z) * n + z * h`` ([a, b]: channel concatenation; z is the first half of conv_zr's
    output channels, r the second).

    Args:
        input_channels: channels of x.
        hidden_channels: channels of h.
        kernel_size: odd, of both convolutions ("same" padding).
        backend: of both medimg.nn.Conv2d ("auto", "medimg", "torch").

    Shape:
        x (B, input_channels, H, W), h (B, hidden_channels, H, W) or None (zeros)
        -> h' (B, hidden_channels, H, W).

    Example:
        >>> cell = ConvGRUCell(1, 8)
        >>> h = cell(torch.randn(2, 1, 32, 32))
        >>> cell(torch.randn(2, 1, 32, 32), h).shape
        torch.Size([2, 8, 32, 32])
    """

    def __init__(self, input_channels: int, hidden_channels: int, kernel_size: int = 3,
                 backend: str = "auto") -> None:
        super().__init__()
        check_backend(backend)
        self.input_channels = _check_positive("input_channels", input_channels)
        self.hidden_channels = _check_positive("hidden_channels", hidden_channels)
        if _check_positive("kernel_size", kernel_size) % 2 == 0:
            raise ValueError(f"kernel_size: expected an odd size, got {kernel_size}")
        both = input_channels + hidden_channels
        self.conv_zr = Conv2d(both, 2 * hidden_channels, kernel_size, padding=kernel_size // 2, backend=backend)
        self.conv_n = Conv2d(both, hidden_channels, kernel_size, padding=kernel_size // 2, backend=backend)

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        check_tensor("x", x)
        if x.dim() != 4 or x.shape[1] != self.input_channels:
            raise ValueError(f"x: expected (B, {self.input_channels}, H, W), got shape {tuple(x.shape)}")
        if h is None:
            h = x.new_zeros(x.shape[0], self.hidden_channels, *x.shape[2:])
        else:
            _check_state("h", h, (x.shape[0], self.hidden_channels, *x.shape[2:]))
        z, r = torch.sigmoid(self.conv_zr(torch.cat([x, h], dim=1))).chunk(2, dim=1)
        n = torch.tanh(self.conv_n(torch.cat([x, r * h], dim=1)))
        return n + z * (h - n)  # (1 - z) * n + z * h

    def extra_repr(self) -> str:
        return f"{self.input_channels}, {self.hidden_channels}, kernel_size={self.conv_n.kernel_size[0]}"


class ConvGRU(nn.Module):
    """A ``ConvGRUCell`` run over the frames of a sequence of feature maps.

    Args:
        input_channels, hidden_channels, kernel_size, backend: of the cell.

    Shape:
        input (B, T, input_channels, H, W), T >= 1, h0 (B, hidden_channels, H, W) or None (zeros)
        -> outputs (B, T, hidden_channels, H, W) (the state after every frame), h_T
        (B, hidden_channels, H, W) (the last one).

    Example:
        >>> gru = ConvGRU(1, 8)
        >>> outputs, last = gru(torch.randn(2, 5, 1, 32, 32))
        >>> outputs.shape, last.shape
        (torch.Size([2, 5, 8, 32, 32]), torch.Size([2, 8, 32, 32]))
    """

    def __init__(self, input_channels: int, hidden_channels: int, kernel_size: int = 3,
                 backend: str = "auto") -> None:
        super().__init__()
        self.cell = ConvGRUCell(input_channels, hidden_channels, kernel_size, backend)
        self.input_channels, self.hidden_channels = input_channels, hidden_channels

    def forward(self, input: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_tensor("input", input)
        if input.dim() != 5 or input.shape[2] != self.input_channels:
            raise ValueError(f"input: expected (B, T, {self.input_channels}, H, W), got shape {tuple(input.shape)}")
        if input.shape[1] == 0:
            raise ValueError(f"input: empty sequence (T == 0), shape {tuple(input.shape)}")
        if h0 is not None:
            _check_state("h0", h0, (input.shape[0], self.hidden_channels, *input.shape[3:]))
        h, outputs = h0, []
        for t in range(input.shape[1]):
            h = self.cell(input[:, t], h)
            outputs.append(h)
        return torch.stack(outputs, dim=1), h
