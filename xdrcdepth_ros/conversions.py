"""ROS message <-> numpy conversions (ROS-free, duck-typed).

Every reader takes any object with the message's attributes: rclpy messages (``data`` is an
``array.array('B')``) and rosbags dataclass messages (``data`` is a numpy uint8 array) alike, plus
``bytes``/``bytearray``/lists for hand-made objects. Builders take the message *classes* as
arguments, so this module never imports a ROS package: rclpy classes get ``array.array`` data,
adopted without a second copy (see ``_construct``) and fast under Humble's always-on field
checks too; rosbags classes, recognised as dataclasses, get the numpy arrays their serializer
requires.

Readers return views into ``msg.data`` where no conversion is needed; such views are marked
read-only so the message cannot be modified by accident (``.copy()`` when you need to write).
"""
from __future__ import annotations

from array import array as PyArray
from dataclasses import dataclass, field, is_dataclass
import logging
import re
import threading
from typing import Any, Protocol, Sequence, TYPE_CHECKING

import cv2
import numpy as np

from .errors import ConversionError
from .geometry import check_intrinsics

if TYPE_CHECKING:
    class ImageMsg(Protocol):
        """The sensor_msgs/Image fields read here."""

        height: int
        width: int
        encoding: str
        is_bigendian: int
        step: int
        data: Any

    class CompressedImageMsg(Protocol):
        """The sensor_msgs/CompressedImage fields read here."""

        format: str
        data: Any

    class CameraInfoMsg(Protocol):
        """The sensor_msgs/CameraInfo fields read here (binning/roi are read if present)."""

        height: int
        width: int
        distortion_model: str
        d: Any
        k: Any
        r: Any
        p: Any

    class PointFieldMsg(Protocol):
        """The sensor_msgs/PointField fields read here."""

        name: str
        offset: int
        datatype: int
        count: int

    class PointCloud2Msg(Protocol):
        """The sensor_msgs/PointCloud2 fields read here."""

        height: int
        width: int
        fields: Sequence[PointFieldMsg]
        is_bigendian: bool
        point_step: int
        row_step: int
        data: Any

    class StampMsg(Protocol):
        """builtin_interfaces/Time."""

        sec: int
        nanosec: int

_LOG = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- shared helpers


