"""cmpose: CM-Pose video human pose estimation (AAAI 2025) in plain PyTorch."""

__version__ = "0.1.0"
