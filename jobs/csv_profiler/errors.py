"""The one exception the CSV profiler raises for problems the user can fix."""


class CsvProfileError(ValueError):
    """A file that cannot be profiled, with a one-line message fit to show the user."""
