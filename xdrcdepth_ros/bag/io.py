"""rosbag2 reading and writing on top of ``rosbags`` (pure Python, no ROS runtime).

* :class:`BagWriter` never leaves a half-written bag: it writes into a hidden sibling folder and
  renames it into place only when everything succeeded.
* :class:`BagReader` turns every ``rosbags`` failure (missing metadata, corrupt or truncated
  storage file, undecodable message) into a :class:`~xdrcdepth_ros.core.errors.BagError` that names
  the bag and, where known, the topic.

Stamps are int nanoseconds, as in ``rosbags``. Messages are serialised as little-endian CDR, the
bytes rclpy publishes and ``ros2 bag play`` replays.
"""
from __future__ import annotations

from dataclasses import dataclass
import enum
import os
from pathlib import Path
import shutil
import sqlite3
import tempfile
from types import TracebackType
from typing import Any, Iterable, Iterator

from rosbags.highlevel import AnyReader
from rosbags.interfaces import (
    Connection, Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime)
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import get_typestore, Stores

from xdrcdepth_ros.core.errors import BagError

_ZERO = QosTime(0, 0)
QOS_RELIABLE = Qos(QosHistory.KEEP_LAST, 10, QosReliability.RELIABLE, QosDurability.VOLATILE,
                   _ZERO, _ZERO, QosLiveliness.AUTOMATIC, _ZERO, False)
"""Offered QoS recorded for ordinary sensor and output topics (reliable, volatile, depth 10)."""
QOS_LATCHED = Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE,
                  QosDurability.TRANSIENT_LOCAL, _ZERO, _ZERO, QosLiveliness.AUTOMATIC, _ZERO,
                  False)
"""Offered QoS of ``/tf_static``: reliable, transient local, depth 1 (playback re-latches it)."""


class Storage(str, enum.Enum):
    """rosbag2 storage plugins we write."""

    SQLITE3 = 'sqlite3'
    """One ``.db3`` SQLite file (the rosbag2 default up to Iron)."""
    MCAP = 'mcap'
    """One ``.mcap`` file (the rosbag2 default from Iron on)."""


_PLUGINS = {Storage.SQLITE3: StoragePlugin.SQLITE3, Storage.MCAP: StoragePlugin.MCAP}


def typestore() -> Any:
    """The ROS 2 Jazzy type store (message classes, CDR serialisation, type hashes)."""
    return get_typestore(Stores.ROS2_JAZZY)


def msg_class(msgtype: str, store: Any = None) -> Any:
    """The ``rosbags`` dataclass of ``msgtype`` (e.g. ``sensor_msgs/msg/Image``)."""
    return (store or typestore()).types[msgtype]


class BagWriter:
    """Write a new rosbag2 folder atomically: all of it, or nothing.

    Args:
        path: the bag folder to create.
        storage: storage plugin.
        overwrite: replace an existing ``path`` (only once the new bag is complete).

    Use as a context manager. On a clean exit the bag is closed (metadata.yaml written) and
    renamed to ``path``; on an exception the partial folder is removed and the exception
    propagates. Files that belong to the bag but are not messages (e.g. a params YAML) can be
    placed with :meth:`add_file`.

    Raises:
        BagError: ``path`` exists and ``overwrite`` is False, or its parent cannot be written.
    """

    def __init__(self, path: str | Path, *, storage: Storage | str = Storage.SQLITE3,
                 overwrite: bool = False) -> None:
        self.path = Path(path)
        self.storage = Storage(storage)
        self.overwrite = overwrite
        self.store = typestore()
        if self.path.exists() and not overwrite:
            raise BagError(f'output bag {self.path} exists already; remove it or choose another '
                           'path')
        self._tmp: Path | None = None
        self._writer: Writer | None = None
        self._connections: dict[tuple[str, str], Connection] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self) -> 'BagWriter':
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self._tmp = Path(tempfile.mkdtemp(prefix=f'.{self.path.name}.partial-', dir=parent))
        except OSError as err:
            raise BagError(f'cannot create output bag {self.path}: {err}') from err
        self._writer = Writer(self._tmp / self.path.name, version=9,
                              storage_plugin=_PLUGINS[self.storage])
        self._writer.open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._tmp is not None and self._writer is not None  # set by __enter__
        try:
            if exc_type is None:
                self._writer.close()
                self._commit(self._tmp / self.path.name)
            else:
                self._writer.abort()
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
            self._writer = None

    def _commit(self, built: Path) -> None:
        if self.path.exists():
            if not self.overwrite:
                raise BagError(f'output bag {self.path} appeared while writing; not replacing it')
            trash = Path(tempfile.mkdtemp(prefix=f'.{self.path.name}.old-', dir=self.path.parent))
            os.replace(self.path, trash / self.path.name)
            os.replace(built, self.path)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(built, self.path)

    @property
    def staging_path(self) -> Path:
        """Folder the bag is being written to (inside the hidden staging folder)."""
        if self._tmp is None:
            raise BagError('BagWriter is not open; use it as a context manager')
        return self._tmp / self.path.name

    def add_file(self, name: str, text: str) -> Path:
        """Write a text file (``name`` relative, subfolders allowed) into the bag folder.

        It is kept only if the bag completes. Returns its staging path.
        """
        target = self.staging_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        return target

    def set_custom_data(self, key: str, value: str) -> None:
        """Store a string under ``custom_data`` in metadata.yaml."""
        if self._writer is None:
            raise BagError('BagWriter is not open; use it as a context manager')
        self._writer.set_custom_data(key, value)

    def connection(self, topic: str, msgtype: str, qos: Qos | None = None) -> Connection:
        """Return the connection for ``topic`` / ``msgtype``, adding it on first use."""
        key = (topic, msgtype)
        if key not in self._connections:
            if self._writer is None:
                raise BagError('BagWriter is not open; use it as a context manager')
            if msgtype not in self.store.types:
                raise BagError(f'unknown message type {msgtype!r} for topic {topic}')
            self._connections[key] = self._writer.add_connection(
                topic, msgtype, typestore=self.store,
                offered_qos_profiles=[qos or QOS_RELIABLE])
        return self._connections[key]

    def write(self, topic: str, stamp_ns: int, msg: Any, *, qos: Qos | None = None) -> None:
        """Serialise ``msg`` (a ``rosbags`` message) to CDR; write it at bag time ``stamp_ns``."""
        msgtype = msg.__msgtype__
        raw = self.store.serialize_cdr(msg, msgtype)
        self.write_raw(topic, msgtype, stamp_ns, raw, qos=qos)

    def write_raw(self, topic: str, msgtype: str, stamp_ns: int, raw: bytes | memoryview, *,
                  qos: Qos | None = None) -> None:
        """Write already-serialised CDR bytes at bag time ``stamp_ns`` (int ns)."""
        assert self._writer is not None
        self._writer.write(self.connection(topic, msgtype, qos), int(stamp_ns), raw)
        self.counts[topic] = self.counts.get(topic, 0) + 1


