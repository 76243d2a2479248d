"""Benchmarks behind ``medimg bench``: medimg against the PyTorch reference and installed
peers in the same run, reported as median, IQR, speed-up ratio and memory-bandwidth use."""
