"""Datasets, the synthetic scene generator and augmentation (numpy only; torch lives in
:mod:`xdrcdepth_ros.data.torch_utils`)."""
from xdrcdepth_ros.data.augmentation import augment
from xdrcdepth_ros.data.nuscenes import NuScenesDataset
from xdrcdepth_ros.data.sample import Sample
from xdrcdepth_ros.data.synthetic import render_scene, SceneGenerator, SyntheticDataset
from xdrcdepth_ros.data.zju4dradarcam import ZJU4DRadarCamDataset

__all__ = ['NuScenesDataset', 'Sample', 'SceneGenerator', 'SyntheticDataset',
           'ZJU4DRadarCamDataset', 'augment', 'render_scene']
