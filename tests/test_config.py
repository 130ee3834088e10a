"""Tests for cmpose.config: dataclass configs from YAML, ``--set`` overrides and type checks."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
import yaml

from cmpose.config import apply_overrides, from_dict, load_config, to_dict
from cmpose.data.config import AugmentConfig, ClipConfig, CropConfig, LoaderConfig
from cmpose.data.show_config import ShowDataConfig
from cmpose.errors import CmposeError, ConfigError

# --- small dataclasses of our own ------------------------------------------------------------------


@dataclass
class Inner:
    x: int = 1
    name: str = "a"


@dataclass
class Kinds:
    i: int = 0
    f: float = 0.5
    b: bool = False
    s: str = "s"
    pair: tuple[int, int] = (1, 2)
    many: tuple[int, ...] = ()
    floats: list[float] = field(default_factory=list)
    maybe: int | None = None
    maybe_old: typing.Optional[float] = None  # noqa: UP045 (the typing.Union spelling on purpose)
    mode: Literal["sum", "mean"] = "mean"
    anything: Any = None
    inner: Inner = field(default_factory=Inner)
    derived: int = field(default=7, init=False)


@dataclass
class Level:
    level: Literal[0, 1, 2] = 0


@dataclass
class Required:
    needed: int
    other: int = 0


def write_yaml(path, obj):
    path.write_text(yaml.safe_dump(obj), encoding="utf-8")
    return path


# --- defaults, files, overrides on the real data config --------------------------------------------


def test_load_config_without_file_gives_defaults():
    cfg = load_config(ShowDataConfig)
    assert cfg == ShowDataConfig()
    assert cfg.clip == ClipConfig() and cfg.crop == CropConfig()
    assert cfg.augment == AugmentConfig() and cfg.loader == LoaderConfig()


def test_yaml_overrides_only_what_it_names(tmp_path):
    path = write_yaml(
        tmp_path / "c.yaml",
        {"clip": {"num_frames": 5, "train_step": [0, 3]}, "augment": {"flip_prob": 0.0}},
    )
    cfg = load_config(ShowDataConfig, path)
    assert cfg.clip.num_frames == 5
    assert cfg.clip.train_step == (0, 3) and isinstance(cfg.clip.train_step, tuple)
    assert cfg.clip.test_step == 1  # untouched default
    assert cfg.augment.flip_prob == 0.0
    assert cfg.augment.rotation == 40.0 and cfg.augment.scale == 0.5
    assert cfg.crop == CropConfig() and cfg.loader == LoaderConfig()


def test_empty_yaml_file_gives_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    assert load_config(ShowDataConfig, path) == ShowDataConfig()


def test_overrides_beat_the_file(tmp_path):
    path = write_yaml(tmp_path / "c.yaml", {"augment": {"flip_prob": 0.1, "rotation": 10}})
    cfg = load_config(
        ShowDataConfig,
        path,
        ["augment.flip_prob=0.25", "clip.train_step=[2, 4]", "loader.max_decode_reduction=1", "crop.sigma=3"],
    )
    assert cfg.augment.flip_prob == 0.25
    assert cfg.augment.rotation == 10.0  # from the file, as a float
    assert isinstance(cfg.augment.rotation, float)
    assert cfg.clip.train_step == (2, 4)
    assert cfg.loader.max_decode_reduction == 1
    assert cfg.crop.sigma == 3.0 and isinstance(cfg.crop.sigma, float)


def test_int_is_accepted_for_float_and_converted():
    cfg = from_dict(CropConfig, {"sigma": 2, "mean": [0, 1, 0.5]})
    assert cfg.sigma == 2.0 and type(cfg.sigma) is float
    assert cfg.mean == (0.0, 1.0, 0.5)
    assert all(type(v) is float for v in cfg.mean)


@pytest.mark.parametrize(
    ("section", "key", "suggestion"),
    [
        ("augment", "flip_probb", "flip_prob"),
        ("augment", "rotatoin", "rotation"),
        ("loader", "frame_cache", "frame_cache_size"),
        ("crop", "heatmapsize", "heatmap_size"),
    ],
)
def test_unknown_nested_key_names_the_closest_valid_key(section, key, suggestion):
    with pytest.raises(ConfigError) as info:
        load_config(ShowDataConfig, overrides=[f"{section}.{key}=1"])
    msg = str(info.value)
    assert f"'{section}.{key}'" in msg
    assert f"did you mean '{suggestion}'" in msg


def test_unknown_top_level_key_in_file_names_file_and_closest_key(tmp_path):
    path = write_yaml(tmp_path / "typo.yaml", {"augmnt": {"flip_prob": 0.5}})
    with pytest.raises(ConfigError) as info:
        load_config(ShowDataConfig, path)
    msg = str(info.value)
    assert str(path) in msg
    assert "'augmnt'" in msg and "did you mean 'augment'" in msg


def test_config_error_is_a_cmpose_error():
    # The CLI turns CmposeError into one log line and exit code 2.
    assert issubclass(ConfigError, CmposeError)


@pytest.mark.parametrize(
    ("override", "where", "expect"),
    [
        ("augment.flip_prob=2.0x", "augment.flip_prob", "expected a number"),
        ("augment.flip_prob=true", "augment.flip_prob", "expected a number"),
        ("augment.half_body_min_joints=8.5", "augment.half_body_min_joints", "expected an integer"),
        ("augment.half_body_min_joints=true", "augment.half_body_min_joints", "expected an integer"),
        ("clip.train_step=[1, 2, 3]", "clip.train_step", "expected 2 values, got 3"),
        ("clip.train_step=3", "clip.train_step", "expected a list"),
        ("crop.mean=[0.5, x, 0.5]", "crop.mean[1]", "expected a number"),
        ("crop.image_size=[192, 256.0]", "crop.image_size[1]", "expected an integer"),
        ("augment=3", "augment", "expected a mapping"),
    ],
)
def test_wrong_types_are_rejected_with_the_path(override, where, expect):
    with pytest.raises(ConfigError) as info:
        load_config(ShowDataConfig, overrides=[override])
    msg = str(info.value)
    assert where in msg
    assert expect in msg


def test_dataclass_validation_becomes_config_error():
    # ClipConfig.__post_init__ raises ValueError for an even T; the loader reports it as ConfigError.
    with pytest.raises(ConfigError) as info:
        load_config(ShowDataConfig, overrides=["clip.num_frames=4"])
    assert "clip" in str(info.value) and "odd" in str(info.value)
    with pytest.raises(ConfigError, match="train_step"):
        load_config(ShowDataConfig, overrides=["clip.train_step=[3, 1]"])


def test_missing_and_malformed_files(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="config file not found") as info:
        load_config(ShowDataConfig, missing)
    assert str(missing) in str(info.value)

    bad = tmp_path / "bad.yaml"
    bad.write_text("augment: [1, 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(ShowDataConfig, bad)

    top_list = tmp_path / "list.yaml"
    top_list.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(ShowDataConfig, top_list)


# --- apply_overrides -------------------------------------------------------------------------------


def test_apply_overrides_parses_yaml_values_and_creates_sections():
    data: dict = {"a": {"keep": 1}}
    out = apply_overrides(
        data, ["a.b=3", "a.c=0.5", "a.d=true", "a.e=[1, 2]", "x.y.z=hello", "a.f=", "a.g=k=v", " a.h =null"]
    )
    assert out is data  # applied in place
    assert data == {
        "a": {"keep": 1, "b": 3, "c": 0.5, "d": True, "e": [1, 2], "f": "", "g": "k=v", "h": None},
        "x": {"y": {"z": "hello"}},
    }


def test_apply_overrides_last_one_wins():
    assert apply_overrides({}, ["a=1", "a=2"]) == {"a": 2}


def test_apply_overrides_rejects_missing_equals_and_bad_yaml():
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["augment.flip_prob"])
    with pytest.raises(ConfigError, match="cannot parse"):
        apply_overrides({}, ["a=[1, 2"])


def test_apply_overrides_cannot_descend_into_a_value():
    with pytest.raises(ConfigError, match="'flip_prob' is not a section"):
        apply_overrides({"augment": {"flip_prob": 0.5}}, ["augment.flip_prob.x=1"])


def test_override_below_a_leaf_is_rejected_by_load_config():
    # Without a file the leaf is created as a mapping, which the type check then rejects.
    with pytest.raises(ConfigError, match="augment.flip_prob"):
        load_config(ShowDataConfig, overrides=["augment.flip_prob.x=1"])


# --- from_dict on the test's own dataclasses -------------------------------------------------------


def test_from_dict_all_supported_kinds():
    cfg = from_dict(
        Kinds,
        {
            "i": 3,
            "f": 2,
            "b": True,
            "s": "text",
            "pair": [4, 5],
            "many": [1, 2, 3, 4],
            "floats": [1, 2.5],
            "maybe": 9,
            "maybe_old": 1,
            "mode": "sum",
            "anything": {"free": [1, "x"]},
            "inner": {"x": 5},
        },
    )
    assert cfg.i == 3 and cfg.f == 2.0 and type(cfg.f) is float and cfg.b is True and cfg.s == "text"
    assert cfg.pair == (4, 5) and cfg.many == (1, 2, 3, 4)
    assert cfg.floats == [1.0, 2.5] and isinstance(cfg.floats, list)
    assert all(type(v) is float for v in cfg.floats)
    assert cfg.maybe == 9 and cfg.maybe_old == 1.0 and type(cfg.maybe_old) is float
    assert cfg.mode == "sum"
    assert cfg.anything == {"free": [1, "x"]}
    assert cfg.inner == Inner(x=5, name="a")
    assert cfg.derived == 7


def test_from_dict_optional_accepts_none():
    cfg = from_dict(Kinds, {"maybe": None, "maybe_old": None})
    assert cfg.maybe is None and cfg.maybe_old is None


def test_from_dict_accepts_a_dataclass_instance_for_a_section():
    inner = Inner(x=2, name="b")
    assert from_dict(Kinds, {"inner": inner}).inner is inner


def test_from_dict_empty_mapping_gives_defaults():
    assert from_dict(Kinds, {}) == Kinds()


@pytest.mark.parametrize(
    ("data", "where", "expect"),
    [
        ({"i": "3"}, "i", "expected an integer"),
        ({"i": 3.0}, "i", "expected an integer"),
        ({"f": "half"}, "f", "expected a number"),
        ({"f": None}, "f", "expected a number"),
        ({"b": 1}, "b", "expected true or false"),
        ({"b": "yes"}, "b", "expected true or false"),
        ({"s": 5}, "s", "expected a string"),
        ({"pair": [1]}, "pair", "expected 2 values, got 1"),
        ({"pair": "12"}, "pair", "expected a list"),
        ({"many": [1, "2"]}, "many[1]", "expected an integer"),
        ({"floats": [1.0, True]}, "floats[1]", "expected a number"),
        ({"maybe": "x"}, "maybe", "expected an integer"),
        ({"maybe_old": "x"}, "maybe_old", "expected a number"),
        ({"mode": "max"}, "mode", "expected one of ['sum', 'mean']"),
        ({"inner": {"x": "1"}}, "inner.x", "expected an integer"),
        ({"inner": [1]}, "inner", "expected a mapping for section Inner"),
    ],
)
def test_from_dict_type_errors(data, where, expect):
    with pytest.raises(ConfigError) as info:
        from_dict(Kinds, data)
    msg = str(info.value)
    assert msg.startswith(f"{where}:"), msg
    assert expect in msg


def test_from_dict_unknown_nested_key_names_full_path_and_suggestion():
    with pytest.raises(ConfigError) as info:
        from_dict(Kinds, {"inner": {"nmae": "z"}})
    assert "unknown config key 'inner.nmae'" in str(info.value)
    assert "did you mean 'name'" in str(info.value)


def test_from_dict_rejects_non_init_field():
    # ``derived`` is not a constructor argument, so it is not a config key either.
    with pytest.raises(ConfigError, match="unknown config key 'derived'"):
        from_dict(Kinds, {"derived": 3})


def test_from_dict_missing_required_field_is_config_error():
    with pytest.raises(ConfigError, match="Required") as info:
        from_dict(Required, {"other": 1})
    assert "needed" in str(info.value)
    assert from_dict(Required, {"needed": 4}) == Required(needed=4, other=0)


def test_literal_of_ints_rejects_bool():
    assert from_dict(Level, {"level": 2}).level == 2
    with pytest.raises(ConfigError):
        from_dict(Level, {"level": True})


def test_scientific_notation_for_float_field(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("augment:\n  scale: 1e-3\n", encoding="utf-8")
    assert load_config(ShowDataConfig, path).augment.scale == pytest.approx(0.001)
    assert load_config(ShowDataConfig, overrides=["augment.brightness=5e-2"]).augment.brightness == 0.05


def test_scientific_notation_with_dot_works():
    # The YAML 1.1 float form (with a dot) is read as a number.
    cfg = load_config(ShowDataConfig, overrides=["augment.scale=1.0e-3"])
    assert cfg.augment.scale == pytest.approx(0.001)


# --- to_dict ---------------------------------------------------------------------------------------


def _has_tuple(obj) -> bool:
    if isinstance(obj, tuple):
        return True
    if isinstance(obj, list):
        return any(_has_tuple(v) for v in obj)
    if isinstance(obj, dict):
        return any(_has_tuple(v) for v in obj.values())
    return False


def test_to_dict_is_plain_and_nested():
    cfg = ShowDataConfig()
    d = to_dict(cfg)
    assert set(d) == {"clip", "crop", "augment", "loader"}
    assert d["crop"]["image_size"] == [192, 256]
    assert d["crop"]["mean"] == [0.485, 0.456, 0.406]
    assert d["clip"]["train_step"] == [1, 2]
    assert d["augment"]["flip_prob"] == 0.5
    assert not _has_tuple(d)
    # safe_dump only accepts plain types, so this is the "YAML-ready" check.
    yaml.safe_dump(d)


def test_to_dict_round_trips_through_yaml_and_load_config(tmp_path):
    cfg = load_config(
        ShowDataConfig,
        overrides=["clip.num_frames=5", "clip.train_step=[0, 4]", "crop.sigma=1.5", "augment.rotation=15"],
    )
    path = tmp_path / "dump.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg)), encoding="utf-8")
    again = load_config(ShowDataConfig, path)
    assert again == cfg
    assert again.clip.train_step == (0, 4)


def test_to_dict_round_trip_of_own_dataclass():
    cfg = Kinds(i=1, pair=(3, 4), many=(5,), floats=[0.5], maybe=2, mode="sum", inner=Inner(x=9))
    d = to_dict(cfg)
    assert not _has_tuple(d)
    # ``derived`` (init=False) appears in the dump but cannot be read back: drop it.
    assert d.pop("derived") == 7
    assert from_dict(Kinds, d) == cfg


def test_every_real_config_field_has_a_default():
    # The config rule: a YAML file overrides only what changes, so no field may be required.
    for cls in (ShowDataConfig, ClipConfig, CropConfig, AugmentConfig, LoaderConfig):
        for f in dataclasses.fields(cls):
            assert f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING, (
                cls.__name__,
                f.name,
            )
