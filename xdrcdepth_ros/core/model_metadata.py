"""Metadata of an exported XD-RCDepth model (pure Python + numpy; no onnxruntime, no torch).

Stored twice by ``xdrcdepth export``: as JSON under :data:`METADATA_KEY` in the ONNX
``metadata_props`` and in the sidecar ``NAME.json`` (:func:`sidecar_path`). ``engine.Engine``
checks both against each other and against the graph.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
import enum
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from xdrcdepth_ros.core.errors import MetadataError
from xdrcdepth_ros.core.geometry import check_model_size, RadarChannel

FORMAT_VERSION = 1
METADATA_KEY = 'xdrcdepth'
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RADAR_UNITS = {RadarChannel.DEPTH: 'm', RadarChannel.RCS: 'dBsm', RadarChannel.VX: 'm/s',
               RadarChannel.VY: 'm/s'}
_OUTPUTS = ('depth', 'saliency')
#: PointCloud2 fields that feed the rcs, vx, vy channels by default: the raw RCS and velocities,
#: as the paper and the datasets here train (``vx_comp, vy_comp``, ego-motion compensated, are
#: an option). The one source of this default: datasets, export and ``RadarFieldMap`` use it.
DEFAULT_RADAR_FIELDS = ('rcs', 'vx', 'vy')
IMAGE_TENSOR_TYPES = {'uint8': 'tensor(uint8)', 'float32': 'tensor(float)'}
#: Which rows a taller-than-the-model camera image keeps (see ``geometry.InputTransform.fit``).
VERTICAL_CROPS = ('bottom', 'center', 'top')


class ExportTarget(str, enum.Enum):
    """What an export's graph was rewritten for (``xdrcdepth export --target``)."""

    CPU = 'cpu'
    """onnxruntime's CPU kernels (and OpenVINO): the exact CPU rewrites of ``onnx_passes``."""
    GPU = 'gpu'
    """CUDA / TensorRT: the graph as torch exported it (the CPU rewrites were never measured
    there)."""



# ----------------------------------------------------------------------------- metadata


