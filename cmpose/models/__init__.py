"""CM-Pose model: ViT backbone, MCL auxiliary tasks, TCIS, token clustering, heads."""
