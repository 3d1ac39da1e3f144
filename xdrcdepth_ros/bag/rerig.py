"""Re-record a converter bag as if by another camera and radar (the "other rig" check).

:func:`rerig_bag` reads a ``nuscenes-to-bag`` bag and writes a new one in which

* the camera is another camera: a centred crop to another aspect ratio (default 4:3) scaled to
  another size (default 960x720), re-encoded as JPEG (CompressedImage, the converter's
  transport); CameraInfo ``k`` and ``p`` follow the crop and scale exactly
  (:class:`~xdrcdepth_ros.core.geometry.InputTransform`, pixel centres at integer coordinates:
  ``u' = s (u + 0.5) - 0.5 - s x0``), ``d`` and ``r`` are kept (distortion acts on normalised
  coordinates, which a crop and scale do not change);
* the radar is one radar (default ``/RADAR_FRONT``) whose PointCloud2 carries ``x, y, z`` and
  the chosen fields under new names (e.g. ``rcs, vx, vy`` as ``RCS, v_x, v_y``), nothing else;
  the other radars are dropped;
* LiDAR, ``/tf`` and ``/tf_static`` are copied byte for byte (the ground truth and the mounts:
  the optical frame does not move under a crop and scale);
* ``params/<scene>.<camera>.yaml`` name the one radar, its ``radar_extrinsics`` block and
  ``radar_fields`` (the new names, so the node reads the renamed fields).

Same scenes and frames as the source, re-recorded; not a truly different vehicle. The bag is
written atomically (:class:`~xdrcdepth_ros.bag.io.BagWriter`): all of it, or nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml

from xdrcdepth_ros.bag.convert import SCENES_KEY
from xdrcdepth_ros.bag.io import BagReader, BagWriter, read_metadata, Storage
from xdrcdepth_ros.core import conversions
from xdrcdepth_ros.core.config import load_params_file
from xdrcdepth_ros.core.errors import BagError
from xdrcdepth_ros.core.geometry import InputTransform

FIELD_RENAMES: dict[str, str] = {'rcs': 'RCS', 'vx': 'v_x', 'vy': 'v_y',
                                 'vx_comp': 'v_x_comp', 'vy_comp': 'v_y_comp'}
"""Default new name of each radar field a model may be trained with."""


def renamed_fields(fields: tuple[str, ...] | list[str]) -> dict[str, str]:
    """Source field → new field name for ``fields`` (e.g. a model's metadata radar_fields),
    in order: :data:`FIELD_RENAMES`, else the upper-cased name.

    Raises:
        ValueError: a name would not change (the node could then find it by its old name).
    """
    mapping = {name: FIELD_RENAMES.get(name, name.upper()) for name in fields}
    same = [name for name, new in mapping.items() if new == name]
    if same:
        raise ValueError(f'radar fields {same} have no distinct new name; pass field_map')
    return mapping


@dataclass(frozen=True)
class RigSpec:
    """The other rig.

    Attributes:
        width, height: output image size, pixels.
        crop_aspect: (w, h) aspect ratio of the centred crop taken from the source image before
            scaling; ``width / height`` must have the same ratio.
        camera: camera channel of the source bag (topics ``/<camera>/...``).
        radar_topic: the one radar kept.
        field_map: source PointCloud2 field → new name, in the order the node is to read them.
        jpeg_quality: JPEG quality of the re-encoded images.
    """

    width: int = 960
    height: int = 720
    crop_aspect: tuple[int, int] = (4, 3)
    camera: str = 'CAM_FRONT'
    radar_topic: str = '/RADAR_FRONT'
    field_map: Mapping[str, str] = field(default_factory=lambda: {'rcs': 'RCS', 'vx': 'v_x',
                                                                  'vy': 'v_y'})
    jpeg_quality: int = 90

    @property
    def radar_fields(self) -> tuple[str, ...]:
        """The new field names, in order: the node's ``radar_fields`` parameter."""
        return tuple(self.field_map.values())


def crop_transform(source_width: int, source_height: int, spec: RigSpec) -> InputTransform:
    """The centred ``crop_aspect`` crop of a source image, scaled to ``spec``'s size.

    Raises:
        ValueError: a non-positive size or aspect, the output aspect differs from the crop's, or
            the crop offset does not land on whole output pixels.
    """
    aw, ah = spec.crop_aspect
    if min(aw, ah, spec.width, spec.height, source_width, source_height) <= 0:
        raise ValueError(f'sizes and aspect must be positive: source {source_width}x'
                         f'{source_height}, output {spec.width}x{spec.height}, aspect {aw}:{ah}')
    if spec.width * ah != spec.height * aw:
        raise ValueError(f'output {spec.width}x{spec.height} is not {aw}:{ah}')
    crop_w = min(source_width, source_height * aw // ah)
    crop_h = crop_w * ah // aw
    if crop_w * ah != crop_h * aw:
        raise ValueError(f'a {aw}:{ah} crop of {source_width}x{source_height} is not whole '
                         'pixels')
    scale = spec.width / crop_w
    x0, y0 = (source_width - crop_w) / 2, (source_height - crop_h) / 2
    crop_x, crop_y = scale * x0, scale * y0
    if abs(crop_x - round(crop_x)) > 1e-9 or abs(crop_y - round(crop_y)) > 1e-9:
        raise ValueError(f'crop offset ({x0}, {y0}) scaled by {scale} is not whole output '
                         'pixels; choose another output size')
    return InputTransform(scale, int(round(crop_x)), int(round(crop_y)), spec.width,
                          spec.height, int(source_width), int(source_height))


def rerig_camera_model(model: conversions.CameraModel,
                       transform: InputTransform) -> conversions.CameraModel:
    """The CameraInfo model of the cropped and scaled image: ``K' = M K``, ``P' = M P``."""
    M = np.array([[transform.scale, 0.0, 0.5 * transform.scale - 0.5 - transform.crop_x],
                  [0.0, transform.scale, 0.5 * transform.scale - 0.5 - transform.crop_y],
                  [0.0, 0.0, 1.0]])
    return conversions.CameraModel(K=M @ model.K, P=M @ model.P, D=model.D,
                                   width=transform.width, height=transform.height,
                                   distortion_model=model.distortion_model, R=model.R)


def rename_radar_fields(cloud: np.ndarray, field_map: Mapping[str, str]) -> np.ndarray:
    """A structured array of ``x, y, z`` and the mapped fields under their new names.

    Raises:
        BagError: the cloud lacks ``x, y, z`` or a mapped field (names the fields it has).
    """
    names = cloud.dtype.names or ()
    missing = [name for name in ('x', 'y', 'z', *field_map) if name not in names]
    if missing:
        raise BagError(f'radar cloud has no fields {missing} (it has {list(names)})')
    dtype = np.dtype([(n, cloud.dtype[n]) for n in ('x', 'y', 'z')]
                     + [(new, cloud.dtype[old]) for old, new in field_map.items()])
    out = np.empty(cloud.shape, dtype)
    for name in ('x', 'y', 'z'):
        out[name] = cloud[name]
    for old, new in field_map.items():
        out[new] = cloud[old]
    return out


@dataclass(frozen=True)
class RerigSummary:
    """What :func:`rerig_bag` wrote: the bag, the camera transform, counts, parameter files."""

    path: Path
    transform: InputTransform
    radar_fields: tuple[str, ...]
    counts: dict[str, int]
    dropped: dict[str, int]
    params_files: tuple[Path, ...]


def rerig_bag(source: str | Path, out: str | Path, spec: RigSpec = RigSpec(), *,
              overwrite: bool = False, storage: Storage | str = Storage.SQLITE3,
              lidar_topic: str = '/LIDAR_TOP', progress: bool = True) -> RerigSummary:
    """Write ``out``: ``source`` re-recorded by the camera and radar of ``spec``.

    Args:
        source: a ``nuscenes-to-bag`` bag (params/ per scene, scenes in custom_data).
        out: bag folder to create (atomically; replaced only when ``overwrite``).
        spec: the other rig.
        overwrite: replace an existing ``out`` once the new bag is complete.
        storage: storage plugin of ``out``.
        lidar_topic: LiDAR topic copied unchanged.
        progress: tqdm progress bar.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        BagError: ``source`` lacks the camera, its CameraInfo, the radar, its fields, or its
            parameter files; an image does not match its CameraInfo size; ``out`` exists.
        ValueError: ``spec`` is inconsistent (see :func:`crop_transform`).
    """
    from tqdm import tqdm

    source, out = Path(source), Path(out)
    if not spec.field_map:
        raise ValueError('spec.field_map is empty: name at least one radar field')
    if not 1 <= int(spec.jpeg_quality) <= 100:
        raise ValueError(f'jpeg_quality must be in 1..100, got {spec.jpeg_quality}')
    image_topic = f'/{spec.camera}/image_raw/compressed'
    info_topic = f'/{spec.camera}/camera_info'
    params_in = sorted((source / 'params').glob(f'*.{spec.camera}.yaml'))
    with BagReader(source) as reader:
        reader.require_topic(image_topic, f'{spec.camera} image')
        reader.require_topic(info_topic, f'{spec.camera} camera_info')
        reader.require_topic(spec.radar_topic, 'radar')
        if not params_in:
            raise BagError(f'{source}/params has no *.{spec.camera}.yaml parameter files '
                           '(is it a nuscenes-to-bag bag?)')
        keep = {image_topic, info_topic, spec.radar_topic, lidar_topic, '/tf', '/tf_static'}
        dropped = {t: reader.topic_count(t) for t in reader.topics if t not in keep}
        total = sum(reader.topic_count(t) for t in keep)
        scenes = (read_metadata(source).get('custom_data') or {}).get(SCENES_KEY)
        transforms: dict[tuple[int, int], InputTransform] = {}
        sizes: dict[int, tuple[int, int]] = {}  # stamp → source CameraInfo size
        params_files = []
        with BagWriter(out, storage=storage, overwrite=overwrite) as writer:
            types = writer.store.types
            bar = tqdm(total=total, desc='re-rig', unit='msg', disable=not progress)
            with bar:
                for message in reader.messages(sorted(keep)):
                    bar.update(1)
                    if message.topic == info_topic:
                        msg = reader.deserialize(message)
                        model = conversions.camera_info_to_model(msg)
                        size = (model.width, model.height)
                        if size not in transforms:
                            transforms[size] = crop_transform(*size, spec)
                        sizes[message.stamp_ns] = size
                        writer.write(info_topic, message.stamp_ns, conversions.make_camera_info(
                            types['sensor_msgs/msg/CameraInfo'], msg.header,
                            rerig_camera_model(model, transforms[size]),
                            roi_cls=types['sensor_msgs/msg/RegionOfInterest']))
                    elif message.topic == image_topic:
                        msg = reader.deserialize(message)
                        if message.stamp_ns not in sizes:
                            raise BagError(f'{image_topic} at {message.stamp_ns} ns has no '
                                           f'{info_topic} before it at that stamp')
                        rgb = conversions.compressed_to_rgb(msg)
                        transform = transforms[sizes[message.stamp_ns]]
                        if rgb.shape[:2] != (transform.source_height, transform.source_width):
                            raise BagError(
                                f'{image_topic} at {message.stamp_ns} ns is {rgb.shape[1]}x'
                                f'{rgb.shape[0]} but its CameraInfo says '
                                f'{transform.source_width}x{transform.source_height}')
                        jpeg = conversions.encode_jpeg(transform.apply_to_image(rgb),
                                                       spec.jpeg_quality)
                        writer.write(image_topic, message.stamp_ns,
                                     conversions.make_compressed_image(
                                         types['sensor_msgs/msg/CompressedImage'], msg.header,
                                         jpeg))
                    elif message.topic == spec.radar_topic:
                        msg = reader.deserialize(message)
                        try:
                            cloud = rename_radar_fields(conversions.pointcloud2_to_array(msg),
                                                        spec.field_map)
                        except BagError as err:
                            raise BagError(f'{spec.radar_topic} at {message.stamp_ns} ns: '
                                           f'{err}') from err
                        writer.write(spec.radar_topic, message.stamp_ns,
                                     conversions.make_pointcloud2(
                                         types['sensor_msgs/msg/PointCloud2'],
                                         types['sensor_msgs/msg/PointField'], msg.header,
                                         cloud))
                    else:
                        writer.write_raw(message.topic, message.msgtype, message.stamp_ns,
                                         message.raw, qos=message.qos)
            for path in params_in:
                name = f'params/{path.name}'
                writer.add_file(name, rerig_params_yaml(path, spec))
                params_files.append(out / name)
            if scenes:
                writer.set_custom_data(SCENES_KEY, scenes)
            counts = dict(writer.counts)
    return RerigSummary(out, next(iter(transforms.values())), spec.radar_fields, counts, dropped,
                        tuple(params_files))


def rerig_params_yaml(path: Path, spec: RigSpec) -> str:
    """A converter parameter file rewritten for the one radar and its renamed fields.

    Raises:
        BagError: the file does not list ``spec.radar_topic`` or its extrinsics block.
    """
    try:
        values: dict[str, Any] = load_params_file(path)
    except ValueError as err:
        raise BagError(str(err)) from err
    topics = list(values.get('radar_topics') or [])
    if spec.radar_topic not in topics:
        raise BagError(f'{path} radar_topics {topics} do not include {spec.radar_topic}')
    index = topics.index(spec.radar_topic)
    extrinsics = list(values.get('radar_extrinsics') or [])
    values['radar_topics'] = [spec.radar_topic]
    if values.get('extrinsics_source') == 'parameters':
        if len(extrinsics) != 7 * len(topics):
            raise BagError(f'{path} has {len(extrinsics)} radar_extrinsics values for '
                           f'{len(topics)} radars (7 each)')
        values['radar_extrinsics'] = extrinsics[7 * index:7 * index + 7]
    values['radar_fields'] = list(spec.radar_fields)
    note = (f'# {path.name} re-rigged (xdrcdepth_ros.bag.rerig): camera cropped '
            f'{spec.crop_aspect[0]}:{spec.crop_aspect[1]} and scaled to {spec.width}x'
            f'{spec.height},\n# one radar {spec.radar_topic} with fields '
            f'{", ".join(f"{a} as {b}" for a, b in spec.field_map.items())}.\n')
    return note + yaml.safe_dump({'/**': {'ros__parameters': values}}, sort_keys=False)
