"""Triton kernels for the CUDA path of medimg's ops (conv2d: implicit GEMM on tensor cores).

Nothing is imported here: `from medimg.kernels.triton import conv2d` imports triton, so the
package stays importable where triton is absent and the ops import the kernels lazily.
"""
