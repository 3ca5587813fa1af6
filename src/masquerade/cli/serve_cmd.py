"""``masquerade serve``: the studio, a local web app and REST API with a persistent job queue."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from masquerade.studio.settings import DEFAULT_MAX_UPLOAD_MB, DEFAULT_PORT

    p = subparsers.add_parser(
        "serve", help="the studio: a local web app with live preview, a REST API and a job queue",
        description="Serves the page at / and the API under /api (OpenAPI at /api/openapi.json, docs at "
                    "/api/docs). Jobs are kept in the data dir and survive a restart. Every preview and "
                    "output is checked by the content guard, watermarked and labelled, as on the CLI.",
    )
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; any other needs --token)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
        help=f"port (default {DEFAULT_PORT}; 0: any free)")
    p.add_argument("--data-dir", type=Path, metavar="DIR",
                   help="uploads, outputs and the job database (default: 'studio' in the per-user data "
                        "folder)")
    p.add_argument("--token", metavar="TOKEN",
                   help="require 'Authorization: Bearer TOKEN' on every /api call (the page asks once)")
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, metavar="MB",
                   help=f"largest accepted upload (default {DEFAULT_MAX_UPLOAD_MB})")
    p.add_argument("--workers", type=int, default=1, help="job worker processes (default 1)")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from masquerade.studio.server import serve
    from masquerade.studio.settings import StudioSettings, default_data_dir

    settings = StudioSettings(data_dir=args.data_dir or default_data_dir(), host=args.host, port=args.port,
                              token=args.token, max_upload_bytes=int(args.max_upload_mb * 2**20),
                              workers=args.workers)

    def ready(url: str) -> None:
        print(f"masquerade studio: {url} (data: {settings.data_dir}; Ctrl-C stops)", flush=True)
        if args.open:
            import webbrowser

            webbrowser.open(url + (f"#token={settings.token}" if settings.token else ""))

    serve(settings, on_ready=ready)
    print("masquerade studio: stopped; unfinished jobs stay queued", flush=True)
    return 0
