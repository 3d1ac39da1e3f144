"""engine.py: loading, validation, provider choice and running an exported model with real ORT."""
from __future__ import annotations

from dataclasses import replace
import json
from pathlib import Path
import shutil
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from xdrcdepth_ros.core.engine import (DEFAULT_PROVIDERS, Engine, METADATA_KEY, ModelFileError,
                                       ModelMetadata, Provider, read_metadata, select_providers,
                                       sidecar_path)
from xdrcdepth_ros.core.errors import MetadataError

H, W, C = 96, 192, 4
CPU_ONLY = ['CPUExecutionProvider']


def _inputs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    radar = np.zeros((C, H, W), dtype=np.float32)
    radar[:, 40:44, 50:60] = [[[20.0]], [[5.0]], [[1.0]], [[-1.0]]]
    return image, radar


def _copy_model(src: Path, folder: Path, metadata: ModelMetadata | None = None,
                sidecar: ModelMetadata | None | str = 'same') -> Path:
    """Copy a model, optionally rewriting its embedded metadata and/or its sidecar."""
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / src.name
    if metadata is None:
        shutil.copy(src, dst)
        embedded = read_metadata(src)
    else:
        proto = onnx.load(src)
        for prop in proto.metadata_props:
            if prop.key == METADATA_KEY:
                prop.value = metadata.to_json()
        onnx.save(proto, dst)
        embedded = metadata
    if sidecar == 'same':
        sidecar_path(dst).write_text(embedded.to_json())
    elif sidecar is not None:
        sidecar_path(dst).write_text(sidecar.to_json())
    return dst


@pytest.fixture(scope='module')
def engine(tiny_model):
    with Engine(tiny_model, available_providers=CPU_ONLY) as loaded:
        yield loaded


def test_run_returns_depth_and_saliency_at_model_size(engine):
    """The node relies on (H, W) float32 metres within (0, max_depth] and saliency in [0, 1]."""
    depth, saliency = engine.run(*_inputs())
    assert depth.shape == (H, W) and depth.dtype == np.float32
    assert saliency.shape == (H, W) and saliency.dtype == np.float32
    assert np.all((depth > 0) & (depth <= engine.metadata.max_depth))
    assert saliency.min() >= 0.0 and saliency.max() <= 1.0 + 1e-6


def test_run_matches_a_plain_onnxruntime_session(engine, tiny_model):
    """The engine's feeds (batch dim, layout) must equal a direct ORT call on the same graph."""
    image, radar = _inputs(3)
    session = ort.InferenceSession(str(tiny_model), providers=CPU_ONLY)
    ref_depth, ref_sal = session.run(['depth', 'saliency'],
                                     {'image': image[None], 'radar': radar[None]})
    depth, saliency = engine.run(image, radar)
    np.testing.assert_allclose(depth, ref_depth.reshape(H, W), rtol=1e-5)
    np.testing.assert_allclose(saliency, ref_sal.reshape(H, W), rtol=1e-5, atol=1e-6)


def test_io_binding_gives_the_same_result_as_plain_run(engine, tiny_model):
    """IO binding (the CUDA path) is exercised on CPU buffers: results must not change."""
    image, radar = _inputs(5)
    with Engine(tiny_model, available_providers=CPU_ONLY, io_binding=True, warmup=0) as bound:
        first = bound.run(image, radar)
        second = bound.run(*_inputs(6))
        again = bound.run(image, radar)
    plain = engine.run(image, radar)
    np.testing.assert_array_equal(first[0], plain[0])
    np.testing.assert_array_equal(again[0], plain[0])
    assert not np.array_equal(second[0], first[0]), 'outputs must not alias the bound buffer'


def test_metadata_is_the_same_in_onnx_and_sidecar(tiny_model, engine):
    embedded = read_metadata(tiny_model)
    sidecar = read_metadata(sidecar_path(tiny_model))
    assert embedded == sidecar == engine.metadata
    assert (embedded.input_height, embedded.input_width) == (H, W)
    assert embedded.radar_channels == ('depth', 'rcs', 'vx', 'vy')
    assert embedded.radar_units == ('m', 'dBsm', 'm/s', 'm/s')
    assert embedded.parameter_count > 0 and embedded.git_revision
    assert embedded.has_saliency


