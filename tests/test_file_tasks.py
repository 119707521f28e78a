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


CSVS = ROOT / "tests" / "fixtures" / "csv"

#: fixture → (encoding, delimiter, rows, columns, malformed rows, first column types)
CSV_ANSWERS = {
    "clean_orders.csv": ("utf-8", ",", 120, 8, 0, ["integer", "text", "text", "integer", "decimal", "date"]),
    "european_cp1252.csv": ("cp1252", ";", 30, 7, 0, ["text", "text", "decimal", "integer", "decimal", "date"]),
    "excel_sep_line.csv": ("utf-8", ";", 5, 4, 0, ["integer", "text", "decimal", "date"]),
    "excel_unicode_utf16le.csv": ("utf-16", "\t", 12, 4, 0, ["text", "text", "integer", "decimal"]),
    "header_only.csv": ("utf-8", ",", 0, 3, 0, ["empty", "empty", "empty"]),
    "na_markers.csv": ("utf-8", ",", 8, 5, 0, ["integer", "decimal", "text", "integer", "boolean"]),
    "one_column.csv": ("utf-8", ",", 12, 1, 0, ["text"]),
    "pipe_delimited.csv": ("utf-8", "|", 6, 5, 0, ["text", "integer", "text", "datetime", "decimal"]),
    "quoted_multiline.csv": ("utf-8", ",", 6, 5, 0, ["integer", "text", "text", "text", "decimal"]),
    "ragged_rows.csv": ("utf-8", ",", 9, 4, 4, ["text", "text", "integer", "decimal"]),
    "utf8_bom_quoted_header.csv": ("utf-8-sig", ",", 25, 4, 0, ["integer", "text", "decimal", "boolean"]),
}
CSV_FAILURES = {"empty.csv": "The file is empty.", "binary_image.csv": "binary data"}


def test_every_messy_csv_through_a_real_worker(conn, workers):
    """All fixtures go through one worker in a row: each gets its answer and none leaves the worker dead."""
    submitted = {name: jobs.submit(conn, "csv_profile", {"file": upload(conn, CSVS / name)})["id"]
                 for name in [*CSV_ANSWERS, *CSV_FAILURES]}
    workers.start(1)
    for name, (encoding, delimiter, rows, columns, malformed, types) in CSV_ANSWERS.items():
        view = wait_status(conn, submitted[name], ("completed", "failed"), timeout=60)
        assert view["status"] == "completed", (name, view["error"])
        profile = view["result"]
        assert (profile["encoding"], profile["delimiter"], profile["row_count"], profile["column_count"],
                profile["malformed_rows"]) == (encoding, delimiter, rows, columns, malformed), name
        assert [c["type"] for c in profile["columns"]][:len(types)] == types, name
        assert view["progress"]["percent"] == 100.0
        assert [f["name"] for f in view["files"]] == [f"{Path(name).stem}-profile.json"]
        assert json.loads(output_bytes(conn, view["id"], view["files"][0]["name"])) == profile
    for name, message in CSV_FAILURES.items():
        view = wait_status(conn, submitted[name], ("completed", "failed"), timeout=60)
        assert view["status"] == "failed" and view["error"]["kind"] == "exception", name
        assert message in view["error"]["message"] and view["error"]["type"] == "CsvProfileError"
    assert wait_status(conn, jobs.submit(conn, "demo", {"steps": 1, "step_seconds": 0})["id"], "completed")


def test_csv_overrides_from_the_form_reach_the_engine(conn, workers):
    workers.start(1)
    ref = upload(conn, CSVS / "european_cp1252.csv")
    view = jobs.submit(conn, "csv_profile", {"file": ref, "delimiter": "comma", "header": "no",
                                              "encoding": "latin-1"})
    view = wait_status(conn, view["id"], "completed", timeout=60)
    assert view["result"]["delimiter"] == "," and view["result"]["has_header"] is False
    assert view["result"]["encoding"] in ("latin-1", "iso8859-1", "latin_1")


def test_csv_progress_messages_use_readable_sizes():
    from jobs.tasks.csv_profile import human_size

    assert [human_size(n) for n in (0, 812, 8_200, 14_000_000, 2_500_000_000)] == [
        "0 B", "812 B", "8.2 kB", "14.0 MB", "2.5 GB"]
