"""Output safety: nothing of the user's is overwritten, and nothing half-written looks complete.

Two rules, used by every command that writes:

* **Atomic files** — ``atomic_write(path, data)`` (and the ``atomic_path`` context manager for writers
  that want a path) write into a hidden temporary folder beside the target (``.NAME.PID-XXXXXXXX.part/NAME``,
  so the file keeps its name and extension) and ``os.replace`` it into place only when complete, so a
  crash or ``kill -9`` leaves the old file or none, never a torn one. What a killed writer leaves is a
  hidden ``*.part`` folder that no reader takes for an output, removed when esgkit claims the folder again.
* **Owned folders** — ``claim_folder(out, kind, overwrite)`` before a command writes into ``--out``.
  A folder esgkit wrote holds a manifest ``.esgkit-output.json`` naming the command kind and the
  files it wrote. A new or empty folder is claimed; a folder of the same kind may be written again
  (its listed files replaced); a non-empty folder without a manifest, or of another kind, is refused
  with the list of what is there unless ``--overwrite`` is given. ``check_folder`` is the same test
  without writing anything (to refuse before a long computation). ``claim_file`` is the same rule for
  a single output file (``esgkit score --out metrics.json``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import OutputError
from .json_input import read_state

MANIFEST = ".esgkit-output.json"
PART = re.compile(r"^\..+\.(\d+)-[0-9a-f]{8}\.part$")
"""The name of an ``atomic_path`` temporary folder: ``.NAME.PID-XXXXXXXX.part``."""
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk, where the filesystem lets a folder be opened."""
    with contextlib.suppress(OSError):  # not every filesystem lets a folder be opened
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush a written file's data to disk (before it is renamed into place)."""
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path with ``path``'s name (in a hidden ``*.part`` folder beside it); when the
    block ends without an error the file written there replaces ``path`` in one rename, otherwise it
    is removed and ``path`` is left as it was. A full disk or a read-only folder is an OutputError."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a folder; a file is written there (give a file path)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.part"
        tmp_dir.mkdir()
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {_why(exc)}") from exc
    tmp = tmp_dir / path.name
    try:
        try:
            yield tmp
            if not tmp.is_file():
                raise OutputError(f"cannot write {path}: the writer produced no file")
            fsync_file(tmp)
            os.replace(tmp, path)
        except OSError as exc:
            if exc.errno in _NO_ROOM or str(exc.filename) in (str(tmp), str(path)):
                raise OutputError(f"cannot write {path}: {_why(exc)}") from exc
            raise
        fsync_dir(path.parent)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def atomic_write(path: str | Path, data: str | bytes, encoding: str = "utf-8") -> Path:
    """Write ``data`` to ``path`` atomically (see ``atomic_path``); returns ``path``."""
    with atomic_path(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding=encoding)
        else:
            tmp.write_bytes(data)
    return Path(path)


