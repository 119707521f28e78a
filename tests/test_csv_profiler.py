"""The csv_profile engine against real-world shaped fixtures, generated files and bad input."""

from __future__ import annotations

import csv
import json
import random
import statistics
import subprocess
import sys
import threading

import pytest

from jobs.csv_profiler import CsvProfileError, profile_csv
from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "csv"


def profile(path, **options) -> dict:
    """Profile a fixture (or any path) and check the result is strict JSON."""
    result = profile_csv(str(FIXTURES / path if isinstance(path, str) else path), **options)
    json.dumps(result, allow_nan=False)
    return result


def column(result: dict, name: str) -> dict:
    return next(c for c in result["columns"] if c["name"] == name)


def types(result: dict) -> dict:
    return {c["name"]: c["type"] for c in result["columns"]}


def quartiles(values: list[float]) -> dict:
    """The same linear interpolation numpy uses, computed independently."""
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return {"p25": q1, "p50": q2, "p75": q3}


def test_clean_file_matches_an_independent_computation():
    result = profile("clean_orders.csv")
    assert (result["encoding"], result["delimiter"], result["quotechar"]) == ("utf-8", ",", '"')
    assert result["has_header"] is True
    assert (result["row_count"], result["column_count"], result["malformed_rows"]) == (120, 8, 0)
    assert types(result) == {
        "order_id": "integer", "customer": "text", "country": "text", "quantity": "integer",
        "unit_price": "decimal", "order_date": "date", "shipped": "boolean", "updated_at": "datetime",
    }
    with open(FIXTURES / "clean_orders.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    prices = [float(r["unit_price"]) for r in rows]
    price = column(result, "unit_price")
    assert (price["count"], price["missing"], price["distinct"]) == (120, 0, len(set(prices)))
    assert price["min"] == min(prices) and price["max"] == max(prices)
    assert price["mean"] == pytest.approx(statistics.fmean(prices))
    assert price["std"] == pytest.approx(statistics.stdev(prices))
    assert price["quantiles"] == pytest.approx(quartiles(prices))
    assert price["distinct_is_approximate"] is False
    order_id = column(result, "order_id")
    assert (order_id["min"], order_id["max"], order_id["mean"]) == (1001, 1120, 1060.5)
    dates = sorted(r["order_date"] for r in rows)
    assert column(result, "order_date")["earliest"] == dates[0]
    assert column(result, "order_date")["latest"] == dates[-1]
    stamps = sorted(r["updated_at"] for r in rows)
    assert column(result, "updated_at")["min"] == stamps[0].replace(" ", "T")
    shipped = dict(column(result, "shipped")["top_values"])
    assert shipped == {v: sum(r["shipped"] == v for r in rows) for v in ("true", "false")}
    countries = column(result, "country")
    assert countries["distinct"] == len({r["country"] for r in rows})
    assert countries["top_values"][0][1] == max(
        sum(r["country"] == c for r in rows) for c in {r["country"] for r in rows})


def test_european_export_cp1252_semicolon_decimal_comma():
    result = profile("european_cp1252.csv")
    assert (result["encoding"], result["delimiter"], result["decimal_separator"]) == ("cp1252", ";", ",")
    assert (result["row_count"], result["column_count"], result["malformed_rows"]) == (30, 7, 0)
    assert [c["name"] for c in result["columns"]] == [
        "Name", "Stadt", "Betrag €", "Menge", "Rabatt", "Datum", "Bezahlt"]
    assert types(result) == {"Name": "text", "Stadt": "text", "Betrag €": "decimal", "Menge": "integer",
                             "Rabatt": "decimal", "Datum": "date", "Bezahlt": "boolean"}
    text = (FIXTURES / "european_cp1252.csv").read_bytes().decode("cp1252")
    amounts = [float(line.split(";")[2].replace(".", "").replace(",", "."))
               for line in text.splitlines()[1:]]
    amount = column(result, "Betrag €")
    assert amount["max"] == max(amounts) and amount["min"] == min(amounts)
    assert amount["mean"] == pytest.approx(statistics.fmean(amounts))
    assert column(result, "Rabatt")["min"] == 0.5
    assert "José Müller" in dict(column(result, "Name")["top_values"])
    assert column(result, "Datum")["earliest"] < column(result, "Datum")["latest"]


def test_excel_unicode_text_utf16_tab_separated():
    result = profile("excel_unicode_utf16le.csv")
    assert (result["encoding"], result["delimiter"], result["has_header"]) == ("utf-16", "\t", True)
    assert (result["row_count"], result["column_count"], result["malformed_rows"]) == (12, 4, 0)
    assert types(result) == {"product": "text", "city": "text", "stock": "integer", "price": "decimal"}
    city = column(result, "city")
    assert city["distinct"] == 6 and ["São Paulo", 2] in city["top_values"]


def test_utf8_bom_before_a_quoted_header():
    result = profile("utf8_bom_quoted_header.csv")
    assert result["encoding"] == "utf-8-sig"
    assert [c["name"] for c in result["columns"]] == ["id", "full name", "score", "active"]
    assert (result["row_count"], result["column_count"]) == (25, 4)
    assert types(result) == {"id": "integer", "full name": "text", "score": "decimal", "active": "boolean"}


def test_quoted_fields_with_newlines_commas_quotes_and_brackets():
    result = profile("quoted_multiline.csv")
    assert (result["delimiter"], result["row_count"], result["column_count"]) == (",", 6, 5)
    assert result["malformed_rows"] == 0
    notes = dict(column(result, "notes")["top_values"])
    assert "Line one\nline two" in notes and 'He said "hi", then left' in notes
    assert column(result, "notes")["missing"] == 1
    assert 'The "Best" Gadget' in dict(column(result, "title")["top_values"])
    assert column(result, "tags")["type"] == "text"
    assert column(result, "price")["max"] == 100.0


def test_ragged_rows_are_counted_not_fatal():
    result = profile("ragged_rows.csv")
    assert (result["row_count"], result["column_count"]) == (9, 4)
    assert result["malformed_rows"] == 4
    assert result["malformed_examples"] == [3, 5, 7, 9]  # file rows, header = 1
    assert column(result, "qty")["count"] == 5 and column(result, "qty")["type"] == "integer"


def test_excel_sep_line_is_honoured_and_skipped():
    result = profile("excel_sep_line.csv")
    assert (result["delimiter"], result["decimal_separator"], result["has_header"]) == (";", ",", True)
    assert [c["name"] for c in result["columns"]] == ["id", "name", "amount", "when"]
    assert (result["row_count"], result["column_count"]) == (5, 4)
    assert column(result, "amount")["max"] == 1200.0 and column(result, "amount")["type"] == "decimal"
    assert column(result, "when")["type"] == "date"


def test_one_column_file():
    result = profile("one_column.csv")
    assert (result["row_count"], result["column_count"], result["malformed_rows"]) == (12, 1, 0)
    assert result["columns"][0]["name"] == "city" and result["columns"][0]["distinct"] == 12


def test_pipe_delimited():
    result = profile("pipe_delimited.csv")
    assert (result["delimiter"], result["row_count"], result["column_count"]) == ("|", 6, 5)
    assert types(result) == {"host": "text", "port": "integer", "status": "text",
                             "checked_at": "datetime", "latency_ms": "decimal"}
    assert column(result, "latency_ms")["missing"] == 1


def test_header_only_file():
    result = profile("header_only.csv")
    assert (result["row_count"], result["column_count"], result["has_header"]) == (0, 3, True)
    assert [c["type"] for c in result["columns"]] == ["empty"] * 3


def test_null_markers_count_as_missing():
    result = profile("na_markers.csv")
    missing = {c["name"]: c["missing"] for c in result["columns"]}
    assert missing == {"id": 0, "temperature": 5, "city": 3, "reading": 5, "flag": 2}
    assert types(result) == {"id": "integer", "temperature": "decimal", "city": "text",
                             "reading": "integer", "flag": "boolean"}
    assert column(result, "reading")["mean"] == 200.0


@pytest.mark.parametrize("name, message", [
    ("empty.csv", "The file is empty."),
    ("binary_image.csv", "The file is not a text CSV file (it contains binary data)."),
])
def test_unreadable_fixtures_raise_a_clear_error(name, message):
    with pytest.raises(CsvProfileError) as info:
        profile(name)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


def test_random_bytes_are_binary(tmp_path):
    path = tmp_path / "noise.csv"
    path.write_bytes(random.Random(7).randbytes(600))
    with pytest.raises(CsvProfileError, match="binary"):
        profile(path)


@pytest.mark.parametrize("options, message", [
    ({"delimiter": ";;"}, "The delimiter must be a single character, not ';;'."),
    ({"delimiter": ""}, "The delimiter must be a single character, not ''."),
    ({"encoding": "klingon"}, "Unknown encoding 'klingon'; try utf-8, utf-16 or cp1252."),
    ({"encoding": "utf-8"}, "The file could not be decoded as utf-8; choose another encoding."),
])
def test_bad_overrides_raise_a_clear_error(options, message):
    with pytest.raises(CsvProfileError) as info:
        profile("european_cp1252.csv", **options)
    assert str(info.value) == message


def test_overrides_win_over_detection():
    result = profile("clean_orders.csv", has_header=False)
    assert (result["row_count"], result["has_header"]) == (121, False)
    assert result["columns"][0]["name"] == "column_1" and result["columns"][0]["type"] == "text"
    bom = profile("utf8_bom_quoted_header.csv", encoding="UTF-8")
    assert bom["encoding"] == "utf-8" and bom["columns"][0]["name"] == "id"
    spelled = profile("excel_unicode_utf16le.csv", delimiter="tab", encoding="utf-16")
    assert (spelled["delimiter"], spelled["column_count"]) == ("\t", 4)


def test_non_utf8_bytes_after_the_sample_fall_back_to_cp1252(tmp_path):
    path = tmp_path / "late_accent.csv"
    body = "".join(f"{i},plain ascii row\n" for i in range(20_000))
    path.write_bytes(("id,text\n" + body).encode() + "20000,café €5\n".encode("cp1252"))
    result = profile(path)
    assert result["encoding"] == "cp1252" and result["row_count"] == 20_001
    assert column(result, "text")["top_values"] == [["plain ascii row", 20_000], ["café €5", 1]]


def test_bomless_utf16_and_padded_values(tmp_path):
    path = tmp_path / "u16.csv"
    path.write_bytes("a\tb\n 1 \tx\n2\t  \n 3\ty\n".encode("utf-16-le"))
    result = profile(path)
    assert (result["encoding"], result["delimiter"], result["row_count"]) == ("utf-16-le", "\t", 3)
    assert column(result, "a")["type"] == "integer" and column(result, "a")["max"] == 3
    assert column(result, "b")["missing"] == 1


def test_a_late_text_value_turns_a_number_column_into_text(tmp_path):
    path = tmp_path / "late_text.csv"
    path.write_text("v\n" + "".join(f"{i}\n" for i in range(30_000)) + "oops\n")
    result = profile(path)
    v = result["columns"][0]
    assert (v["type"], v["count"], v["min"]) == ("text", 30_001, None)
    assert v["distinct_is_approximate"] is True
    assert v["distinct"] == pytest.approx(30_001, rel=0.05)


def test_trailing_delimiters_on_data_rows_are_not_malformed(tmp_path):
    path = tmp_path / "trailing.csv"
    path.write_text("a;b\n1;x;\n2;y;\n3;z;\n")
    result = profile(path)
    assert (result["delimiter"], result["row_count"], result["malformed_rows"]) == (";", 3, 0)
    assert [(c["name"], c["type"], c["missing"]) for c in result["columns"]] == [
        ("a", "integer", 0), ("b", "text", 0), ("column_3", "empty", 3)]


def test_us_dates_and_no_header(tmp_path):
    path = tmp_path / "us.csv"
    path.write_text("12/31/2023,5\n01/15/2024,6\n02/29/2024,7\n")
    result = profile(path)
    assert result["has_header"] is False and result["row_count"] == 3
    dates = result["columns"][0]
    assert (dates["type"], dates["earliest"], dates["latest"]) == ("date", "2023-12-31", "2024-02-29")


def test_progress_is_monotonic_and_ends_at_total():
    calls = []
    profile("clean_orders.csv", progress=lambda done, total: calls.append((done, total)))
    total = (FIXTURES / "clean_orders.csv").stat().st_size
    assert calls[-1] == (total, total)
    assert all(t == total for _, t in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_an_error_raised_by_the_progress_callback_stops_the_scan(tmp_path):
    path = tmp_path / "fifteen_mb.csv"
    path.write_text("n,s\n" + "1,abc\n" * 2_500_000)

    class Cancelled(Exception):
        pass

    def progress(done, total):
        if 0 < done < total:
            raise Cancelled()

    with pytest.raises(Cancelled):
        profile(path, progress=progress)
    assert not [t for t in threading.enumerate() if t.name == "csv-prefetch"]


def test_large_generated_file_streams_with_correct_counts(tmp_path):
    path = tmp_path / "large.csv"
    rng = random.Random(3)
    rows = 600_000
    with open(path, "w", newline="") as f:
        f.write("id,amount,day,label\n")
        for start in range(0, rows, 10_000):
            f.write("".join(
                f"{i},{rng.random() * 1000:.3f},2024-{1 + i % 12:02d}-{1 + i % 28:02d},\"tag, {i % 7}\"\n"
                for i in range(start, start + 10_000)))
    size = path.stat().st_size
    assert size > 18 * 1024 * 1024
    calls = []
    result = profile(path, progress=lambda done, total: calls.append(done))
    assert (result["row_count"], result["column_count"], result["malformed_rows"]) == (rows, 4, 0)
    ids = column(result, "id")
    assert (ids["min"], ids["max"], ids["distinct_is_approximate"]) == (0, rows - 1, True)
    assert ids["distinct"] == pytest.approx(rows, rel=0.03)
    assert ids["quantiles"]["p50"] == pytest.approx(rows / 2, rel=0.03)
    assert column(result, "label")["distinct"] == 7
    assert column(result, "day")["type"] == "date"
    assert len(calls) > 3 and calls[-1] == size


def test_engine_imports_no_web_or_queue_modules():
    # Load the engine without jobs/__init__.py, which legitimately imports rq.
    code = ("import sys, types; pkg = types.ModuleType('jobs'); pkg.__path__ = ['jobs']; "
            "sys.modules['jobs'] = pkg; import jobs.csv_profiler; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('rq', 'redis', 'flask', 'webapp')); "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
