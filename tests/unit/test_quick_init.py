"""``quick_init`` (connector/model.py) builds the same objects as the dataclass ``__init__`` it
replaces: the same parameters and defaults, a fresh default per instance, ``__post_init__``,
and everything else about a frozen slots dataclass intact."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from dataclasses import InitVar, dataclass, field
from datetime import UTC, datetime

import pytest

from connector import model
from connector.model import CloudTrailEvent, Identity, quick_init


@dataclass(frozen=True, slots=True)
class _Plain:
    name: str
    count: int = 3
    tags: list[str] = field(default_factory=list)
    fixed: str = field(default="f", init=False)
    derived: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "derived", f"{self.name}/{self.count}")


@quick_init
@dataclass(frozen=True, slots=True)
class _Quick:
    name: str
    count: int = 3
    tags: list[str] = field(default_factory=list)
    fixed: str = field(default="f", init=False)
    derived: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "derived", f"{self.name}/{self.count}")


def _state(obj: object) -> dict[str, object]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}  # type: ignore[arg-type]


@pytest.mark.parametrize(("args", "kwargs"), [(("a",), {}), (("a", 5), {}), (("a",), {"tags": ["x"]}),
                                              ((), {"name": "b", "count": 0, "tags": []})])
def test_the_same_fields_as_the_dataclass_init(args: tuple[object, ...], kwargs: dict[str, object]) -> None:
    assert _state(_Quick(*args, **kwargs)) == _state(_Plain(*args, **kwargs))  # type: ignore[arg-type]


def test_the_same_signature_and_refusals() -> None:
    assert list(inspect.signature(_Quick).parameters) == list(inspect.signature(_Plain).parameters)
    for call in (lambda c: c(), lambda c: c("a", 1, [], "extra"), lambda c: c("a", fixed="x")):
        with pytest.raises(TypeError):
            call(_Plain)
        with pytest.raises(TypeError):
            call(_Quick)


def test_a_fresh_default_per_instance_and_a_frozen_instance() -> None:
    one, two = _Quick("a"), _Quick("a")
    assert one.tags is not two.tags and one == two
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.name = "b"  # type: ignore[misc]
    changed = dataclasses.replace(one, count=9)
    assert changed.derived == "a/9" and changed.fixed == "f"
    assert pickle.loads(pickle.dumps(changed)) == changed


def test_initvar_and_keyword_only_fields_are_refused() -> None:
    @dataclass(frozen=True, slots=True)
    class WithInitVar:
        a: int
        b: InitVar[int] = 0

    @dataclass(frozen=True, slots=True, kw_only=True)
    class KeywordOnly:
        a: int

    for cls in (WithInitVar, KeywordOnly):
        with pytest.raises(TypeError):
            quick_init(cls)


@pytest.mark.parametrize("cls", [c for c in vars(model).values()
                                 if isinstance(c, type) and dataclasses.is_dataclass(c)
                                 and "def __init__" in (c.__init__.__doc__ or "")])
def test_every_quick_model_class_keeps_its_dataclass_parameters(cls: type) -> None:
    expected = [(f.name, f.default) for f in dataclasses.fields(cls) if f.init]
    parameters = inspect.signature(cls).parameters.values()
    assert [(p.name, dataclasses.MISSING if p.default is p.empty else p.default) for p in parameters
            if p.default is p.empty or p.default is not dataclasses.MISSING] == \
        [(name, default) for name, default in expected if default is not dataclasses.MISSING or
         not _has_factory(cls, name)]


def _has_factory(cls: type, name: str) -> bool:
    return next(f for f in dataclasses.fields(cls) if f.name == name).default_factory is not dataclasses.MISSING


def test_the_event_still_formats_its_time_once() -> None:
    when = datetime(2026, 11, 20, 1, 2, 3, tzinfo=UTC)
    event = CloudTrailEvent("e", "n", "s", when, None, "123456789012", "eu-west-1", "aws", Identity(type="Root"),
                            None, None, None, None, None, {})
    assert event.time_text == "2026-11-20T01:02:03Z" and event.origin == "" and event.identity.display == "root"
