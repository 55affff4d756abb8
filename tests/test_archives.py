import io
import zipfile
from pathlib import Path

import pytest

from service.ingest.archives import (
    ArchiveError,
    ArchiveLimits,
    ArchiveTooLarge,
    stream_kind,
    unpack,
    unpack_stream,
)
from service.ingest.imagecheck import NotAnImage, check_image
from service.ingest.labels import LabelError, check_label
from tests.helpers import png_bytes, tar_gz_bytes, zip_bytes

LIMITS = ArchiveLimits(max_members=100, max_total_bytes=1 << 20, max_file_bytes=1 << 19)


@pytest.fixture(params=["file", "stream"])
def reading(request):
    """Every archive test runs twice: the archive written first and read from its file, and
    read from its chunks as they arrive (kind by its head, as the upload decides)."""
    return request.param


def _chunks(data: bytes, size: int = 7):
    """Small uneven pieces: no member or header may rely on arriving whole."""
    return (data[at:at + size] for at in range(0, len(data), size))


def _unpack(tmp_path: Path, data: bytes, limits: ArchiveLimits = LIMITS, label=None,
            reading="file"):
    out = tmp_path / "out"
    out.mkdir()
    if reading == "stream" and stream_kind(data[:4], "upload") is not None:
        return unpack_stream(_chunks(data), stream_kind(data[:4], "upload"), out, limits,
                             label), out
    archive = tmp_path / "upload"
    archive.write_bytes(data)
    return unpack(archive, out, limits, label), out


def test_zip_members_take_their_folder_as_label(tmp_path, reading):
    data = zip_bytes({"7/a.png": png_bytes(1), "digits/3/b.png": png_bytes(2),
                      "c.png": png_bytes(3)})
    (members, rejected), out = _unpack(tmp_path, data, label="loose", reading=reading)
    assert rejected == []
    assert {m.name: m.label for m in members} == {"7/a.png": "7", "digits/3/b.png": "3",
                                                  "c.png": "loose"}
    # Member names never become paths: only numbered files inside the upload's folder.
    assert sorted(p.name for p in out.iterdir()) == ["member-000001", "member-000002",
                                                     "member-000003"]


def test_hostile_members_are_refused_with_reasons(tmp_path, reading):
    data = tar_gz_bytes(
        {"/etc/passwd.png": png_bytes(), "../escape.png": png_bytes(), "7/ok.png": png_bytes(),
         "7/inner.zip": b"PK", "a/../../b.png": png_bytes()},
        links={"7/link.png": "/etc/passwd"},
    )
    (members, rejected), out = _unpack(tmp_path, data, reading=reading)
    reasons = {r.name: r.reason for r in rejected}
    assert [m.name for m in members] == ["7/ok.png"]
    assert reasons["/etc/passwd.png"] == "absolute path"
    assert reasons["../escape.png"].startswith("path leaves")
    assert reasons["a/../../b.png"].startswith("path leaves")
    assert reasons["7/inner.zip"] == "nested archives are not unpacked"
    assert reasons["7/link.png"] == "links and special files are refused"
    assert not (tmp_path / "escape.png").exists()
    assert len(list(out.iterdir())) == 1


def test_duplicate_names_are_refused(tmp_path):
    archive = tmp_path / "dup.zip"
    with zipfile.ZipFile(archive, "w") as handle, pytest.warns(UserWarning):
        handle.writestr("1/a.png", png_bytes(1))
        handle.writestr("1/a.png", png_bytes(2))
    out = tmp_path / "out"
    out.mkdir()
    members, rejected = unpack(archive, out, LIMITS, None)
    assert len(members) == 1
    assert rejected[0].reason == "duplicate name in the archive"


def test_zip_bomb_is_refused_whole_and_leaves_nothing(tmp_path, reading):
    bomb = zip_bytes({"1/a.png": b"\0" * (600 << 10), "1/b.png": b"\0" * (600 << 10)})
    assert len(bomb) < 10_000
    with pytest.raises(ArchiveError, match="zip bomb"):
        _unpack(tmp_path, bomb, ArchiveLimits(100, 1 << 20, 1 << 20), reading=reading)
    assert list((tmp_path / "out").iterdir()) == []


def test_member_count_limit(tmp_path, reading):
    data = zip_bytes({f"1/{n}.png": png_bytes(n) for n in range(5)})
    with pytest.raises(ArchiveError, match="more than 3 members"):
        _unpack(tmp_path, data, ArchiveLimits(3, 1 << 20, 1 << 20), reading=reading)


def test_garbage_is_not_an_archive(tmp_path, reading):
    with pytest.raises(ArchiveError):
        _unpack(tmp_path, b"PK\x03\x04 this is not really a zip", reading=reading)


