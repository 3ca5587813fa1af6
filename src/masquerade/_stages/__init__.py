"""The stages of a run: face analysis, swapping, enhancing, the content guard and the watermark.

Private. Only :mod:`masquerade.pipeline` puts them together, and it alone guarantees that every frame
it writes has passed the content guard and carries the watermark. Use :class:`masquerade.Pipeline` or
:func:`masquerade.swap`; nothing in here is part of the public API.
"""
