"""The package's exception hierarchy: one base class, a few specific subclasses."""


class XdrcDepthError(Exception):
    """Base class of every error this package raises on its own behalf."""


class ConversionError(XdrcDepthError, ValueError):
    """A ROS message (or its numpy form) cannot be converted: bad encoding, size, fields."""


class MetadataError(XdrcDepthError, ValueError):
    """A model file and its metadata disagree, or the metadata is missing or malformed."""


class SyncConfigError(XdrcDepthError, ValueError):
    """The frame assembler was configured with impossible values."""


class DatasetError(XdrcDepthError):
    """A dataset folder is missing files or has an unexpected layout."""


class BagError(XdrcDepthError):
    """A bag cannot be read or written: corrupt, truncated, or missing a topic."""


class ModelFileError(XdrcDepthError, ValueError):
    """A model file cannot be loaded: not ONNX, truncated, or an unexpected graph."""
