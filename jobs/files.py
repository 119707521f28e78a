"""Files a task takes in (uploads) and gives out (results), kept in Redis by default.

Web and worker may run on different machines, so bytes travel through Redis in
1 MiB chunks (a Redis list per file) with a TTL tied to the task's retention. The
alternative for single-machine deployments is a shared folder
(JOBS_FILE_STORE=/path): bytes go to disk, the file's metadata stays in Redis.
"""

from __future__ import annotations

import mimetypes
import os
import re
import shutil
import time
import unicodedata
import uuid
from pathlib import Path
from typing import BinaryIO, Iterator

import redis
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from . import settings
from .errors import FileExpired, FileTooLarge, InvalidParams

CHUNK_SIZE = 1024 * 1024
_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")


class InputFile(BaseModel):
    """An uploaded file parameter: what is stored in the task's params.

    On the worker, `path` is a local copy the task can open.
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra={"format": "binary", "x-kind": "file"})

    id: str = Field(pattern=_ID_PATTERN.pattern, description="stored file id, returned by the upload")
    name: str = Field(max_length=255)
    size: int = Field(ge=0)
    content_type: str = "application/octet-stream"
    _path: str | None = PrivateAttr(default=None)

    @property
    def path(self) -> str:
        """Local path of the file's bytes (set by the worker before the task runs)."""
        if self._path is None:
            raise RuntimeError("InputFile.path is only available inside a running task")
        return self._path

    @property
    def suffix(self) -> str:
        """The lower-case extension of the original name, e.g. '.csv'."""
        return Path(self.name).suffix.lower()


def safe_filename(name: str | None, default: str = "file") -> str:
    """Reduce an untrusted client file name to a safe base name, keeping non-ASCII and the extension.

    Directory parts (`../`, absolute paths, Windows drive letters) are dropped,
    control characters removed, and the result capped at 200 characters.
    """
    name = unicodedata.normalize("NFC", name or "")
    name = name.replace("\\", "/").split("/")[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip().strip(".")
    if not name:
        return default
    stem, ext = os.path.splitext(name)
    if len(name) > 200:
        name = stem[: 200 - len(ext)] + ext
    return name


def guess_type(name: str) -> str:
    """Content type from a file name, defaulting to octet-stream."""
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _meta_key(file_id: str) -> str:
    return f"{settings.KEY_PREFIX}file:{file_id}"


def _data_key(file_id: str) -> str:
    return f"{settings.KEY_PREFIX}file:{file_id}:data"


def _folder() -> Path | None:
    return None if settings.FILE_STORE == "redis" else Path(settings.FILE_STORE)


def check_store() -> None:
    """Make sure the shared folder (JOBS_FILE_STORE) can hold files; SettingsError says what to fix.

    Web and worker processes call it when they start, so a wrong path stops them there
    instead of failing every upload later.
    """
    folder = _folder()
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-check-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise settings.invalid(
            f"JOBS_FILE_STORE={str(folder)!r} cannot hold files ({exc.strerror or exc}); set it to a folder "
            "that the web app and the workers can both write, or to 'redis'.") from None


def store_file(conn: redis.Redis, stream: BinaryIO, name: str, *, ttl: int,
               content_type: str | None = None, max_bytes: int | None = None) -> InputFile:
    """Copy `stream` into the file store and return its reference.

    Past `max_bytes` (default JOBS_MAX_UPLOAD_BYTES) it raises FileTooLarge and
    removes what was written, so nothing is left behind.
    """
    limit = settings.MAX_UPLOAD_BYTES if max_bytes is None else max_bytes
    file_id = uuid.uuid4().hex
    name = safe_filename(name)
    content_type = content_type or guess_type(name)
    folder = _folder()
    size = 0
    try:
        if folder is None:
            while chunk := stream.read(CHUNK_SIZE):
                size += len(chunk)
                if size > limit:
                    raise FileTooLarge(_too_large(name, limit))
                with conn.pipeline(transaction=False) as pipe:
                    pipe.rpush(_data_key(file_id), chunk)
                    pipe.expire(_data_key(file_id), ttl)
                    pipe.execute()
        else:
            _sweep_folder(folder)
            target = folder / file_id
            target.mkdir(parents=True, exist_ok=True)
            (target / "expires").write_text(str(int(time.time()) + ttl))
            with open(target / "data", "wb") as out:
                while chunk := stream.read(CHUNK_SIZE):
                    size += len(chunk)
                    if size > limit:
                        raise FileTooLarge(_too_large(name, limit))
                    out.write(chunk)
    except BaseException:
        delete_file(conn, file_id)
        raise
    ref = InputFile(id=file_id, name=name, size=size, content_type=content_type)
    with conn.pipeline(transaction=False) as pipe:
        pipe.hset(_meta_key(file_id), mapping={"name": name, "size": size, "content_type": content_type})
        pipe.expire(_meta_key(file_id), ttl)
        if folder is None and size == 0:
            pipe.delete(_data_key(file_id))
        pipe.execute()
    return ref


def _too_large(name: str, limit: int) -> str:
    return (f"File {name!r} is larger than the {limit // (1024 * 1024) or limit} "
            f"{'MB' if limit >= 1024 * 1024 else 'bytes'} upload limit; upload a smaller file "
            "or raise JOBS_MAX_UPLOAD_BYTES.")


def _sweep_folder(folder: Path) -> None:
    """Remove files whose time has passed from the shared folder (Redis expires its own)."""
    now = time.time()
    if not folder.exists():
        return
    for entry in folder.iterdir():
        expires = entry / "expires"
        try:
            if expires.exists() and float(expires.read_text()) < now:
                shutil.rmtree(entry, ignore_errors=True)
        except (OSError, ValueError):
            continue


def file_info(conn: redis.Redis, file_id: str) -> dict:
    """Name, size and content type of a stored file, or FileExpired."""
    if not _ID_PATTERN.match(file_id or ""):
        raise FileExpired(f"No stored file has id {file_id!r}.")
    raw = conn.hgetall(_meta_key(file_id))
    if not raw:
        raise FileExpired(f"File {file_id} is no longer stored (its task's retention passed); upload it again.")
    return {"name": raw[b"name"].decode(), "size": int(raw[b"size"]),
            "content_type": raw[b"content_type"].decode()}


def read_chunks(conn: redis.Redis, file_id: str) -> Iterator[bytes]:
    """Yield a stored file's bytes chunk by chunk (memory stays at one chunk)."""
    info = file_info(conn, file_id)
    folder = _folder()
    if folder is not None:
        path = folder / file_id / "data"
        if not path.exists():
            raise FileExpired(f"File {info['name']!r} is no longer stored.")
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK_SIZE):
                yield chunk
        return
    count = conn.llen(_data_key(file_id))
    if count == 0 and info["size"] > 0:
        raise FileExpired(f"File {info['name']!r} is no longer stored.")
    for index in range(count):
        chunk = conn.lindex(_data_key(file_id), index)
        if chunk is None:
            raise FileExpired(f"File {info['name']!r} expired while it was being read.")
        yield chunk


