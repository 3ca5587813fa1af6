// Talking to /api: JSON calls, uploads with progress, and the one-time token exchange.
// Standard web APIs only (fetch, XMLHttpRequest, EventSource), so Chromium and Firefox behave alike.

export class ApiError extends Error {
  constructor(status, detail, body) {
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

let unlockWaiters = null;
let askToken = async () => { throw new ApiError(401, "this studio needs its token"); };

/** Set how the page asks the person for the token (a dialog); called again on every 401. */
export function onTokenNeeded(ask) { askToken = ask; }

async function unlock() {
  // Several calls may hit 401 at once: ask once, let all of them retry.
  if (!unlockWaiters) {
    unlockWaiters = (async () => {
      for (;;) {
        const token = await askToken();
        const response = await fetch("/api/session", { method: "POST", headers: { Authorization: `Bearer ${token}` } });
        if (response.ok) return;
      }
    })().finally(() => { unlockWaiters = null; });
  }
  return unlockWaiters;
}

async function readError(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  const detail = body && typeof body.detail === "string" ? body.detail : `${response.status} ${response.statusText}`;
  return new ApiError(response.status, detail, body);
}

/** fetch() under /api that unlocks on 401 and throws ApiError with the server's one-line detail. */
export async function call(path, { method = "GET", json, signal, raw = false } = {}) {
  for (let attempt = 0; ; attempt++) {
    const init = { method, signal, headers: {} };
    if (json !== undefined) {
      init.body = JSON.stringify(json);
      init.headers["Content-Type"] = "application/json";
    }
    const response = await fetch(path, init);
    if (response.status === 401 && attempt < 3) {
      await unlock();
      continue;
    }
    if (!response.ok) throw await readError(response);
    return raw ? response : response.json();
  }
}

/** Upload one file as multipart field "file"; onProgress(0..1). Resolves to the server's JSON. */
export function upload(path, file, onProgress) {
  const send = () => new Promise((resolve, reject) => {
    const form = new FormData();
    form.append("file", file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (e) => { if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total); });
    xhr.addEventListener("load", () => {
      const body = xhr.response;
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body && typeof body.detail === "string" ? body.detail : `HTTP ${xhr.status}`, body));
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, `could not upload ${file.name} (connection lost)`)));
    xhr.send(form);
  });
  return send().catch(async (error) => {
    if (error.status !== 401) throw error;
    await unlock();
    return send();
  });
}

/** An EventSource on path that re-opens itself after the page was unlocked. */
export function events(path, handlers) {
  let source = null;
  const open = () => {
    source = new EventSource(path);
    for (const [name, handler] of Object.entries(handlers)) {
      source.addEventListener(name, (e) => handler(JSON.parse(e.data)));
    }
    source.addEventListener("error", async () => {
      if (source.readyState === EventSource.CLOSED) {
        // Closed for good: most likely a 401 (EventSource cannot say). Unlock and reopen.
        try { await call("/api/health"); } catch { /* call() unlocked or the server is down */ }
        setTimeout(open, 1000);
      }
    });
  };
  open();
  return () => source && source.close();
}
