"""Image parameterizations: what the optimizer actually changes."""

from pytti_engine.image_params.base import ImageParam
from pytti_engine.image_params.rgb import RGBImage

__all__ = ["ImageParam", "RGBImage"]