def test_provider_reported_is_the_one_running(engine):
    assert engine.provider is Provider.CPU
    assert engine.providers == ('CPUExecutionProvider',)


def test_missing_model_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match='model file not found'):
        Engine(tmp_path / 'nope.onnx')


@pytest.mark.parametrize('content', [b'', b'not an onnx model at all' * 10])
def test_corrupt_model_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / 'bad.onnx'
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match='not a valid ONNX model'):
        Engine(path, available_providers=CPU_ONLY)


def test_truncated_model_file_is_a_clear_error(tmp_path, tiny_model):
    """A partly copied model (interrupted download) must not load silently."""
    path = tmp_path / 'tiny.onnx'
    path.write_bytes(tiny_model.read_bytes()[:50_000])
    with pytest.raises(ModelFileError, match='bad.onnx|tiny.onnx'):
        Engine(path, available_providers=CPU_ONLY)


def test_model_without_metadata_is_refused(tmp_path, tiny_model):
    proto = onnx.load(tiny_model)
    del proto.metadata_props[:]
    path = tmp_path / 'plain.onnx'
    onnx.save(proto, path)
    with pytest.raises(MetadataError, match="no 'xdrcdepth' entry"):
        Engine(path, available_providers=CPU_ONLY)


def test_sidecar_that_disagrees_is_refused(tmp_path, tiny_model):
    meta = read_metadata(tiny_model)
    path = _copy_model(tiny_model, tmp_path, sidecar=replace(meta, max_depth=50.0))
    with pytest.raises(MetadataError, match=r"disagrees .* \['max_depth'\]"):
        Engine(path, available_providers=CPU_ONLY)


def test_metadata_that_disagrees_with_the_graph_is_refused(tmp_path, tiny_model):
    """Both copies agree but claim another input size than the graph has."""
    meta = replace(read_metadata(tiny_model), input_height=128)
    path = _copy_model(tiny_model, tmp_path, metadata=meta)
    with pytest.raises(MetadataError, match="graph input 'image'"):
        Engine(path, available_providers=CPU_ONLY)


def test_metadata_with_wrong_radar_channel_count_is_refused(tmp_path, tiny_model):
    meta = replace(read_metadata(tiny_model), radar_channels=('depth', 'rcs'),
                   radar_units=('m', 'dBsm'), radar_fields=('rcs',))
    path = _copy_model(tiny_model, tmp_path, metadata=meta)
    with pytest.raises(MetadataError, match="graph input 'radar'"):
        Engine(path, available_providers=CPU_ONLY)


def test_metadata_claiming_no_saliency_is_refused(tmp_path, tiny_model):
    meta = replace(read_metadata(tiny_model), outputs=('depth',))
    path = _copy_model(tiny_model, tmp_path, metadata=meta)
    with pytest.raises(MetadataError, match='graph outputs'):
        Engine(path, available_providers=CPU_ONLY)


def test_missing_sidecar_loads_from_embedded_metadata(tmp_path, tiny_model, caplog):
    path = _copy_model(tiny_model, tmp_path, sidecar=None)
    with Engine(path, available_providers=CPU_ONLY, warmup=0) as loaded:
        assert loaded.metadata == read_metadata(tiny_model)
    assert 'no sidecar' in caplog.text


@pytest.mark.parametrize('image, radar, match', [
    (np.zeros((H, W, 3), np.float32), np.zeros((C, H, W), np.float32), 'uint8'),
    (np.zeros((W, H, 3), np.uint8), np.zeros((C, H, W), np.float32), r'image must be \(96, 192'),
    (np.zeros((H, W, 3), np.uint8), np.zeros((3, H, W), np.float32), r'radar must be \(4, 96'),
    (np.zeros((H, W, 3), np.uint8), np.zeros((C, H, W), np.int32), 'float32'),
])
def test_wrong_input_shapes_or_types_are_clear_errors(engine, image, radar, match):
    with pytest.raises(ValueError, match=match):
        engine.run(image, radar)


def test_unknown_provider_lists_the_valid_ones(tiny_model):
    with pytest.raises(ValueError,
                       match="unknown execution provider 'npu'.*tensorrt, cuda, openvino, cpu"):
        Engine(tiny_model, providers=['npu'])


