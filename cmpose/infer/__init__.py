"""Video inference (``cmpose infer``): person boxes per frame, an IoU tracker with box smoothing,
and a streaming runner that computes each (frame, person) crop's backbone tokens once and reuses
them in every clip that holds the frame. See docs/inference.md."""
