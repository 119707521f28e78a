"""The `image_thumbnails` engine: resized copies of an untrusted upload, in bounded memory.

Pure Pillow, no rq/redis/flask, so it can be tested on files alone and wired in
by a task module. What it promises:

- Refuses decompression bombs from the header alone (``Image.open`` is lazy),
  before any pixel is decoded.
- Decodes only the first frame (animated GIF/WebP/APNG, multi-picture MPO), and
  JPEG/MPO at the smallest 1/2, 1/4 or 1/8 scale that still serves the largest
  thumbnail (``Image.draft``).
- Shows the picture upright (EXIF orientation) and writes no metadata but a
  matching colour profile, so a thumbnail never leaks an uploader's GPS tags.
- Sizes are the long side in pixels and never upscale: a size larger than the
  image gives the image at its own size, and sizes that end up equal are
  produced once, named after the size actually made (``photo-640.jpg``).
"""

from __future__ import annotations

import io
import re
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, NamedTuple

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

__all__ = [
    "INPUT_FORMATS",
    "MAX_SIZE",
    "MIN_SIZE",
    "SUPPORTED_FORMATS",
    "Thumbnail",
    "ThumbnailError",
    "make_thumbnails",
    "zip_thumbnails",
]

SUPPORTED_FORMATS = ("jpeg", "png", "webp")
# Pillow decoders we are willing to run on uploads; the short list keeps rarely
# used plugins (and EPS, which shells out to Ghostscript) out of reach. "JPEG"
# also opens MPO (multi-picture JPEG): Pillow registers no separate opener for it.
INPUT_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")
MIN_SIZE = 16
MAX_SIZE = 4096

Progress = Callable[[int, int, str], None]


class _Output(NamedTuple):
    pil_format: str
    extension: str
    content_type: str
    options: dict[str, object]


_OUTPUTS = {
    "jpeg": _Output("JPEG", "jpg", "image/jpeg", {"quality": 85, "optimize": True}),
    "png": _Output("PNG", "png", "image/png", {}),
    "webp": _Output("WEBP", "webp", "image/webp", {"quality": 80, "method": 4}),
}
_WIDE_MODES = ("I", "F", "I;16", "I;16L", "I;16B", "I;16N")
_GREY_MODES = ("1", "L", "LA", "La", *_WIDE_MODES)
# What Pillow raises on damaged data varies by plugin; all of them mean "cannot be read".
_DECODE_ERRORS = (OSError, SyntaxError, EOFError, ValueError, IndexError)
_DAMAGED = "This image is damaged or incomplete and cannot be read."


class ThumbnailError(ValueError):
    """A problem with the upload or the request; the message is one line, safe to show the user."""


@dataclass(frozen=True)
class Thumbnail:
    """One encoded thumbnail, ready to store or send."""

    name: str
    width: int
    height: int
    content_type: str
    data: bytes = field(repr=False)


def make_thumbnails(
    path: str,
    sizes: list[int],
    fmt: str,
    *,
    stem: str = "image",
    max_pixels: int = 50_000_000,
    progress: Progress | None = None,
) -> list[Thumbnail]:
    """Make one thumbnail per distinct long-side size, in request order, or raise ThumbnailError."""
    output = _check_format(fmt)
    wanted = _check_sizes(sizes)
    stem = _safe_stem(stem)
    # Not `with image:` — closing an Image discards its pixels, and `work` may be that same object.
    with open(path, "rb") as fp:  # a missing file is our bug, not the user's: let it raise
        image = _open(fp, max_pixels)
        longest = max(image.size)
        made = list(dict.fromkeys(min(size, longest) for size in wanted))
        work = _decode(image, max(made))
    icc = _matching_icc(work.info.get("icc_profile"), work.mode, output)
    work.info = {}  # drop EXIF, XMP, comments and stale profiles: encoders would copy some of them

    # Largest first, each from the previous one, so only one decoded image is ever alive.
    thumbs: dict[int, Thumbnail] = {}
    for done, size in enumerate(sorted(made, reverse=True), start=1):
        work.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=2.0)
        thumb = Thumbnail(
            name=f"{stem}-{size}.{output.extension}",
            width=work.width,
            height=work.height,
            content_type=output.content_type,
            data=_encode(work, output, icc),
        )
        thumbs[size] = thumb
        if progress is not None:
            progress(done, len(made), f"Made {thumb.name} ({thumb.width}x{thumb.height})")
    return [thumbs[size] for size in made]


def zip_thumbnails(thumbs: Iterable[Thumbnail], stem: str) -> bytes:
    """Bundle thumbnails in one zip under a `<stem>-thumbnails/` folder, so extracting never scatters files."""
    folder = f"{_safe_stem(stem)}-thumbnails"
    buffer = io.BytesIO()
    # Stored, not deflated: JPEG/PNG/WebP are already compressed.
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for thumb in thumbs:
            archive.writestr(f"{folder}/{thumb.name}", thumb.data)
    return buffer.getvalue()


def _check_format(fmt: str) -> _Output:
    """Accept an output format case-insensitively, since it may come straight from a form."""
    if not isinstance(fmt, str) or fmt.lower() not in _OUTPUTS:
        raise ThumbnailError(f"Output format must be one of: {', '.join(SUPPORTED_FORMATS)}.")
    return _OUTPUTS[fmt.lower()]


