"""PoseTrack data: annotation readers, the top-down clip dataset, checks."""
