"""ROS message <-> numpy conversions on real rclpy and rosbags message classes."""
from __future__ import annotations

import importlib
import logging
import pkgutil
import struct

import cv2
from hypothesis import given, settings, strategies as st
import numpy as np
import pytest

from xdrcdepth_ros.core import conversions as conv
from xdrcdepth_ros.core.errors import ConversionError

rosbags_typesys = pytest.importorskip('rosbags.typesys')
TYPESTORE = rosbags_typesys.get_typestore(rosbags_typesys.Stores.ROS2_JAZZY)


class Flavour:
    """Message classes and a header factory of one message library."""

    def __init__(self, name: str) -> None:
        self.name = name
        if name == 'rclpy':
            sensor_msgs = pytest.importorskip('sensor_msgs.msg')
            std_msgs = pytest.importorskip('std_msgs.msg')
            from builtin_interfaces.msg import Time
            self.Image, self.CompressedImage = sensor_msgs.Image, sensor_msgs.CompressedImage
            self.CameraInfo, self.RegionOfInterest = (sensor_msgs.CameraInfo,
                                                      sensor_msgs.RegionOfInterest)
            self.PointCloud2, self.PointField = sensor_msgs.PointCloud2, sensor_msgs.PointField
            self._header, self._time = std_msgs.Header, Time
        else:
            types = TYPESTORE.types
            self.Image = types['sensor_msgs/msg/Image']
            self.CompressedImage = types['sensor_msgs/msg/CompressedImage']
            self.CameraInfo = types['sensor_msgs/msg/CameraInfo']
            self.RegionOfInterest = types['sensor_msgs/msg/RegionOfInterest']
            self.PointCloud2 = types['sensor_msgs/msg/PointCloud2']
            self.PointField = types['sensor_msgs/msg/PointField']
            self._header, self._time = (types['std_msgs/msg/Header'],
                                        types['builtin_interfaces/msg/Time'])

    def header(self, stamp_ns: int = 1_535_639_721_662_404_000, frame_id: str = 'cam') -> object:
        sec, nanosec = conv.ns_to_stamp(stamp_ns)
        return self._header(stamp=self._time(sec=sec, nanosec=nanosec), frame_id=frame_id)

    def __repr__(self) -> str:
        return self.name


@pytest.fixture(params=['rclpy', 'rosbags'])
def flavour(request) -> Flavour:
    return Flavour(request.param)


class Raw:
    """A hand-made message object: what a driver with unusual padding or byte order sends."""

    def __init__(self, **fields) -> None:
        self.__dict__.update(fields)


ENCODINGS = {  # encoding -> (dtype, channels)
    'rgb8': ('u1', 3), 'bgr8': ('u1', 3), 'rgba8': ('u1', 4), 'bgra8': ('u1', 4),
    'mono8': ('u1', 1), '8UC1': ('u1', 1), '8UC3': ('u1', 3), '8UC4': ('u1', 4),
    'mono16': ('u2', 1), '16UC1': ('u2', 1), '16SC1': ('i2', 1), '32SC1': ('i4', 1),
    '32FC1': ('f4', 1), '32FC3': ('f4', 3), '64FC1': ('f8', 1), 'rgb16': ('u2', 3),
}


def random_pixels(encoding: str, height: int = 5, width: int = 7, seed: int = 0) -> np.ndarray:
    dtype, channels = ENCODINGS[encoding]
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 1 else (height, width, channels)
    if dtype[0] == 'f':
        pixels = rng.uniform(-100, 100, shape).astype(dtype)
        pixels.reshape(-1)[0] = np.nan  # REP 118 invalid depth survives the trip
        return pixels
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, endpoint=True, dtype=dtype)


# ----------------------------------------------------------------------------- package API


def test_package_re_exports_every_public_name_of_its_modules():
    """Callers import from ``xdrcdepth_ros.core.conversions`` only; no module keeps a name to itself."""
    exported = set(conv.__all__)
    assert len(exported) == len(conv.__all__)
    for info in pkgutil.iter_modules(conv.__path__):
        module = importlib.import_module(f'{conv.__name__}.{info.name}')
        for name, value in vars(module).items():
            if name.startswith('_') or getattr(value, '__module__', None) != module.__name__:
                continue
            assert name in exported, f'{module.__name__}.{name} is missing from __all__'
            assert getattr(conv, name) is value
    assert 'POINT_FIELD_DTYPES' in exported and all(hasattr(conv, n) for n in exported)


# ----------------------------------------------------------------------------- images


@pytest.mark.parametrize('encoding', sorted(ENCODINGS))
def test_image_round_trip_every_encoding(flavour, encoding):
    """array -> msg -> array -> msg keeps every pixel and byte, for rclpy and rosbags classes."""
    pixels = random_pixels(encoding)
    msg = conv.make_image(flavour.Image, flavour.header(), pixels, encoding)
    assert (msg.height, msg.width, msg.encoding) == (5, 7, encoding)
    back = conv.image_to_array(msg)
    assert back.dtype == pixels.dtype and back.shape == pixels.shape
    np.testing.assert_array_equal(back, pixels)
    again = conv.make_image(flavour.Image, flavour.header(), back, encoding)
    assert bytes(again.data) == bytes(msg.data) and again.step == msg.step


