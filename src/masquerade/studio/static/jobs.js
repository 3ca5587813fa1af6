// The job list, updated in place from the /api/events stream (a card is reused, so a playing output
// video is not reset by the next progress event).

const cards = new Map();

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const s = Math.max(0, Math.round(seconds));
  return s >= 3600 ? `${Math.floor(s / 3600)}:${String(Math.floor(s / 60) % 60).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`
    : `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function button(label, action, text, extra = "") {
  const b = document.createElement("button");
  b.type = "button";
  b.className = `small-btn ${extra}`;
  b.dataset.action = action;
  b.setAttribute("aria-label", label);
  b.title = label;
  b.textContent = text;
  return b;
}

function makeCard(job, ctx) {
  const li = document.createElement("li");
  li.className = "job";
  li.dataset.id = job.id;
  li.tabIndex = 0;
  li.innerHTML = `
    <div class="job-head"><span class="job-title"></span><span class="badge"></span></div>
    <div class="progress" role="progressbar" aria-valuemin="0" aria-valuemax="100"><span class="fill"></span></div>
    <div class="job-info small muted"></div>
    <p class="job-error small" hidden></p>
    <div class="job-actions"></div>
    <div class="outputs"></div>`;
  const actions = li.querySelector(".job-actions");
  actions.append(button("Move up", "up", "↑"), button("Move down", "down", "↓"), button("Cancel job", "cancel", "Cancel"),
    button("Retry job", "retry", "Retry"), button("Delete job", "delete", "Delete", "danger"));
  actions.addEventListener("click", (e) => {
    const action = e.target.closest("button")?.dataset.action;
    if (action) ctx.action(li.job, action);
  });
  // Keyboard: Alt+Up/Down move the focused job, Delete removes it.
  li.addEventListener("keydown", (e) => {
    if (e.target !== li) return;
    if (e.altKey && e.key === "ArrowUp") { e.preventDefault(); ctx.action(li.job, "up"); }
    if (e.altKey && e.key === "ArrowDown") { e.preventDefault(); ctx.action(li.job, "down"); }
    if (e.key === "Delete") { e.preventDefault(); ctx.action(li.job, "delete"); }
  });
  return li;
}

async function title(job, ctx) {
  const first = await ctx.fileName(job.targets[0]);
  return job.targets.length > 1 ? `${first} + ${job.targets.length - 1} more` : first;
}

function renderOutputs(box, job, ctx) {
  const key = job.outputs.map((o) => o.url).join("|");
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  box.replaceChildren(...job.outputs.map((output) => {
    const figure = document.createElement("figure");
    figure.className = "output";
    const media = document.createElement(output.kind === "video" ? "video" : "img");
    media.src = output.url;
    if (output.kind === "video") { media.controls = true; media.preload = "metadata"; }
    else media.alt = "Swapped output";
    const caption = document.createElement("figcaption");
    caption.className = "small";
    const link = document.createElement("a");
    link.href = `${output.url}?download=true`;
    link.textContent = "Download";
    link.setAttribute("download", "");
    const note = document.createElement("span");
    note.className = "muted";
    note.textContent = ` ${output.faces_swapped} face${output.faces_swapped === 1 ? "" : "s"} swapped`;
    ctx.fileName(output.target).then((name) => { link.setAttribute("aria-label", `Download the swap of ${name}`); });
    caption.append(link, note);
    if (output.warnings.length) {
      const warning = document.createElement("div");
      warning.className = "muted";
      warning.textContent = output.warnings.join("; ");
      caption.append(warning);
    }
    figure.append(media, caption);
    return figure;
  }));
}

export function renderJobs(list, jobs, ctx) {
  const seen = new Set();
  jobs.forEach((job, i) => {
    seen.add(job.id);
    let li = cards.get(job.id);
    if (!li) {
      li = makeCard(job, ctx);
      cards.set(job.id, li);
      title(job, ctx).then((text) => { li.querySelector(".job-title").textContent = `${text}`; });
    }
    li.job = job;
    li.dataset.state = job.state;
    const badge = li.querySelector(".badge");
    badge.textContent = job.state === "running" && job.cancel_requested ? "cancelling" : job.state;
    badge.className = `badge ${job.state}`;
    const percent = Math.round(job.progress * 100);
    const bar = li.querySelector(".progress");
    bar.setAttribute("aria-valuenow", String(percent));
    bar.setAttribute("aria-label", `Progress ${percent} %`);
    bar.querySelector(".fill").style.width = `${percent}%`;
    const info = [];
    if (job.state === "running" || job.state === "done") info.push(`${percent} %`);
    if (job.state === "running" && job.fps) info.push(`${job.fps.toFixed(1)} fps`);
    if (job.state === "running" && job.eta_s !== null) info.push(`ETA ${duration(job.eta_s)}`);
    if (job.state === "queued") info.push(`#${i + 1} in the queue`);
    if (job.state === "done" && job.started && job.finished) info.push(`took ${duration(job.finished - job.started)}`);
    li.querySelector(".job-info").textContent = info.join(" · ");
    const error = li.querySelector(".job-error");
    error.hidden = !job.error;
    error.textContent = job.error ?? "";
    const enable = { up: i > 0, down: i < jobs.length - 1, cancel: job.state === "queued" || job.state === "running",
      retry: job.state === "failed" || job.state === "cancelled", delete: true };
    for (const b of li.querySelectorAll(".job-actions button")) b.disabled = !enable[b.dataset.action];
    renderOutputs(li.querySelector(".outputs"), job, ctx);
    if (list.children[i] !== li) list.insertBefore(li, list.children[i] ?? null);
  });
  for (const [id, li] of cards) {
    if (!seen.has(id)) { li.remove(); cards.delete(id); }
  }
  document.getElementById("jobs-empty").hidden = jobs.length > 0;
  const running = jobs.filter((j) => j.state === "running").length;
  const queued = jobs.filter((j) => j.state === "queued").length;
  document.getElementById("queue-summary").textContent = jobs.length ? `${running} running · ${queued} queued` : "";
}
