"""Datasets, the synthetic scene generator and augmentation (numpy only; torch lives in
:mod:`xdrcdepth_ros.data.torch_utils`)."""
from xdrcdepth_ros.data.sample import Sample
from xdrcdepth_ros.data.synthetic import render_scene, SceneGenerator, SyntheticDataset

__all__ = ['Sample', 'SceneGenerator', 'SyntheticDataset', 'render_scene']
