// A small reader for /api/openapi.json (no CDN: the page must work offline and under the CSP).
const root = document.getElementById("endpoints");

function schemaText(schema, spec, depth = 0) {
  if (!schema) return "";
  if (schema.$ref) {
    const name = schema.$ref.split("/").pop();
    return depth > 1 ? name : `${name} ${schemaText(spec.components.schemas[name], spec, depth + 1)}`;
  }
  if (schema.type === "object" && schema.properties) {
    const required = new Set(schema.required || []);
    return `{ ${Object.entries(schema.properties).map(([k, v]) => `${k}${required.has(k) ? "" : "?"}: ${schemaText(v, spec, depth + 1) || v.type || "any"}`).join(", ")} }`;
  }
  if (schema.type === "array") return `[${schemaText(schema.items, spec, depth + 1) || "…"}]`;
  if (schema.anyOf) return schema.anyOf.map((s) => schemaText(s, spec, depth + 1) || s.type).join(" | ");
  return schema.format === "binary" ? "file" : (schema.type || "");
}

async function load() {
  const response = await fetch("/api/openapi.json");
  if (!response.ok) { root.textContent = `Could not load the API description (${response.status}).`; return; }
  const spec = await response.json();
  root.replaceChildren();
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const section = document.createElement("section");
      section.className = "endpoint";
      const h = document.createElement("h2");
      h.innerHTML = `<span class="badge"></span> <code></code>`;
      h.querySelector(".badge").textContent = method.toUpperCase();
      h.querySelector("code").textContent = path;
      section.append(h);
      const text = op.description || op.summary;
      if (text) { const p = document.createElement("p"); p.textContent = text; section.append(p); }
      const params = (op.parameters || []).map((p) => `${p.name} (${p.in}${p.required ? ", required" : ""})`);
      if (params.length) { const p = document.createElement("p"); p.className = "muted small"; p.textContent = `Parameters: ${params.join(", ")}`; section.append(p); }
      const body = op.requestBody?.content;
      if (body) {
        const [type, media] = Object.entries(body)[0];
        const p = document.createElement("p");
        p.className = "muted small";
        p.textContent = `Body (${type}): ${schemaText(media.schema, spec)}`;
        section.append(p);
      }
      root.append(section);
    }
  }
}
load();