def test_unavailable_gpu_provider_falls_back_to_cpu_with_one_warning(tiny_model):
    with pytest.warns(RuntimeWarning) as record:
        with Engine(tiny_model, providers=['tensorrt', 'cuda'], warmup=0,
                    available_providers=CPU_ONLY) as loaded:
            assert loaded.provider is Provider.CPU
    assert len(record) == 1
    message = str(record[0].message)
    assert 'TensorrtExecutionProvider, CUDAExecutionProvider not available' in message


def test_gpu_provider_that_fails_at_session_start_falls_back_with_one_warning(tiny_model):
    """onnxruntime-gpu lists CUDA even on machines without a GPU; the session then runs on CPU."""
    with pytest.warns(RuntimeWarning) as record:
        with Engine(tiny_model, providers=['cuda', 'cpu'], warmup=0,
                    available_providers=['CUDAExecutionProvider', 'CPUExecutionProvider']) as e:
            assert e.provider is Provider.CPU
            assert e.run(*_inputs())[0].shape == (H, W)
    assert len(record) == 1
    assert 'CUDAExecutionProvider' in str(record[0].message)


def test_unavailable_openvino_falls_back_to_cpu_with_one_warning(tiny_model):
    with pytest.warns(RuntimeWarning) as record:
        with Engine(tiny_model, providers=['openvino'], warmup=0,
                    available_providers=CPU_ONLY) as loaded:
            assert loaded.provider is Provider.CPU
            assert loaded.run(*_inputs())[0].shape == (H, W)
    assert len(record) == 1
    assert 'OpenVINOExecutionProvider not available' in str(record[0].message)


@pytest.mark.skipif('OpenVINOExecutionProvider' not in ort.get_available_providers(),
                    reason='this onnxruntime build has no OpenVINO provider')
def test_openvino_runs_the_model_in_fp32_like_the_cpu_provider(tiny_model):
    """OpenVINO is asked for FP32, so it agrees with ORT's CPU kernels to float rounding."""
    with Engine(tiny_model, providers=['openvino'], intra_op_threads=1, warmup=1) as fast:
        assert fast.provider is Provider.OPENVINO
        depth, saliency = fast.run(*_inputs())
    with Engine(tiny_model, available_providers=CPU_ONLY, warmup=0) as reference:
        depth_cpu, saliency_cpu = reference.run(*_inputs())
    np.testing.assert_allclose(depth, depth_cpu, rtol=1e-4)
    np.testing.assert_allclose(saliency, saliency_cpu, atol=1e-4)


@pytest.mark.parametrize('spinning, expected', [(True, '1'), (False, '0')])
def test_cpu_options_reach_the_session(tiny_model, spinning, expected):
    """Thread count and spinning are what the session runs with (shared-CPU tuning)."""
    with Engine(tiny_model, available_providers=CPU_ONLY, intra_op_threads=1,
                cpu_spinning=spinning, warmup=0) as loaded:
        options = loaded._session.get_session_options()
        assert options.intra_op_num_threads == 1
        assert options.get_session_config_entry('session.intra_op.allow_spinning') == expected


def test_closed_engine_refuses_to_run(tiny_model):
    loaded = Engine(tiny_model, available_providers=CPU_ONLY, warmup=0)
    loaded.close()
    with pytest.raises(RuntimeError, match='after close'):
        loaded.run(*_inputs())


def test_fp16_copy_loads_and_agrees_roughly(tiny_model, tmp_path):
    """The FP16 copy keeps the FP32 interface (uint8/float32 in, float32 out)."""
    from xdrcdepth_ros.export import write_fp16_copy

    fp32_path = _copy_model(tiny_model, tmp_path)
    fp16_path = write_fp16_copy(fp32_path)
    assert fp16_path.name == 'tiny.fp16.onnx' and sidecar_path(fp16_path).is_file()
    with Engine(fp16_path, available_providers=CPU_ONLY, warmup=0) as half:
        assert half.metadata.precision == 'fp16'
        depth16 = half.run(*_inputs())[0]
    with Engine(fp32_path, available_providers=CPU_ONLY, warmup=0) as full:
        depth32 = full.run(*_inputs())[0]
    assert depth16.dtype == np.float32
    assert np.max(np.abs(depth16 - depth32) / depth32) < 0.02


