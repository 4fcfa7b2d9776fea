"""A GGUF file's metadata and tensor table, read in milliseconds and checked for completeness.

``gguf.GGUFReader`` builds a numpy view for every metadata value, which takes about five seconds for a 49k-token
vocabulary; start-up reads a GGUF model's dims and chat tokens before any job runs, so it reads the header here
instead (the format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md). The result is cached per file
(path, size and modification time), so a start-up that asks several times reads it once.
"""

from __future__ import annotations

import functools
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["GgufMeta", "GgufError", "read_gguf"]

_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
_DEFAULT_ALIGNMENT = 32


class GgufError(ValueError):
    """A file that is not a GGUF model, or one cut short."""


@dataclass(frozen=True)
class GgufTensor:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int  # from the start of the data section
    nbytes: int


@dataclass(frozen=True)
class GgufMeta:
    version: int
    fields: dict[str, Any]
    tensors: tuple[GgufTensor, ...]
    data_offset: int
    file_size: int

    @property
    def architecture(self) -> str:
        return str(self.fields["general.architecture"])


class _Cursor:
    def __init__(self, buf: memoryview | bytes, endian: str) -> None:
        self.buf, self.pos, self.e = buf, 0, endian

    def take(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise GgufError(f"the file ends at byte {len(self.buf)} inside the header")
        (value,) = struct.unpack_from(self.e + fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        n = self.take("Q")
        if self.pos + n > len(self.buf):
            raise GgufError(f"the file ends at byte {len(self.buf)} inside a string")
        value = bytes(self.buf[self.pos : self.pos + n]).decode("utf-8", "replace")
        self.pos += n
        return value

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.take(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item, count = self.take("I"), self.take("Q")
            if item in _SCALARS:
                fmt = f"{count}{_SCALARS[item]}"
                size = struct.calcsize(fmt)
                if self.pos + size > len(self.buf):
                    raise GgufError(f"the file ends at byte {len(self.buf)} inside an array")
                values = list(struct.unpack_from(self.e + fmt, self.buf, self.pos))
                self.pos += size
                return values
            return [self.value(item) for _ in range(count)]
        raise GgufError(f"unknown metadata value type {kind} at byte {self.pos}")


def _tensor_nbytes(shape: tuple[int, ...], ggml_type: int) -> int:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    except (ValueError, KeyError):
        raise GgufError(f"unknown tensor type {ggml_type}") from None
    n = 1
    for d in shape:
        n *= d
    return n // block * size


def _parse(buf: memoryview | bytes, file_size: int) -> GgufMeta:
    if bytes(buf[:4]) != b"GGUF":
        raise GgufError("no GGUF magic at the start")
    endian = "<"
    version = struct.unpack_from("<I", buf, 4)[0] if len(buf) >= 8 else 0
    if version & 0xFFFF == 0:  # written big-endian
        endian = ">"
        version = struct.unpack_from(">I", buf, 4)[0]
    if version < 2:
        raise GgufError(f"GGUF version {version} is not supported (2 or later)")
    cur = _Cursor(buf, endian)
    cur.pos = 8
    n_tensors, n_kv = cur.take("Q"), cur.take("Q")
    fields: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cur.string()
        fields[key] = cur.value(cur.take("I"))
    infos = []
    for _ in range(n_tensors):
        name = cur.string()
        dims = tuple(cur.take("Q") for _ in range(cur.take("I")))
        infos.append((name, dims, cur.take("I"), cur.take("Q")))
    align = int(fields.get("general.alignment", _DEFAULT_ALIGNMENT))
    data_offset = cur.pos + (-cur.pos % align)
    tensors = tuple(GgufTensor(n, d, t, o, _tensor_nbytes(d, t)) for n, d, t, o in infos)
    end = max((data_offset + t.offset + t.nbytes for t in tensors), default=data_offset)
    if end > file_size:
        raise GgufError(f"the tensor data needs {end} bytes and the file has {file_size}")
    return GgufMeta(version, fields, tensors, data_offset, file_size)


@functools.lru_cache(maxsize=16)
def _read_cached(path: str, size: int, mtime_ns: int) -> GgufMeta:
    with open(path, "rb") as f:
        if size == 0:
            raise GgufError("the file is empty")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            view = memoryview(mm)
            try:
                return _parse(view, size)
            finally:
                view.release()


def read_gguf(path: str | Path) -> GgufMeta:
    """The metadata and tensor table of a GGUF file; :class:`GgufError` for a foreign or truncated file."""
    p = Path(path).expanduser().resolve()
    st = p.stat()
    return _read_cached(str(p), st.st_size, st.st_mtime_ns)