def stamp_to_ns(stamp: StampMsg) -> int:
    """Integer nanoseconds of a ``builtin_interfaces/Time`` (``sec``, ``nanosec``)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


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


# ----------------------------------------------------------------------------- images

_NAMED_ENCODINGS: dict[str, tuple[str, int]] = {
    'rgb8': ('u1', 3), 'bgr8': ('u1', 3), 'rgba8': ('u1', 4), 'bgra8': ('u1', 4),
    'mono8': ('u1', 1), 'rgb16': ('u2', 3), 'bgr16': ('u2', 3), 'rgba16': ('u2', 4),
    'bgra16': ('u2', 4), 'mono16': ('u2', 1),
}
_CV_ENCODING = re.compile(r'^(8|16|32|64)([USF])C([1-4])$')
# 8UC3/8UC4 are treated as BGR/BGRA: OpenCV's channel order, which is what publishers of
# generic OpenCV matrices send.
_TO_RGB: dict[str, int | None] = {
    'rgb8': None, 'bgr8': cv2.COLOR_BGR2RGB, '8UC3': cv2.COLOR_BGR2RGB,
    'rgba8': cv2.COLOR_RGBA2RGB, 'bgra8': cv2.COLOR_BGRA2RGB, '8UC4': cv2.COLOR_BGRA2RGB,
    'mono8': cv2.COLOR_GRAY2RGB, '8UC1': cv2.COLOR_GRAY2RGB,
}


def encoding_layout(encoding: str) -> tuple[np.dtype, int]:
    """Native-order element dtype and channel count of a ROS image encoding.

    Accepts the named encodings (rgb8, bgr8, rgba8, bgra8, mono8, their 16-bit forms, mono16)
    and every OpenCV-style ``{8,16,32,64}{U,S,F}C{1..4}`` (8UC3, 16UC1, 32FC1, ...), except the
    impossible 8F/16F/64U/64S.

    Raises:
        ConversionError: unknown or unsupported encoding (Bayer, YUV, ...).
    """
    if encoding in _NAMED_ENCODINGS:
        code, channels = _NAMED_ENCODINGS[encoding]
        return np.dtype(code), channels
    match = _CV_ENCODING.match(encoding or '')
    if match:
        bits, kind, channels = int(match[1]), match[2], int(match[3])
        code = {'U': 'u', 'S': 'i', 'F': 'f'}[kind] + str(bits // 8)
        if code in ('u1', 'i1', 'u2', 'i2', 'u4', 'i4', 'f4', 'f8'):
            return np.dtype(code), channels
    raise ConversionError(f'unsupported image encoding {encoding!r}; expected one of '
                          f'{sorted(_NAMED_ENCODINGS)} or an OpenCV type such as 8UC3, 16UC1, '
                          '32FC1')


def image_to_array(msg: ImageMsg) -> np.ndarray:
    """Pixels of a sensor_msgs/Image, honouring ``step`` padding and ``is_bigendian``.

    Returns:
        (H, W) for one-channel encodings, else (H, W, C); dtype from the encoding in native byte
        order (16UC1 -> uint16, 32FC1 -> float32 metres for REP 118 depth, ...). A read-only view
        of ``msg.data`` (no copy) unless big-endian data had to be byte-swapped.

    Raises:
        ConversionError: unknown encoding, bad size, ``step`` too small, data too short.
    """
    dtype, channels = encoding_layout(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height < 0 or width < 0:
        raise ConversionError(f'image size must not be negative, got {width}x{height}')
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ConversionError(f'image step {step} is smaller than width*channels*bytes = '
                              f'{width}*{channels}*{dtype.itemsize} = {row_bytes} '
                              f'({msg.encoding})')
    raw = _data_bytes(msg.data, 'Image')
    if raw.size < step * height:
        raise ConversionError(f'image data has {raw.size} bytes, step*height = {step}*{height} '
                              f'= {step * height} expected ({msg.encoding} {width}x{height})')
    if msg.is_bigendian and dtype.itemsize > 1:
        dtype = dtype.newbyteorder('>')
    elif dtype.itemsize > 1:
        dtype = dtype.newbyteorder('<')
    shape = (height, width) if channels == 1 else (height, width, channels)
    # A strided view, no copy: the row stride skips the padding (rows may be unaligned).
    rows = raw[:step * height].reshape(height, step)[:, :row_bytes]
    pixels = rows.view(dtype).reshape(shape)
    if not dtype.isnative:
        return pixels.astype(dtype.newbyteorder('='))
    return _readonly(pixels)


def image_to_rgb(msg: ImageMsg) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a colour or mono 8-bit sensor_msgs/Image.

    rgb8 passes through (a read-only view); bgr8 and 8UC3 (taken as BGR, OpenCV's order) are
    swapped; rgba8/bgra8/8UC4 drop alpha; mono8/8UC1 are replicated into three channels.

    Raises:
        ConversionError: any other encoding (depth, 16-bit, ...), or a malformed message.
    """
    if msg.encoding not in _TO_RGB:
        raise ConversionError(f'image encoding {msg.encoding!r} is not an 8-bit colour or mono '
                              f'encoding; expected one of {sorted(_TO_RGB)}')
    pixels = image_to_array(msg)
    code = _TO_RGB[msg.encoding]
    return pixels if code is None else cv2.cvtColor(pixels, code)