@dataclass(frozen=True)
class ModelMetadata:
    """Everything a consumer needs to feed and interpret an exported model.

    Attributes:
        model_name: model family/variant, e.g. ``xdrcdepth`` or ``lircdepth``.
        input_height: model input height in pixels (multiple of 32).
        input_width: model input width in pixels (multiple of 32).
        radar_channels: radar map channel names (:class:`RadarChannel` values), depth first.
        radar_units: unit of each radar channel (``m``, ``dBsm``, ``m/s``).
        radar_fields: PointCloud2 field feeding each channel after depth (e.g. rcs, vx, vy).
        radar_sensors: the radars the model was trained with, e.g. ``('RADAR_FRONT',)`` (one
            sweep each); empty = not stated. Informative: the node's ``radar_topics`` select.
        vertical_crop: rows kept when the resized camera image is taller than the model input:
            ``bottom`` drops the top rows (the official nuScenes protocol crops 900 → 896 so),
            ``center`` or ``top``. The pipeline crops as this says.
        max_depth: largest depth the model predicts, metres.
        image_layout: layout of the ``image`` input; always ``NHWC``.
        image_dtype: ``uint8`` (raw pixels) or ``float32`` (0..255, same meaning).
        normalization_mean: ImageNet mean applied inside the graph after /255 (RGB order).
        normalization_std: ImageNet std applied inside the graph after /255 (RGB order).
        outputs: graph outputs, ``('depth',)`` or ``('depth', 'saliency')``.
        precision: ``fp32`` or ``fp16`` (weights; inputs and outputs keep their types).
        training_data: free-text description of the training data.
        git_revision: source revision the export was made from.
        parameter_count: number of model parameters.
        metrics: evaluation metrics recorded with the checkpoint (name -> value).
        checkpoint: checkpoint the weights came from ('' for a random initialisation).
        model_kwargs: keyword arguments the model was built with (JSON-serialisable).
        created: ISO 8601 UTC time of the export.
        export_target: :class:`ExportTarget` value; '' in files written before targets existed
            (those went through the CPU rewrites).
        graph_passes: rewrite pass → nodes it rewrote (``onnx_passes``); empty for ``gpu``.
        format_version: version of this metadata layout.
    """

    model_name: str
    input_height: int
    input_width: int
    radar_channels: tuple[str, ...] = ('depth', 'rcs', 'vx', 'vy')
    radar_units: tuple[str, ...] = ('m', 'dBsm', 'm/s', 'm/s')
    radar_fields: tuple[str, ...] = DEFAULT_RADAR_FIELDS
    radar_sensors: tuple[str, ...] = ()
    vertical_crop: str = 'bottom'
    max_depth: float = 80.0
    image_layout: str = 'NHWC'
    image_dtype: str = 'uint8'
    normalization_mean: tuple[float, ...] = IMAGENET_MEAN
    normalization_std: tuple[float, ...] = IMAGENET_STD
    outputs: tuple[str, ...] = _OUTPUTS
    precision: str = 'fp32'
    training_data: str = ''
    git_revision: str = ''
    parameter_count: int = 0
    metrics: Mapping[str, float] = field(default_factory=dict)
    checkpoint: str = ''
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    created: str = ''
    export_target: str = ''
    graph_passes: Mapping[str, int] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        """Normalise sequences to tuples and validate every field (MetadataError if wrong)."""
        for name in ('radar_channels', 'radar_units', 'radar_fields', 'radar_sensors',
                     'normalization_mean',
                     'normalization_std', 'outputs'):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
                raise MetadataError(f'metadata {name} must be a list, got {value!r}')
            object.__setattr__(self, name, tuple(value))
        object.__setattr__(self, 'metrics', dict(self.metrics))
        object.__setattr__(self, 'model_kwargs', dict(self.model_kwargs))
        object.__setattr__(self, 'graph_passes', dict(self.graph_passes))
        self._validate()

    def _validate(self) -> None:
        if self.format_version != FORMAT_VERSION:
            raise MetadataError(f'metadata format_version {self.format_version} is not supported '
                                f'(this package reads version {FORMAT_VERSION})')
        try:
            check_model_size(self.input_height, self.input_width)
        except ValueError as err:
            raise MetadataError(f'metadata input size: {err}') from err
        valid = [channel.value for channel in RadarChannel]
        unknown = [name for name in self.radar_channels if name not in valid]
        if unknown or not self.radar_channels or self.radar_channels[0] != 'depth':
            raise MetadataError(f'metadata radar_channels must start with depth and use {valid}, '
                                f'got {list(self.radar_channels)}')
        channels = len(self.radar_channels)
        if len(self.radar_units) != channels or len(self.radar_fields) != channels - 1:
            raise MetadataError(f'metadata has {channels} radar_channels but '
                                f'{len(self.radar_units)} radar_units and '
                                f'{len(self.radar_fields)} radar_fields (expected {channels - 1})')
        if not (isinstance(self.max_depth, (int, float)) and self.max_depth > 0):
            raise MetadataError(f'metadata max_depth must be > 0 m, got {self.max_depth!r}')
        if self.vertical_crop not in VERTICAL_CROPS:
            raise MetadataError(f'metadata vertical_crop must be one of {list(VERTICAL_CROPS)}, '
                                f'got {self.vertical_crop!r}')
        if self.image_layout != 'NHWC' or self.image_dtype not in IMAGE_TENSOR_TYPES:
            raise MetadataError(f'metadata image must be NHWC uint8 or float32, got '
                                f'{self.image_layout} {self.image_dtype}')
        if len(self.normalization_mean) != 3 or len(self.normalization_std) != 3:
            raise MetadataError('metadata normalization_mean/std must have 3 values (RGB)')
        if self.outputs not in (('depth',), _OUTPUTS):
            raise MetadataError(f"metadata outputs must be ['depth'] or ['depth', 'saliency'], "
                                f'got {list(self.outputs)}')
        targets = [target.value for target in ExportTarget]
        if self.export_target and self.export_target not in targets:
            raise MetadataError(f'metadata export_target must be one of {targets} (or empty), '
                                f'got {self.export_target!r}')
        if self.precision not in ('fp32', 'fp16'):
            raise MetadataError(f"metadata precision must be 'fp32' or 'fp16', got "
                                f'{self.precision!r}')

    @property
    def has_saliency(self) -> bool:
        """True when the graph also outputs the Grad-CAM saliency map."""
        return 'saliency' in self.outputs

    @property
    def radar_channel_enums(self) -> tuple[RadarChannel, ...]:
        """The radar channels as :class:`RadarChannel` members."""
        return tuple(RadarChannel(name) for name in self.radar_channels)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (lists for tuples)."""
        out = asdict(self)
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in out.items()}

    def to_json(self) -> str:
        """Return the metadata as an indented JSON document."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = 'metadata') -> 'ModelMetadata':
        """Build from a parsed JSON object; unknown keys are ignored (newer writers).

        Raises:
            MetadataError: a required key is missing or a value is invalid.
        """
        if not isinstance(data, Mapping):
            raise MetadataError(f'{source}: expected a JSON object, got {type(data).__name__}')
        known = {item.name for item in fields(cls)}
        missing = [name for name in ('model_name', 'input_height', 'input_width')
                   if name not in data]
        if missing:
            raise MetadataError(f'{source}: missing required keys {missing}')
        try:
            return cls(**{key: value for key, value in data.items() if key in known})
        except MetadataError as err:
            raise MetadataError(f'{source}: {err}') from err
        except TypeError as err:
            raise MetadataError(f'{source}: {err}') from err

    @classmethod
    def from_json(cls, text: str, source: str = 'metadata') -> 'ModelMetadata':
        """Parse a JSON document (MetadataError when it is not valid JSON)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise MetadataError(f'{source}: not valid JSON ({err})') from err
        return cls.from_dict(data, source)


def sidecar_path(model_path: str | Path) -> Path:
    """Return the sidecar JSON path of a model: ``NAME.onnx`` -> ``NAME.json``."""
    return Path(model_path).with_suffix('.json')
