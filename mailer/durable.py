"""Writes that survive a power cut: after a file is created, its directory entry must be
flushed too, or the file can vanish on restart even though its own bytes were fsynced."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_directory(directory: Path) -> None:
    """Flush ``directory``'s entries (call it after creating or renaming a file in it)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
