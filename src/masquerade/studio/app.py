"""The FastAPI application: the page at ``/``, the REST API under ``/api``."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from masquerade._version import __version__
from masquerade.config import RunConfig
from masquerade.errors import MasqueradeError, MediaError, ModelError
from masquerade.models.store import ModelStore
from masquerade.studio.choices import config_missing, model_choices
from masquerade.studio.datadir import DataDir, is_id
from masquerade.studio.events import Changes
from masquerade.studio.media import describe
from masquerade.studio.options import OptionError, run_config
from masquerade.studio.preview import PreviewService, RefusedInput
from masquerade.studio.security import COOKIE, Guardrails, session_value
from masquerade.studio.settings import StudioSettings
from masquerade.studio.store import TERMINAL, FileRecord, Job, JobStore
from masquerade.studio.uploads import Upload, UploadError, receive

STATIC = Path(__file__).parent / "static"
MEDIA_TYPES = {".jpg": "image/jpeg", ".png": "image/png", ".webp": "image/webp", ".bmp": "image/bmp",
               ".tif": "image/tiff", ".mp4": "video/mp4", ".mkv": "video/x-matroska"}


class ApiError(Exception):
    def __init__(self, status: int, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.detail, self.extra = status, detail, extra


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PreviewRequest(_Body):
    sources: list[str] = Field(min_length=1, max_length=16, description="ids of uploaded source photos")
    target: str = Field(description="id of an uploaded image or video")
    frame: int = Field(0, ge=0, description="video frame to preview (0-based)")
    options: dict[str, Any] = Field(default_factory=dict, description="the CLI's long options, _ for -")


class JobRequest(_Body):
    sources: list[str] = Field(min_length=1, max_length=16)
    targets: list[str] = Field(min_length=1, max_length=500, description="one output per target")
    options: dict[str, Any] = Field(default_factory=dict)


class MoveRequest(_Body):
    position: int = Field(ge=0, description="0-based place in the queue order")


def status_of(error: MasqueradeError) -> int:
    """400 for a file that is not what it must be, 409 for a model the server lacks, else 422."""
    if isinstance(error, MediaError):
        return 400
    if isinstance(error, ModelError):
        return 409
    return 422


def create_app(settings: StudioSettings, data: DataDir, store: JobStore) -> Any:
    """The ASGI application (FastAPI wrapped in the request checks)."""
    changes = Changes(store)
    preview = PreviewService(data, store)
    models = ModelStore()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        watcher = asyncio.create_task(changes.run())
        threading.Thread(target=preview.warm, name="studio-preview-warm-up", daemon=True).start()
        try:
            yield
        finally:
            await changes.close()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    app = FastAPI(title="masquerade studio", version=__version__, lifespan=lifespan,
                  openapi_url="/api/openapi.json", docs_url=None, redoc_url=None,
                  description="Face swaps with live preview and a persistent job queue. Every preview "
                              "and output is checked by the content guard, watermarked and labelled.")
    app.state.changes = changes

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse({"detail": error.detail, **error.extra}, status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse({"detail": f"{where}: {first.get('msg')}" if where else first.get("msg")},
                            status_code=422)

    def masquerade_error(error: MasqueradeError) -> ApiError:
        extra = {"option": error.option} if isinstance(error, OptionError) else {}
        return ApiError(status_of(error), data.hide(str(error)), **extra)

    def file_or_404(file_id: str) -> FileRecord:
        record = store.file(file_id) if is_id(file_id) else None
        if record is None:
            raise ApiError(404, f"no file with id {file_id[:40]!r}")
        return record

    def job_or_404(job_id: str) -> Job:
        job = store.job(job_id) if is_id(job_id) else None
        if job is None:
            raise ApiError(404, f"no job with id {job_id[:40]!r}")
        return job

    def delete_file(file_id: str) -> None:
        preview.forget(file_id)
        for relative in store.delete_file(file_id):
            with contextlib.suppress(OSError, ValueError):
                data.inside(relative).unlink()

    def config_for(options: dict[str, Any], kinds: tuple[str | None, ...] = (None,)) -> RunConfig:
        def file_path(file_id: str) -> Path | None:
            record = store.file(file_id) if is_id(file_id) else None
            return None if record is None or record.kind != "image" else data.inside(record.path)

        try:
            config = run_config(options, file_path, kinds)
        except MasqueradeError as error:
            raise masquerade_error(error) from None
        missing = config_missing(models, config)
        if missing is not None:
            raise ApiError(422, f"option {missing[0]}: {missing[1]}", option=missing[0])
        return config

    def sources_of(ids: list[str]) -> list[FileRecord]:
        records = [file_or_404(i) for i in ids]
        for record in records:
            if record.kind != "image":
                raise ApiError(422, f"source {record.name} is a video: sources are photos")
        return records

    # -- service ------------------------------------------------------------------------------------
    @app.get("/api/health", tags=["service"])
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__}

    @app.post("/api/session", tags=["service"])
    def session() -> Response:
        """Trade the bearer token for an HttpOnly session cookie (for the page's images and event streams)."""
        response = JSONResponse({"status": "ok"})
        if settings.token:
            response.set_cookie(COOKIE, session_value(settings.token), httponly=True, samesite="strict",
                                path="/api")
        return response

    @app.get("/api/models", tags=["service"])
    def list_models() -> dict[str, Any]:
        """Model choices, whether their files are installed, and the CLI's hint for missing ones."""
        return {"cache": str(models.root), "choices": model_choices(models)}

    @app.get("/api/docs", include_in_schema=False)
    def docs() -> FileResponse:
        return FileResponse(STATIC / "docs.html")

    # -- files --------------------------------------------------------------------------------------
    async def take_upload(request: Request) -> Upload:
        try:
            return await receive(request, data, settings.max_upload_bytes)
        except UploadError as error:
            raise ApiError(error.status, str(error)) from None

    def upload_message(error: MasqueradeError, received: Upload) -> str:
        """The error's line about an upload, naming it as the client did (never by its stored path)."""
        return data.hide(str(error).replace(str(received.path), received.name))

    upload_body = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary"}}}}}}}

    @app.post("/api/files", status_code=201, tags=["files"], openapi_extra=upload_body)
    async def upload(request: Request) -> dict[str, Any]:
        """Upload an image or video (multipart field ``file``); its kind is probed from its content."""
        received = await take_upload(request)
        try:
            info = await run_in_threadpool(describe, received.path)
        except MasqueradeError as error:
            received.path.unlink(missing_ok=True)
            raise ApiError(status_of(error), upload_message(error, received)) from None
        file_id = received.path.stem
        stored = data.uploads / f"{file_id}{info.suffix}"
        received.path.replace(stored)
        record = FileRecord(id=file_id, name=received.name, kind=info.kind, path=data.relative(stored),
                            width=info.width, height=info.height, frames=info.frames, fps=info.fps,
                            size=received.size)
        store.add_file(record)
        return record.public()

    @app.get("/api/files/{file_id}", tags=["files"])
    def file_info(file_id: str) -> dict[str, Any]:
        return file_or_404(file_id).public()

    @app.delete("/api/files/{file_id}", tags=["files"])
    def remove_file(file_id: str) -> dict[str, Any]:
        record = file_or_404(file_id)
        for job in store.jobs():
            if job.state not in TERMINAL and file_id in (*job.request["sources"], *job.request["targets"],
                                                         job.request["options"].get("reference")):
                raise ApiError(409, f"{record.name} is used by a job that has not finished")
        delete_file(file_id)
        return {"id": file_id, "deleted": True}

    @app.get("/api/files/{file_id}/content", tags=["files"])
    def file_content(file_id: str) -> FileResponse:
        record = file_or_404(file_id)
        path = data.inside(record.path)
        return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix, "application/octet-stream"),
                            content_disposition_type="inline", filename=record.name)

    @app.get("/api/files/{file_id}/frame", tags=["files"], response_class=Response,
             responses={200: {"content": {"image/jpeg": {}}}})
    def file_frame(file_id: str, n: int = Query(0, ge=0)) -> Response:
        """Frame ``n`` of a video (or the image), upright, as JPEG: the original beside the preview."""
        from masquerade.studio.media import encode_jpeg

        record = file_or_404(file_id)
        try:
            image = preview.frame(record, n)
        except MasqueradeError as error:
            raise masquerade_error(error) from None
        return Response(encode_jpeg(image, 88), media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/api/files/{file_id}/faces", tags=["files"])
    def file_faces(file_id: str, frame: int = Query(0, ge=0)) -> dict[str, Any]:
        """Faces of a frame, left to right, with boxes and thumbnails; a face's ``reference`` id can be
        given as the ``reference`` option to swap only that person."""
        record = file_or_404(file_id)
        if record.frames:
            frame = min(frame, record.frames - 1)
        try:
            faces = preview.faces(record, frame)
        except RefusedInput as error:
            delete_file(error.file_id)
            raise ApiError(422, str(error)) from None
        except MasqueradeError as error:
            raise masquerade_error(error) from None
        return {"file": file_id, "frame": frame, "faces": faces}

    # -- preview ------------------------------------------------------------------------------------
    @app.post("/api/preview", tags=["preview"], response_class=Response,
              responses={200: {"content": {"image/jpeg": {}}, "description": "the swapped frame, "
                               "watermarked, with its C2PA label"}})
    def make_preview(body: PreviewRequest) -> Response:
        sources = sources_of(body.sources)
        target = file_or_404(body.target)
        config = config_for(body.options)
        reference_id = body.options.get("reference")
        reference = store.file(reference_id) if isinstance(reference_id,
            str) and is_id(reference_id) else None
        try:
            rendered = preview.render(sources, target, body.frame, config, reference)
        except RefusedInput as error:
            delete_file(error.file_id)
            raise ApiError(422, str(error)) from None
        except MasqueradeError as error:
            raise masquerade_error(error) from None
        return Response(rendered.jpeg, media_type="image/jpeg", headers={
            "X-Faces-Swapped": str(rendered.faces_swapped), "Cache-Control": "no-store",
            "Server-Timing": f"render;dur={rendered.seconds * 1000:.0f}"})

    # -- jobs ---------------------------------------------------------------------------------------
    @app.post("/api/jobs", status_code=201, tags=["jobs"])
    def add_job(body: JobRequest) -> dict[str, Any]:
        """Queue a swap of ``sources`` into each of ``targets`` (one output each)."""
        sources_of(body.sources)
        targets = [file_or_404(target) for target in body.targets]
        kinds = {t.kind for t in targets}
        # One kind: its options are checked as the CLI checks them for it. A mixed batch: video options
        # apply to its videos and image options to its images (the worker gives each target its own).
        config_for(body.options, tuple(kinds) if len(kinds) == 1 else (None,))
        job = store.add_job({"sources": body.sources, "targets": body.targets, "options": body.options})
        return {"id": job.id, "state": job.state}

    @app.get("/api/jobs", tags=["jobs"])
    def list_jobs() -> list[dict[str, Any]]:
        """Every job, in queue order."""
        return [job.public() for job in store.jobs()]

    @app.get("/api/jobs/{job_id}", tags=["jobs"])
    def get_job(job_id: str) -> dict[str, Any]:
        return job_or_404(job_id).public()

    @app.post("/api/jobs/{job_id}/cancel", tags=["jobs"])
    def cancel_job(job_id: str) -> dict[str, Any]:
        job = job_or_404(job_id)
        if job.state in TERMINAL:
            raise ApiError(409, f"the job is already {job.state}")
        return store.cancel(job_id).public()  # type: ignore[union-attr]

    @app.post("/api/jobs/{job_id}/retry", tags=["jobs"])
    def retry_job(job_id: str) -> dict[str, Any]:
        """Queue a failed or cancelled job again (targets already done are kept)."""
        job = job_or_404(job_id)
        if job.state not in ("failed", "cancelled"):
            raise ApiError(409, f"only failed or cancelled jobs can be retried; this one is {job.state}")
        return store.retry(job_id).public()  # type: ignore[union-attr]

    @app.post("/api/jobs/{job_id}/move", tags=["jobs"])
    def move_job(job_id: str, body: MoveRequest) -> dict[str, Any]:
        job_or_404(job_id)
        moved = store.move(job_id, body.position)
        if moved is None:
            raise ApiError(404, f"no job with id {job_id[:40]!r}")
        return moved.public()

    @app.delete("/api/jobs/{job_id}", tags=["jobs"])
    def delete_job(job_id: str) -> dict[str, Any]:
        """Forget a job and its outputs (a running job is stopped first)."""
        job_or_404(job_id)
        for relative in store.delete(job_id) or []:
            with contextlib.suppress(OSError, ValueError):
                data.inside(relative).unlink()
        return {"id": job_id, "deleted": True}

    @app.get("/api/jobs/{job_id}/outputs/{k}", tags=["jobs"])
    def job_output(job_id: str, k: int, download: bool = False) -> FileResponse:
        """Output ``k`` (in target order), with its watermark and C2PA label; ``download=true`` asks the
        browser to save it."""
        job_or_404(job_id)
        output = store.output(job_id, k)
        if output is None:
            raise ApiError(404, f"the job has no output {k} (yet)")
        path = data.inside(output.path)
        target = store.file(output.target)
        stem = Path(target.name).stem if target else f"output-{k}"
        return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix, "application/octet-stream"),
                            filename=f"{stem}-swapped{path.suffix}",
                            content_disposition_type="attachment" if download else "inline")

    sse_headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}

    @app.get("/api/jobs/{job_id}/events", tags=["jobs"], response_class=StreamingResponse,
             responses={200: {"content": {"text/event-stream": {}}}})
    async def job_events(job_id: str, request: Request) -> StreamingResponse:
        """Server-Sent Events: ``job`` (the job's JSON) on every change, until it ends or is ``deleted``."""
        await run_in_threadpool(job_or_404, job_id)

        async def read() -> dict[str, Any] | None:
            job = await run_in_threadpool(store.job, job_id)
            return None if job is None else job.public()

        stream = changes.stream("job", read, request.is_disconnected, lambda job: job["state"] in TERMINAL)
        return StreamingResponse(stream, media_type="text/event-stream", headers=sse_headers)

    @app.get("/api/events", tags=["jobs"], response_class=StreamingResponse,
             responses={200: {"content": {"text/event-stream": {}}}})
    async def all_events(request: Request) -> StreamingResponse:
        """Server-Sent Events: ``jobs`` (the whole list, in queue order) on every change."""

        async def read() -> list[dict[str, Any]]:
            return [job.public() for job in await run_in_threadpool(store.jobs)]

        return StreamingResponse(changes.stream("jobs", read, request.is_disconnected),
                                 media_type="text/event-stream", headers=sse_headers)

    # -- verify -------------------------------------------------------------------------------------
    @app.post("/api/verify", tags=["verify"], openapi_extra=upload_body)
    async def verify(request: Request) -> JSONResponse:
        """The JSON of ``masquerade verify --json`` for one uploaded file (which is not kept)."""
        from masquerade.verify import verify_file

        received = await take_upload(request)
        try:
            result = await run_in_threadpool(verify_file, received.path)
        except MasqueradeError as error:
            message = upload_message(error, received)
            document = {"all_labelled": False, "exit_code": 2,
                        "files": [{"path": received.name, "error": message}]}
            return JSONResponse({**document, "detail": message}, status_code=status_of(error))
        finally:
            received.path.unlink(missing_ok=True)
        entry = {**result.to_dict(), "path": received.name}
        return JSONResponse({"all_labelled": result.labelled, "exit_code": 0 if result.labelled else 1,
                             "files": [entry]})

    # -- the page -----------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(MasqueradeError)
    async def unexpected_masquerade_error(request: Request, error: MasqueradeError) -> JSONResponse:
        api = masquerade_error(error)
        return JSONResponse({"detail": api.detail, **api.extra}, status_code=api.status)

    return Guardrails(app, settings)
