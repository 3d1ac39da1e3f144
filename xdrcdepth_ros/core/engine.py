"""ONNX Runtime inference for exported XD-RCDepth models (numpy + onnxruntime, no torch).

An exported model is ``NAME.onnx`` plus its metadata, stored twice: as JSON under the key
``xdrcdepth`` in the ONNX ``metadata_props`` and in the sidecar ``NAME.json``. :class:`Engine`
loads both, checks that they agree with each other and with the graph, picks execution providers
(TensorRT → CUDA → OpenVINO → CPU, filtered by what the installed onnxruntime offers) and runs
one frame.

Graph contract (batch 1, fixed size from the metadata):
    inputs  ``image`` (1, H, W, 3) uint8 RGB raw pixels (or float32 0..255, see ``image_dtype``);
            ``radar`` (1, C, H, W) float32 raw radar map (channel order in ``radar_channels``).
    outputs ``depth`` (1, 1, H, W) or (1, H, W) float32 metres;
            ``saliency`` same shape, [0, 1] (optional, listed in ``outputs``).
"""
from __future__ import annotations

import enum
import logging
from pathlib import Path
from typing import Any, Sequence
import warnings

import numpy as np

from xdrcdepth_ros.core.errors import MetadataError, ModelFileError
from xdrcdepth_ros.core.model_metadata import (  # re-exported: callers import them from here too
    DEFAULT_RADAR_FIELDS, FORMAT_VERSION, IMAGE_TENSOR_TYPES, IMAGENET_MEAN, IMAGENET_STD,
    METADATA_KEY, ModelMetadata, RADAR_UNITS, sidecar_path)

_LOG = logging.getLogger(__name__)
__all__ = ['DEFAULT_PROVIDERS', 'DEFAULT_RADAR_FIELDS', 'Engine', 'FORMAT_VERSION', 'IMAGENET_MEAN',
           'IMAGENET_STD', 'METADATA_KEY', 'ModelFileError', 'ModelMetadata', 'Provider',
           'RADAR_UNITS', 'read_metadata', 'select_providers', 'sidecar_path']