def compressed_to_rgb(msg: CompressedImageMsg) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a JPEG/PNG sensor_msgs/CompressedImage (decoded with OpenCV).

    ``format`` follows image_transport (``'jpeg'``, ``'png'``, ``'bgr8; jpeg compressed bgr8'``);
    only a ``'... compressed rgb8'`` suffix changes the channel order. Mono images are replicated.

    Raises:
        ConversionError: compressedDepth payloads, or bytes OpenCV cannot decode.
    """
    fmt = str(msg.format)
    if 'compresseddepth' in fmt.lower().replace(' ', ''):
        raise ConversionError(f'CompressedImage format {fmt!r} is a compressedDepth payload, '
                              'not a colour image')
    raw = _data_bytes(msg.data, 'CompressedImage')
    decoded = cv2.imdecode(raw, cv2.IMREAD_COLOR) if raw.size else None
    if decoded is None:
        raise ConversionError(f'cannot decode CompressedImage (format {fmt!r}, {raw.size} bytes)')
    if fmt.replace(' ', '').lower().endswith('compressedrgb8'):
        return decoded
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def make_image(image_cls: type, header: Any, array: np.ndarray, encoding: str, *,
               copy: bool = True) -> Any:
    """Build a sensor_msgs/Image of class ``image_cls`` (rclpy or rosbags) from pixels.

    Args:
        image_cls: the message class (``sensor_msgs.msg.Image`` or a typestore class).
        header: a ready Header of the matching flavour.
        array: (H, W) or (H, W, C) pixels whose dtype and channel count match ``encoding``; any
            byte order (big-endian arrays set ``is_bigendian``).
        encoding: ROS encoding, e.g. ``'32FC1'`` (REP 118 depth, metres) or ``'bgr8'``.
        copy: rosbags messages share ``array``'s memory when False (it must not change until the
            message is serialized); rclpy messages always copy once.

    Raises:
        ConversionError: dtype, channel count or shape does not match ``encoding``.
    """
    dtype, channels = encoding_layout(encoding)
    pixels = np.asarray(array)
    got_channels = 1 if pixels.ndim == 2 else (pixels.shape[2] if pixels.ndim == 3 else -1)
    if got_channels != channels or pixels.dtype.newbyteorder('=') != dtype:
        raise ConversionError(f'encoding {encoding!r} needs {channels}-channel {dtype} pixels, '
                              f'got shape {pixels.shape} {pixels.dtype}')
    big = pixels.dtype.str[0] == '>'  # dtype.str spells native order out ('<f4', '|u1')
    height, width = pixels.shape[:2]
    contiguous = np.ascontiguousarray(pixels)
    data = contiguous.reshape(-1).view(np.uint8)
    return _construct(image_cls, header=header, height=height, width=width, encoding=encoding,
                      is_bigendian=int(big), step=width * channels * dtype.itemsize,
                      data=_pack_bytes(image_cls, data, copy and contiguous is pixels))


def make_compressed_image(compressed_cls: type, header: Any, payload: bytes | np.ndarray,
                          fmt: str = 'jpeg') -> Any:
    """Build a sensor_msgs/CompressedImage from already encoded bytes (e.g. a JPEG file)."""
    raw = _data_bytes(payload, 'CompressedImage')
    return _construct(compressed_cls, header=header, format=fmt,
                      data=_pack_bytes(compressed_cls, raw, copy=True))


def depth_to_image_array(depth_m: np.ndarray, encoding: str = '32FC1') -> np.ndarray:
    """REP 118 pixels of a depth map in metres (NaN = invalid).

    Args:
        depth_m: (H, W) depth along the optical axis, metres; NaN invalid, +inf too far.
        encoding: ``'32FC1'``: contiguous float32 metres, values unchanged (NaN/inf kept).
            ``'16UC1'``: uint16 millimetres rounded to nearest; NaN, -inf and depths that round
            to <= 0 mm become 0 (invalid, the OpenNI convention); depths beyond 65.535 m and +inf
            saturate at 65535 ("at least 65.535 m").

    Raises:
        ConversionError: not 2-D, or an encoding other than 32FC1/16UC1.
    """
    depth = np.asarray(depth_m)
    if depth.ndim != 2:
        raise ConversionError(f'depth must be (H, W), got shape {depth.shape}')
    if encoding == '32FC1':
        return np.ascontiguousarray(depth, dtype=np.float32)
    if encoding != '16UC1':
        raise ConversionError(f'depth encoding must be 32FC1 or 16UC1, got {encoding!r}')
    millimetres = np.multiply(depth, np.float32(1000.0), dtype=np.float32)
    np.fmax(millimetres, np.float32(0.0), out=millimetres)  # fmax maps NaN to 0 as well
    np.fmin(millimetres, np.float32(65535.0), out=millimetres)
    np.rint(millimetres, out=millimetres)
    return millimetres.astype(np.uint16)


def depth_to_points(depth: np.ndarray, K: np.ndarray, stride: int = 1) -> np.ndarray:
    """Back-project a depth map into 3-D points for ``~/points``.

    Args:
        depth: (H, W) depth along the optical axis z, metres; NaN, inf and <= 0 are skipped.
        K: (3, 3) intrinsics of ``depth`` (pixel centres at integer coordinates).
        stride: keep every ``stride``-th row and column (1 = all pixels).

    Returns:
        (N, 3) float32 x, y, z in metres, camera optical frame (x right, y down, z forward), in
        row-major pixel order.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ConversionError(f'depth must be (H, W), got shape {depth.shape}')
    if isinstance(stride, bool) or int(stride) != stride or stride < 1:
        raise ConversionError(f'stride must be a positive integer, got {stride!r}')
    projection = check_intrinsics(K)
    fx, fy, cx, cy = projection[0, 0], projection[1, 1], projection[0, 2], projection[1, 2]
    sampled = depth[::stride, ::stride].astype(np.float32, copy=False)
    with np.errstate(invalid='ignore'):
        rows, cols = np.nonzero(np.isfinite(sampled) & (sampled > 0))
    z = sampled[rows, cols]
    points = np.empty((z.size, 3), dtype=np.float32)
    points[:, 0] = (cols * stride - cx) / fx * z
    points[:, 1] = (rows * stride - cy) / fy * z
    points[:, 2] = z
    return points


