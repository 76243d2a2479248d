"""The public kernel API: torch custom ops in the `medimg` namespace, each with a fake
(meta) implementation, autograd where differentiable, and a pure-PyTorch reference
(`medimg.ops._reference`) that is both the test oracle and the fallback."""

from medimg.ops.affine import affine_grid_sample
from medimg.ops.conv2d import conv2d
from medimg.ops.gamma import gamma_curve
from medimg.ops.noise import gaussian_noise, random_gaussian_noise
from medimg.ops.order_statistics import order_statistics
from medimg.ops.seg_stats import segmentation_stats, soft_dice_stats

__all__ = ["affine_grid_sample", "conv2d", "gamma_curve", "gaussian_noise", "order_statistics", "random_gaussian_noise",
           "segmentation_stats", "soft_dice_stats"]
