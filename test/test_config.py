from dataclasses import dataclass, field

import pytest

from mvgd_core.config import ConfigError, from_dict, load_config, to_dict


@dataclass(frozen=True)
class Inner:
    size: tuple[int, int] = (48, 64)
    name: str = "x"


@dataclass(frozen=True)
class Outer:
    lr: float = 1e-3
    steps: int = 10
    inner: Inner = field(default_factory=Inner)


def test_round_trip_and_nested_types(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("lr: 0.01\ninner:\n  size: [32, 32]\n")
    cfg = load_config(Outer, p)
    assert cfg.lr == 0.01 and cfg.inner.size == (32, 32) and cfg.steps == 10
    assert from_dict(Outer, to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "data, key",
    [({"lr": "fast"}, "lr"), ({"inner": {"size": [1, 2, 3]}}, "inner.size"), ({"inner": {"colour": 1}}, "colour"), ({"steps": 1.5}, "steps")],
)
def test_errors_name_the_key(data, key):
    with pytest.raises(ConfigError, match=key):
        from_dict(Outer, data)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Outer, tmp_path / "nope.yaml")


def test_float_written_without_a_dot_is_a_number_and_nan_is_refused():
    # PyYAML reads "1e-4" as a string (YAML 1.1); a float field must still take it
    assert from_dict(Outer, {"lr": "1e-4"}).lr == 1e-4
    assert from_dict(Outer, {"lr": "-2.5E3"}).lr == -2500.0
    with pytest.raises(ConfigError, match="lr"):
        from_dict(Outer, {"lr": float("nan")})
    with pytest.raises(ConfigError, match="lr"):
        from_dict(Outer, {"lr": "nan"})