# ----------------------------------------------------------------------------- camera info


@dataclass(frozen=True, eq=False)
class CameraModel:
    """A pinhole camera as carried by sensor_msgs/CameraInfo (arrays are read-only float64).

    Compared by identity (``eq=False``): array fields have no single truth value.

    Attributes:
        K: (3, 3) intrinsics of the raw image, pixels.
        P: (3, 4) projection of the rectified image (``[K | 0]`` for undistorted cameras).
        D: (n,) distortion coefficients of ``distortion_model``.
        width: image width, pixels.
        height: image height, pixels.
        distortion_model: e.g. ``'plumb_bob'``.
        R: (3, 3) rectification rotation (identity when omitted).
    """

    K: np.ndarray
    P: np.ndarray
    D: np.ndarray
    width: int
    height: int
    distortion_model: str = 'plumb_bob'
    R: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self) -> None:
        for name, shape in (('K', (3, 3)), ('P', (3, 4)), ('R', (3, 3))):
            value = np.array(getattr(self, name), dtype=np.float64)
            if value.shape != shape:
                raise ConversionError(f'CameraModel.{name} must have shape {shape}, '
                                      f'got {value.shape}')
            object.__setattr__(self, name, _readonly(value))
        object.__setattr__(self, 'D', _readonly(np.array(self.D, dtype=np.float64).reshape(-1)))
        object.__setattr__(self, 'width', int(self.width))
        object.__setattr__(self, 'height', int(self.height))
        if self.width <= 0 or self.height <= 0:
            raise ConversionError(f'camera size must be positive, got {self.width}x{self.height}')

    @classmethod
    def from_K(cls, K: np.ndarray, width: int, height: int) -> CameraModel:
        """An undistorted camera: ``P = [K | 0]``, five zero plumb_bob coefficients."""
        K = np.asarray(K, dtype=np.float64)
        return cls(K=K, P=np.hstack([K, np.zeros((3, 1))]), D=np.zeros(5), width=int(width),
                   height=int(height))


