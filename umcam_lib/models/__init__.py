"""Model stage: the VGG-16 slice classifier (and its DRS / AMR variants), the 2D UNet."""
from .vgg import vgg16_classifier

__all__ = ["vgg16_classifier"]
