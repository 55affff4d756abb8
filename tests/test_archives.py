import zipfile
from pathlib import Path

import pytest

from service.archives import ArchiveError, ArchiveLimits, unpack
from service.imagecheck import NotAnImage, check_image
from service.labels import LabelError, check_label
from tests.helpers import png_bytes, tar_gz_bytes, zip_bytes

LIMITS = ArchiveLimits(max_members=100, max_total_bytes=1 << 20, max_file_bytes=1 << 19)


def _unpack(tmp_path: Path, data: bytes, limits: ArchiveLimits = LIMITS, label=None):
    archive = tmp_path / "upload"
    archive.write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    return unpack(archive, out, limits, label), out


def test_zip_members_take_their_folder_as_label(tmp_path):
    data = zip_bytes({"7/a.png": png_bytes(1), "digits/3/b.png": png_bytes(2),
                      "c.png": png_bytes(3)})
    (members, rejected), out = _unpack(tmp_path, data, label="loose")
    assert rejected == []
    assert {m.name: m.label for m in members} == {"7/a.png": "7", "digits/3/b.png": "3",
                                                  "c.png": "loose"}
    # Member names never become paths: only numbered files inside the upload's folder.
    assert sorted(p.name for p in out.iterdir()) == ["member-000001", "member-000002",
                                                     "member-000003"]


def test_hostile_members_are_refused_with_reasons(tmp_path):
    data = tar_gz_bytes(
        {"/etc/passwd.png": png_bytes(), "../escape.png": png_bytes(), "7/ok.png": png_bytes(),
         "7/inner.zip": b"PK", "a/../../b.png": png_bytes()},
        links={"7/link.png": "/etc/passwd"},
    )
    (members, rejected), out = _unpack(tmp_path, data)
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


def test_zip_bomb_is_refused_whole_and_leaves_nothing(tmp_path):
    bomb = zip_bytes({"1/a.png": b"\0" * (600 << 10), "1/b.png": b"\0" * (600 << 10)})
    assert len(bomb) < 10_000
    with pytest.raises(ArchiveError, match="zip bomb"):
        _unpack(tmp_path, bomb, ArchiveLimits(100, 1 << 20, 1 << 20))
    assert list((tmp_path / "out").iterdir()) == []


def test_member_count_limit(tmp_path):
    data = zip_bytes({f"1/{n}.png": png_bytes(n) for n in range(5)})
    with pytest.raises(ArchiveError, match="more than 3 members"):
        _unpack(tmp_path, data, ArchiveLimits(3, 1 << 20, 1 << 20))


def test_garbage_is_not_an_archive(tmp_path):
    with pytest.raises(ArchiveError):
        _unpack(tmp_path, b"PK\x03\x04 this is not really a zip")


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
