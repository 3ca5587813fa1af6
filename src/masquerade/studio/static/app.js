// The studio page: inputs and settings, live preview, faces, the job queue (pushed by SSE), Verify.
import { ApiError, call, events, onTokenNeeded, upload } from "./api.js";
import { renderJobs } from "./jobs.js";
import { setupVerify } from "./verify.js";

const $ = (selector, root = document) => root.querySelector(selector);
const el = (tag, props = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
};

const state = {
  sources: [],          // file records
  targets: [],
  current: null,        // id of the target shown in the preview
  frame: 0,
  faces: [],
  reference: null,      // id of the clicked face's thumbnail file
  models: null,
};

// -- messages ---------------------------------------------------------------------------------------
let toastTimer = null;
export function toast(message, kind = "error") {
  const box = $("#toast");
  box.textContent = message;
  box.className = `toast ${kind}`;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.hidden = true; }, kind === "error" ? 9000 : 4000);
}

// -- token ------------------------------------------------------------------------------------------
onTokenNeeded(() => new Promise((resolve) => {
  const fromUrl = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromUrl) {
    history.replaceState(null, "", location.pathname);
    resolve(fromUrl);
    return;
  }
  const dialog = $("#token-dialog");
  const input = $("#token-input");
  if (dialog.open) {
    $("#token-error").hidden = false;
    $("#token-error").textContent = "That token was not accepted.";
  }
  const done = (e) => {
    e.preventDefault();
    if (!input.value) return;
    $("#token-form").removeEventListener("submit", done);
    const token = input.value;
    input.value = "";
    dialog.close();
    resolve(token);
  };
  $("#token-form").addEventListener("submit", done);
  if (!dialog.open) dialog.showModal();
  input.focus();
}));

// -- files ------------------------------------------------------------------------------------------
function fileChip(record, list) {
  const isTarget = list === "targets";
  const thumb = record.kind === "video" ? `/api/files/${record.id}/frame?n=0` : `/api/files/${record.id}/content`;
  const details = record.kind === "video"
    ? `${record.width}×${record.height} · ${record.frames ?? "?"} frames`
    : `${record.width}×${record.height}`;
  const select = () => { if (isTarget) chooseTarget(record.id); };
  const item = el("li", { class: "chip", dataset: { id: record.id } },
    el("img", { src: thumb, alt: "", loading: "lazy" }),
    el("span", { class: "chip-text" },
      el("span", { class: "chip-name", title: record.name }, record.name),
      el("span", { class: "muted small" }, `${record.kind} · ${details}`)),
    el("button", { class: "icon", type: "button", "aria-label": `Remove ${record.name}`, title: "Remove",
      onclick: (e) => { e.stopPropagation(); removeFile(record.id, list); } }, "×"));
  if (isTarget) {
    item.setAttribute("role", "radio");
    item.tabIndex = 0;
    item.setAttribute("aria-checked", String(state.current === record.id));
    item.setAttribute("aria-label", `Preview ${record.name}`);
    item.addEventListener("click", select);
    item.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); select(); } });
  }
  return item;
}

function renderFiles() {
  for (const list of ["sources", "targets"]) {
    const ul = $(`#${list}`);
    ul.replaceChildren(...state[list].map((record) => fileChip(record, list)));
  }
  updateRunButton();
}

function pendingChip(name, list) {
  const bar = el("span", { class: "bar" }, el("span", { class: "fill" }));
  const item = el("li", { class: "chip pending" },
    el("span", { class: "chip-text" }, el("span", { class: "chip-name" }, name), bar));
  $(`#${list}`).append(item);
  return { item, progress: (f) => { bar.firstChild.style.width = `${Math.round(f * 100)}%`; } };
}

async function addFiles(files, list) {
  for (const file of files) {
    const pending = pendingChip(file.name, list);
    try {
      const record = await upload("/api/files", file, pending.progress);
      if (list === "sources" && record.kind !== "image") {
        toast(`${record.name} is a video: source faces come from photos`);
        call(`/api/files/${record.id}`, { method: "DELETE" }).catch(() => {});
        continue;
      }
      state[list].push(record);
      if (list === "targets" && !state.current) state.current = record.id;
    } catch (error) {
      toast(`${file.name}: ${error.message}`);
    } finally {
      pending.item.remove();
    }
  }
  renderFiles();
  if (list === "targets") await chooseTarget(state.current, true);
  else schedulePreview();
}

