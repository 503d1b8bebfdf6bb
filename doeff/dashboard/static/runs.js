// The runs page: the first page of the list, kept current by the /api/events stream (changes
// only), and older pages loaded on demand by "Show more" from /api/runs (as they were then).
import { el, getJSON, listen, markUpdated, runHref, setText, showStore } from "./common.js";

const live = new Map(); // the first page, as the stream keeps it
const older = new Map(); // rows below it: loaded by "Show more", or pushed down by newer runs
let counts = null; // {counts: {status: n}, total: n} as the server last said
let source = null;
let loading = false;
let exhausted = false; // the last "Show more" found nothing after the oldest row shown
const filter = document.getElementById("status-filter");
const body = document.querySelector("#runs tbody");
const more = document.getElementById("show-more");

// The server's order: newest first, runs started at the same time by id.
const newestFirst = (a, b) => b.started_at - a.started_at || (a.run_id < b.run_id ? -1 : 1);

function shownRuns() {
  return [...live.values(), ...[...older.values()].filter((r) => !live.has(r.run_id))]
    .sort(newestFirst);
}

function render() {
  const shown = shownRuns();
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
  if (counts !== null) {
    const wanted = filter.value;
    const matching = wanted ? counts.counts[wanted] ?? 0 : counts.total;
    document.getElementById("no-runs").hidden = counts.total > 0;
    setText("run-count", `${shown.length} of ${matching} ${wanted ? wanted + " " : ""}runs`);
    for (const option of filter.options) {
      const n = option.value ? counts.counts[option.value] ?? 0 : counts.total;
      option.textContent = `${option.value || "all"} (${n})`;
    }
    more.hidden = exhausted || shown.length >= matching;
  }
  more.disabled = loading;
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
  if (change.full) live.clear();
  for (const r of change.runs) { live.set(r.run_id, r); older.delete(r.run_id); }
  for (const id of change.removed) { live.delete(id); older.delete(id); }
  // Still runs, pushed off the first page by newer ones: they stay on the page, below it.
  for (const id of change.below) {
    if (live.has(id)) older.set(id, live.get(id));
    live.delete(id);
  }
  const now = { counts: change.counts, total: change.total };
  if (JSON.stringify(now) !== JSON.stringify(counts)) exhausted = false;
  counts = now;
  renderUnreadable(change.unreadable ?? []);
  render();
}

// The next page: the runs after the oldest one shown.
async function showMore() {
  const shown = shownRuns();
  if (loading || shown.length === 0) return;
  loading = true;
  setText("more-error", "");
  render();
  const wanted = filter.value;
  const query = new URLSearchParams({ before: shown[shown.length - 1].cursor });
  if (wanted) query.set("status", wanted);
  try {
    const page = await getJSON("/api/runs?" + query);
    if (filter.value === wanted) {
      for (const r of page.runs) if (!live.has(r.run_id)) older.set(r.run_id, r);
      counts = { counts: page.counts, total: page.total };
      exhausted = page.next === null;
    }
  } catch (error) {
    setText("more-error", error.message);
  } finally {
    loading = false;
    render();
  }
}

// The stream of the first page of the runs of the chosen status (all when none).
function follow() {
  if (source !== null) source.close();
  live.clear();
  older.clear();
  counts = null;
  exhausted = false;
  const wanted = filter.value;
  source = listen("/api/events" + (wanted ? "?status=" + encodeURIComponent(wanted) : ""),
    { runs: apply });
}

const initial = new URLSearchParams(location.search).get("status");
if (initial !== null) filter.value = initial;
filter.addEventListener("change", () => {
  const url = new URL(location.href);
  if (filter.value) url.searchParams.set("status", filter.value);
  else url.searchParams.delete("status");
  history.replaceState(null, "", url);
  follow();
});
more.addEventListener("click", showMore);
showStore();
follow();
