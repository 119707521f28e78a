"""The app's Request: a form body that cannot be read is a clear 400 or 413, never an empty form.

Werkzeug reads a malformed multipart body (no boundary, garbage, a truncated part)
as an empty form, so the user would hear "say which task type" instead of what is
wrong; and its form limits (parts, text-field size) raise the same bare 413 as the
upload limit. Here each says which rule the request broke.
"""

from __future__ import annotations

from flask import Request
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge


class AppRequest(Request):
    """Flask's Request with strict, explained form parsing."""

    def make_form_data_parser(self):
        parser = super().make_form_data_parser()
        parser.silent = False  # let malformed bodies raise instead of parsing as empty
        return parser

    def _load_form_data(self) -> None:
        try:
            super()._load_form_data()
        except ValueError as exc:
            raise BadRequest(f"The form body could not be read ({exc}); send multipart/form-data with its "
                             "boundary, as browsers and `curl -F` do.") from None
        except RequestEntityTooLarge:
            limit = self.max_content_length
            if self.content_length is None or (limit is not None and self.content_length > limit):
                raise  # the body itself is too large: the upload-limit message applies
            raise RequestEntityTooLarge(
                f"The form has more than {self.max_form_parts} parts or a text field over "
                f"{self.max_form_memory_size:,} bytes; send fewer fields, and large data as a file part."
            ) from None
