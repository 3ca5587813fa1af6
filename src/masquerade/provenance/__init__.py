"""Provenance: the invisible watermark's payload code, and content credentials (C2PA or plain tags).

Heavy libraries (c2pa, cryptography, PyAV) are imported inside the functions that need them.
"""

from masquerade.provenance.c2pa_label import (
    C2PA_FORMATS,
    LabelReading,
    label_file,
    label_method,
    labelling,
    read_label,
)
from masquerade.provenance.keys import SigningIdentity, masquerade_home, signing_identity
from masquerade.provenance.plain_tags import TAG_FORMATS, EditSummary, plain_metadata_tags

__all__ = [
    "C2PA_FORMATS",
    "TAG_FORMATS",
    "EditSummary",
    "LabelReading",
    "SigningIdentity",
    "label_file",
    "label_method",
    "labelling",
    "masquerade_home",
    "plain_metadata_tags",
    "read_label",
    "signing_identity",
]
