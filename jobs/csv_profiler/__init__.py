"""Profile an uploaded CSV file: dialect, encoding, and per-column types and statistics.

Pure engine for the csv_profile task type: no rq, redis, flask or webapp imports.
The engine choice and its measurements are recorded at the top of engine.py.
"""

from .engine import profile_csv
from .errors import CsvProfileError

__all__ = ["CsvProfileError", "profile_csv"]