def test_make_image_copies_unless_told_not_to(flavour):
    """By default a later change to the source array does not reach the message."""
    pixels = random_pixels('mono8')
    msg = conv.make_image(flavour.Image, flavour.header(), pixels, 'mono8')
    pixels[0, 0] ^= 0xFF
    assert conv.image_to_array(msg)[0, 0] != pixels[0, 0]
    if flavour.name == 'rosbags':
        shared = conv.make_image(flavour.Image, flavour.header(), pixels, 'mono8', copy=False)
        assert np.shares_memory(shared.data, pixels)


def test_rosbags_image_data_is_uint8_ndarray_and_serializes():
    """rosbags serializes only numpy data; the built message must survive CDR both ways."""
    flavour = Flavour('rosbags')
    depth = random_pixels('32FC1')
    msg = conv.make_image(flavour.Image, flavour.header(), depth, '32FC1')
    assert isinstance(msg.data, np.ndarray) and msg.data.dtype == np.uint8
    raw = TYPESTORE.serialize_cdr(msg, 'sensor_msgs/msg/Image')
    np.testing.assert_array_equal(
        conv.image_to_array(TYPESTORE.deserialize_cdr(raw, 'sensor_msgs/msg/Image')), depth)


def test_rclpy_image_serializes_into_rosbags():
    """An rclpy message we built is valid CDR that rosbags (the bag tools) reads back."""
    serialization = pytest.importorskip('rclpy.serialization')
    flavour = Flavour('rclpy')
    pixels = random_pixels('bgr8')
    msg = conv.make_image(flavour.Image, flavour.header(), pixels, 'bgr8')
    decoded = TYPESTORE.deserialize_cdr(serialization.serialize_message(msg),
                                        'sensor_msgs/msg/Image')
    np.testing.assert_array_equal(conv.image_to_array(decoded), pixels)
    assert conv.stamp_to_ns(decoded.header.stamp) == 1_535_639_721_662_404_000


def test_rclpy_builders_pass_humble_style_field_checks(monkeypatch):
    """Humble always checks fields; array.array data must pass the checks (and stay fast)."""
    sensor_msgs = pytest.importorskip('sensor_msgs.msg')
    import sensor_msgs.msg._camera_info as camera_info_module
    import sensor_msgs.msg._image as image_module
    import sensor_msgs.msg._point_cloud2 as cloud_module
    for module in (image_module, camera_info_module, cloud_module):
        monkeypatch.setattr(module, 'ros_python_check_fields', '1')
    flavour = Flavour('rclpy')
    image = conv.make_image(sensor_msgs.Image, flavour.header(), random_pixels('mono16'),
                            'mono16')
    assert image._check_fields
    model = conv.CameraModel.from_K(np.array([[500.0, 0, 32], [0, 500.0, 24], [0, 0, 1]]), 64, 48)
    info = conv.make_camera_info(sensor_msgs.CameraInfo, flavour.header(), model)
    assert conv.camera_info_to_model(info).width == 64
    cloud = conv.make_pointcloud2(sensor_msgs.PointCloud2, sensor_msgs.PointField,
                                  flavour.header(), conv.xyz_cloud_array(np.ones((3, 3))))
    assert cloud.point_step == 12


@pytest.mark.parametrize('encoding', ['rgb8', 'mono16', '32FC1', '8UC3'])
@pytest.mark.parametrize('padding', [1, 3, 64])
def test_image_step_padding_is_skipped(encoding, padding):
    """Rows padded beyond width*channels*bytes (even to odd, unaligned steps) read correctly."""
    pixels = random_pixels(encoding)
    row = pixels[0].nbytes
    step = row + padding
    data = np.full((pixels.shape[0], step), 0xAB, dtype=np.uint8)
    data[:, :row] = np.ascontiguousarray(pixels).view(np.uint8).reshape(pixels.shape[0], row)
    msg = Raw(height=5, width=7, encoding=encoding, is_bigendian=0, step=step,
              data=data.tobytes())
    np.testing.assert_array_equal(conv.image_to_array(msg), pixels)


@pytest.mark.parametrize('encoding', ['16UC1', '32FC1', '64FC1', 'rgb16'])
def test_big_endian_images_are_byte_swapped(encoding):
    """is_bigendian data yields the right values in native byte order."""
    pixels = random_pixels(encoding)
    big = pixels.astype(pixels.dtype.newbyteorder('>'))
    msg = Raw(height=5, width=7, encoding=encoding, is_bigendian=1, step=pixels[0].nbytes,
              data=big.tobytes())
    back = conv.image_to_array(msg)
    assert back.dtype.isnative
    np.testing.assert_array_equal(back, pixels)


def test_big_endian_array_sets_is_bigendian(flavour):
    """make_image keeps a big-endian array's bytes and says so in the message."""
    depth = random_pixels('32FC1').astype('>f4')
    msg = conv.make_image(flavour.Image, flavour.header(), depth, '32FC1')
    assert msg.is_bigendian == 1
    np.testing.assert_array_equal(conv.image_to_array(msg), depth)


