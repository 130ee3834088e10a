"""Drawing poses, crops and heatmaps into images (OpenCV, BGR uint8)."""