def copy_to_path(conn: redis.Redis, ref: InputFile, directory: str) -> str:
    """Write a stored file to `directory` (the worker's scratch space) and return the path."""
    target = Path(directory) / (ref.id + ref.suffix)
    with open(target, "wb") as out:
        for chunk in read_chunks(conn, ref.id):
            out.write(chunk)
    return str(target)


def delete_file(conn: redis.Redis, file_id: str) -> None:
    """Remove a stored file's bytes and metadata (missing is fine)."""
    conn.delete(_meta_key(file_id), _data_key(file_id))
    folder = _folder()
    if folder is not None:
        shutil.rmtree(folder / file_id, ignore_errors=True)


#: Claims a stored file for one task, atomically: a file belongs to the first task
#: that names it, so deleting one task can never remove another task's input.
_CLAIM = """
if redis.call('exists', KEYS[1]) == 0 then return false end
redis.call('hsetnx', KEYS[1], 'task', ARGV[1])
return redis.call('hmget', KEYS[1], 'task', 'name', 'size', 'content_type')
"""


def queue_claims(pipe, refs: dict[str, dict], task_id: str) -> None:
    """Queue, on a pipeline, the claim of each stored file for `task_id` (the replies go to check_claims)."""
    for ref in refs.values():
        pipe.eval(_CLAIM, 1, _meta_key(ref["id"]), task_id)


def check_claims(refs: dict[str, dict], replies: list, task_id: str) -> None:
    """Raise InvalidParams unless every file is stored and belongs to `task_id`; take their stored names and sizes."""
    for (field, ref), reply in zip(refs.items(), replies):
        _check_claim(field, ref, reply, task_id)


def _check_claim(field: str, ref: dict, reply, task_id: str) -> None:
    """The name and size a client put in a reference are not trusted: the stored ones replace them."""
    if not reply:
        raise InvalidParams(f"File {ref['name']!r} is no longer stored; upload it again.",
                            {field: "is no longer stored; upload it again"})
    owner, name, size, content_type = (None if value is None else value.decode() for value in reply)
    if owner != task_id:
        raise InvalidParams(f"File {ref['name']!r} was uploaded for another task; upload it again for this one.",
                            {field: "belongs to another task; upload it again"})
    ref.update(name=name, size=int(size), content_type=content_type)