@pytest.mark.parametrize('encoding,convert', [
    ('rgb8', lambda p: p), ('bgr8', lambda p: p[..., ::-1]), ('8UC3', lambda p: p[..., ::-1]),
    ('rgba8', lambda p: p[..., :3]), ('bgra8', lambda p: p[..., 2::-1]),
    ('8UC4', lambda p: p[..., 2::-1]), ('mono8', lambda p: np.repeat(p[..., None], 3, 2)),
    ('8UC1', lambda p: np.repeat(p[..., None], 3, 2)),
])
def test_image_to_rgb_channel_order(flavour, encoding, convert):
    """Each colour encoding becomes (H, W, 3) uint8 RGB (8UC3 taken as BGR, mono replicated)."""
    pixels = random_pixels(encoding)
    msg = conv.make_image(flavour.Image, flavour.header(), pixels, encoding)
    rgb = conv.image_to_rgb(msg)
    assert rgb.shape == (5, 7, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb, convert(pixels))


def test_image_to_rgb_of_padded_bgr_message():
    """Colour conversion works on a strided view of padded rows."""
    pixels = random_pixels('bgr8')
    data = np.zeros((5, 7 * 3 + 5), np.uint8)
    data[:, :21] = pixels.reshape(5, 21)
    msg = Raw(height=5, width=7, encoding='bgr8', is_bigendian=0, step=26, data=data.reshape(-1))
    np.testing.assert_array_equal(conv.image_to_rgb(msg), pixels[..., ::-1])


def test_rgb8_result_is_a_read_only_view(flavour):
    """rgb8 passes through without a copy, and the view cannot write into the message."""
    pixels = random_pixels('rgb8')
    msg = conv.make_image(flavour.Image, flavour.header(), pixels, 'rgb8')
    rgb = conv.image_to_rgb(msg)
    assert not rgb.flags.writeable
    with pytest.raises(ValueError):
        rgb[0, 0, 0] = 1


@pytest.mark.parametrize('msg,match', [
    (Raw(height=2, width=2, encoding='yuv422', is_bigendian=0, step=4, data=bytes(8)),
     'unsupported image encoding'),
    (Raw(height=2, width=2, encoding='rgb8', is_bigendian=0, step=6, data=bytes(11)),
     'data has 11 bytes, step\\*height'),
    (Raw(height=2, width=2, encoding='32FC1', is_bigendian=0, step=7, data=bytes(14)),
     'step 7 is smaller'),
    (Raw(height=2, width=2, encoding='8FC1', is_bigendian=0, step=2, data=bytes(4)),
     'unsupported image encoding'),
    (Raw(height=1, width=1, encoding='mono8', is_bigendian=0, step=1, data=object()),
     'not a byte buffer'),
])
def test_bad_images_raise_conversion_error(msg, match):
    """Malformed images name the problem instead of returning garbage."""
    with pytest.raises(ConversionError, match=match):
        conv.image_to_array(msg)


def test_image_to_rgb_rejects_depth():
    msg = Raw(height=1, width=1, encoding='32FC1', is_bigendian=0, step=4, data=bytes(4))
    with pytest.raises(ConversionError, match="'32FC1' is not an 8-bit colour"):
        conv.image_to_rgb(msg)


def test_make_image_rejects_mismatched_array(flavour):
    with pytest.raises(ConversionError, match="'bgr8' needs 3-channel uint8"):
        conv.make_image(flavour.Image, flavour.header(), np.zeros((2, 2), np.float32), 'bgr8')


# ----------------------------------------------------------------------------- compressed


def test_compressed_png_decodes_exactly(flavour):
    """PNG is lossless: the decoded RGB equals the image that was encoded (as BGR)."""
    rgb = random_pixels('rgb8', 16, 24)
    ok, png = cv2.imencode('.png', rgb[..., ::-1])
    assert ok
    msg = conv.make_compressed_image(flavour.CompressedImage, flavour.header(), png.tobytes(),
                                     'bgr8; png compressed bgr8')
    np.testing.assert_array_equal(conv.compressed_to_rgb(msg), rgb)


def test_compressed_rgb8_suffix_keeps_channel_order():
    """A payload encoded from rgb8 data ('... compressed rgb8') needs no channel swap."""
    rgb = random_pixels('rgb8', 8, 8)
    ok, png = cv2.imencode('.png', rgb)
    msg = Raw(format='rgb8; png compressed rgb8', data=png.reshape(-1))
    np.testing.assert_array_equal(conv.compressed_to_rgb(msg), rgb)


def test_compressed_real_nuscenes_jpeg(keyframes, flavour):
    """The bundled 1600x900 JPEG decodes to the same pixels as reading the file directly."""
    payload = keyframes[0].camera.path.read_bytes()
    msg = conv.make_compressed_image(flavour.CompressedImage, flavour.header(), payload, 'jpeg')
    rgb = conv.compressed_to_rgb(msg)
    assert rgb.shape == (900, 1600, 3)
    np.testing.assert_array_equal(rgb, keyframes[0].read_image())


