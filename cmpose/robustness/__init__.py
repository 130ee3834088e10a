"""Corruption robustness at test time (``cmpose robustness``): image corruptions applied to the
clip crops, mAP per corruption and severity, mPC and rPC (Michaelis et al. 2019).

The names live here, free of heavy imports, so that the CLI can list them cheaply."""

# Names as on the command line and in robustness.json, in the order the report lists them.
CORRUPTIONS = ("motion_blur", "defocus", "gaussian_noise", "low_light", "jpeg", "occlusion", "frame_drop")
SEVERITIES = (1, 2, 3, 4, 5)