async function removeFile(id, list) {
  state[list] = state[list].filter((r) => r.id !== id);
  if (state.current === id) {
    state.current = state.targets[0]?.id ?? null;
    state.reference = null;
  }
  renderFiles();
  call(`/api/files/${id}`, { method: "DELETE" }).catch((error) => { if (error.status !== 409) toast(error.message); });
  if (list === "targets") await chooseTarget(state.current, true);
  else schedulePreview();
}

function setupDrop(zone, input, onFiles) {
  input.addEventListener("change", () => { onFiles([...input.files]); input.value = ""; });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    onFiles([...e.dataTransfer.files]);
  });
}

// -- target, frame and faces ---------------------------------------------------------------------------
function currentTarget() { return state.targets.find((r) => r.id === state.current) ?? null; }

async function chooseTarget(id, force = false) {
  if (id === state.current && !force) return;
  state.current = id;
  state.frame = 0;
  state.reference = null;
  renderFiles();
  const target = currentTarget();
  const scrub = $("#scrub");
  if (target && target.kind === "video") {
    scrub.hidden = false;
    $("#frame").max = String(Math.max(0, (target.frames ?? 1) - 1));
    $("#frame").value = "0";
    $("#frame-label").textContent = "0";
  } else {
    scrub.hidden = true;
  }
  await showFrame();
}

async function showFrame() {
  const target = currentTarget();
  const original = $("#original");
  if (!target) {
    original.removeAttribute("src");
    $("#preview").removeAttribute("src");
    state.faces = [];
    renderFaces();
    setStatus("Add a source photo and a target.");
    return;
  }
  original.src = target.kind === "video" ? `/api/files/${target.id}/frame?n=${state.frame}` : `/api/files/${target.id}/content`;
  for (const frame of ["#original-frame", "#preview-frame"]) $(frame).style.aspectRatio = `${target.width} / ${target.height}`;
  await loadFaces();
  schedulePreview();
}

async function loadFaces() {
  const target = currentTarget();
  if (!target) return;
  const wanted = `${target.id}:${state.frame}`;
  $("#faces").setAttribute("aria-busy", "true");
  try {
    const result = await call(`/api/files/${target.id}/faces?frame=${state.frame}`);
    if (`${target.id}:${state.frame}` !== wanted) return;
    state.faces = result.faces;
  } catch (error) {
    state.faces = [];
    toast(error.message);
    if (error.status === 422) { // refused content: the server deleted the file
      state.targets = state.targets.filter((r) => r.id !== target.id);
      state.current = state.targets[0]?.id ?? null;
      renderFiles();
    }
  } finally {
    $("#faces").removeAttribute("aria-busy");
  }
  renderFaces();
}

function renderFaces() {
  const box = $("#faces");
  const known = new Set(state.faces.map((f) => f.reference));
  if (state.reference && !known.has(state.reference) && !state.keepReference) state.reference = null;
  box.replaceChildren(...state.faces.map((face) => el("button", {
    type: "button", class: "face", "aria-pressed": String(state.reference === face.reference),
    "aria-label": `Face ${face.index + 1}${state.reference === face.reference ? " (chosen)" : ""}`,
    title: `Face ${face.index + 1}: swap only this person`,
    onclick: () => chooseFace(face),
  }, el("img", { src: face.thumbnail, alt: "" }), el("span", { class: "small" }, `#${face.index + 1}`))));
  $("#faces-note").textContent = state.faces.length
    ? (state.reference ? "Swapping only the chosen person. Click again to undo." : "Click a face to swap only that person.")
    : (currentTarget() ? "No face found in this frame." : "");
}

function chooseFace(face) {
  state.reference = state.reference === face.reference ? null : face.reference;
  state.keepReference = state.reference !== null;
  if (state.reference) $("#settings").elements.faces.value = "reference";
  syncSettingsVisibility();
  renderFaces();
  schedulePreview();
}

