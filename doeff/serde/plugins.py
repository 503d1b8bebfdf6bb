"""Codecs offered by installed packages, found through the ``doeff.codecs`` entry-point group.

A package declares, in its ``pyproject.toml``::

    [project.entry-points."doeff.codecs"]
    rot13 = "mypackage.codecs:Rot13Codec"

where the entry-point name is the codec's tag and the object a codec instance, or a class (or
any callable) that builds one without arguments. A reader meeting a record with that tag loads
it then, and only it: installed packages are trusted code, records are not, so a record can
only pick among codecs the environment already offers.
"""

from __future__ import annotations

from doeff.errors import RegistrationError
from doeff.serde.codec import Codec

GROUP = "doeff.codecs"


def load(tag: str) -> Codec | None:
    """The codec an installed package offers for `tag`, or None if none does."""
    # Imported here: importlib.metadata costs ~30 ms to import, and only unknown tags need it.
    from importlib.metadata import entry_points

    for point in entry_points(group=GROUP, name=tag):
        try:
            offered = point.load()
            # A class has the attributes of the Codec protocol too: build an instance of it.
            plain = isinstance(offered, Codec) and not isinstance(offered, type)
            codec = offered if plain or not callable(offered) else offered()
        except Exception as exc:
            raise RegistrationError(
                f"the codec entry point {point.name} = {point.value!r} failed to load: {exc!r}"
            ) from exc
        if not isinstance(codec, Codec) or codec.tag != tag:
            raise RegistrationError(
                f"the codec entry point {point.name} = {point.value!r} gave {codec!r}, not a "
                f"codec with tag {tag!r}"
            )
        return codec
    return None