def read_metadata(path: str | Path) -> ModelMetadata:
    """Read model metadata from a sidecar ``.json`` or from an ``.onnx`` file's metadata_props.

    Raises:
        FileNotFoundError: the file does not exist.
        MetadataError: the metadata is missing or malformed.
        ModelFileError: an ``.onnx`` file cannot be parsed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'model metadata file not found: {path}')
    if path.suffix == '.json':
        return ModelMetadata.from_json(path.read_text(encoding='utf-8'), str(path))
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = _open_session(path, options, ['CPUExecutionProvider'], None)
    return _embedded_metadata(session, path)


def _embedded_metadata(session: Any, path: Path) -> ModelMetadata:
    props = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in props:
        raise MetadataError(f'{path}: no {METADATA_KEY!r} entry in the ONNX metadata_props; '
                            'export models with `xdrcdepth export`')
    return ModelMetadata.from_json(props[METADATA_KEY], f'{path} (metadata_props)')


# ----------------------------------------------------------------------------- providers


class Provider(str, enum.Enum):
    """ONNX Runtime execution providers this package knows how to configure."""

    TENSORRT = 'TensorrtExecutionProvider'
    """NVIDIA TensorRT (fastest on NVIDIA GPUs; builds an engine on first use)."""
    CUDA = 'CUDAExecutionProvider'
    """NVIDIA CUDA/cuDNN."""
    OPENVINO = 'OpenVINOExecutionProvider'
    """Intel OpenVINO on the CPU, in FP32 (the ``onnxruntime-openvino`` build; x86-64)."""
    CPU = 'CPUExecutionProvider'
    """The default CPU provider (always available)."""

    @classmethod
    def parse(cls, name: 'str | Provider') -> 'Provider':
        """Accept ``tensorrt``/``trt``, ``cuda``, ``openvino``, ``cpu`` (any case) or ORT's names.

        Raises:
            ValueError: unknown name; the message lists the valid ones.
        """
        if isinstance(name, Provider):
            return name
        key = str(name).strip().lower()
        aliases = {'trt': cls.TENSORRT, 'tensorrt': cls.TENSORRT, 'cuda': cls.CUDA,
                   'gpu': cls.CUDA, 'openvino': cls.OPENVINO, 'cpu': cls.CPU}
        aliases.update({member.value.lower(): member for member in cls})
        if key not in aliases:
            valid = ', '.join(['tensorrt', 'cuda', 'openvino', 'cpu']
                              + [member.value for member in cls])
            raise ValueError(f'unknown execution provider {name!r}; valid: {valid}')
        return aliases[key]

    @property
    def is_gpu(self) -> bool:
        """True for providers that run on an NVIDIA GPU."""
        return self in (Provider.TENSORRT, Provider.CUDA)


DEFAULT_PROVIDERS = (Provider.TENSORRT, Provider.CUDA, Provider.OPENVINO, Provider.CPU)


def select_providers(requested: Sequence[str | Provider] | None,
                     available: Sequence[str]) -> list[Provider]:
    """Choose the providers to try, in order, from a request and what onnxruntime offers.

    ``None`` means TensorRT → CUDA → OpenVINO → CPU, silently filtered by ``available``.
    Requested providers missing from ``available`` are dropped with one warning; CPU is always
    the last fallback.

    Raises:
        ValueError: a requested name is not a known provider.
    """
    wanted = list(DEFAULT_PROVIDERS) if requested is None else [
        Provider.parse(name) for name in requested]
    chosen = [provider for provider in dict.fromkeys(wanted) if provider.value in available
              or provider is Provider.CPU]
    missing = [provider.value for provider in dict.fromkeys(wanted) if provider not in chosen]
    if missing and requested is not None:
        warnings.warn(f'execution provider(s) {", ".join(missing)} not available in this '
                      f'onnxruntime (available: {", ".join(available)}); falling back to '
                      f'{", ".join(p.value for p in chosen) or Provider.CPU.value}',
                      RuntimeWarning, stacklevel=2)
    if Provider.CPU not in chosen:
        chosen.append(Provider.CPU)
    return chosen


def _provider_options(provider: Provider, *, trt_cache_dir: Path | None, fp16: bool,
                      device_id: int, threads: int) -> dict[str, Any]:
    if provider is Provider.TENSORRT:
        options: dict[str, Any] = {'device_id': device_id, 'trt_fp16_enable': fp16}
        if trt_cache_dir is not None:
            trt_cache_dir.mkdir(parents=True, exist_ok=True)
            # The engine build takes minutes; cache it and the kernel timings across runs.
            options.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(trt_cache_dir),
                           trt_timing_cache_enable=True, trt_timing_cache_path=str(trt_cache_dir))
        return options
    if provider is Provider.CUDA:
        return {'device_id': device_id}
    if provider is Provider.OPENVINO:
        # FP32 explicitly: on CPUs with bf16/AMX units OpenVINO may otherwise pick a lower
        # inference precision, and the exported model is validated in FP32.
        options = {'device_type': 'CPU', 'precision': 'FP32'}
        if threads > 0:
            options['num_of_threads'] = str(threads)
        return options
    return {}


def _open_session(path: Path, options: Any, providers: list[Any], provider_options: Any) -> Any:
    """Create an InferenceSession; problems with the file itself become ModelFileError."""
    import onnxruntime as ort

    try:
        with warnings.catch_warnings():
            # ORT's own "provider not available" UserWarning; the engine issues one clearer one.
            warnings.filterwarnings('ignore', category=UserWarning, module='onnxruntime')
            return ort.InferenceSession(str(path), sess_options=options, providers=providers,
                                        provider_options=provider_options)
    except Exception as err:  # ORT raises its own untyped pybind errors
        text = ' '.join(str(err).split())
        if type(err).__name__ in _FILE_ERRORS or 'Load model from' in text:
            raise ModelFileError(f'{path} is not a valid ONNX model: {text}') from err
        raise


# Error classes onnxruntime raises for unreadable or invalid model files (not provider failures).
_FILE_ERRORS = ('InvalidProtobuf', 'InvalidGraph', 'NoModel', 'NoSuchFile', 'NotImplemented')


# ----------------------------------------------------------------------------- engine


def _check_graph(session: Any, meta: ModelMetadata, path: Path) -> None:
    """Raise MetadataError unless the graph's inputs/outputs match the metadata."""
    height, width, channels = meta.input_height, meta.input_width, len(meta.radar_channels)
    expected_inputs = {'image': (IMAGE_TENSOR_TYPES[meta.image_dtype], [[1, height, width, 3]]),
                       'radar': ('tensor(float)', [[1, channels, height, width]])}
    expected_outputs = {name: ('tensor(float)', [[1, 1, height, width], [1, height, width]])
                        for name in meta.outputs}
    for kind, args, expected in (('input', session.get_inputs(), expected_inputs),
                                 ('output', session.get_outputs(), expected_outputs)):
        found = {arg.name: arg for arg in args}
        if set(found) != set(expected):
            raise MetadataError(f'{path}: graph {kind}s are {sorted(found)} but the metadata '
                                f'implies {sorted(expected)}')
        for name, (type_name, shapes) in expected.items():
            arg = found[name]
            # A symbolic (str) leading dim is a dynamic batch; everything else must match exactly.
            shape = [dim if isinstance(dim, int) or index else 1
                     for index, dim in enumerate(arg.shape)]
            if arg.type != type_name or shape not in shapes:
                raise MetadataError(
                    f'{path}: graph {kind} {name!r} is {arg.type} {arg.shape}, metadata '
                    f'({meta.input_height}x{meta.input_width}, {channels} radar channels, '
                    f'{meta.image_dtype} image) implies {type_name} {shapes[0]}')


