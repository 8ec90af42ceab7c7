"""Scene tensors: surfels, transforms, quaternions."""
from gssim.core.surfels import Surfels

__all__ = ["Surfels"]
