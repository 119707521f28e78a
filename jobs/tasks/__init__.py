"""Built-in task types: importing this package registers them all."""

from . import csv_profile, demo, image_thumbnails  # noqa: F401