@dataclass(frozen=True)
class BagMessage:
    """One message read from a bag: topic, type, bag time (ns), raw CDR and the QoS offered."""

    topic: str
    msgtype: str
    stamp_ns: int
    raw: bytes
    qos: Qos | None


class BagReader:
    """Read a rosbag2 folder (sqlite3 or mcap) or a bare ``.mcap`` file.

    Args:
        path: bag folder (with metadata.yaml) or ``.mcap`` file.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        BagError: the bag cannot be opened (no metadata, corrupt storage file), with the path.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f'bag {self.path} does not exist')
        self.store = typestore()
        self._reader: AnyReader | None = None

    def __enter__(self) -> 'BagReader':
        try:
            self._reader = AnyReader([self.path], default_typestore=self.store)
            self._reader.open()
        except Exception as err:  # rosbags raises several unrelated types; all mean "unreadable"
            raise BagError(f'cannot open bag {self.path}: {_describe(err, self.path)}') from err
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._reader is not None:
            try:
                self._reader.close()
            except Exception:  # closing a corrupt file may fail again; the first error matters
                pass
            self._reader = None

    @property
    def reader(self) -> AnyReader:
        """The underlying open ``AnyReader``."""
        if self._reader is None:
            raise BagError('BagReader is not open; use it as a context manager')
        return self._reader

    @property
    def topics(self) -> dict[str, str]:
        """Topic name → message type."""
        return {topic: info.msgtype or '' for topic, info in self.reader.topics.items()}

    def topic_count(self, topic: str) -> int:
        """Number of messages on ``topic`` (0 when absent)."""
        info = self.reader.topics.get(topic)
        return int(info.msgcount) if info is not None else 0

    def require_topic(self, topic: str, what: str) -> str:
        """Return ``topic``'s type, or raise BagError naming the topic and what it is for."""
        if topic not in self.reader.topics or self.topic_count(topic) == 0:
            available = ', '.join(sorted(self.reader.topics)) or 'none'
            raise BagError(f'bag {self.path} has no {what} topic {topic} (topics: {available})')
        return self.topics[topic]

    def qos(self, topic: str) -> Qos | None:
        """The first offered QoS profile recorded for ``topic``, if any."""
        for conn in self.reader.connections:
            if conn.topic == topic:
                profiles = getattr(conn.ext, 'offered_qos_profiles', None)
                if profiles:
                    return profiles[0]
        return None

    def messages(self, topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
        """Yield messages in bag-time order, optionally only on ``topics``.

        Raises:
            BagError: the storage file is corrupt or truncated (names the bag).
        """
        wanted = None if topics is None else set(topics)
        connections = [c for c in self.reader.connections
                       if wanted is None or c.topic in wanted]
        qos = {c.id: (getattr(c.ext, 'offered_qos_profiles', None) or [None])[0]
               for c in connections}
        if not connections:
            return
        iterator = self.reader.messages(connections=connections)
        while True:
            try:
                conn, stamp_ns, raw = next(iterator)
            except StopIteration:
                return
            except Exception as err:
                raise BagError(f'bag {self.path} is corrupt or truncated: '
                               f'{_describe(err, self.path)}') from err
            yield BagMessage(conn.topic, conn.msgtype, int(stamp_ns), bytes(raw), qos[conn.id])

    def deserialize(self, message: BagMessage) -> Any:
        """Decode a :class:`BagMessage` into a ``rosbags`` message object.

        Raises:
            BagError: the payload does not decode as its recorded type (names the topic).
        """
        try:
            return self.store.deserialize_cdr(message.raw, message.msgtype)
        except Exception as err:
            raise BagError(f'bag {self.path}: message on {message.topic} at {message.stamp_ns} '
                           f'ns does not decode as {message.msgtype}: {err}') from err


def _describe(err: BaseException, path: Path) -> str:
    text = str(err) or type(err).__name__
    if isinstance(err, sqlite3.DatabaseError) and str(path) not in text:
        return f'{text} (SQLite storage file in {path})'
    return text
