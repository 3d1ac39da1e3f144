"""rosbag2 reading and writing on top of ``rosbags`` (pure Python, no ROS runtime).

* :class:`BagWriter` never leaves a half-written bag: it writes into a hidden sibling folder and
  renames it into place only when everything succeeded.
* :class:`BagReader` turns every ``rosbags`` failure (missing metadata, corrupt or truncated
  storage file, undecodable message) into a :class:`~xdrcdepth_ros.core.errors.BagError` that names
  the bag and, where known, the topic. Messages its metadata lists but the storage cannot give
  (an mcap chunk overwritten with garbage is skipped silently by ``rosbags``) are counted and
  are an error unless the caller allows them (``--skip-corrupt``).
* Writing failures (a full disk, a read-only folder) become a ``BagError`` too, and
  :func:`staged_folder` gives other outputs (evaluation panels) the same all-or-nothing rule.

Stamps are int nanoseconds, as in ``rosbags``. Messages are serialised as little-endian CDR, the
bytes rclpy publishes and ``ros2 bag play`` replays.
"""
from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
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
import yaml

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


def read_metadata(bag: str | Path) -> dict[str, Any]:
    """``rosbag2_bagfile_information`` of a bag folder's metadata.yaml ({} when it has none).

    Raises:
        BagError: the file is not YAML or not rosbag2 metadata (names the file).
    """
    path = Path(bag) / 'metadata.yaml'
    if not path.is_file():
        return {}
    try:
        document = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise BagError(f'{path} is not valid YAML: {err}') from err
    info = document.get('rosbag2_bagfile_information') if isinstance(document, dict) else None
    if not isinstance(info, dict):
        raise BagError(f'{path} is not rosbag2 metadata (no rosbag2_bagfile_information '
                       'mapping)')
    return info


def replace_folder(built: Path, target: Path) -> None:
    """Move the finished folder ``built`` to ``target``, replacing an existing one; the old
    one is removed only once the new one is in place."""
    if target.exists():
        trash = Path(tempfile.mkdtemp(prefix=f'.{target.name}.old-', dir=target.parent))
        os.replace(target, trash / target.name)
        os.replace(built, target)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(built, target)


@contextmanager
def staged_folder(path: str | Path, what: str) -> Iterator[Path]:
    """Write a folder of outputs all or nothing: yields a hidden staging folder beside
    ``path``, which replaces ``path`` on a clean exit and is removed on an error.

    Args:
        path: the folder to create or replace.
        what: what the folder holds, for error messages (e.g. ``'panels'``).

    Raises:
        BagError: the folder cannot be written (full disk, read-only, not a directory); the
            error names it and nothing is left behind.
    """
    path = Path(path)
    staging: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f'.{path.name}.partial-', dir=path.parent))
        yield staging
        replace_folder(staging, path)
    except OSError as err:
        raise BagError(f'cannot write {what} to {path}: {err}') from err
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


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
        try:
            with self._write_errors():
                self._writer.open()
        except BagError:
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._tmp is not None and self._writer is not None  # set by __enter__
        try:
            if exc_type is None:
                with self._write_errors():
                    self._writer.close()
                    self._commit(self._tmp / self.path.name)
            else:
                try:
                    self._writer.abort()
                except (sqlite3.Error, OSError):
                    pass  # the first error (a full disk, say) is the one to report
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
            self._writer = None

    @contextmanager
    def _write_errors(self) -> Iterator[None]:
        """Storage failures (sqlite3 'database or disk is full', ENOSPC, EROFS) as BagError."""
        try:
            yield
        except (sqlite3.Error, OSError) as err:
            raise BagError(f'cannot write output bag {self.path}: {err}') from err

    def _commit(self, built: Path) -> None:
        if self.path.exists() and not self.overwrite:
            raise BagError(f'output bag {self.path} appeared while writing; not replacing it')
        replace_folder(built, self.path)

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
        with self._write_errors():
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
        if self._writer is None:
            raise BagError('BagWriter is not open; use it as a context manager')
        connection = self.connection(topic, msgtype, qos)
        with self._write_errors():
            self._writer.write(connection, int(stamp_ns), raw)
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
        skip_corrupt: messages the metadata lists but the storage cannot give are counted in
            :attr:`lost` instead of raising (see :meth:`messages`).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        BagError: the bag cannot be opened (no metadata, corrupt storage file), with the path.
    """

    def __init__(self, path: str | Path, *, skip_corrupt: bool = False) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f'bag {self.path} does not exist')
        self.store = typestore()
        self.skip_corrupt = skip_corrupt
        self.lost: dict[str, int] = {}
        """Per topic, messages listed in the metadata that a read could not give."""
        self._reader: AnyReader | None = None

    def __enter__(self) -> 'BagReader':
        if self.path.is_dir():
            read_metadata(self.path)  # a garbage metadata.yaml: one clear error, no traceback
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

        After the last message, the count per topic is compared with the bag's metadata:
        fewer means corrupt storage (``rosbags`` skips an mcap chunk it cannot parse).

        Raises:
            BagError: the storage file is corrupt or truncated (names the bag), or messages are
                missing and ``skip_corrupt`` is not set (then :attr:`lost` has them).
        """
        wanted = None if topics is None else set(topics)
        connections = [c for c in self.reader.connections
                       if wanted is None or c.topic in wanted]
        qos = {c.id: (getattr(c.ext, 'offered_qos_profiles', None) or [None])[0]
               for c in connections}
        if not connections:
            return
        iterator = self.reader.messages(connections=connections)
        read: Counter[str] = Counter()
        while True:
            try:
                conn, stamp_ns, raw = next(iterator)
            except StopIteration:
                break
            except Exception as err:
                raise BagError(f'bag {self.path} is corrupt or truncated: '
                               f'{_describe(err, self.path)}') from err
            read[conn.topic] += 1
            yield BagMessage(conn.topic, conn.msgtype, int(stamp_ns), bytes(raw), qos[conn.id])
        self._check_complete(read, {c.topic for c in connections})

    def _check_complete(self, read: Counter[str], topics: set[str]) -> None:
        lost = {topic: self.topic_count(topic) - read[topic] for topic in sorted(topics)
                if self.topic_count(topic) > read[topic]}
        for topic, count in lost.items():
            self.lost[topic] = max(self.lost.get(topic, 0), count)
        if lost and not self.skip_corrupt:
            listed = ', '.join(f'{topic} {count}' for topic, count in lost.items())
            raise BagError(f'bag {self.path} is corrupt: {sum(lost.values())} messages its '
                           f'metadata lists could not be read ({listed}); --skip-corrupt goes '
                           'on without them')

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
