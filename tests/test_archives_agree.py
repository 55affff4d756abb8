"""The two ways of reading an archive agree: from its file (zipfile, tarfile's random access)
and from its chunks as they arrive (stream-unzip, tarfile's stream mode), whatever the members
and however the bytes are cut."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.ingest.archives import ArchiveError, ArchiveLimits, stream_kind, unpack, unpack_stream
from tests.helpers import png_bytes

LIMITS = ArchiveLimits(max_members=50, max_total_bytes=1 << 20, max_file_bytes=1 << 18)
NAMES = st.sampled_from(["1/a.png", "2/b.png", "c.png", "dir/3/d.png", "../up.png", "/abs.png",
                         "1/inner.zip", "ü/é.png", "4/", "a\\b.png", "1/a.png"])
MEMBERS = st.lists(st.tuples(NAMES, st.integers(0, 40), st.booleans()), max_size=8)


def _zip(members: list[tuple[str, int, bool]], to_pipe: bool) -> bytes:
    buffer = io.BytesIO()
    target = _Pipe() if to_pipe else buffer
    with zipfile.ZipFile(target, "w") as archive:
        for name, seed, deflated in members:
            method = zipfile.ZIP_DEFLATED if deflated or to_pipe else zipfile.ZIP_STORED
            info = zipfile.ZipInfo(name)
            info.compress_type = method
            archive.writestr(info, b"" if name.endswith("/") else png_bytes(seed, size=3 + seed))
    return bytes(target.written) if to_pipe else buffer.getvalue()


def _tar(members: list[tuple[str, int, bool]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, seed, _ in members:
            data = png_bytes(seed, size=3 + seed)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class _Pipe(io.RawIOBase):
    """An unseekable output: zipfile then writes sizes after each member's data."""

    def __init__(self) -> None:
        self.written = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        self.written += data
        return len(data)


def _outcome(folder: Path, read) -> object:
    folder.mkdir()
    try:
        members, rejected = read(folder)
    except ArchiveError:
        return "refused", sorted(p.name for p in folder.iterdir())
    # each member's file holds the bytes its digest was taken of
    return ([(m.name, m.label, m.sha256,
              hashlib.sha256(m.path.read_bytes()).hexdigest() == m.sha256) for m in members],
            sorted((r.name, r.reason) for r in rejected))


def _both(tmp: Path, data: bytes, cut: int) -> tuple[object, object]:
    archive = tmp / "archive"
    archive.write_bytes(data)
    kind = stream_kind(data[:4], "upload.tar.gz")
    if kind is None:  # an empty zip (its end record first): the upload writes it, as here
        kind, data = "zip", data if data.startswith(b"PK\x03\x04") else b""
    pieces = (data[at:at + cut] for at in range(0, len(data), cut))
    from_file = _outcome(tmp / "file", lambda out: unpack(archive, out, LIMITS, "loose"))
    if not data:
        return from_file, from_file
    streamed = _outcome(tmp / "stream",
                        lambda out: unpack_stream(pieces, kind, out, LIMITS, "loose"))
    return from_file, streamed


@pytest.mark.filterwarnings("ignore:Duplicate name")  # duplicates are among the cases
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(members=MEMBERS, form=st.sampled_from(["zip", "zip to a pipe", "tar.gz"]),
       cut=st.integers(1, 5000))
def test_file_and_stream_give_the_same_members_and_refusals(tmp_path_factory, members, form,
                                                            cut):
    tmp = tmp_path_factory.mktemp("agree")
    data = _tar(members) if form == "tar.gz" else _zip(members, form == "zip to a pipe")
    from_file, streamed = _both(tmp, data, cut)
    assert streamed == from_file


@pytest.mark.filterwarnings("ignore:Duplicate name")
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(members=MEMBERS.filter(lambda m: len(m) > 0), form=st.sampled_from(["zip", "tar.gz"]),
       keep=st.floats(0.0, 0.95), cut=st.integers(1, 3000))
def test_a_cut_archive_is_refused_as_it_arrives_and_leaves_nothing(tmp_path_factory, members,
                                                                   form, keep, cut):
    """Stricter than the file reader here: tarfile reading a file takes a .tar.gz cut inside
    its end-of-archive padding for a whole one; the stream checks gzip's trailer."""
    tmp = tmp_path_factory.mktemp("cut")
    whole = _tar(members) if form == "tar.gz" else _zip(members, False)
    data = whole[:max(4, int(len(whole) * keep))]
    _, streamed = _both(tmp, data, cut)
    assert streamed == ("refused", [])
