"""sensor_msgs/PointCloud2 <-> numpy structured arrays."""
from __future__ import annotations

from typing import Any, Protocol, Sequence, TYPE_CHECKING

import numpy as np

from xdrcdepth_ros.core.conversions._common import _construct, _data_bytes, _pack_bytes, _readonly
from xdrcdepth_ros.core.errors import ConversionError

if TYPE_CHECKING:
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
    """Structured float32 ``x, y, z`` array (12-byte points): (N,) from (N, 3) points, or an
    organised (H, W) cloud from (H, W, 3)."""
    points = np.asarray(points)
    if points.ndim not in (2, 3) or points.shape[-1] != 3:
        raise ConversionError(f'points must be (N, 3) or (H, W, 3), got shape {points.shape}')
    cloud = np.empty(points.shape[:-1], dtype=[('x', '<f4'), ('y', '<f4'), ('z', '<f4')])
    cloud.reshape(-1).view('<f4').reshape(-1, 3)[:] = points.reshape(-1, 3)
    return cloud