@pytest.mark.parametrize('fmt,data,match', [
    ('jpeg', b'not a jpeg at all', 'cannot decode CompressedImage'),
    ('jpeg', b'', 'cannot decode'),
    ('16UC1; compressedDepth png', b'\x00' * 20, 'compressedDepth'),
])
def test_bad_compressed_images(fmt, data, match):
    with pytest.raises(ConversionError, match=match):
        conv.compressed_to_rgb(Raw(format=fmt, data=data))


# ----------------------------------------------------------------------------- camera info


def test_camera_info_round_trip(flavour):
    """CameraModel -> CameraInfo -> CameraModel keeps K, P, D, R, size and model name."""
    K = np.array([[1266.4, 0.0, 816.3], [0.0, 1266.4, 491.5], [0.0, 0.0, 1.0]])
    model = conv.CameraModel(K=K, P=np.hstack([K, [[1.0], [2.0], [0.0]]]),
                             D=[0.1, -0.2, 0.001, 0.002, 0.05], width=1600, height=900,
                             R=np.diag([1.0, -1.0, -1.0]))
    roi_cls = flavour.RegionOfInterest if flavour.name == 'rosbags' else None
    msg = conv.make_camera_info(flavour.CameraInfo, flavour.header(), model, roi_cls)
    back = conv.camera_info_to_model(msg)
    for name in ('K', 'P', 'D', 'R'):
        np.testing.assert_array_equal(getattr(back, name), getattr(model, name))
    assert (back.width, back.height, back.distortion_model) == (1600, 900, 'plumb_bob')


def test_camera_info_rosbags_serializes():
    flavour = Flavour('rosbags')
    model = conv.CameraModel.from_K(np.array([[300.0, 0, 320], [0, 310.0, 240], [0, 0, 1]]),
                                    640, 480)
    msg = conv.make_camera_info(flavour.CameraInfo, flavour.header(), model,
                                flavour.RegionOfInterest)
    raw = TYPESTORE.serialize_cdr(msg, 'sensor_msgs/msg/CameraInfo')
    back = conv.camera_info_to_model(TYPESTORE.deserialize_cdr(raw, 'sensor_msgs/msg/CameraInfo'))
    np.testing.assert_array_equal(back.P[:, :3], model.K)


def test_camera_info_rosbags_without_roi_class_says_so():
    flavour = Flavour('rosbags')
    model = conv.CameraModel.from_K(np.array([[300.0, 0, 320], [0, 310.0, 240], [0, 0, 1]]),
                                    640, 480)
    with pytest.raises(ConversionError, match='need roi_cls'):
        conv.make_camera_info(flavour.CameraInfo, flavour.header(), model)


def info(k, p=None, r=None, width=640, height=480, **extra) -> Raw:
    return Raw(k=k, p=np.zeros(12) if p is None else p, r=np.zeros(9) if r is None else r,
               d=[], width=width, height=height, distortion_model='plumb_bob', **extra)


def test_camera_info_zero_p_and_r_are_filled():
    """Drivers without rectification send p = r = 0: use [K | 0] and the identity."""
    K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    model = conv.camera_info_to_model(info(K.reshape(-1)))
    np.testing.assert_array_equal(model.P, np.hstack([K, np.zeros((3, 1))]))
    np.testing.assert_array_equal(model.R, np.eye(3))
    assert model.D.shape == (0,) and not model.K.flags.writeable


@pytest.mark.parametrize('msg,match', [
    (info(np.zeros(9)), 'k is all zero'),
    (info(np.ones(8)), 'k must have 9 values'),
    (info([np.nan, 0, 1, 0, 1, 1, 0, 0, 1]), 'non-finite'),
    (info([-5.0, 0, 1, 0, 5, 1, 0, 0, 1]), 'positive focal'),
    (info(np.diag([5.0, 5, 1]).reshape(-1), width=0), 'size must be positive'),
    (info(np.diag([5.0, 5, 1]).reshape(-1), binning_x=2, binning_y=2), 'binning'),
])
def test_bad_camera_info(msg, match):
    with pytest.raises(ConversionError, match=match):
        conv.camera_info_to_model(msg)


# ----------------------------------------------------------------------------- point clouds

ALL_FIELD_TYPES = [('a', 'i1'), ('b', 'u1'), ('c', '<i2'), ('d', '<u2'), ('e', '<i4'),
                   ('f', '<u4'), ('g', '<f4'), ('h', '<f8')]


def all_types_cloud(n: int = 6, seed: int = 1) -> np.ndarray:
    """Every PointField datatype, a 3-element field and padding bytes between and after fields."""
    rng = np.random.default_rng(seed)
    names = [name for name, _ in ALL_FIELD_TYPES] + ['rgb3']
    formats = [fmt for _, fmt in ALL_FIELD_TYPES] + [('<f4', (3,))]
    offsets = [0, 1, 3, 6, 10, 15, 20, 25, 36]  # odd offsets: nothing is aligned
    cloud = np.zeros(n, dtype={'names': names, 'formats': formats, 'offsets': offsets,
                               'itemsize': 52})
    for name in names:
        values = cloud[name]
        if values.dtype.kind == 'f':
            cloud[name] = rng.normal(0, 50, values.shape)
        else:
            info = np.iinfo(values.dtype)
            cloud[name] = rng.integers(info.min, info.max, values.shape, endpoint=True)
    return cloud