@pytest.mark.parametrize("label", ["", " ", "a/b", "..", ".", ".hidden", "x" * 101, "a\\b",
                                   "tab\there"])
def test_bad_labels(label):
    with pytest.raises(LabelError):
        check_label(label)


def test_good_label_is_trimmed():
    assert check_label(" 7 ") == "7"


def test_check_image_accepts_png_and_refuses_the_rest(tmp_path):
    good = tmp_path / "good"
    good.write_bytes(png_bytes(9, size=4))
    checked = check_image(good, 100)
    assert (checked.extension, checked.width, checked.height) == ("png", 4, 4)
    bad = tmp_path / "bad"
    bad.write_bytes(b"hello, not an image")
    with pytest.raises(NotAnImage, match="not an image"):
        check_image(bad, 100)
    big = tmp_path / "big"
    big.write_bytes(png_bytes(size=20))
    with pytest.raises(NotAnImage, match="pixels"):
        check_image(big, 100)
    truncated = tmp_path / "truncated"
    truncated.write_bytes(png_bytes(size=64)[:60])
    with pytest.raises(NotAnImage):
        check_image(truncated, 10_000)


def test_images_checked_at_once_in_threads_each_get_their_own_limit(tmp_path):
    """No process-wide state (a warnings filter, Pillow's global limit) in the check: two
    uploads checked at once, with other limits, never see each other's."""
    from concurrent.futures import ThreadPoolExecutor

    data = png_bytes(size=20)  # 400 pixels

    def verdict(limit: int) -> str:
        try:
            check_image(tmp_path / "unused", limit, data=data)
            return "ok"
        except NotAnImage as error:
            return str(error)

    limits = [100, 10_000] * 200
    with ThreadPoolExecutor(8) as pool:
        verdicts = list(pool.map(verdict, limits))
    for limit, said in zip(limits, verdicts, strict=True):
        expected = "ok" if limit == 10_000 else "20x20 pixels is more than 100 " \
                                                "(decompression bomb guard)"
        assert said == expected, (limit, said)