class Engine:
    """One ONNX Runtime session running an exported XD-RCDepth model on single frames.

    Use as a context manager or call :meth:`close`. Options are keyword-only:

    Args:
        path: ``NAME.onnx``; its sidecar ``NAME.json`` is checked against the embedded copy.
        providers: provider names in order of preference (``tensorrt``, ``cuda``, ``openvino``,
            ``cpu`` or ORT names); ``None`` = TensorRT → CUDA → OpenVINO → CPU, filtered by
            ``available_providers``.
        available_providers: what the installed onnxruntime offers (default
            ``onnxruntime.get_available_providers()``); passed in by tests.
        trt_cache_dir: folder for TensorRT engine and timing caches (None: no cache).
        fp16: let TensorRT build FP16 kernels (for CUDA use the exported ``NAME.fp16.onnx``).
        intra_op_threads: CPU threads for one operator (OpenVINO: for the whole inference);
            0 = the runtime's default (one per physical core).
        cpu_spinning: let idle CPU worker threads spin between the operators of a run (lowest
            latency on dedicated cores); turn off on CPUs shared with other busy processes,
            where spinning threads stall each other. Threads never spin past the end of a run,
            so they do not compete with what the process does between frames.
        device_id: CUDA device index.
        io_binding: bind inputs/outputs to pre-allocated buffers; ``None`` = on for GPU
            providers (avoids per-run allocations and host/device copies of the outputs).
        warmup: number of warm-up runs on zero inputs (TensorRT builds its engine here).

    Raises:
        FileNotFoundError: the model file does not exist.
        ModelFileError: the file is not a loadable ONNX model.
        MetadataError: metadata missing, malformed, the two copies disagree, or it does not
            match the graph.
        ValueError: unknown provider name.
    """

    def __init__(self, path: str | Path, *, providers: Sequence[str | Provider] | None = None,
                 available_providers: Sequence[str] | None = None,
                 trt_cache_dir: str | Path | None = None, fp16: bool = False,
                 intra_op_threads: int = 0, cpu_spinning: bool = True, device_id: int = 0,
                 io_binding: bool | None = None, warmup: int = 1) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f'model file not found: {self.path}')
        if intra_op_threads < 0 or warmup < 0:
            raise ValueError(f'intra_op_threads and warmup must be >= 0, got '
                             f'{intra_op_threads}, {warmup}')
        if available_providers is None:
            available_providers = ort.get_available_providers()
        chosen = select_providers(providers, available_providers)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = int(intra_op_threads)
        options.inter_op_num_threads = 1
        options.add_session_config_entry('session.intra_op.allow_spinning',
                                         '1' if cpu_spinning else '0')
        # Spin inside a run only: threads still spinning after it would compete with whatever
        # the process does next (decoding, publishing, another model's threads).
        options.add_session_config_entry('session.force_spinning_stop', '1')
        options.log_severity_level = 3  # ORT's own warnings duplicate ours
        cache = Path(trt_cache_dir) if trt_cache_dir is not None else None
        self._session, warned = self._create(options, chosen, cache, fp16, device_id,
                                             int(intra_op_threads))
        self.providers: tuple[str, ...] = tuple(self._session.get_providers())
        self.provider = Provider.parse(self.providers[0])
        if chosen[0] is not self.provider and not warned:
            warnings.warn(f'{chosen[0].value} could not be used for {self.path.name}; running on '
                          f'{self.provider.value}', RuntimeWarning, stacklevel=2)
        self.metadata = self._load_metadata()
        _check_graph(self._session, self.metadata, self.path)
        self._binding: Any = None
        if io_binding if io_binding is not None else self.provider.is_gpu:
            self._bind(device='cuda' if self.provider.is_gpu else 'cpu', device_id=device_id)
        meta = self.metadata
        image = np.zeros((meta.input_height, meta.input_width, 3), dtype=meta.image_dtype)
        radar = np.zeros((len(meta.radar_channels), meta.input_height, meta.input_width),
                         dtype=np.float32)
        for _ in range(int(warmup)):
            self.run(image, radar)
        _LOG.info('loaded %s (%s %dx%d) on %s', self.path, meta.model_name, meta.input_height,
                  meta.input_width, self.provider.value)

    def _create(self, options: Any, chosen: list[Provider], cache: Path | None, fp16: bool,
                device_id: int, threads: int) -> tuple[Any, bool]:
        """Return (session, whether a fallback warning was issued)."""
        provider_options = [_provider_options(p, trt_cache_dir=cache, fp16=fp16,
                                              device_id=device_id, threads=threads)
                            for p in chosen]
        names = [provider.value for provider in chosen]
        try:
            return _open_session(self.path, options, names, provider_options), False
        except ModelFileError:
            raise
        except Exception as err:  # a provider failed to initialise (driver, libraries, compile)
            if chosen == [Provider.CPU]:
                raise ModelFileError(f'cannot load {self.path}: {err}') from err
            warnings.warn(f'could not start {", ".join(names[:-1])} ({" ".join(str(err).split())}'
                          f'); falling back to {Provider.CPU.value}', RuntimeWarning,
                          stacklevel=3)
            return _open_session(self.path, options, [Provider.CPU.value], None), True

    def _load_metadata(self) -> ModelMetadata:
        embedded = _embedded_metadata(self._session, self.path)
        sidecar = sidecar_path(self.path)
        if not sidecar.is_file():
            _LOG.warning('no sidecar %s; using the metadata embedded in the model', sidecar)
            return embedded
        side = ModelMetadata.from_json(sidecar.read_text(encoding='utf-8'), str(sidecar))
        if side != embedded:
            diff = sorted(key for key, value in side.to_dict().items()
                          if embedded.to_dict()[key] != value)
            raise MetadataError(f'{sidecar} disagrees with the metadata embedded in '
                                f'{self.path.name} on {diff}; re-export the model')
        return embedded

    def _bind(self, *, device: str, device_id: int) -> None:
        import onnxruntime as ort

        meta = self.metadata
        self._binding = self._session.io_binding()
        self._inputs = {}
        for arg in self._session.get_inputs():
            dtype = np.uint8 if arg.type == 'tensor(uint8)' else np.float32
            value = ort.OrtValue.ortvalue_from_shape_and_type(
                [1 if isinstance(dim, str) else dim for dim in arg.shape], dtype, device,
                device_id)
            self._inputs[arg.name] = value
            self._binding.bind_ortvalue_input(arg.name, value)
        self._outputs = {}
        for arg in self._session.get_outputs():
            shape = [1 if isinstance(dim, str) else dim for dim in arg.shape]
            value = ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32, device,
                                                              device_id)
            self._outputs[arg.name] = value
            self._binding.bind_ortvalue_output(arg.name, value)
        _LOG.debug('IO binding on %s for %s', device, meta.model_name)

    def run(self, image: np.ndarray, radar: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Run one frame.

        Args:
            image: (H, W, 3) RGB at the model size; uint8 (or float32 0..255 if the model's
                ``image_dtype`` is float32).
            radar: (C, H, W) radar map in the metadata's channel order (depth m first).

        Returns:
            ``(depth, saliency)``: (H, W) float32 metres, and (H, W) float32 in [0, 1] or None
            when the model has no saliency output. Fresh arrays owned by the caller.

        Raises:
            ValueError: wrong shape or dtype (the message names the expected ones).
            RuntimeError: the engine was closed.
        """
        if self._session is None:
            raise RuntimeError('Engine.run() called after close()')
        meta = self.metadata
        height, width = meta.input_height, meta.input_width
        image = np.asarray(image)
        if image.shape != (height, width, 3) or image.dtype != np.dtype(meta.image_dtype):
            raise ValueError(f'image must be ({height}, {width}, 3) {meta.image_dtype} RGB, got '
                             f'{image.shape} {image.dtype}')
        radar = np.asarray(radar)
        channels = len(meta.radar_channels)
        if radar.shape != (channels, height, width) or radar.dtype.kind != 'f':
            raise ValueError(f'radar must be ({channels}, {height}, {width}) float32 '
                             f'({", ".join(meta.radar_channels)}), got {radar.shape} '
                             f'{radar.dtype}')
        feeds = {'image': np.ascontiguousarray(image[None]),
                 'radar': np.ascontiguousarray(radar[None], dtype=np.float32)}
        if self._binding is not None:
            for name, array in feeds.items():
                self._inputs[name].update_inplace(array)
            self._session.run_with_iobinding(self._binding)
            results = {name: value.numpy() for name, value in self._outputs.items()}
        else:
            names = list(meta.outputs)
            results = dict(zip(names, self._session.run(names, feeds)))
        depth = np.array(results['depth'], dtype=np.float32).reshape(height, width)
        saliency = results.get('saliency')
        if saliency is not None:
            saliency = np.array(saliency, dtype=np.float32).reshape(height, width)
        return depth, saliency

    def close(self) -> None:
        """Release the session (and its GPU memory); further :meth:`run` calls raise."""
        self._binding = None
        self._inputs = self._outputs = {}
        self._session = None

    def __enter__(self) -> 'Engine':
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        meta = getattr(self, 'metadata', None)
        size = f'{meta.input_height}x{meta.input_width}' if meta else '?'
        return f'Engine({str(self.path)!r}, {size}, provider={getattr(self, "provider", None)})'
