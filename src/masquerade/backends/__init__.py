"""Optional inference backends beside ONNX Runtime.

``torch-cuda``: the ONNX files run through PyTorch (:mod:`.torch_session`, built by the generic
converter :mod:`.onnx_to_torch`), with GPU crops and paste-back in :mod:`.torch_warp`. PyTorch is an
extra (``pip install 'masquerade[gpu]'``): nothing here imports it until a session is made.
"""

from __future__ import annotations

TORCH_PROVIDERS = ("torch-cuda", "torch-cpu")
"""Execution providers served by PyTorch rather than ONNX Runtime."""

__all__ = ["TORCH_PROVIDERS"]