def _check_sizes(sizes: list[int]) -> list[int]:
    """Insist on whole numbers in range, rejecting bools and floats that Python would let through."""
    if not sizes:
        raise ThumbnailError("Give at least one thumbnail size.")
    for size in sizes:
        if type(size) is not int or not MIN_SIZE <= size <= MAX_SIZE:
            raise ThumbnailError(
                f"Thumbnail sizes must be whole numbers from {MIN_SIZE} to {MAX_SIZE}; got {size!r:.20}."
            )
    return list(sizes)


def _safe_stem(stem: str) -> str:
    """Keep output names to one harmless path segment, whatever the uploader called the file."""
    cleaned = re.sub(r"[^\w.-]+", "_", stem).strip("._-")[:100]
    return cleaned or "image"


def _open(fp: IO[bytes], max_pixels: int) -> ImageFile.ImageFile:
    """Read only the header, so the size limit is enforced before any pixel is decoded."""
    # Pillow's own bomb limit still applies, so a max_pixels above it would be a promise we cannot keep.
    limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)
    too_large = f"This image is too large: the limit is {limit:,} pixels."
    try:
        with _pillow_warnings():
            image = Image.open(fp, formats=INPUT_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ThumbnailError(too_large) from None
    except UnidentifiedImageError:
        raise ThumbnailError("This file is not a supported image (JPEG, PNG, GIF, WebP, BMP or TIFF).") from None
    except _DECODE_ERRORS:
        raise ThumbnailError(_DAMAGED) from None
    width, height = image.size
    if width * height > limit:
        image.close()
        raise ThumbnailError(f"This image is too large: {width}x{height} pixels is over the limit of {limit:,}.")
    return image


@contextmanager
def _pillow_warnings() -> Iterator[None]:
    """Make bomb warnings errors, and silence Pillow's notes on recoverable oddities (bad EXIF, malformed MPO)."""
    # catch_warnings() changes process-wide state: fine in rq's one-job-per-process workers, not under threads.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def _decode(image: ImageFile.ImageFile, longest: int) -> Image.Image:
    """Decode the first frame, upright, at the smallest scale that still serves `longest`, in an 8-bit mode."""
    width, height = image.size
    ratio = longest / max(width, height)
    # Twice the target, as thumbnail() does, so the final resample still has detail to work with.
    image.draft(None, (max(1, round(width * ratio * 2)), max(1, round(height * ratio * 2))))
    try:
        with _pillow_warnings():
            ImageOps.exif_transpose(image, in_place=True)  # loads the pixels
        return _to_8bit(image)
    except _DECODE_ERRORS:
        raise ThumbnailError(_DAMAGED) from None


def _to_8bit(image: Image.Image) -> Image.Image:
    """Bring any decoded mode to L, LA, RGB or RGBA, keeping transparency and the tonal range."""
    grey = image.mode in _GREY_MODES
    alpha = image.has_transparency_data
    if image.mode in _WIDE_MODES:
        image = _wide_to_l(image)
    if alpha:
        target = "LA" if grey else "RGBA"
    else:
        target = "L" if grey else "RGB"
    return image if image.mode == target else image.convert(target)


def _wide_to_l(image: Image.Image) -> Image.Image:
    """Scale 16/32-bit grey down to 8 bits, because convert("L") clips everything above 255 to white."""
    if image.mode.startswith("I;16"):
        scale = 255 / 65535
    else:
        # "I"/"F" say nothing about their range: 0..255 data is kept, anything else is read as 16-bit.
        high = image.getextrema()[1]
        scale = 1.0 if high <= 255 else 255 / 65535
    return image.point(lambda value: value * scale).convert("L")


def _matching_icc(profile: bytes | None, mode: str, output: _Output) -> bytes | None:
    """Keep the colour profile only where it still describes the pixels (never a CMYK one on RGB)."""
    if not profile or len(profile) < 20:
        return None
    space = profile[16:20]  # ICC header: data colour space signature
    if space == b"RGB " and mode in ("RGB", "RGBA"):
        return profile
    # WebP stores grey as RGB, where a grey profile would be wrong.
    if space == b"GRAY" and mode in ("L", "LA") and output.pil_format != "WEBP":
        return profile
    return None


def _encode(image: Image.Image, output: _Output, icc: bytes | None) -> bytes:
    """Encode one thumbnail, flattening onto white where the format has no alpha."""
    if output.pil_format == "JPEG" and image.mode in ("LA", "RGBA"):
        image = _flatten_on_white(image)
    options = dict(output.options)
    if icc:
        options["icc_profile"] = icc
    buffer = io.BytesIO()
    image.save(buffer, output.pil_format, **options)
    return buffer.getvalue()


def _flatten_on_white(image: Image.Image) -> Image.Image:
    """Composite onto white, as a browser would show it on a page, rather than dropping alpha to black."""
    opaque_mode = image.mode[:-1]  # "RGBA" -> "RGB", "LA" -> "L"
    background = Image.new(opaque_mode, image.size, "white")
    background.paste(image.convert(opaque_mode), mask=image.getchannel("A"))
    return background
