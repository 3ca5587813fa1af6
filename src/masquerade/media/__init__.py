"""Media input/output: probe a file's kind, read/write stills, stream video in and out with PyAV.

Data flow: ``VideoReader.frames()`` -> pipeline stages -> ``VideoWriter.write()``; frames are decoded,
processed and encoded one at a time, audio is copied packet by packet.
"""

from masquerade.media.atomic import atomic_output
from masquerade.media.encoders import available_video_encoders
from masquerade.media.image import LoadedImage, read_image, write_image
from masquerade.media.options import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, encoder_options
from masquerade.media.probe import probe_kind
from masquerade.media.reader import VideoInfo, VideoReader
from masquerade.media.writer import VideoWriter

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "LoadedImage",
    "VideoInfo",
    "VideoReader",
    "VideoWriter",
    "atomic_output",
    "available_video_encoders",
    "encoder_options",
    "probe_kind",
    "read_image",
    "write_image",
]
