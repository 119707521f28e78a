"""`image_thumbnails`: resized copies of an uploaded image, each downloadable, plus a zip of all."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from ..context import TaskContext
from ..files import InputFile
from ..registry import task_type
from ..thumbnails import MAX_SIZE, MIN_SIZE, make_thumbnails, zip_thumbnails


def parse_sizes(text: str) -> str:
    """Accept '128, 256,512' (whole numbers in range, comma-separated) and normalise it."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts or len(parts) > 8:
        raise ValueError("give 1 to 8 sizes separated by commas, e.g. 128,256,512")
    sizes = []
    for part in parts:
        if not part.isdigit() or not MIN_SIZE <= int(part) <= MAX_SIZE:
            raise ValueError(f"{part!r} is not a whole number of pixels between {MIN_SIZE} and {MAX_SIZE}")
        sizes.append(int(part))
    return ",".join(str(size) for size in sizes)


@task_type(
    "image_thumbnails",
    title="Image thumbnails",
    description="Upload a photo or image and get thumbnails at the sizes you choose (long side, in "
                "pixels), rotated upright, as separate downloads and one zip.",
    time_limit=300,
    rerun_safe=True,
    result_ttl=7 * 24 * 3600,
)
def image_thumbnails(
    ctx: TaskContext,
    *,
    image: Annotated[InputFile, Field(title="Image", description="JPEG, PNG, GIF, WebP, BMP or TIFF.")],
    sizes: Annotated[str, AfterValidator(parse_sizes),
                     Field(title="Sizes", description="Long side in pixels, comma-separated. Images are "
                                                      "never enlarged.")] = "128,256,512",
    format: Annotated[Literal["jpeg", "png", "webp"],
                      Field(title="Format", description="JPEG has no transparency: it is flattened on white.")]
    = "jpeg",
) -> dict:
    """Make the thumbnails, store each as an output file, and a zip with all of them."""
    stem = Path(image.name).stem or "image"
    ctx.progress(0, message=f"Reading {image.name}")
    thumbs = make_thumbnails(
        image.path, [int(size) for size in sizes.split(",")], format, stem=stem,
        progress=lambda done, total, message: ctx.progress(done=done, total=total + 1, message=message),
    )
    made = []
    for thumb in thumbs:
        saved = ctx.save_file(thumb.name, thumb.data, thumb.content_type)
        made.append({"name": saved["name"], "width": thumb.width, "height": thumb.height, "bytes": saved["size"]})
    archive = ctx.save_file(f"{stem}-thumbnails.zip", zip_thumbnails(thumbs, stem), "application/zip")
    ctx.progress(100, message=f"Made {len(made)} thumbnail{'s' if len(made) != 1 else ''}")
    return {"thumbnails": made, "zip": archive["name"]}
