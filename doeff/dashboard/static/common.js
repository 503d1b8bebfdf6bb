// Shared by the dashboard's pages. Everything read from the store goes into the page as text
// (textContent, attribute values), never as markup.

const SVG = "http://www.w3.org/2000/svg";
let updates = 0;

/** An element with attributes and, if given, text. */
export function el(tag, attrs = {}, text = null) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== null) node.textContent = String(text);
  return node;
}

/** An SVG element with attributes and, if given, text. */
export function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== null) node.textContent = String(text);
  return node;
}

/** Put text into the element of id `id` (if the page has it). */
export function setText(id, text) {
  const node = document.getElementById(id);
  if (node) node.textContent = text === null || text === undefined ? "" : String(text);
}

/** Tell tests and the latency benchmark that the page has drawn an update. */
export function markUpdated() {
  updates += 1;
  document.body.dataset.updated = String(updates);
}

export function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.getAttribute("content") : "";
}

/** GET a JSON document; throws an Error with the server's message on failure. */
export async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

/** POST with the session's CSRF token; resolves to the JSON answer, throws on failure. */
export async function post(url) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "X-CSRF-Token": csrfToken(), Accept: "application/json" },
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

/** Listen to a server-sent event stream; `handlers` maps event names to functions of data. */
export function listen(url, handlers) {
  const source = new EventSource(url);
  const live = document.getElementById("live");
  source.onopen = () => { if (live) { live.textContent = "live"; live.className = "live on"; } };
  source.onerror = () => { if (live) { live.textContent = "reconnecting…"; live.className = "live off"; } };
  // The server's own report of a failing store (the stream itself stays up).
  source.addEventListener("store-error", (event) => {
    if (live) { live.textContent = JSON.parse(event.data).error; live.className = "live off"; }
  });
  for (const [name, handle] of Object.entries(handlers)) {
    source.addEventListener(name, (event) => {
      if (live) { live.textContent = "live"; live.className = "live on"; }
      handle(JSON.parse(event.data));
    });
  }
  return source;
}

/** Fill the header's store name. */
export async function showStore() {
  try {
    const info = await getJSON("/api/info");
    setText("store", info.store + (info.read_only ? " (read-only)" : ""));
    return info;
  } catch (error) {
    setText("store", String(error.message));
    return null;
  }
}

export function formatBytes(n) {
  if (n === null || n === undefined) return "-";
  if (n < 1024) return `${n} B`;
  let size = n;
  for (const unit of ["KiB", "MiB", "GiB", "TiB"]) {
    size /= 1024;
    if (size < 1024 || unit === "TiB") return `${size.toFixed(1)} ${unit}`;
  }
  return `${n} B`;
}

export function formatSeconds(s) {
  if (s < 0.001) return "<1 ms";
  if (s < 0.1) return `${(s * 1000).toFixed(0)} ms`;
  if (s < 10) return `${s.toFixed(2)} s`;
  return `${s.toFixed(1)} s`;
}

// "." and ".." are path segments a browser resolves away (even written %2E), so a run of such
// an id is named by `?id=` after an empty segment, which the server reads instead.
const DOTS = new Set([".", ".."]);

export function runHref(runId) {
  if (DOTS.has(runId)) return "/run/?id=" + encodeURIComponent(runId);
  return "/run/" + encodeURIComponent(runId);
}

/** The API address of a run (`suffix`: "events", "cancel", ...), as `runHref` names it. */
export function runApi(runId, suffix = "") {
  const tail = suffix ? "/" + suffix : "";
  if (DOTS.has(runId)) return `/api/runs/${tail}?id=${encodeURIComponent(runId)}`;
  return "/api/runs/" + encodeURIComponent(runId) + tail;
}