// -- settings ---------------------------------------------------------------------------------------
function options() {
  const form = $("#settings").elements;
  const out = { faces: form.faces.value, swapper: form.swapper.value, enhancer: form.enhancer.value };
  const neural = out.swapper !== "mesh"; // mask and pixel boost are for neural swappers only
  const number = (name) => (form[name].value === "" ? undefined : Number(form[name].value));
  if (out.faces === "index") out.face_index = number("face_index") ?? 0;
  if (out.faces === "reference") {
    if (state.reference) out.reference = state.reference;
    if (form.similarity.value !== "") out.similarity = number("similarity");
  }
  if (neural) out.mask = form.mask.value;
  if (neural && form.pixel_boost.value) out.pixel_boost = Number(form.pixel_boost.value);
  // Output options go to the kinds of target they are for (the server refuses the others).
  const kinds = new Set(state.targets.map((r) => r.kind));
  const wanted = [...(kinds.has("video") ? ["video_quality", "trim_start", "trim_end"] : []),
    ...(kinds.has("image") ? ["image_quality"] : [])];
  for (const name of wanted) {
    const value = number(name);
    if (value !== undefined && !(name === "image_quality" && value === 95)) out[name] = value;
  }
  if (kinds.has("video") && form.skip_audio.checked) out.skip_audio = true;
  return out;
}

function syncSettingsVisibility() {
  const form = $("#settings").elements;
  for (const name of ["mask", "pixel_boost"]) form[name].disabled = form.swapper.value === "mesh";
  const faces = form.faces.value;
  for (const label of document.querySelectorAll("[data-show]")) label.hidden = label.dataset.show !== faces;
  if (faces !== "reference" && state.reference) {
    state.reference = null;
    state.keepReference = false;
    renderFaces();
  }
}

function missingModel() {
  for (const select of document.querySelectorAll("select[data-model]")) {
    const choice = state.models?.[select.dataset.model]?.find((c) => c.value === select.value);
    const hint = $(`[data-hint="${select.dataset.model}"]`);
    hint.hidden = !choice || choice.installed;
    hint.textContent = choice && !choice.installed ? choice.hint : "";
  }
  for (const select of document.querySelectorAll("select[data-model]")) {
    const choice = state.models?.[select.dataset.model]?.find((c) => c.value === select.value);
    if (choice && !choice.installed) return choice;
  }
  return null;
}

async function loadModels() {
  try {
    const result = await call("/api/models");
    state.models = result.choices;
    for (const select of document.querySelectorAll("select[data-model]")) {
      const choices = state.models[select.dataset.model] ?? [];
      select.replaceChildren(...choices.map((c) => el("option", { value: c.value },
        `${c.value}${c.embedded ? " · embedded" : c.installed ? " · installed" : " · missing"}`)));
    }
  } catch (error) {
    toast(error.message);
  }
}

// -- preview ----------------------------------------------------------------------------------------
let previewTimer = null;
let previewBusy = false;
let previewAgain = false;
let previewUrl = null;

function setStatus(text) { $("#preview-status").textContent = text; }

function schedulePreview() {
  clearTimeout(previewTimer);
  previewTimer = setTimeout(runPreview, 120);
}

async function runPreview() {
  if (previewBusy) { previewAgain = true; return; }
  const target = currentTarget();
  if (!target || state.sources.length === 0) {
    setStatus(state.sources.length === 0 ? "Add a source photo to see the swap." : "Add a target to preview.");
    return;
  }
  const missing = missingModel();
  if (missing) { setStatus(`${missing.value} is not installed (see the note under Settings).`); return; }
  previewBusy = true;
  $("#preview-frame").classList.add("busy");
  const started = performance.now();
  try {
    const response = await call("/api/preview", {
      method: "POST", raw: true,
      json: { sources: state.sources.map((r) => r.id), target: target.id, frame: state.frame, options: options() },
    });
    const blob = await response.blob();
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(blob);
    $("#preview").src = previewUrl;
    const swapped = Number(response.headers.get("X-Faces-Swapped") ?? 0);
    const ms = Math.round(performance.now() - started);
    setStatus(swapped ? `${swapped} face${swapped === 1 ? "" : "s"} swapped · ${ms} ms` : `no matching face in this frame · ${ms} ms`);
    $("#preview-frame").dataset.previews = String(Number($("#preview-frame").dataset.previews ?? 0) + 1);
  } catch (error) {
    setStatus(error.message);
    if (error instanceof ApiError && error.status === 422 && /refused/.test(error.message)) {
      toast(error.message);
      await refreshFiles();
    }
  } finally {
    previewBusy = false;
    $("#preview-frame").classList.remove("busy");
    if (previewAgain) { previewAgain = false; schedulePreview(); }
  }
}

