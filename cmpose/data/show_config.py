"""The data sections of a config, as ``cmpose data show --config`` reads them."""

from __future__ import annotations

from dataclasses import dataclass, field

from cmpose.data.config import AugmentConfig, ClipConfig, CropConfig, LoaderConfig


@dataclass
class ShowDataConfig:
    clip: ClipConfig = field(default_factory=ClipConfig)
    crop: CropConfig = field(default_factory=CropConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loader: LoaderConfig = field(default_factory=LoaderConfig)
