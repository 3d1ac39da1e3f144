"""sensor_msgs/Image and CompressedImage <-> numpy pixels."""
from __future__ import annotations

import re
from typing import Any, Protocol, TYPE_CHECKING

import cv2
import numpy as np

from xdrcdepth_ros.core.conversions._common import _construct, _data_bytes, _pack_bytes, _readonly
from xdrcdepth_ros.core.errors import ConversionError

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


_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic); they carry the size.
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE,
                       0xCF})
_JPEG_STANDALONE = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})  # markers without a length


def _jpeg_size(raw: bytes) -> tuple[int, int] | None:
    position = 2  # after SOI
    while position + 4 <= len(raw):
        if raw[position] != 0xFF:
            return None
        marker = raw[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker in _JPEG_STANDALONE:
            position += 2
            continue
        length = int.from_bytes(raw[position + 2:position + 4], 'big')
        if marker in _JPEG_SOF and position + 9 <= len(raw):
            height = int.from_bytes(raw[position + 5:position + 7], 'big')
            width = int.from_bytes(raw[position + 7:position + 9], 'big')
            return width, height
        if marker == 0xDA or length < 2:  # scan data before any frame header: not usable
            return None
        position += 2 + length
    return None


def encoded_image_size(data: Any) -> tuple[int, int] | None:
    """``(width, height)`` a PNG or JPEG payload declares in its header, read without decoding.

    Reads at most the header segments (bytes before the first scan), so a tiny file that
    claims a huge image costs nothing. None when ``data`` is neither PNG nor JPEG, or its
    header is cut short.
    """
    raw = _data_bytes(data, 'CompressedImage')
    if raw.size >= 24 and raw[:8].tobytes() == _PNG_SIGNATURE and raw[12:16].tobytes() == b'IHDR':
        return (int.from_bytes(raw[16:20].tobytes(), 'big'),
                int.from_bytes(raw[20:24].tobytes(), 'big'))
    if raw.size >= 4 and raw[0] == 0xFF and raw[1] == 0xD8:
        # JPEG headers (EXIF thumbnails included) sit in the first 64 KiB in practice.
        return _jpeg_size(raw[:65536].tobytes())
    return None


def compressed_to_rgb(msg: CompressedImageMsg, *, max_pixels: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a JPEG/PNG sensor_msgs/CompressedImage (decoded with OpenCV).

    ``format`` follows image_transport (``'jpeg'``, ``'png'``, ``'bgr8; jpeg compressed bgr8'``);
    only a ``'... compressed rgb8'`` suffix changes the channel order. Mono images are replicated.
    The size is read from the header first (:func:`encoded_image_size`): payloads that are not
    PNG or JPEG, or that declare more than ``max_pixels`` pixels, are rejected undecoded.

    Raises:
        ConversionError: compressedDepth payloads, no PNG/JPEG header, too many pixels, or
            bytes OpenCV cannot decode.
    """
    fmt = str(msg.format)
    if 'compresseddepth' in fmt.lower().replace(' ', ''):
        raise ConversionError(f'CompressedImage format {fmt!r} is a compressedDepth payload, '
                              'not a colour image')
    raw = _data_bytes(msg.data, 'CompressedImage')
    size = encoded_image_size(raw)
    if size is None:
        raise ConversionError(f'cannot decode CompressedImage (format {fmt!r}, {raw.size} '
                              'bytes): no PNG or JPEG header with an image size')
    if max_pixels is not None and size[0] * size[1] > max_pixels:
        raise ConversionError(f'CompressedImage declares {size[0]}x{size[1]} pixels, more than '
                              f'max_pixels = {max_pixels}; not decoded')
    decoded = cv2.imdecode(raw, cv2.IMREAD_COLOR)
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


def encode_jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    """JPEG bytes of an (H, W, 3) uint8 RGB image, as compressed_image_transport writes them
    (format ``'rgb8; jpeg compressed bgr8'``: the file holds the usual JPEG colour order).

    Raises:
        ConversionError: not (H, W, 3) uint8, a quality outside 1..100, or the encoder failed.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ConversionError(f'JPEG needs (H, W, 3) uint8 RGB, got {rgb.dtype} {rgb.shape}')
    if not 1 <= int(quality) <= 100:
        raise ConversionError(f'JPEG quality must be in 1..100, got {quality!r}')
    ok, encoded = cv2.imencode('.jpg', np.ascontiguousarray(rgb[:, :, ::-1]),
                               [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ConversionError(f'JPEG encoding of a {rgb.shape} image failed')
    return encoded.tobytes()


def make_compressed_image(compressed_cls: type, header: Any, payload: bytes | np.ndarray,
                          fmt: str = 'jpeg') -> Any:
    """Build a sensor_msgs/CompressedImage from already encoded bytes (e.g. a JPEG file)."""
    raw = _data_bytes(payload, 'CompressedImage')
    return _construct(compressed_cls, header=header, format=fmt,
                      data=_pack_bytes(compressed_cls, raw, copy=True))
