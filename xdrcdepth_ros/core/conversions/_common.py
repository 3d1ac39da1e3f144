"""Helpers shared by the conversions: stamps, message ``data`` buffers, class-agnostic building.

rclpy classes get ``array.array`` data, adopted without a second copy (see ``_construct``);
rosbags classes, recognised as dataclasses, get the numpy arrays their serializer requires.
"""
from __future__ import annotations

from array import array as PyArray
from dataclasses import is_dataclass
from typing import Any, Protocol, TYPE_CHECKING

import numpy as np

from xdrcdepth_ros.core.errors import ConversionError

if TYPE_CHECKING:
    class StampMsg(Protocol):
        """builtin_interfaces/Time."""

        sec: int
        nanosec: int


def stamp_to_ns(stamp: StampMsg) -> int:
    """Integer nanoseconds of a ``builtin_interfaces/Time`` (``sec``, ``nanosec``)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def checked_stamp_ns(stamp: StampMsg) -> int:
    """:func:`stamp_to_ns` of a stamp a sensor can have produced.

    Raises:
        ConversionError: zero (never set), negative seconds, or ``nanosec >= 1e9`` (not
            normalised), quoting the stamp.
    """
    sec, nanosec = int(stamp.sec), int(stamp.nanosec)
    if sec < 0 or not 0 <= nanosec < 1_000_000_000 or (sec == 0 and nanosec == 0):
        raise ConversionError(f'invalid header stamp sec={sec}, nanosec={nanosec} (expected '
                              'sec > 0 or nanosec > 0, sec >= 0, 0 <= nanosec < 1e9)')
    return sec * 1_000_000_000 + nanosec


def ns_to_stamp(stamp_ns: int) -> tuple[int, int]:
    """``(sec, nanosec)`` of integer nanoseconds, with ``0 <= nanosec < 1e9`` (floor division)."""
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return sec, nanosec


def _data_bytes(data: Any, what: str) -> np.ndarray:
    """A flat uint8 view of a message's ``data`` (array.array, ndarray, bytes or a list)."""
    if isinstance(data, np.ndarray):
        if data.dtype == np.uint8 and data.ndim == 1:
            return data
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:
        try:
            return np.asarray(data, dtype=np.uint8).reshape(-1)
        except (TypeError, ValueError, OverflowError) as err:
            raise ConversionError(f'{what} data of type {type(data).__name__} is not a byte '
                                  f'buffer: {err}') from err


def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _is_numpy_style(cls: type) -> bool:
    """True for rosbags-style dataclass messages (numpy arrays), False for rclpy classes."""
    return is_dataclass(cls)


def _pack_bytes(cls: type, data: np.ndarray, copy: bool) -> Any:
    """Message ``data`` for ``cls`` from a contiguous uint8 array (one copy for rclpy)."""
    if _is_numpy_style(cls):
        return data.copy() if copy else data
    buffer = PyArray('B')
    buffer.frombytes(data)
    return buffer


def _construct(cls: type, **values: Any) -> Any:
    """``cls(**values)``, adopting an rclpy ``array.array`` ``data`` without copying it.

    rclpy constructors always copy ``data`` (``array.array('B', data)``), and so does the
    setter unless field checks are on; a checking setter adopts an ``array.array`` as is. So
    rclpy messages are built without ``data``, with checks on where the class lets us choose
    (Jazzy's ``check_fields``; Humble always checks), and ``data`` is assigned afterwards.
    This saves a full-frame copy per image.
    """
    if _is_numpy_style(cls):
        return cls(**values)
    data = values.pop('data', None)
    if '_check_fields' in getattr(cls, '__slots__', ()):
        values['check_fields'] = True
    message = cls(**values)
    if data is not None:
        message.data = data
    return message


def _float_sequence(cls: type, values: np.ndarray) -> Any:
    """An unbounded ``float64[]`` field (CameraInfo ``d``) in the style ``cls`` accepts."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    return values.copy() if _is_numpy_style(cls) else PyArray('d', values.tolist())