def test_pointcloud_round_trip_all_datatypes_padding_and_counts(flavour):
    cloud = all_types_cloud()
    msg = conv.make_pointcloud2(flavour.PointCloud2, flavour.PointField, flavour.header(), cloud)
    assert [(f.name, f.datatype, f.count) for f in msg.fields][-2:] == [('h', 8, 1),
                                                                         ('rgb3', 7, 3)]
    assert (msg.point_step, msg.row_step, msg.height, msg.width) == (52, 312, 1, 6)
    back = conv.pointcloud2_to_array(msg)
    assert back.dtype == cloud.dtype
    for name in cloud.dtype.names:
        np.testing.assert_array_equal(back[name], cloud[name])


def test_pointcloud_datatype_codes_match_point_field_constants(flavour):
    """Our datatype table agrees with the message definition's constants."""
    constants = {name: getattr(flavour.PointField, name) for name in
                 ('INT8', 'UINT8', 'INT16', 'UINT16', 'INT32', 'UINT32', 'FLOAT32', 'FLOAT64')}
    expected = {'INT8': 'i1', 'UINT8': 'u1', 'INT16': 'i2', 'UINT16': 'u2', 'INT32': 'i4',
                'UINT32': 'u4', 'FLOAT32': 'f4', 'FLOAT64': 'f8'}
    for name, code in constants.items():
        assert conv.POINT_FIELD_DTYPES[code] == np.dtype(expected[name])


def test_nuscenes_radar_pcd_round_trip_is_byte_exact(keyframes, flavour):
    """All 18 ARS408 fields in native int8/int16/float32 (43-byte packed points) survive."""
    radar = keyframes[0].read_radar('RADAR_FRONT')
    msg = conv.make_pointcloud2(flavour.PointCloud2, flavour.PointField, flavour.header(), radar)
    assert msg.point_step == 43 and len(msg.fields) == 18
    back = conv.pointcloud2_to_array(msg)
    assert back.dtype == radar.dtype
    assert back.tobytes() == radar.tobytes()
    assert [back.dtype[name].str for name in back.dtype.names] == \
        [radar.dtype[name].str for name in radar.dtype.names]


def test_rclpy_cloud_reads_back_through_rosbags_cdr(keyframes):
    """A cloud built from rclpy classes is valid CDR for the bag tools."""
    serialization = pytest.importorskip('rclpy.serialization')
    flavour = Flavour('rclpy')
    radar = keyframes[1].read_radar('RADAR_FRONT_LEFT')
    msg = conv.make_pointcloud2(flavour.PointCloud2, flavour.PointField, flavour.header(), radar)
    decoded = TYPESTORE.deserialize_cdr(serialization.serialize_message(msg),
                                        'sensor_msgs/msg/PointCloud2')
    assert conv.pointcloud2_to_array(decoded).tobytes() == radar.tobytes()


def test_nuscenes_lidar_as_pointcloud(keyframes, flavour):
    """LiDAR (N, 5) float32 goes through as x, y, z, intensity, ring."""
    lidar = keyframes[0].read_lidar()
    cloud = np.ascontiguousarray(lidar).view(
        [(name, '<f4') for name in ('x', 'y', 'z', 'intensity', 'ring')]).reshape(-1)
    msg = conv.make_pointcloud2(flavour.PointCloud2, flavour.PointField, flavour.header(), cloud)
    back = conv.pointcloud2_to_array(msg)
    np.testing.assert_array_equal(back.view('<f4').reshape(-1, 5), lidar)
    assert msg.is_dense


def test_organised_cloud_with_row_padding_is_flattened():
    """An H x W cloud whose rows carry padding reads as H*W points in row-major order."""
    cloud = all_types_cloud(12).reshape(3, 4)
    values = conv.array_to_pointcloud2_fields(cloud)
    assert (values['height'], values['width'], values['row_step']) == (3, 4, 208)
    rows = values['data'].reshape(3, 208)
    padded = np.concatenate([rows, np.full((3, 9), 7, np.uint8)], axis=1)
    fields = [Raw(name=n, offset=o, datatype=d, count=c) for n, o, d, c in values['fields']]
    msg = Raw(height=3, width=4, fields=fields, is_bigendian=False, point_step=52,
              row_step=217, data=padded.tobytes())
    back = conv.pointcloud2_to_array(msg)
    assert back.shape == (12,)
    np.testing.assert_array_equal(back['h'], cloud['h'].reshape(-1))
    np.testing.assert_array_equal(back['rgb3'], cloud['rgb3'].reshape(-1, 3))


def test_big_endian_cloud_is_read_in_native_order(flavour):
    cloud = all_types_cloud()
    big = cloud.astype(cloud.dtype.newbyteorder('>'))
    msg = conv.make_pointcloud2(flavour.PointCloud2, flavour.PointField, flavour.header(), big)
    assert msg.is_bigendian
    back = conv.pointcloud2_to_array(msg)
    assert all(back.dtype[name].base.isnative for name in back.dtype.names)
    for name in cloud.dtype.names:
        np.testing.assert_array_equal(back[name], cloud[name])


