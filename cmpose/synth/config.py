"""What ``cmpose synth`` is asked to make (``SynthConfig``) and what it made (``SynthSummary``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

# Hard-case labels, in the order they are written in an annotation's "hard" list (the long events
# of hard.py draw their kind from these). Version 2 adds "flash" (a transient over-exposed frame).
HARD_LABELS: tuple[str, ...] = ("occlusion", "motion_blur", "defocus", "low_light", "truncation")
ALL_HARD_LABELS: tuple[str, ...] = (*HARD_LABELS, "flash")
VERSIONS = (1, 2)  # generator versions, see SynthConfig.version

FPS = 25.0  # frame rate the motion programs are timed in (PoseTrack videos are 25-30 fps)
MAX_FRAMES = 10000  # PoseTrack image ids hold the frame in 4 digits (video * 10^4 + frame)
MAX_VIDEOS = 999999  # video numbers have 6 digits (NNNNNN_mpii_train)


def parse_people(text: str | int | tuple[int, int]) -> tuple[int, int]:
    """``"1-3"`` -> (1, 3), ``"3"`` or 3 -> (3, 3); a (lo, hi) pair is returned as given."""
    if isinstance(text, tuple):
        return text
    if isinstance(text, int):
        return (text, text)
    parts = str(text).strip().split("-")
    try:
        lo, hi = (int(parts[0]), int(parts[-1])) if len(parts) in (1, 2) else (None, None)
    except ValueError:
        lo = hi = None
    if lo is None or hi is None:
        raise ValueError(f"people: expected a count like '3' or a range like '1-3', got {text!r}")
    return (lo, hi)


def parse_size(text: str | tuple[int, int]) -> tuple[int, int]:
    """``"640x360"`` -> (640, 360) (width, height)."""
    if isinstance(text, tuple):
        return text
    parts = str(text).lower().split("x")
    try:
        w, h = (int(p) for p in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        w = h = None
    if w is None or h is None:
        raise ValueError(f"size: expected WIDTHxHEIGHT like '640x360', got {text!r}")
    return (w, h)


@dataclass
class SynthConfig:
    """A synthetic PoseTrack2018-layout dataset.

    Args:
        videos: number of videos (train and val together).
        frames: frames per video.
        people: (min, max) people per video, each video draws its count in this range
            (``"1-3"`` and ``3`` are accepted too). Passers-by of occlusion events come on top.
        size: (width, height) of the frames in pixels (``"640x360"`` accepted).
        hard_ratio: about this fraction of the annotated person-frames get a scheduled hard case
            (occlusion, motion blur, defocus, low light, truncation); 0 gives (almost) none.
        val_ratio: fraction of the videos written to the val split (at least one each when
            0 < val_ratio < 1 and there are two or more videos).
        seed: every random draw comes from ``np.random.default_rng((seed, video_index))``.
        quality: JPEG quality of the frames.
        extra_train_videos: more training videos after those, with the indices ``videos`` ..
            ``videos + extra_train_videos - 1``. The val split depends only on ``videos`` and
            ``val_ratio``, so a larger training set keeps exactly the same val videos (and a
            number measured on it stays comparable).
        version: 1 writes what the generator wrote before versions existed (byte for byte, same
            seed same files); 2 adds transient events (below) and the per-joint ``visible_dt``.
        transient_ratio: (version 2) about this fraction of the labelled frames is the middle of a
            transient event lasting 1-3 frames (an object crossing a person, an object over one
            limb, camera shake, defocus or a flash), at most one event per ``TRANSIENT_GAP`` frames.
        class_window: (version 2) ``visible_dt`` looks this many frames either side of a labelled
            frame for the nearest frame where a hidden joint is visible.
    """

    videos: int = 10
    frames: int = 60
    people: tuple[int, int] = (1, 3)
    size: tuple[int, int] = (640, 360)
    hard_ratio: float = 0.2
    val_ratio: float = 0.2
    seed: int = 0
    quality: int = 90
    extra_train_videos: int = 0
    version: int = 1
    transient_ratio: float = 0.5
    class_window: int = 4

    def __post_init__(self) -> None:
        self.people = parse_people(self.people)
        self.size = parse_size(self.size)
        _int_in("videos", self.videos, 1, MAX_VIDEOS)
        _int_in("frames", self.frames, 1, MAX_FRAMES)
        lo, hi = self.people
        _int_in("people (minimum)", lo, 1, 20)
        _int_in("people (maximum)", hi, lo, 20)
        w, h = self.size
        _int_in("size (width)", w, 64, 8192)
        _int_in("size (height)", h, 48, 8192)
        _fraction("hard_ratio", self.hard_ratio)
        _fraction("val_ratio", self.val_ratio)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed: expected a non-negative integer, got {self.seed!r}")
        _int_in("quality", self.quality, 1, 100)
        _int_in("extra_train_videos", self.extra_train_videos, 0, MAX_VIDEOS - self.videos)
        if self.version not in VERSIONS or isinstance(self.version, bool):
            raise ValueError(
                f"version: expected one of {', '.join(map(str, VERSIONS))}, got {self.version!r}"
            )
        _fraction("transient_ratio", self.transient_ratio)
        _int_in("class_window", self.class_window, 1, 50)

    def as_json(self) -> dict:
        """The settings as ``synth.json`` holds them. Version 1 leaves out the fields version 2
        added, so that its synth.json stays byte-identical to the one written before versions
        existed (no ``version`` key means version 1)."""
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        if self.version == 1:
            for name in _VERSION2_FIELDS:
                del out[name]
        return out

    def hard_labels(self) -> tuple[str, ...]:
        """The hard-case labels this version can write (version 1 never writes "flash")."""
        return ALL_HARD_LABELS if self.version >= 2 else HARD_LABELS

    @property
    def total_videos(self) -> int:
        """All videos written: ``videos`` (train and val) and the extra training videos."""
        return self.videos + self.extra_train_videos

    @property
    def total_frames(self) -> int:
        return self.total_videos * self.frames

    def val_videos(self) -> list[int]:
        """Indices (0-based) of the videos in the val split: the last ones."""
        n = round(self.videos * self.val_ratio)
        if self.videos >= 2 and 0 < self.val_ratio < 1:
            n = min(max(n, 1), self.videos - 1)
        return list(range(self.videos - n, self.videos))


_VERSION2_FIELDS = ("version", "transient_ratio", "class_window")


def _int_in(name: str, value: object, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name}: expected an integer in {lo}..{hi}, got {value!r}")


def _fraction(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}: expected a number in 0..1, got {value!r}")


@dataclass
class SynthSummary:
    """What ``generate`` wrote.

    ``hard_counts`` counts annotated person-frames per hard label; ``hard_fraction`` is the
    fraction of annotated person-frames with at least one label. ``visible_dt`` (version 2)
    counts the annotated joints of labelled frames by their ``visible_dt`` value ("0" visible,
    "1".. ``class_window`` nearest visible frame, "-1" not visible within the window).
    """

    out: Path
    train_videos: list[str] = field(default_factory=list)
    val_videos: list[str] = field(default_factory=list)
    frames: int = 0
    labelled_frames: int = 0
    people: int = 0
    hard_people: int = 0
    hard_counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(HARD_LABELS, 0))
    detections: int = 0
    visible_dt: dict[str, int] | None = None
    seconds: float = 0.0

    @property
    def hard_fraction(self) -> float:
        return self.hard_people / self.people if self.people else 0.0

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")

    def counts(self) -> dict:
        """The deterministic part (no timing), as written to ``OUT/synth.json``."""
        return {
            "train_videos": len(self.train_videos),
            "val_videos": len(self.val_videos),
            "frames": self.frames,
            "labelled_frames": self.labelled_frames,
            "people": self.people,
            "hard_people": self.hard_people,
            "hard_counts": dict(self.hard_counts),
            "detections": self.detections,
        } | (
            {}
            if self.visible_dt is None
            else {"visible_dt": dict(sorted(self.visible_dt.items(), key=_int_key))}
        )


def _int_key(item: tuple[str, int]) -> int:
    return int(item[0])
