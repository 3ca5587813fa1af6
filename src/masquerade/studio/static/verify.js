// The Verify tab: each dropped file goes to POST /api/verify (not kept) and its report is shown.
import { upload } from "./api.js";

function row(label, value, good) {
  const dt = document.createElement("dt");
  dt.textContent = label;
  const dd = document.createElement("dd");
  dd.textContent = value;
  if (good !== undefined) dd.className = good ? "good" : "bad";
  return [dt, dd];
}

function report(entry) {
  const li = document.createElement("li");
  li.className = "verify-card";
  const head = document.createElement("div");
  head.className = "job-head";
  const name = document.createElement("strong");
  name.textContent = entry.path;
  const verdict = document.createElement("span");
  if (entry.error) {
    verdict.className = "badge failed";
    verdict.textContent = "error";
    head.append(name, verdict);
    const p = document.createElement("p");
    p.className = "job-error small";
    p.textContent = entry.error;
    li.append(head, p);
    return li;
  }
  verdict.className = `badge ${entry.labelled ? "done" : "failed"}`;
  verdict.textContent = entry.labelled ? "labelled" : "not labelled";
  head.append(name, verdict);
  const mark = entry.watermark;
  const c2pa = entry.c2pa;
  const claims = c2pa.claims || {};
  const dl = document.createElement("dl");
  const frames = entry.media === "video" ? ` (${mark.frames_marked}/${mark.frames_read} frames)` : "";
  dl.append(
    ...row("Watermark", mark.found ? `found, payload ${mark.payload}, key ${mark.key_id}${frames}`
      : `not found (confidence ${mark.confidence.toFixed(2)})${frames}`, mark.found),
    ...row("C2PA manifest", c2pa.present ? (c2pa.valid ? `valid${c2pa.trusted ? ", trusted signer" : ", signer not on a trust list"}`
      : `INVALID (${(c2pa.failures || []).join(", ") || c2pa.validation_state})`)
      : (entry.plain_tag.present ? "none; plain metadata tag (unsigned)" : (c2pa.error ? `none (${c2pa.error})` : "none")),
    c2pa.present ? c2pa.valid : undefined),
  );
  if (c2pa.present) {
    dl.append(...row("Signer", `${claims.signer ?? "?"}, issued by ${claims.issuer ?? "?"}`),
      ...row("Claims", `${(claims.actions || []).filter(Boolean).join(", ") || "no actions"} by ${claims.software_agent ?? "unknown software"}`),
      ...row("Source type", (claims.digital_source_type || "").split("/").pop() || "not stated"));
  }
  li.append(head, dl);
  return li;
}

export function setupVerify({ toast }) {
  const zone = document.getElementById("drop-verify");
  const input = document.getElementById("pick-verify");
  const results = document.getElementById("verify-results");
  const check = async (files) => {
    for (const file of files) {
      const pending = document.createElement("li");
      pending.className = "verify-card muted";
      pending.textContent = `Checking ${file.name}…`;
      results.prepend(pending);
      try {
        const doc = await upload("/api/verify", file);
        pending.replaceWith(report(doc.files[0]));
      } catch (error) {
        if (error.body && error.body.files) pending.replaceWith(report(error.body.files[0]));
        else { pending.remove(); toast(`${file.name}: ${error.message}`); }
      }
    }
  };
  input.addEventListener("change", () => { check([...input.files]); input.value = ""; });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => { e.preventDefault(); zone.classList.remove("over"); check([...e.dataTransfer.files]); });
}