def atomic_write_json(path: str | Path, data: Any, indent: int | None = 1) -> Path:
    return atomic_write(path, json.dumps(data, indent=indent))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def remove_stale_parts(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Remove the temporary ``*.part`` folders that killed writers left under ``folder`` (those of a
    process still running are kept); returns what was removed."""
    removed: list[Path] = []
    root = Path(folder)
    if not root.is_dir():
        return removed
    walk = os.walk(root) if recursive else [(str(root), [p.name for p in root.iterdir() if p.is_dir()], [])]
    for here, dirs, _ in walk:
        for name in list(dirs):
            m = PART.match(name)
            if m:
                dirs.remove(name)
                if not _alive(int(m.group(1))):
                    shutil.rmtree(Path(here) / name, ignore_errors=True)
                    removed.append(Path(here) / name)
    return removed


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    data = read_state(folder / MANIFEST)
    return data if data is not None and isinstance(data.get("kind"), str) else None


def _entries(folder: Path) -> list[Path]:
    """What ``folder`` holds, without the manifest and temporary ``*.part`` folders."""
    return [p for p in folder.iterdir() if p.name != MANIFEST and not PART.match(p.name)]


def _listing(folder: Path, limit: int = 8) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in _entries(folder))
    more = f", … ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


class OutputFolder:
    """A claimed ``--out`` folder: ``record(*paths)`` adds files to its manifest as they are written
    (paths inside the folder, absolute or relative to the working directory, or names relative to the
    folder)."""

    def __init__(self, path: Path, kind: str, files: Iterable[str] = ()) -> None:
        self.path, self.kind, self.files = path, kind, sorted(set(files))
        self._save()

    def _relative(self, p: str | Path) -> str:
        given = Path(p)
        with contextlib.suppress(ValueError, OSError):
            return Path(os.path.abspath(given)).relative_to(Path(os.path.abspath(self.path))).as_posix()
        with contextlib.suppress(ValueError, OSError):
            return given.resolve().relative_to(self.path.resolve()).as_posix()
        if given.is_absolute():
            raise OutputError(f"{given} is not inside the output folder {self.path}")
        return given.as_posix()

    def record(self, *paths: str | Path) -> None:
        new = [rel for rel in (self._relative(p) for p in paths) if rel not in self.files]
        if new:
            self.files = sorted({*self.files, *new})
            self._save()

    def _save(self) -> None:
        on_disk = _read_manifest(self.path)  # another process writing another split into the folder
        if on_disk is not None and on_disk["kind"] == self.kind:
            self.files = sorted({*self.files, *(f for f in on_disk.get("files", []) if isinstance(f, str))})
        atomic_write_json(self.path / MANIFEST, {"kind": self.kind, "files": sorted(self.files)})


def written_by_tag(kind: str) -> str:
    """The ``written_by`` value of a ``kind`` output file (``"esgkit score"``)."""
    return f"esgkit {kind}"


def check_folder(path: str | Path, kind: str, overwrite: bool = False, option: str = "--out") -> dict[str, Any] | None:
    """Raise OutputError when ``claim_folder`` would refuse ``path``; writes nothing. Returns the
    folder's manifest (``{"kind", "files"}``) when it holds an esgkit output, else None."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{option} {folder} is a file; give a folder (it will be created)")
    if not folder.exists():
        parent = next((p for p in folder.absolute().parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise OutputError(f"{option} {folder}: {parent} is a file, not a folder")
        return None
    try:
        manifest = _read_manifest(folder)
        others = _entries(folder)
    except OSError as exc:
        raise OutputError(f"{option} {folder}: cannot read the folder ({_why(exc)})") from exc
    if manifest is not None and manifest["kind"] == kind:
        return manifest
    if others and not overwrite:
        owner = f"an `esgkit {manifest['kind']}` output" if manifest else "files esgkit did not write"
        raise OutputError(f"{option} {folder} already holds {owner}: {_listing(folder)}. Give an empty or new "
                          f"folder, or add --overwrite to write into it anyway (files of the same name are replaced)")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"{option} {folder}: the folder is not writable")
    return manifest


def claim_folder(path: str | Path, kind: str, overwrite: bool = False, option: str = "--out") -> OutputFolder:
    """Make ``path`` the output folder of a ``kind`` command (``"run"``, ``"train"``, ``"data"`` …) or
    raise OutputError saying why not and what to do (see the module docstring)."""
    folder = Path(path)
    manifest = check_folder(folder, kind, overwrite, option)
    if not folder.exists():
        try:
            folder.mkdir(parents=True)
        except OSError as exc:
            raise OutputError(f"{option} {folder}: cannot create the folder ({_why(exc)})") from exc
        return OutputFolder(folder, kind)
    ours = manifest is not None and manifest["kind"] == kind
    remove_stale_parts(folder, recursive=ours)
    try:
        if ours:
            return OutputFolder(folder, kind, [f for f in manifest.get("files", []) if isinstance(f, str)])
        return OutputFolder(folder, kind)
    except OutputError as exc:
        raise OutputError(f"{option} {folder}: the folder is not writable ({exc})") from exc


def claim_file(path: str | Path, kind: str, overwrite: bool = False, inputs: Iterable[str | Path] = (),
               option: str = "--out") -> Path:
    """Check that ``path`` may receive a ``kind`` output file: never one of the command's ``inputs``
    (even with ``overwrite``); never a folder; an existing file only if esgkit wrote it as the same
    kind (a JSON whose ``written_by`` is ``written_by_tag(kind)``) or ``overwrite`` is set. Writes nothing."""
    text = str(path)
    target = Path(path)
    for inp in inputs:
        with contextlib.suppress(OSError):
            if Path(inp).exists() and target.exists() and os.path.samefile(inp, target):
                raise OutputError(f"{option} {target} is also an input of this command; give another file name")
    if target.is_dir():
        raise OutputError(f"{option} {target} is a folder; give a file name (e.g. {target / 'metrics.json'})")
    if text.endswith(("/", os.sep)):
        raise OutputError(f"{option} {text} names a folder; give a file name (e.g. {target / 'metrics.json'})")
    parent = next((p for p in target.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise OutputError(f"{option} {target}: {parent} is a file, not a folder")
    if target.exists() and not overwrite:
        try:
            data = json.loads(target.read_text(encoding="utf-8"))
            written_by = data.get("written_by") if isinstance(data, dict) else None
        except (OSError, ValueError):
            written_by = None
        if written_by != written_by_tag(kind):
            raise OutputError(f"{option} {target} exists and is not an earlier `esgkit {kind}` output; give another "
                              "name or add --overwrite to replace it")
    return target


__all__ = ["MANIFEST", "OutputFolder", "atomic_path", "atomic_write", "atomic_write_json", "check_folder", "claim_file",
           "claim_folder", "fsync_dir", "fsync_file", "remove_stale_parts", "written_by_tag"]
