"""nn.Modules on medimg's kernels: a drop-in ``Conv2d`` and the reference models built on it."""

from medimg.nn.cnn import CNNClassifier
from medimg.nn.conv import Conv2d, ConvTranspose2d, convert
from medimg.nn.gan import Generator, PatchDiscriminator
from medimg.nn.rnn import ConvGRU, ConvGRUCell, ElmanCell, ElmanRNN, SequenceClassifier
from medimg.nn.unet import UNet

__all__ = [
    "CNNClassifier",
    "Conv2d",
    "ConvGRU",
    "ConvGRUCell",
    "ConvTranspose2d",
    "ElmanCell",
    "ElmanRNN",
    "Generator",
    "PatchDiscriminator",
    "SequenceClassifier",
    "UNet",
    "convert",
]
