"""Files in and out, and the built-in file task types, through real workers."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from PIL import Image

import jobs
from jobs import files, keys
from tests.conftest import ROOT, wait_status

IMAGES = ROOT / "tests" / "fixtures" / "images"

pytestmark = pytest.mark.integration


def upload(conn, path: Path, name: str | None = None, ttl: int = 3600) -> dict:
    with open(path, "rb") as handle:
        return files.store_file(conn, handle, name or path.name, ttl=ttl).model_dump()


def output_bytes(conn, task_id: str, name: str) -> bytes:
    entry = json.loads(conn.hget(keys.outputs(task_id), name))
    return b"".join(files.read_chunks(conn, entry["id"]))


def test_store_and_read_back_in_chunks(conn):
    data = bytes(range(256)) * 9000  # 2.3 MB: three chunks
    ref = files.store_file(conn, io.BytesIO(data), "../../etc/Übersicht.bin", ttl=60)
    assert ref.name == "Übersicht.bin" and ref.size == len(data)
    assert b"".join(files.read_chunks(conn, ref.id)) == data
    assert conn.llen(f"jobs:file:{ref.id}:data") == 3
    assert 0 < conn.ttl(f"jobs:file:{ref.id}") <= 60


def test_over_the_limit_stores_nothing(conn):
    with pytest.raises(jobs.FileTooLarge, match="upload limit"):
        files.store_file(conn, io.BytesIO(b"x" * (3 * 1024 * 1024)), "big.bin", ttl=60, max_bytes=2 * 1024 * 1024)
    assert conn.dbsize() == 0


def test_expired_file_is_a_clear_error(conn):
    ref = files.store_file(conn, io.BytesIO(b"hello"), "a.txt", ttl=60)
    files.delete_file(conn, ref.id)
    with pytest.raises(jobs.FileExpired, match="no longer stored"):
        list(files.read_chunks(conn, ref.id))
    with pytest.raises(jobs.InvalidParams, match="upload it again"):
        jobs.submit(conn, "image_thumbnails", {"image": ref.model_dump()})
    assert not conn.exists(keys.task_index())


@pytest.mark.parametrize("name, expected", [
    ("../../etc/passwd", "passwd"), ("/abs/path/photo.JPG", "photo.JPG"), ("C:\\Users\\me\\x.csv", "x.csv"),
    ("données été.csv", "données été.csv"), ("\x00\n..", "file"), ("写真.jpeg", "写真.jpeg"), ("", "file"),
])
def test_untrusted_names_are_reduced_safely(name, expected):
    assert files.safe_filename(name) == expected


def test_folder_store_for_single_machine_deployments(conn, tmp_path, monkeypatch):
    monkeypatch.setattr(jobs.settings, "FILE_STORE", str(tmp_path))
    ref = files.store_file(conn, io.BytesIO(b"on disk"), "note.txt", ttl=60)
    assert (tmp_path / ref.id / "data").read_bytes() == b"on disk"
    assert b"".join(files.read_chunks(conn, ref.id)) == b"on disk"
    files.delete_file(conn, ref.id)
    assert not (tmp_path / ref.id).exists()


def test_thumbnails_of_an_exif_rotated_photo(conn, workers):
    workers.start(1)
    ref = upload(conn, IMAGES / "photo_exif6.jpg", "Urlaubsfoto.jpg")
    view = jobs.submit(conn, "image_thumbnails", {"image": ref, "sizes": "32,48,1024", "format": "png"})
    view = wait_status(conn, view["id"], "completed", timeout=30)
    made = {t["name"]: t for t in view["result"]["thumbnails"]}
    # stored 640x480 landscape with orientation 6 → shown 480x640 portrait; never upscaled past 640
    assert (made["Urlaubsfoto-32.png"]["width"], made["Urlaubsfoto-32.png"]["height"]) == (24, 32)
    assert (made["Urlaubsfoto-640.png"]["width"], made["Urlaubsfoto-640.png"]["height"]) == (480, 640)
    names = {f["name"] for f in view["files"]}
    assert names == {"Urlaubsfoto-32.png", "Urlaubsfoto-48.png", "Urlaubsfoto-640.png", "Urlaubsfoto-thumbnails.zip"}
    png = Image.open(io.BytesIO(output_bytes(conn, view["id"], "Urlaubsfoto-48.png")))
    assert png.size == (36, 48)
    with zipfile.ZipFile(io.BytesIO(output_bytes(conn, view["id"], "Urlaubsfoto-thumbnails.zip"))) as archive:
        assert len(archive.namelist()) == 3
    assert view["progress"]["percent"] == 100.0


@pytest.mark.parametrize("fixture, fragment", [
    ("truncated.jpg", "damaged or incomplete"),
    ("fake.png", "not a supported image"),
    ("bomb.png", "pixels"),
])
def test_bad_images_fail_with_a_clear_message(conn, workers, fixture, fragment):
    workers.start(1)
    view = jobs.submit(conn, "image_thumbnails", {"image": upload(conn, IMAGES / fixture)})
    view = wait_status(conn, view["id"], "failed", timeout=30)
    assert view["error"]["kind"] == "exception" and view["error"]["type"] == "ThumbnailError"
    assert fragment in view["error"]["message"].lower()


def test_readme_word_count_example_is_the_tested_module():
    readme = (ROOT / "README.md").read_text()
    module = (ROOT / "examples" / "word_count.py").read_text()
    assert module.strip() in readme


def test_users_own_task_type_runs_from_its_module(conn, workers):
    workers.start(1, env={"JOBS_TASK_MODULES": "tests.task_fixtures,examples.word_count"})
    import examples.word_count  # noqa: F401  (registers it here too, as the web app would)

    text = "the cat and the hat\nThe end\n"
    ref = files.store_file(conn, io.BytesIO(text.encode()), "story.txt", ttl=600).model_dump()
    view = jobs.submit(conn, "word_count", {"text": ref, "top": 1})
    view = wait_status(conn, view["id"], "completed", timeout=30)
    assert view["result"] == {"words": 7, "distinct": 5, "top": [{"word": "the", "count": 3}]}
    assert view["attempt"] == {"number": 1, "of": 2}
