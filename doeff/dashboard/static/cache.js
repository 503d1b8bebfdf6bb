// The cache page: records by key prefix or step, and the store's statistics as a bar chart.
import { el, formatBytes, getJSON, markUpdated, setText, showStore, svg } from "./common.js";

const prefix = document.getElementById("cache-prefix");
const step = document.getElementById("cache-step");
const body = document.querySelector("#cache tbody");
let pending = null;

async function loadRecords() {
  const query = new URLSearchParams();
  if (prefix.value) query.set("prefix", prefix.value);
  if (step.value) query.set("step", step.value);
  let rows;
  try {
    rows = await getJSON("/api/cache?" + query.toString());
  } catch (error) {
    setText("cache-count", error.message);
    return;
  }
  body.replaceChildren(...rows.map((r) => {
    const row = el("tr", { class: "record", "data-key": r.key });
    let value;
    if (r.value !== null) value = el("td", { class: "value" }, r.value);
    else value = el("td", { class: "value note" }, r.hidden ?? r.error ?? "-");
    if (r.hidden !== null) value.classList.add("hidden-value");
    row.append(el("td", { class: "key" }, r.key), el("td", { class: "codec" }, r.codec),
      el("td", { class: "size", title: `${r.size} bytes` }, formatBytes(r.size)),
      el("td", { class: "age", title: r.updated }, r.age ?? "-"),
      el("td", { class: "expiry" }, r.expiry), value);
    return row;
  }));
  setText("cache-count", `${rows.length} record${rows.length === 1 ? "" : "s"}`);
  markUpdated();
}

// Two bars per codec: records (left column) and bytes (right), each scaled to its largest.
async function loadStats() {
  let stats;
  try {
    stats = await getJSON("/api/stats");
  } catch (error) {
    setText("stats-line", error.message);
    return;
  }
  const chart = document.getElementById("stats-chart");
  const rows = Object.entries(stats.codecs).map(([codec, c]) => [codec, c.records, c.bytes]);
  if (stats.unreadable.records) rows.push(["unreadable", stats.unreadable.records, stats.unreadable.bytes]);
  const rowH = 24, labelW = 110, barW = 230, gap = 90, top = 20;
  const maxRecords = Math.max(1, ...rows.map((r) => r[1]));
  const maxBytes = Math.max(1, ...rows.map((r) => r[2]));
  const parts = [
    svg("text", { class: "chart-head", x: labelW, y: 12 }, "records"),
    svg("text", { class: "chart-head", x: labelW + barW + gap, y: 12 }, "bytes"),
  ];
  rows.forEach(([codec, records, bytes], i) => {
    const y = top + i * rowH;
    parts.push(svg("text", { class: "codec-label", x: labelW - 8, y: y + 15, "text-anchor": "end" }, codec));
    const r = svg("rect", { class: "bar records", "data-codec": codec, x: labelW, y: y + 3, height: rowH - 8, width: Math.max(1, (records / maxRecords) * barW).toFixed(1) });
    r.append(svg("title", {}, `${codec}: ${records} records`));
    const b = svg("rect", { class: "bar bytes", "data-codec": codec, x: labelW + barW + gap, y: y + 3, height: rowH - 8, width: Math.max(1, (bytes / maxBytes) * barW).toFixed(1) });
    b.append(svg("title", {}, `${codec}: ${bytes} bytes`));
    parts.push(r, b,
      svg("text", { class: "bar-value", x: labelW + Number(r.getAttribute("width")) + 4, y: y + 15 }, String(records)),
      svg("text", { class: "bar-value", x: labelW + barW + gap + Number(b.getAttribute("width")) + 4, y: y + 15 }, formatBytes(bytes)));
  });
  const height = top + Math.max(1, rows.length) * rowH + 4;
  chart.setAttribute("viewBox", `0 0 ${labelW + 2 * barW + gap + 20} ${height}`);
  chart.setAttribute("height", String(height));
  chart.replaceChildren(...parts);
  setText("stats-line", `${stats.records} records, ${formatBytes(stats.bytes)} in all`);
  markUpdated();
}

function soon() {
  clearTimeout(pending);
  pending = setTimeout(loadRecords, 150);
}

const query = new URLSearchParams(location.search);
prefix.value = query.get("prefix") ?? "";
step.value = query.get("step") ?? "";
prefix.addEventListener("input", soon);
step.addEventListener("input", soon);
document.getElementById("cache-refresh").addEventListener("click", () => { loadRecords(); loadStats(); });
showStore();
loadStats();
loadRecords();
