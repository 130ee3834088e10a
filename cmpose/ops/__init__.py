"""Pure numpy/torch operations: crop geometry (affine, flip) and the heatmap codec."""
