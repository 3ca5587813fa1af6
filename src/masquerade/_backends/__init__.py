"""Optional inference backends beside ONNX Runtime.

``torch-cuda`` runs the same ONNX files through PyTorch: :mod:`.onnx_to_torch` converts the graph
(generic, node by node, batch made dynamic), :mod:`.torch_session` wraps it with ONNX Runtime's
``run`` / ``get_inputs`` / ``get_outputs`` so the stages take it unchanged, :mod:`.torch_warp` and
:mod:`.torch_swap` crop and paste back on the device. PyTorch is an extra
(``pip install '.[gpu]'`` in a checkout): nothing here imports it until a session is made, and a missing
PyTorch or GPU raises ``ProviderUnavailable``, never a silent CPU fallback.

Wiring (the session factory): ``provider in TORCH_PROVIDERS`` ->
``torch_session.new_torch_session(path, provider)``, else ``models.runtime.new_session``.
``torch-cpu`` exists for tests and debugging (same code, CPU tensors).
"""

from __future__ import annotations

from masquerade.config import TORCH_PROVIDERS

# TORCH_PROVIDERS: the execution providers served by PyTorch rather than ONNX Runtime.

__all__ = ["TORCH_PROVIDERS"]
