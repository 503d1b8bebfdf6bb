"""The trust policy: which codecs' records a reader decodes. Anything else is refused from its
header, before a byte of its payload is read, because decoding a pickle runs whatever code the
bytes name, and anyone who can write to a store can write a record tagged `pickle`."""

from __future__ import annotations

from collections.abc import Iterable

from doeff.errors import DecodeError, InvalidOptionError, UnknownCodecError, UntrustedRecordError
from doeff.serde.codec import Codec
from doeff.serde.registry import NAME, NAME_CHARS, get_codec, registered_tags

# Codecs whose decoders build only plain data and registered types: they cannot run code.
SAFE_TAGS = frozenset({"msgpack", "json"})
# Codecs whose decoding runs code chosen by the bytes.
PICKLE_TAGS = frozenset({"pickle", "cloudpickle"})


class Trust:
    """The codecs a reader trusts besides its own: tags, or codec instances (which then read
    their tag's records, with their registered types). Default: `SAFE_TAGS`.

        Trust(["msgpack", "json", PickleCodec()])
    """

    __slots__ = ("_readers", "tags")

    def __init__(self, trust: Iterable[Codec | str] | None = None) -> None:
        if isinstance(trust, str | bytes):
            raise InvalidOptionError(
                f"trust must be a list of codecs or tags, got the single {trust!r}; "
                f"write trust=[{trust!r}]"
            )
        if trust is not None and not isinstance(trust, Iterable):
            raise InvalidOptionError(
                f"trust must be a list of codecs or tags, got {type(trust).__name__} "
                f"{trust!r:.60}; e.g. trust=['msgpack', PickleCodec()]"
            )
        self._readers: dict[str, Codec | None] = {}
        for item in sorted(SAFE_TAGS) if trust is None else trust:
            if isinstance(item, str):
                if NAME.fullmatch(item) is None:
                    raise InvalidOptionError(f"trust: {item!r} is not a codec tag ({NAME_CHARS})")
                self._readers.setdefault(item, None)
            elif not isinstance(item, type) and isinstance(getattr(item, "tag", None), str) \
                    and callable(getattr(item, "decode", None)):
                self._readers[item.tag] = item
            else:
                hint = f" (a class: write {item.__name__}())" if isinstance(item, type) else ""
                raise InvalidOptionError(
                    f"trust: {item!r} is neither a codec nor a codec tag{hint}; list codecs "
                    "(MsgpackCodec()) or tags ('msgpack')"
                )
        self.tags = frozenset(self._readers)

    def __repr__(self) -> str:
        return f"Trust({sorted(self.tags)!r})"

    def adding(self, codec: Codec) -> Trust:
        """This policy with `codec` reading its tag's records."""
        out = Trust(())
        out._readers = {**self._readers, codec.tag: codec}
        out.tags = frozenset(out._readers)
        return out

    def reader(self, tag: str, own: Codec | None, key: str | None) -> Codec:
        """The codec that reads a record tagged `tag`: `own` if it wrote it, else a trusted one.

        `UntrustedRecordError` names the record's key and codec and says how to allow or migrate
        it; `DecodeError` if a trusted tag has no codec registered in this process.
        """
        if own is not None and own.tag == tag:
            return own
        if tag not in self._readers:
            raise UntrustedRecordError(self.refusal(tag, own, key))
        reader = self._readers[tag]
        if reader is not None:
            return reader
        try:
            return get_codec(tag)
        except UnknownCodecError:
            mine = f" (the reader's codec is {own.tag!r})" if own is not None else ""
            raise DecodeError(
                f"record written with codec {tag!r}, which is not registered in this process"
                f"{mine}; call register_codec(...) with an instance of that codec — registered: "
                f"{', '.join(registered_tags())}"
            ) from None

    def refusal(self, tag: str, own: Codec | None, key: str | None) -> str:
        """Why a record tagged `tag` is not decoded, and the two ways forward."""
        trusted = sorted(self.tags | ({own.tag} if own is not None else set()))
        where = "a record" if key is None else f"the record under {key!r:.80}"
        danger = ("; decoding it would run code stored in it, chosen by whoever wrote it"
                  if tag in PICKLE_TAGS else "")
        return (
            f"{where} was written with codec {tag!r}, which this reader does not trust "
            f"(it trusts {', '.join(trusted) or 'nothing'}){danger}. If your own code wrote "
            f"it, allow the codec with trust=[..., {tag!r}]"
            + (" (and a signing_key, so only key holders can add such records)"
               if tag in PICKLE_TAGS else "")
            + "; or re-encode the store once with a safe codec: "
            "doeff cache migrate STORE --to msgpack"
            + (" --unsafe-pickle" if tag in PICKLE_TAGS else "")
        )


DEFAULT_TRUST = Trust()
