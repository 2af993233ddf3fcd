"""The Config base: coercion, validation, unknown keys, nested replace."""
from dataclasses import dataclass, field

import pytest

from ssrl_lab.config import Config, ConfigError, check


@dataclass
class Inner(Config):
    x: int = 1
    span: tuple[float, float] = (0.0, 1.0)

    def validate(self):
        check(self.x > 0, f"x must be > 0, got {self.x}")
        check(self.span[0] <= self.span[1], f"span must be increasing, got {self.span}")


@dataclass
class Outer(Config):
    inner: Inner = field(default_factory=Inner)
    name: str = "run"
    rate: float = 0.5
    flag: bool = False
    opt: int | None = None


def test_coerces_and_nests():
    cfg = Outer.from_dict({"inner": {"x": 3, "span": [1, 2]}, "rate": 1})
    assert cfg.inner.x == 3 and cfg.inner.span == (1.0, 2.0) and isinstance(cfg.inner.span[0], float)
    assert cfg.rate == 1.0 and isinstance(cfg.rate, float)
    assert cfg.to_dict()["inner"] == {"x": 3, "span": [1.0, 2.0]}


def test_unknown_key_lists_valid_ones():
    with pytest.raises(ConfigError, match="unknown parameter.*zz.*valid: inner, name, rate, flag, opt"):
        Outer.from_dict({"zz": 1})
    with pytest.raises(ConfigError, match="inner.bogus"):
        Outer.from_dict({"inner": {"bogus": 1}})


def test_wrong_types_refused():
    with pytest.raises(ConfigError, match="rate: expected a number"):
        Outer(rate="fast")
    with pytest.raises(ConfigError, match="flag: expected true/false"):
        Outer(flag=1)
    with pytest.raises(ConfigError, match="expected an integer"):
        Inner(x=1.5)
    assert Outer(opt=None).opt is None and Outer(opt=4).opt == 4


def test_validate_runs_on_construction_and_replace():
    with pytest.raises(ConfigError, match="x must be > 0"):
        Inner(x=0)
    with pytest.raises(ConfigError, match="span must be increasing"):
        Outer().replace(inner={"span": (3.0, 1.0)})
    cfg = Outer().replace(inner={"x": 7}, name="b")
    assert cfg.inner.x == 7 and cfg.inner.span == (0.0, 1.0) and cfg.name == "b"