def _zip_with(entries: list[tuple[zipfile.ZipInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for info, data in entries:
            archive.writestr(info, data)
    return buffer.getvalue()


def _stream(tmp_path: Path, data: bytes, size: int = 7):
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    return unpack_stream(_chunks(data, size), "zip", out, LIMITS, None), out


def test_a_link_only_the_index_shows_is_refused_when_streamed(tmp_path, reading):
    """A zip marks links in its central directory alone, which a stream reaches last: the
    member was unpacked (its bytes even make an image) and is refused then, its file gone."""
    link = zipfile.ZipInfo("1/link.png")
    link.external_attr = 0o120777 << 16
    data = _zip_with([(zipfile.ZipInfo("1/ok.png"), png_bytes(1)), (link, png_bytes(2))])
    (members, rejected), out = _unpack(tmp_path, data, reading=reading)
    assert [m.name for m in members] == ["1/ok.png"]
    assert [(r.name, r.reason) for r in rejected] == [
        ("1/link.png", "links and special files are refused")]
    assert [p.name for p in out.iterdir()] == [members[0].path.name]


def test_an_index_that_names_other_members_refuses_the_archive(tmp_path):
    """Other tools read the index: an archive whose index and contents disagree would show
    them other images than we keep, so it is refused whole, leaving nothing."""
    data = zip_bytes({"1/a.png": png_bytes(1), "1/b.png": png_bytes(2)})
    at = data.rindex(b"1/b.png")  # the index's copy of the name comes last
    forged = data[:at] + b"1/c.png" + data[at + 7:]
    with pytest.raises(ArchiveError, match="index names member 2 '1/c.png', but it holds "
                                           "'1/b.png'"):
        _stream(tmp_path, forged)
    assert list((tmp_path / "out").iterdir()) == []


def test_an_index_with_fewer_members_refuses_the_archive(tmp_path):
    whole = zip_bytes({"1/a.png": png_bytes(1), "1/b.png": png_bytes(2)})
    shorter = zip_bytes({"1/a.png": png_bytes(1)})
    # the two-member archive's members, then the one-member archive's index
    spliced = whole[:whole.index(b"PK\x01\x02")] + shorter[shorter.index(b"PK\x01\x02"):]
    with pytest.raises(ArchiveError, match="index lists 1 members but it holds 2"):
        _stream(tmp_path, spliced)


@pytest.mark.parametrize("size", [1, 5, 1000, 1 << 20])
def test_folders_and_chunk_sizes_make_no_difference(tmp_path, size):
    folder = zipfile.ZipInfo("7/")
    data = _zip_with([(folder, b""), (zipfile.ZipInfo("7/a.png"), png_bytes(1)),
                      (zipfile.ZipInfo("8/b.png"), png_bytes(2))])
    (members, rejected), _ = _stream(tmp_path, data, size)
    assert ([(m.name, m.label) for m in members], rejected) == (
        [("7/a.png", "7"), ("8/b.png", "8")], [])


class _Unseekable(io.RawIOBase):
    def __init__(self) -> None:
        self.written = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.written += data
        return len(data)


def test_a_stored_member_sized_after_its_data_is_refused_saying_how_to_send_it(tmp_path):
    """Python's zipfile writing to a pipe stores sizes after the data: a stored member's end
    cannot be found while streaming. The archive is refused with the way out."""
    sink = _Unseekable()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("1/a.png", png_bytes(1))
    with pytest.raises(ArchiveError, match="make the archive with compression"):
        _stream(tmp_path, bytes(sink.written))


def test_a_deflated_member_sized_after_its_data_streams(tmp_path):
    sink = _Unseekable()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("1/a.png", png_bytes(1))
    (members, rejected), _ = _stream(tmp_path, bytes(sink.written))
    assert [m.name for m in members] == ["1/a.png"] and rejected == []


@pytest.mark.parametrize("cut", [10, 40, -30, -5])
def test_a_cut_stream_refuses_the_archive_and_leaves_nothing(tmp_path, cut):
    data = zip_bytes({"1/a.png": png_bytes(1), "1/b.png": png_bytes(2)})
    with pytest.raises(ArchiveError):
        _stream(tmp_path, data[:cut])
    assert list((tmp_path / "out").iterdir()) == []


def test_a_corrupted_member_refuses_the_archive(tmp_path):
    data = bytearray(_zip_with([(zipfile.ZipInfo("1/a.png"), png_bytes(1, size=32))]))
    data[60] ^= 0xFF  # inside the stored member's bytes: its CRC no longer matches
    with pytest.raises(ArchiveError, match="damaged archive"):
        _stream(tmp_path, bytes(data))


def test_the_stream_kind_comes_from_the_head():
    assert stream_kind(b"PK\x03\x04", "x.tar.gz") == "zip"
    assert stream_kind(b"\x1f\x8b\x08\x00", "x.zip") == "tar.gz"
    assert stream_kind(b"abcd", "x.tar") == "tar"
    assert stream_kind(b"MZ\x90\x00", "self-extracting.zip") is None  # read from its file
    assert stream_kind(b"PK\x05\x06", "empty.zip") is None


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_folders_and_empty_files_sized_after_their_data_are_stepped_over(tmp_path, where):
    """Written to a pipe (or by macOS's Finder), a folder or an empty file is a stored member
    whose sizes follow its (empty) data: stream-unzip stops there; we step over it."""
    sink = _Unseekable()
    images = [("1/a.png", png_bytes(1)), ("2/b.png", png_bytes(2))]
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as archive:
        empty = zipfile.ZipInfo("notes/empty.txt")
        empty.compress_type = zipfile.ZIP_STORED
        entries = {"first": 0, "middle": 1, "last": 2}[where]
        for position in range(3):
            if position == entries:
                archive.mkdir("1")
                archive.writestr(empty, b"")
            if position < 2:
                archive.writestr(*images[position])
    data = bytes(sink.written)
    # every file sized after its data (zipfile's mkdir writes a folder's sizes before)
    assert data.count(b"PK\x07\x08") == 3
    for size in (1, 7, 1 << 20):
        (tmp_path / str(size)).mkdir()
        (members, rejected), _ = _stream(tmp_path / str(size), data, size)
        assert sorted((m.name, m.label) for m in members) == [
            ("1/a.png", "1"), ("2/b.png", "2"), ("notes/empty.txt", "notes")]
        assert rejected == []


def test_an_encrypted_member_refuses_the_archive_both_ways(tmp_path, reading):
    data = bytearray(zip_bytes({"1/a.png": png_bytes(1)}))
    data[6] |= 1  # the member's local header: encrypted (ZipCrypto)
    index = data.index(b"PK\x01\x02")
    data[index + 8] |= 1  # and its index entry
    with pytest.raises(ArchiveError, match="encrypted members are not accepted"):
        _unpack(tmp_path, bytes(data), reading=reading)
    assert list((tmp_path / "out").iterdir()) == []


def test_a_bomb_in_a_folder_entry_is_counted_as_it_is_read_past(tmp_path):
    """A streamed zip's folder entries are read past (a stream cannot skip), so what one holds
    counts against the unpacked-bytes limit like any member's bytes."""
    folder = zipfile.ZipInfo("1/")
    folder.compress_type = zipfile.ZIP_DEFLATED
    data = _zip_with([(folder, b"\0" * (3 << 20)), (zipfile.ZipInfo("1/a.png"), png_bytes(1))])
    assert len(data) < 20_000
    with pytest.raises(ArchiveTooLarge, match="a member unpacks to more than 524288 bytes"):
        _stream(tmp_path, data, 4096)
