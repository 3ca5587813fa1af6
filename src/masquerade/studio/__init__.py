"""The studio: ``masquerade serve``, a local web app and REST API over the same public API as the CLI.

Rooms: ``settings`` (what the command line chose), ``datadir`` (the one folder the studio reads and
writes), ``store`` (SQLite job queue and file records), ``options`` (REST options -> RunConfig through
the CLI's own parsers), ``uploads`` (streamed, size-limited multipart uploads), ``media`` (probing,
frames, face thumbnails), ``preview`` (live preview), ``worker`` (the job-running process), ``app``
(the FastAPI routes), ``server`` (uvicorn plus the worker pool). The page is plain HTML/CSS/JS in
``static/``. Nothing here reaches the private stages: every preview and output goes through
``masquerade.Pipeline`` / ``masquerade.swap``, so the content guard, watermark and label apply.
"""

from masquerade.studio.settings import StudioSettings

__all__ = ["StudioSettings"]
