// The runs page: a table kept current by the /api/events stream (changes only).
import { el, listen, markUpdated, runHref, setText, showStore } from "./common.js";

const runs = new Map();
const filter = document.getElementById("status-filter");
const body = document.querySelector("#runs tbody");

function render() {
  const wanted = filter.value;
  const shown = [...runs.values()]
    .filter((r) => !wanted || r.status === wanted)
    .sort((a, b) => b.started_at - a.started_at || (a.run_id < b.run_id ? -1 : 1));
  const rows = shown.map((r) => {
    const row = el("tr", { class: "run", "data-run-id": r.run_id, "data-status": r.status });
    const idCell = el("td", { class: "run-id" });
    idCell.append(el("a", { href: runHref(r.run_id) }, r.run_id));
    const status = el("td", { class: `status ${r.status}` }, r.status);
    if (r.lost_reason) status.title = r.lost_reason;
    row.append(idCell, status, el("td", { class: "age", title: r.started }, r.age),
      el("td", { class: "steps" }, r.step_count), el("td", { class: "effect" }, r.effect ?? "-"));
    return row;
  });
  body.replaceChildren(...rows);
  document.getElementById("no-runs").hidden = runs.size > 0;
  setText("run-count", `${shown.length} of ${runs.size}`);
  markUpdated();
}

// Records the server could not read: each named, with why (the list comes whole each time).
function renderUnreadable(bad) {
  const box = document.getElementById("unreadable-runs");
  box.querySelector("ul").replaceChildren(...bad.map((b) => {
    const item = el("li", { class: "unreadable-run", "data-run-id": b.run_id });
    item.append(el("code", {}, b.run_id), ": ", el("span", { class: "error" }, b.error));
    return item;
  }));
  box.hidden = bad.length === 0;
}

function apply(change) {
  if (change.full) runs.clear();
  for (const r of change.runs) runs.set(r.run_id, r);
  for (const id of change.removed) runs.delete(id);
  renderUnreadable(change.unreadable ?? []);
  render();
}

const initial = new URLSearchParams(location.search).get("status");
if (initial !== null) filter.value = initial;
filter.addEventListener("change", () => {
  const url = new URL(location.href);
  if (filter.value) url.searchParams.set("status", filter.value);
  else url.searchParams.delete("status");
  history.replaceState(null, "", url);
  render();
});
showStore();
listen("/api/events", { runs: apply });
