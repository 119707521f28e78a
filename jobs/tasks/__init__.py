"""Built-in task types: importing this package registers them all."""

from . import demo  # noqa: F401