def test_is_dense_reflects_non_finite_points(flavour):
    xyz = conv.xyz_cloud_array(np.array([[1.0, 2.0, 3.0], [np.nan, 0.0, 0.0]]))
    msg = conv.make_pointcloud2(flavour.PointCloud2, flavour.PointField, flavour.header(), xyz)
    assert msg.is_dense is False
    assert conv.array_to_pointcloud2_fields(xyz[:1])['is_dense'] is True


def cloud_msg(fields, point_step=8, row_step=8, width=1, height=1, data=bytes(8)) -> Raw:
    return Raw(height=height, width=width, is_bigendian=False, point_step=point_step,
               row_step=row_step, data=data,
               fields=[Raw(name=n, offset=o, datatype=d, count=c) for n, o, d, c in fields])


@pytest.mark.parametrize('msg,match', [
    (cloud_msg([('x', 0, 9, 1)]), 'unknown datatype 9'),
    (cloud_msg([('x', 6, 7, 1)]), 'does not fit in point_step 8'),
    (cloud_msg([('x', 0, 7, 1), ('x', 4, 7, 1)]), 'unique'),
    (cloud_msg([('x', 0, 7, 0)]), 'count 0'),
    (cloud_msg([('x', 0, 7, 1)], width=2, row_step=16), 'data has 8 bytes'),
    (cloud_msg([('x', 0, 7, 1)], width=2, row_step=8, data=bytes(16)), 'row_step 8 <'),
])
def test_bad_clouds_raise_conversion_error(msg, match):
    with pytest.raises(ConversionError, match=match):
        conv.pointcloud2_to_array(msg)


def test_unsupported_array_fields_are_named():
    with pytest.raises(ConversionError, match="'flag' has type bool"):
        conv.array_to_pointcloud2_fields(np.zeros(2, [('x', 'f4'), ('flag', '?')]))
    with pytest.raises(ConversionError, match='structured array'):
        conv.array_to_pointcloud2_fields(np.zeros((2, 3), np.float32))


FIELD_CODES = ['i1', 'u1', '<i2', '<u2', '<i4', '<u4', '<f4', '<f8']


@st.composite
def structured_dtypes(draw):
    count = draw(st.integers(1, 5))
    names, formats, offsets, offset = [], [], [], 0
    for index in range(count):
        offset += draw(st.integers(0, 3))  # padding before the field
        base = np.dtype(draw(st.sampled_from(FIELD_CODES)))
        elements = draw(st.integers(1, 3))
        fmt = base if elements == 1 else np.dtype((base, (elements,)))
        names.append(f'f{index}')
        formats.append(fmt)
        offsets.append(offset)
        offset += fmt.itemsize
    itemsize = offset + draw(st.integers(0, 5))
    return np.dtype({'names': names, 'formats': formats, 'offsets': offsets,
                     'itemsize': itemsize})


@settings(max_examples=60, deadline=None)
@given(dtype=structured_dtypes(), n=st.integers(0, 9), big=st.booleans(),
       seed=st.integers(0, 2**16))
def test_pointcloud_round_trip_random_layouts(dtype, n, big, seed):
    """Any layout (types, counts, padding, byte order) round-trips through the message fields."""
    raw = np.random.default_rng(seed).integers(0, 256, n * dtype.itemsize, dtype=np.uint8)
    cloud = raw.view(dtype.newbyteorder('>') if big else dtype)
    values = conv.array_to_pointcloud2_fields(cloud)
    msg = Raw(fields=[Raw(name=a, offset=b, datatype=c, count=d) for a, b, c, d in
                      values['fields']],
              **{key: value for key, value in values.items() if key != 'fields'})
    back = conv.pointcloud2_to_array(msg)
    assert back.shape == (n,) and back.dtype.itemsize == dtype.itemsize
    for name in dtype.names:
        np.testing.assert_array_equal(back[name], cloud[name])


# ----------------------------------------------------------------------------- radar fields


def test_radar_from_nuscenes_cloud(keyframes):
    """The default mapping (DEFAULT_RADAR_FIELDS: rcs, raw vx, vy) reads x, y, z and those
    fields of the real ARS408 cloud; the compensated velocities are one map away."""
    radar = keyframes[0].read_radar('RADAR_FRONT')
    points, features = conv.radar_from_cloud(radar)
    assert points.dtype == features.dtype == np.float32
    np.testing.assert_array_equal(points, np.stack([radar['x'], radar['y'], radar['z']], 1))
    np.testing.assert_array_equal(features[:, 0], radar['rcs'])
    np.testing.assert_array_equal(features[:, 2], radar['vy'])
    _, compensated = conv.radar_from_cloud(radar, conv.RadarFieldMap(('rcs', 'vx_comp',
                                                                      'vy_comp')))
    np.testing.assert_array_equal(compensated[:, 2], radar['vy_comp'])