# ----------------------------------------------------------------------------- providers


@pytest.mark.parametrize('name, expected', [
    ('tensorrt', Provider.TENSORRT), ('TRT', Provider.TENSORRT), ('cuda', Provider.CUDA),
    ('CPU', Provider.CPU), ('CUDAExecutionProvider', Provider.CUDA),
    ('TensorrtExecutionProvider', Provider.TENSORRT), (Provider.CPU, Provider.CPU),
    ('openvino', Provider.OPENVINO), ('OpenVINOExecutionProvider', Provider.OPENVINO),
])
def test_provider_aliases(name, expected):
    assert Provider.parse(name) is expected


def test_only_nvidia_providers_count_as_gpu():
    """is_gpu decides IO binding on a CUDA device; OpenVINO runs on the host CPU."""
    assert [p for p in Provider if p.is_gpu] == [Provider.TENSORRT, Provider.CUDA]


def test_default_provider_order_is_filtered_silently():
    available = ['CUDAExecutionProvider', 'CPUExecutionProvider']
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert select_providers(None, available) == [Provider.CUDA, Provider.CPU]
    assert select_providers(None, CPU_ONLY) == [Provider.CPU]
    assert select_providers(None, ['OpenVINOExecutionProvider', 'CPUExecutionProvider']) == [
        Provider.OPENVINO, Provider.CPU]
    everything = [p.value for p in DEFAULT_PROVIDERS]
    assert select_providers(None, everything) == list(DEFAULT_PROVIDERS)


def test_requested_order_is_kept_and_cpu_is_always_last():
    available = [p.value for p in DEFAULT_PROVIDERS]
    assert select_providers(['cuda', 'tensorrt'], available) == [
        Provider.CUDA, Provider.TENSORRT, Provider.CPU]
    assert select_providers(['cpu'], available) == [Provider.CPU]


# ----------------------------------------------------------------------------- metadata


def test_metadata_json_round_trip():
    meta = ModelMetadata(model_name='xdrcdepth', input_height=352, input_width=704,
                         metrics={'mae_80': 1.9}, model_kwargs={'width_mult': 0.5})
    assert ModelMetadata.from_json(meta.to_json()) == meta
    assert json.loads(meta.to_json())['radar_channels'] == ['depth', 'rcs', 'vx', 'vy']


@pytest.mark.parametrize('changes, match', [
    ({'input_height': 100}, 'multiple of 32'),
    ({'radar_channels': ['rcs', 'depth', 'vx', 'vy']}, 'must start with depth'),
    ({'radar_channels': ['depth', 'doppler', 'vx', 'vy']}, 'must start with depth'),
    ({'radar_units': ['m']}, 'radar_units'),
    ({'max_depth': 0}, 'max_depth'),
    ({'outputs': ['saliency']}, 'outputs'),
    ({'image_layout': 'NCHW'}, 'NHWC'),
    ({'format_version': 99}, 'format_version 99'),
    ({'vertical_crop': 'middle'}, "vertical_crop must be one of .*'middle'"),
    ({'radar_sensors': 'RADAR_FRONT'}, 'radar_sensors must be a list'),
])
def test_invalid_metadata_is_refused_with_the_field_named(changes, match):
    data = ModelMetadata(model_name='m', input_height=96, input_width=192).to_dict()
    data.update(changes)
    with pytest.raises(MetadataError, match=match):
        ModelMetadata.from_dict(data)


def test_metadata_missing_required_keys_and_bad_json():
    with pytest.raises(MetadataError, match=r"missing required keys \['input_width'\]"):
        ModelMetadata.from_dict({'model_name': 'm', 'input_height': 96})
    with pytest.raises(MetadataError, match='not valid JSON'):
        ModelMetadata.from_json('{"model_name": ')


def test_unknown_metadata_keys_are_ignored():
    """Newer exporters may add keys; an older engine still loads the model."""
    data = ModelMetadata(model_name='m', input_height=96, input_width=192).to_dict()
    data['future_key'] = 1
    assert ModelMetadata.from_dict(data).model_name == 'm'