async function refreshFiles() {
  // The server deletes a refused file: drop records that no longer exist.
  for (const list of ["sources", "targets"]) {
    const kept = [];
    for (const record of state[list]) {
      try { await call(`/api/files/${record.id}`); kept.push(record); } catch { /* gone */ }
    }
    state[list] = kept;
  }
  if (!state.targets.some((r) => r.id === state.current)) state.current = state.targets[0]?.id ?? null;
  renderFiles();
  await showFrame();
}

// -- jobs -------------------------------------------------------------------------------------------
function updateRunButton() {
  const run = $("#run");
  const n = state.targets.length;
  run.disabled = state.sources.length === 0 || n === 0;
  run.textContent = n > 1 ? `Queue swap (${n} targets)` : "Queue swap";
}

async function queueJob() {
  if ($("#run").disabled) return;
  const missing = missingModel();
  if (missing) { toast(missing.hint); return; }
  try {
    await call("/api/jobs", { method: "POST", json: {
      sources: state.sources.map((r) => r.id), targets: state.targets.map((r) => r.id), options: options() } });
    toast(state.targets.length > 1 ? `Queued a batch of ${state.targets.length}` : "Queued", "info");
  } catch (error) {
    toast(error.message);
  }
}

async function jobAction(job, action) {
  try {
    if (action === "delete") await call(`/api/jobs/${job.id}`, { method: "DELETE" });
    else if (action === "up" || action === "down") {
      await call(`/api/jobs/${job.id}/move`, { method: "POST", json: { position: Math.max(0, job.position + (action === "up" ? -1 : 1)) } });
    } else await call(`/api/jobs/${job.id}/${action}`, { method: "POST" });
  } catch (error) {
    toast(error.message);
  }
}

const names = new Map();
async function fileName(id) {
  if (names.has(id)) return names.get(id);
  const local = [...state.sources, ...state.targets].find((r) => r.id === id);
  if (local) { names.set(id, local.name); return local.name; }
  try { const r = await call(`/api/files/${id}`); names.set(id, r.name); return r.name; } catch { return "deleted file"; }
}

// -- tabs and keys ----------------------------------------------------------------------------------
function setupTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  const select = (tab) => {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
      document.getElementById(t.getAttribute("aria-controls")).hidden = !on;
    }
    tab.focus();
  };
  for (const tab of tabs) {
    tab.addEventListener("click", () => select(tab));
    tab.addEventListener("keydown", (e) => {
      const i = tabs.indexOf(tab);
      if (e.key === "ArrowRight") select(tabs[(i + 1) % tabs.length]);
      if (e.key === "ArrowLeft") select(tabs[(i - 1 + tabs.length) % tabs.length]);
    });
  }
}

function setupKeys() {
  document.addEventListener("keydown", (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === "Enter") { e.preventDefault(); queueJob(); }
    if (e.key === "Escape") $("#toast").hidden = true;
  });
}

// -- start ------------------------------------------------------------------------------------------
async function start() {
  setupTabs();
  setupKeys();
  setupVerify({ toast });
  setupDrop($("#drop-sources"), $("#pick-sources"), (files) => addFiles(files, "sources"));
  setupDrop($("#drop-targets"), $("#pick-targets"), (files) => addFiles(files, "targets"));
  $("#settings").addEventListener("input", (e) => {
    if (e.target.name === "faces" || e.target.name === "swapper") syncSettingsVisibility();
    missingModel(); // the hint under a model choice follows it at once
    schedulePreview();
  });
  $("#settings").addEventListener("submit", (e) => e.preventDefault());
  let frameTimer = null;
  $("#frame").addEventListener("input", () => {
    state.frame = Number($("#frame").value);
    $("#frame-label").textContent = String(state.frame);
    const target = currentTarget();
    if (target) $("#original").src = `/api/files/${target.id}/frame?n=${state.frame}`;
    clearTimeout(frameTimer);
    frameTimer = setTimeout(async () => { await loadFaces(); schedulePreview(); }, 150);
  });
  $("#run").addEventListener("click", queueJob);
  syncSettingsVisibility();
  try {
    const health = await call("/api/health");
    $("#version").textContent = `v${health.version}`;
  } catch (error) {
    toast(error.message);
  }
  await loadModels();
  missingModel();
  events("/api/events", { jobs: (jobs) => renderJobs($("#jobs"), jobs, { action: jobAction, fileName }) });
}

start();
