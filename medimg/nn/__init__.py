"""nn.Modules on medimg's kernels: a drop-in ``Conv2d`` and the reference models built on it."""

from medimg.nn.cnn import CNNClassifier
from medimg.nn.conv import Conv2d, convert

__all__ = ["CNNClassifier", "Conv2d", "convert"]
