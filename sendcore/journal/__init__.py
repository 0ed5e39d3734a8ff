"""Durability (R22): the file journal, its snapshots and crash recovery.

``journal.py`` is what the engine uses (recovery, ordered durable inputs,
snapshots), ``writer.py`` the thread that writes and fsyncs, ``files.py`` the
on-disk formats, ``frames.py`` what one frame records, ``commands.py`` the
``sendcore journal`` commands' work (check, stats, repair).
"""

from __future__ import annotations

from ..errors import JournalError
from .journal import Journal, JournalStats, Recovery, batch_check, recover

__all__ = ["Journal", "JournalError", "JournalStats", "Recovery", "batch_check", "recover"]