def _matrix(values: Any, size: int, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size != size:
        raise ConversionError(f'CameraInfo {name} must have {size} values, got {array.size}')
    return array


def camera_info_to_model(msg: CameraInfoMsg) -> CameraModel:
    """Validate a sensor_msgs/CameraInfo and return its :class:`CameraModel`.

    An all-zero ``p`` (drivers that publish no rectification) becomes ``[K | 0]``, an all-zero
    ``r`` the identity.

    Raises:
        ConversionError: ``k`` all zero (uncalibrated), non-finite or non-positive focal
            lengths, zero size, or binning / a region of interest (not supported).
    """
    K = _matrix(msg.k, 9, 'k').reshape(3, 3)
    if not np.any(K):
        raise ConversionError('CameraInfo k is all zero: the camera is not calibrated')
    try:
        check_intrinsics(K)
    except ValueError as err:
        raise ConversionError(f'CameraInfo k is invalid: {err}') from err
    P = _matrix(msg.p, 12, 'p').reshape(3, 4)
    R = _matrix(msg.r, 9, 'r').reshape(3, 3)
    binning = (int(getattr(msg, 'binning_x', 0)), int(getattr(msg, 'binning_y', 0)))
    if max(binning) > 1:
        raise ConversionError(f'CameraInfo binning {binning} is not supported')
    roi = getattr(msg, 'roi', None)
    if roi is not None and (int(roi.x_offset) or int(roi.y_offset)):
        raise ConversionError('CameraInfo with a region of interest offset is not supported')
    return CameraModel(K=K, P=P if np.any(P) else np.hstack([K, np.zeros((3, 1))]),
                       D=np.asarray(msg.d, dtype=np.float64), width=int(msg.width),
                       height=int(msg.height), distortion_model=str(msg.distortion_model),
                       R=R if np.any(R) else np.eye(3))


def make_camera_info(info_cls: type, header: Any, model: CameraModel,
                     roi_cls: type | None = None) -> Any:
    """Build a sensor_msgs/CameraInfo of class ``info_cls`` (rclpy or rosbags) from ``model``.

    ``roi_cls`` (``sensor_msgs/RegionOfInterest``) is required for rosbags classes, whose fields
    are all keyword-required; rclpy fills an empty ROI by itself. Binning is 0 (none).
    """
    kwargs: dict[str, Any] = dict(
        header=header, height=int(model.height), width=int(model.width),
        distortion_model=model.distortion_model, d=_float_sequence(info_cls, model.D),
        k=model.K.reshape(-1).copy(), r=model.R.reshape(-1).copy(),
        p=model.P.reshape(-1).copy(), binning_x=0, binning_y=0)
    if roi_cls is not None:
        kwargs['roi'] = roi_cls(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    try:
        return _construct(info_cls, **kwargs)
    except TypeError as err:
        raise ConversionError(f'cannot build {getattr(info_cls, "__name__", info_cls)}: {err} '
                              '(rosbags classes need roi_cls)') from err


# ----------------------------------------------------------------------------- point clouds

# sensor_msgs/PointField datatype constants.
POINT_FIELD_DTYPES: dict[int, np.dtype] = {
    1: np.dtype('i1'), 2: np.dtype('u1'), 3: np.dtype('i2'), 4: np.dtype('u2'),
    5: np.dtype('i4'), 6: np.dtype('u4'), 7: np.dtype('f4'), 8: np.dtype('f8'),
}
_DATATYPE_OF = {dtype.str[1:]: code for code, dtype in POINT_FIELD_DTYPES.items()}


def pointcloud2_dtype(fields: Sequence[PointFieldMsg], point_step: int,
                      is_bigendian: bool = False) -> np.dtype:
    """Structured dtype of one point: named fields at their offsets, ``itemsize = point_step``.

    Bytes no field covers are padding. ``count > 1`` gives a sub-array field of that length.

    Raises:
        ConversionError: unknown datatype, count < 1, empty or repeated name, or a field that
            does not fit inside ``point_step``.
    """
    order = '>' if is_bigendian else '<'
    names: list[str] = []
    formats: list[np.dtype] = []
    offsets: list[int] = []
    for point_field in fields:
        name, offset = str(point_field.name), int(point_field.offset)
        datatype, count = int(point_field.datatype), int(point_field.count)
        if datatype not in POINT_FIELD_DTYPES:
            raise ConversionError(f'PointField {name!r} has unknown datatype {datatype} '
                                  f'(expected 1..8)')
        if not name or name in names:
            raise ConversionError(f'PointField names must be unique and non-empty, got {name!r}')
        if count < 1:
            raise ConversionError(f'PointField {name!r} has count {count}, expected >= 1')
        base = POINT_FIELD_DTYPES[datatype].newbyteorder(order)
        item = base if count == 1 else np.dtype((base, (count,)))
        if offset < 0 or offset + item.itemsize > int(point_step):
            raise ConversionError(f'PointField {name!r} ({item.itemsize} bytes at offset '
                                  f'{offset}) does not fit in point_step {point_step}')
        names.append(name)
        formats.append(item)
        offsets.append(offset)
    return np.dtype({'names': names, 'formats': formats, 'offsets': offsets,
                     'itemsize': int(point_step)})


def pointcloud2_to_array(msg: PointCloud2Msg) -> np.ndarray:
    """Points of a sensor_msgs/PointCloud2 as an (N,) structured array, N = height * width.

    The dtype comes from ``fields`` (see :func:`pointcloud2_dtype`), including padding; organised
    clouds are flattened row-major; ``row_step`` padding is skipped; big-endian data is returned
    in native byte order. A read-only view of ``msg.data`` when no copy is needed.

    Raises:
        ConversionError: bad fields, ``row_step < width * point_step`` or data shorter than
            ``row_step * height``.
    """
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    dtype = pointcloud2_dtype(msg.fields, point_step, bool(msg.is_bigendian))
    if height < 0 or width < 0 or (point_step <= 0 and height * width):
        raise ConversionError(f'bad PointCloud2 size: {width}x{height}, point_step {point_step}')
    row_bytes = width * point_step
    if height > 0 and row_step < row_bytes:
        raise ConversionError(f'PointCloud2 row_step {row_step} < width*point_step = '
                              f'{width}*{point_step} = {row_bytes}')
    raw = _data_bytes(msg.data, 'PointCloud2')
    if raw.size < row_step * height:
        raise ConversionError(f'PointCloud2 data has {raw.size} bytes, row_step*height = '
                              f'{row_step}*{height} = {row_step * height} expected')
    if row_step == row_bytes or height <= 1:
        points = raw[:row_bytes * height].view(dtype)
    else:
        rows = raw[:row_step * height].reshape(height, row_step)[:, :row_bytes]
        points = np.ascontiguousarray(rows).reshape(-1).view(dtype)
    if bool(msg.is_bigendian) and any(not dtype.fields[n][0].base.isnative for n in dtype.names):
        return points.astype(dtype.newbyteorder('='))
    return _readonly(points) if np.may_share_memory(points, raw) else points


def array_to_pointcloud2_fields(array: np.ndarray, *, is_dense: bool | None = None,
                                ) -> dict[str, Any]:
    """PointCloud2 field values for a structured array (the class-free half of a builder).

    Args:
        array: (N,) structured array (an unorganised cloud, height 1) or (H, W) (organised).
            Field types must be int8/16/32, uint8/16/32, float32 or float64; sub-array fields
            become ``count > 1``; padding and offsets are kept (``point_step = itemsize``).
        is_dense: defaults to "every float field is finite".

    Returns:
        dict with ``height``, ``width``, ``fields`` (list of ``(name, offset, datatype,
        count)``), ``is_bigendian``, ``point_step``, ``row_step``, ``data`` (flat uint8 ndarray,
        a view of ``array`` when it is contiguous) and ``is_dense``.

    Raises:
        ConversionError: not structured, more than 2-D, or an unsupported field type.
    """
    points = np.asarray(array)
    if points.dtype.names is None:
        raise ConversionError(f'PointCloud2 needs a structured array, got dtype {points.dtype}')
    if points.ndim not in (1, 2):
        raise ConversionError(f'point array must be (N,) or (H, W), got shape {points.shape}')
    height, width = (1, points.shape[0]) if points.ndim == 1 else points.shape
    fields, orders = [], set()
    for name in points.dtype.names:
        item, offset = points.dtype.fields[name][:2]
        base = item.base
        code = _DATATYPE_OF.get(base.str[1:]) if base.kind in 'iuf' else None
        if code is None:
            raise ConversionError(f'field {name!r} has type {item}, which PointField cannot '
                                  'carry (use int8/16/32, uint8/16/32, float32 or float64)')
        if base.itemsize > 1:
            orders.add(base.str[0])
        fields.append((name, int(offset), code, int(np.prod(item.shape, dtype=np.int64))))
    if len(orders) > 1:  # one is_bigendian flag for the whole cloud: normalise mixed orders
        points = points.astype(points.dtype.newbyteorder('<'))
        orders = {'<'}
    if is_dense is None:
        is_dense = all(bool(np.isfinite(points[name]).all()) for name in points.dtype.names
                       if points.dtype.fields[name][0].base.kind == 'f')
    contiguous = np.ascontiguousarray(points).reshape(-1)
    point_step = points.dtype.itemsize
    return {'height': int(height), 'width': int(width), 'fields': fields,
            'is_bigendian': orders == {'>'}, 'point_step': point_step,
            'row_step': point_step * int(width), 'data': contiguous.view(np.uint8),
            'is_dense': bool(is_dense)}


def make_pointcloud2(cloud_cls: type, field_cls: type, header: Any, array: np.ndarray, *,
                     is_dense: bool | None = None) -> Any:
    """Build a sensor_msgs/PointCloud2 (rclpy or rosbags classes) from a structured array.

    See :func:`array_to_pointcloud2_fields` for the accepted arrays; ``field_cls`` is the
    matching PointField class. Data are copied, so ``array`` may change afterwards.
    """
    values = array_to_pointcloud2_fields(array, is_dense=is_dense)
    fields = [_construct(field_cls, name=name, offset=offset, datatype=datatype, count=count)
              for name, offset, datatype, count in values['fields']]
    return _construct(cloud_cls, header=header, height=values['height'],
                      width=values['width'], fields=fields, is_bigendian=values['is_bigendian'],
                      point_step=values['point_step'], row_step=values['row_step'],
                      data=_pack_bytes(cloud_cls, values['data'], copy=True),
                      is_dense=values['is_dense'])


def xyz_cloud_array(points: np.ndarray) -> np.ndarray:
    """(N,) structured float32 ``x, y, z`` array (12-byte points) from (N, 3) points."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ConversionError(f'points must be (N, 3), got shape {points.shape}')
    cloud = np.empty(points.shape[0], dtype=[('x', '<f4'), ('y', '<f4'), ('z', '<f4')])
    cloud.view('<f4').reshape(-1, 3)[:] = points
    return cloud


# ----------------------------------------------------------------------------- radar fields


@dataclass(frozen=True)
class RadarFieldMap:
    """Which PointCloud2 fields feed the model's radar channels.

    Attributes:
        features: field names for the channels after depth, in model order. The default is the
            nuScenes ARS408 naming (RCS dBsm, ego-motion compensated vx, vy in m/s); other radars
            name theirs here, e.g. ``('intensity', 'vx', 'vy')``.
        x, y, z: coordinate field names, metres in the radar frame.
    """

    features: tuple[str, ...] = ('rcs', 'vx_comp', 'vy_comp')
    x: str = 'x'
    y: str = 'y'
    z: str = 'z'

    def __post_init__(self) -> None:
        object.__setattr__(self, 'features', tuple(self.features))
        names = (self.x, self.y, self.z, *self.features)
        if not all(isinstance(name, str) and name for name in names):
            raise ConversionError(f'radar field names must be non-empty strings, got {names}')
        if len(set(names)) != len(names):
            raise ConversionError(f'radar field names must be distinct, got {names}')


_warned_missing: set[str] = set()
_warned_lock = threading.Lock()


def missing_radar_fields(dtype: np.dtype, field_map: RadarFieldMap) -> tuple[str, ...]:
    """Feature fields of ``field_map`` that a cloud with ``dtype`` lacks (they read as zeros)."""
    names = set(dtype.names or ())
    return tuple(name for name in field_map.features if name not in names)


def radar_from_cloud(array: np.ndarray, field_map: RadarFieldMap = RadarFieldMap(),
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Radar points and model features from a structured cloud (e.g. from PointCloud2).

    Rows with a non-finite x, y or z are dropped; non-finite features become 0. A feature field
    the cloud lacks fills zeros and logs one warning per field name per process; use
    :func:`missing_radar_fields` to count such clouds.

    Returns:
        points (N, 3) float32 x, y, z in metres (radar frame) and features (N, F) float32 in
        ``field_map.features`` order.

    Raises:
        ConversionError: not structured, an x/y/z field missing, or a multi-element field.
    """
    cloud = np.asarray(array)
    if cloud.dtype.names is None:
        raise ConversionError(f'radar cloud must be a structured array, got dtype {cloud.dtype}')
    cloud = cloud.reshape(-1)
    fields = cloud.dtype.fields
    for name in (field_map.x, field_map.y, field_map.z, *field_map.features):
        if name in fields and fields[name][0].shape:
            raise ConversionError(f'radar field {name!r} has {fields[name][0].shape} elements '
                                  'per point; expected a scalar')
    for axis in (field_map.x, field_map.y, field_map.z):
        if axis not in fields:
            raise ConversionError(f'radar cloud has no {axis!r} field (it has '
                                  f'{list(cloud.dtype.names)}); set RadarFieldMap x/y/z')
    points = np.empty((cloud.size, 3), dtype=np.float32)
    for column, axis in enumerate((field_map.x, field_map.y, field_map.z)):
        points[:, column] = cloud[axis]
    features = np.zeros((cloud.size, len(field_map.features)), dtype=np.float32)
    for column, name in enumerate(field_map.features):
        if name in fields:
            features[:, column] = cloud[name]
    missing = missing_radar_fields(cloud.dtype, field_map)
    if missing:
        with _warned_lock:
            new = [name for name in missing if name not in _warned_missing]
            _warned_missing.update(new)
        for name in new:
            _LOG.warning('radar cloud has no %r field (fields: %s); that model channel is '
                         'filled with zeros', name, ', '.join(cloud.dtype.names))
    keep = np.isfinite(points).all(axis=1)
    if not keep.all():
        points, features = points[keep], features[keep]
    features[~np.isfinite(features)] = 0.0
    return points, features