def test_radar_drops_non_finite_xyz_and_non_finite_features():
    """A NaN RCS or velocity is no measurement: the point goes, as one with a NaN x does."""
    cloud = np.zeros(4, [('x', 'f4'), ('y', 'f4'), ('z', 'f4'), ('rcs', 'i1'),
                         ('vx_comp', 'f4'), ('vy_comp', 'f8')])
    cloud['x'] = [1, np.nan, 3, np.inf]
    cloud['rcs'] = [-5, 6, 7, 8]
    cloud['vx_comp'] = [np.nan, 1, 2, 3]
    points, features = conv.radar_from_cloud(cloud, conv.RadarFieldMap(('rcs', 'vx_comp',
                                                                        'vy_comp')))
    np.testing.assert_array_equal(points[:, 0], [3])
    np.testing.assert_array_equal(features, [[7, 2, 0]])
    assert conv.radar_point_drops(cloud, conv.RadarFieldMap(('rcs', 'vx_comp', 'vy_comp'))) == {
        conv.RadarPointDrop.NONFINITE: 2, conv.RadarPointDrop.BAD_FEATURE: 1}


def test_other_radar_field_names_and_missing_field_warns_once(caplog):
    """A radar naming its fields differently maps them; an absent field reads 0, warned once."""
    cloud = np.zeros(3, [('px', 'f4'), ('py', 'f4'), ('pz', 'f4'), ('intensity', 'u2'),
                         ('doppler', 'f4')])
    cloud['intensity'] = [10, 20, 30]
    cloud['doppler'] = [0.5, -0.5, 1.5]
    field_map = conv.RadarFieldMap(('intensity', 'doppler', 'never_there_7f3'),
                                   x='px', y='py', z='pz')
    with caplog.at_level(logging.WARNING, logger='xdrcdepth_ros.core.conversions'):
        for _ in range(3):
            points, features = conv.radar_from_cloud(cloud, field_map)
    np.testing.assert_array_equal(features, [[10, 0.5, 0], [20, -0.5, 0], [30, 1.5, 0]])
    assert conv.missing_radar_fields(cloud.dtype, field_map) == ('never_there_7f3',)
    warnings = [r for r in caplog.records if 'never_there_7f3' in r.getMessage()]
    assert len(warnings) == 1


def test_radar_without_xyz_and_bad_field_map():
    with pytest.raises(ConversionError, match="no 'z' field"):
        conv.radar_from_cloud(np.zeros(2, [('x', 'f4'), ('y', 'f4')]))
    with pytest.raises(ConversionError, match='distinct'):
        conv.RadarFieldMap(('x', 'vx'))
    with pytest.raises(ConversionError, match='scalar'):
        conv.radar_from_cloud(np.zeros(2, [('x', 'f4'), ('y', 'f4'), ('z', 'f4'),
                                           ('rcs', 'f4', (2,))]))


# ----------------------------------------------------------------------------- depth outputs


def test_depth_16uc1_millimetres_and_invalid():
    """REP 118 16UC1: mm rounded; NaN, +-inf, <= 0 and beyond 65.535 m are 0 (invalid): a
    clamped 65535 would be read as a valid 65.5 m."""
    depth = np.array([[1.2344, 1.2346, np.nan, -1.0, 65.535],
                      [0.0002, 70.0, np.inf, -np.inf, 65.5356]], np.float32)
    np.testing.assert_array_equal(conv.depth_to_image_array(depth, '16UC1'),
                                  [[1234, 1235, 0, 0, 65535], [0, 0, 0, 0, 0]])


def decode_compressed_depth(fmt: str, data: bytes) -> tuple[str, np.ndarray]:
    """The compressed_depth_image_transport decoder's steps, written out for the test: the
    encoding before ';', a 12-byte ConfigHeader (int32 format, float32 a, b), a PNG read
    unchanged; 32-bit encodings map stored inverse depth v != 0 to a / (v - b), 0 to NaN."""
    encoding, _, transport = fmt.partition(';')
    assert transport.strip() == 'compressedDepth png'
    _, a, b = struct.unpack('<iff', data[:12])
    plane = cv2.imdecode(np.frombuffer(data[12:], np.uint8), cv2.IMREAD_UNCHANGED)
    assert plane.dtype == np.uint16
    if encoding != '32FC1':
        return encoding, plane
    with np.errstate(divide='ignore'):
        depth = np.where(plane != 0, np.float32(a) / (plane.astype(np.float32) - np.float32(b)),
                         np.float32(np.nan))
    return encoding, depth.astype(np.float32)


def test_compressed_depth_16uc1_is_lossless_for_the_standard_decoder():
    depth = np.array([[1.2344, 70.0, np.nan], [3.5, 0.5, 64.0]], np.float32)
    pixels = conv.depth_to_image_array(depth, '16UC1')
    fmt, data = conv.compressed_depth_payload(pixels, '16UC1', 80.0)
    assert fmt == '16UC1; compressedDepth png'
    assert struct.unpack('<iff', data[:12]) == (0, 0.0, 0.0)
    encoding, decoded = decode_compressed_depth(fmt, data)
    assert encoding == '16UC1'
    np.testing.assert_array_equal(decoded, pixels)


