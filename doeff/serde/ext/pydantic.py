"""pydantic v2 models (registered classes), carried exactly and rebuilt without validation.

A model is written as a dict of its declared fields, in order (each value encoded by the codec, so
a nested model must be registered too), plus, only where they hold something: ``"__set__"`` (the
names in ``model_fields_set``, when not every field was set), ``"__extra__"`` (extra fields of an
``extra="allow"`` model) and ``"__private__"`` (private attributes). pydantic forbids field names
starting with an underscore, so these keys never clash with a field.

Reading restores those attributes as `model_construct` does, but without running defaults,
validators or ``model_post_init``: the value read is the value written. A generic model is
registered per parametrisation (``codec.register(Page[Item])``); its wire name then reads
``module.Page[Item]``.
"""

from __future__ import annotations

from typing import Any

from doeff.errors import DecodeError
from doeff.serde.adapter import Adapter

_SET, _EXTRA, _PRIVATE = "__set__", "__extra__", "__private__"


def adapter(cls: type, name: str) -> Adapter:
    """The adapter for the pydantic model class `cls` (exactly that class)."""
    fields = tuple(cls.model_fields)  # type: ignore[attr-defined]

    def reduce(model: Any) -> dict[str, object]:
        state: dict[str, object] = dict(model.__dict__)
        extra = model.__pydantic_extra__
        if model.__pydantic_fields_set__ != state.keys() | (extra or {}).keys():
            state[_SET] = sorted(model.__pydantic_fields_set__)
        if extra is not None:
            state[_EXTRA] = dict(extra)
        if model.__pydantic_private__ is not None:
            state[_PRIVATE] = dict(model.__pydantic_private__)
        return state

    def rebuild(state: object) -> object:
        if type(state) is not dict:
            raise DecodeError(f"malformed state for model {name!r}: a {type(state).__name__}")
        values = dict(state)
        fields_set = values.pop(_SET, None)
        extra = values.pop(_EXTRA, None)
        private = values.pop(_PRIVATE, None)
        if not all(part is None or type(part) is dict for part in (extra, private)) or not (
                fields_set is None or type(fields_set) is list):
            raise DecodeError(f"malformed state for model {name!r}")
        if tuple(values) != fields:
            raise DecodeError(
                f"record for model {name!r} has fields {list(values)}, but the class now has "
                f"{list(fields)}; the class changed since the record was written"
            )
        klass: Any = cls
        model = klass.__new__(klass)
        object.__setattr__(model, "__dict__", values)
        object.__setattr__(model, "__pydantic_fields_set__", set(
            values.keys() | (extra or {}).keys() if fields_set is None else fields_set))
        object.__setattr__(model, "__pydantic_extra__", extra)
        object.__setattr__(model, "__pydantic_private__", private)
        return model

    return Adapter(cls, name, reduce, rebuild)
