"""medimg: deep learning for biomedical images on fused C++, CUDA and Triton kernels."""

from medimg import losses, metrics, nn, ops, transforms
from medimg._info import info

__version__ = "0.1.0"
__all__ = ["__version__", "info", "losses", "metrics", "nn", "ops", "transforms"]
