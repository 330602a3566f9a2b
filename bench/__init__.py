"""bench: a video-compression benchmark harness.

dataset -> Video -> codec -> bitstream file -> decoder -> metrics -> results store -> reports.
``bench`` knows no codec: codecs are plugins found through the ``bench.codecs`` entry points.
"""

from .codec import Codec, create_codec, register_codec
from .video import Video, read_yuv, write_yuv

__all__ = ["Codec", "Video", "create_codec", "read_yuv", "register_codec", "write_yuv"]
__version__ = "0.1.0"