def test_compressed_depth_32fc1_inverse_depth_within_one_quantisation_step():
    """32FC1 goes as quantised inverse depth: decoded within one step z**2 / a (plus the
    truncation), NaN, <= 0 and >= depth_max come back as NaN."""
    rng = np.random.default_rng(3)
    depth = rng.uniform(0.5, 79.9, (24, 40)).astype(np.float32)
    depth[0, :4] = [np.nan, -1.0, 80.0, 95.0]
    fmt, data = conv.compressed_depth_payload(depth, '32FC1', 80.0)
    assert fmt == '32FC1; compressedDepth png'
    fmt_id, a, b = struct.unpack('<iff', data[:12])
    assert fmt_id == 0 and a == pytest.approx(100.0 * 101.0)
    encoding, decoded = decode_compressed_depth(fmt, data)
    assert encoding == '32FC1' and decoded.shape == depth.shape
    assert np.isnan(decoded[0, :4]).all()
    valid = np.isfinite(depth) & (depth > 0) & (depth < 80.0)
    assert np.isfinite(decoded[valid]).all()
    step = depth[valid] ** 2 / a * 1.01 + 1e-4
    assert np.all(np.abs(decoded[valid] - depth[valid]) <= step)
    assert np.all(decoded[valid] >= depth[valid] - 1e-4)  # truncation rounds depth up only


def test_compressed_depth_rejects_what_the_transport_cannot_carry():
    with pytest.raises(ConversionError, match='32FC1 or 16UC1'):
        conv.compressed_depth_payload(np.zeros((2, 2), np.uint8), 'mono8', 80.0)
    with pytest.raises(ConversionError, match='16UC1 depth must be'):
        conv.compressed_depth_payload(np.zeros((2, 2), np.float32), '16UC1', 80.0)
    with pytest.raises(ConversionError, match='depth_max_m'):
        conv.compressed_depth_payload(np.zeros((2, 2), np.float32), '32FC1', 0.0)


def test_depth_32fc1_keeps_nan(flavour):
    depth = np.array([[1.5, np.nan], [np.inf, 80.25]], np.float64)
    out = conv.depth_to_image_array(depth, '32FC1')
    assert out.dtype == np.float32 and out.flags.c_contiguous
    msg = conv.make_image(flavour.Image, flavour.header(), out, '32FC1')
    np.testing.assert_array_equal(conv.image_to_array(msg), depth.astype(np.float32))
    with pytest.raises(ConversionError, match='32FC1 or 16UC1'):
        conv.depth_to_image_array(depth, 'mono8')


def test_depth_to_points_back_projects_pixels():
    """Each valid pixel (u, v, z) becomes ((u - cx) z / fx, (v - cy) z / fy, z)."""
    K = np.array([[100.0, 0, 2.0], [0, 50.0, 1.0], [0, 0, 1]])
    depth = np.full((3, 5), np.nan, np.float32)
    depth[0, 0], depth[2, 4], depth[1, 2], depth[2, 2] = 10.0, 4.0, -1.0, 2.0
    points = conv.depth_to_points(depth, K)
    np.testing.assert_allclose(points, [[-0.2, -0.2, 10.0], [0.0, 0.04, 2.0],
                                        [0.08, 0.08, 4.0]], rtol=1e-6)
    strided = conv.depth_to_points(depth, K, stride=2)
    np.testing.assert_allclose(strided, points, rtol=1e-6)  # all valid pixels are on the grid
    assert conv.depth_to_points(depth, K, stride=3).shape == (1, 3)
    with pytest.raises(ConversionError, match='stride'):
        conv.depth_to_points(depth, K, stride=0)


def test_organized_points_keep_the_pixel_grid_with_nan_for_invalid(flavour):
    """An organised cloud is height x width of the sampled pixels; invalid pixels are NaN points
    (the PointCloud2 is then not dense), valid ones equal the unorganised cloud's."""
    K = np.array([[100.0, 0, 2.0], [0, 50.0, 1.0], [0, 0, 1]])
    depth = np.full((3, 5), np.nan, np.float32)
    depth[0, 0], depth[2, 4], depth[1, 2], depth[2, 2] = 10.0, 4.0, -1.0, 2.0
    grid = conv.depth_to_points(depth, K, stride=2, organized=True)
    assert grid.shape == (2, 3, 3)
    valid = np.isfinite(grid[..., 2])
    assert valid.sum() == 3
    np.testing.assert_allclose(grid[valid], conv.depth_to_points(depth, K, stride=2), rtol=1e-6)
    assert np.isnan(grid[~valid]).all()
    msg = conv.make_pointcloud2(flavour.PointCloud2, flavour.PointField, flavour.header(),
                                conv.xyz_cloud_array(grid))
    assert (msg.height, msg.width, msg.is_dense) == (2, 3, False)
    back = conv.pointcloud2_to_array(msg)
    np.testing.assert_array_equal(back['z'].reshape(2, 3), grid[..., 2])


def test_stamp_helpers_round_trip():
    for stamp in (0, 1, 1_535_639_721_662_404_000, -1):
        sec, nanosec = conv.ns_to_stamp(stamp)
        assert 0 <= nanosec < 1_000_000_000
        assert conv.stamp_to_ns(Raw(sec=sec, nanosec=nanosec)) == stamp
