"""``cmpose synth``: procedural multi-person videos written in the PoseTrack2018 layout.

See docs/synthetic.md. ``generate(out, SynthConfig(...))`` writes a dataset that the readers,
the data loader, ``cmpose data check`` and ``cmpose evaluate`` take exactly like real PoseTrack.
"""

from cmpose.synth.config import ALL_HARD_LABELS, HARD_LABELS, SynthConfig, SynthSummary
from cmpose.synth.generate import generate

__all__ = ["ALL_HARD_LABELS", "HARD_LABELS", "SynthConfig", "SynthSummary", "generate"]
