"""medimg's GPU kernels, grouped by language (see medimg/kernels/triton/)."""
