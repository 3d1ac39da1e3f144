"""Time the node's per-frame message conversions at 900x1600, for rclpy and rosbags classes.

Usage: .venv/bin/python bench/bench_conversions.py [--repeats 100]
Prints medians in ms. Target (issue 6): decoding a raw rgb8/bgr8 Image and building a 32FC1
depth Image each take about 1 ms or less, so node overhead stays under 5 ms per frame.
JPEG decoding (CompressedImage) is shown for reference; it is dominated by libjpeg.
"""
from __future__ import annotations

import argparse
from typing import Any

import cv2
import numpy as np

from timing import median_ms  # bench/ is on sys.path when a script runs
from xdrcdepth_ros.core import conversions as conv

WIDTH, HEIGHT = 1600, 900
K = np.array([[1266.4, 0.0, 816.3], [0.0, 1266.4, 491.5], [0.0, 0.0, 1.0]])


def flavours() -> list[tuple[str, dict[str, Any], Any]]:
    """(name, message classes, header) for each message library that imports here."""
    found = []
    try:
        from builtin_interfaces.msg import Time
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
        from std_msgs.msg import Header
        found.append(('rclpy', dict(Image=Image, CompressedImage=CompressedImage,
                                    CameraInfo=CameraInfo, PointCloud2=PointCloud2,
                                    PointField=PointField, RegionOfInterest=None),
                      Header(stamp=Time(sec=1, nanosec=2), frame_id='cam')))
    except ImportError:
        print('rclpy message packages not importable: skipping rclpy')
    from rosbags.typesys import get_typestore, Stores
    types = get_typestore(Stores.ROS2_JAZZY).types
    header = types['std_msgs/msg/Header'](
        stamp=types['builtin_interfaces/msg/Time'](sec=1, nanosec=2), frame_id='cam')
    found.append(('rosbags', {name: types[f'sensor_msgs/msg/{name}'] for name in (
        'Image', 'CompressedImage', 'CameraInfo', 'PointCloud2', 'PointField',
        'RegionOfInterest')}, header))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--repeats', type=int, default=100)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    depth = rng.uniform(1.0, 80.0, (HEIGHT, WIDTH)).astype(np.float32)
    depth[::7, ::5] = np.nan
    ok, jpeg = cv2.imencode('.jpg', rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    model = conv.CameraModel.from_K(K, WIDTH, HEIGHT)
    rows = []
    for name, classes, header in flavours():
        image_cls = classes['Image']
        rgb_msg = conv.make_image(image_cls, header, rgb, 'rgb8')
        bgr_msg = conv.make_image(image_cls, header, rgb, 'bgr8')
        jpeg_msg = conv.make_compressed_image(classes['CompressedImage'], header, jpeg, 'jpeg')
        info_msg = conv.make_camera_info(classes['CameraInfo'], header, model,
                                         classes['RegionOfInterest'])
        millimetres = conv.depth_to_image_array(depth, '16UC1')
        points = conv.depth_to_points(depth, K, stride=4)
        timings = {
            'decode rgb8 Image -> RGB': lambda: conv.image_to_rgb(rgb_msg),
            'decode bgr8 Image -> RGB': lambda: conv.image_to_rgb(bgr_msg),
            'decode CameraInfo': lambda: conv.camera_info_to_model(info_msg),
            'build 32FC1 depth Image': lambda: conv.make_image(
                image_cls, header, conv.depth_to_image_array(depth, '32FC1'), '32FC1'),
            '  of which depth_to_image_array(32FC1)': lambda: conv.depth_to_image_array(
                depth, '32FC1'),
            'build 16UC1 depth Image (incl. mm conversion)': lambda: conv.make_image(
                image_cls, header, conv.depth_to_image_array(depth, '16UC1'), '16UC1'),
            '  of which make_image(16UC1)': lambda: conv.make_image(
                image_cls, header, millimetres, '16UC1'),
            'build bgr8 colour Image': lambda: conv.make_image(image_cls, header, rgb, 'bgr8'),
            'build CameraInfo': lambda: conv.make_camera_info(
                classes['CameraInfo'], header, model, classes['RegionOfInterest']),
            'depth_to_points stride 4 + build PointCloud2': lambda: conv.make_pointcloud2(
                classes['PointCloud2'], classes['PointField'], header,
                conv.xyz_cloud_array(conv.depth_to_points(depth, K, stride=4))),
            f'  of which build PointCloud2 ({len(points)} pts)': lambda: conv.make_pointcloud2(
                classes['PointCloud2'], classes['PointField'], header,
                conv.xyz_cloud_array(points)),
            'decode JPEG CompressedImage -> RGB (reference)':
                lambda: conv.compressed_to_rgb(jpeg_msg),
        }
        for label, function in timings.items():
            repeats = max(10, args.repeats // 5) if 'JPEG' in label else args.repeats
            rows.append((name, label, median_ms(function, repeats)))
    print(f'{"classes":8s} {"operation at 900x1600":48s} median ms')
    for name, label, ms in rows:
        print(f'{name:8s} {label:48s} {ms:9.3f}')


if __name__ == '__main__':
    main()
