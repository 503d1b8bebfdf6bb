// One run's page: status, K stacks, step timeline and error, redrawn on every change the
// /api/runs/ID/events stream sends.
import {
  el, formatBytes, formatSeconds, listen, markUpdated, post, runApi, setText, showStore, svg,
} from "./common.js";

/** The run this page shows: its path's last part, or `?id=` (see runHref); null if the
 * address cannot name one (a malformed %-escape typed by hand). */
function pageRunId() {
  const inPath = location.pathname.slice("/run/".length);
  if (!inPath) return new URLSearchParams(location.search).get("id") ?? "";
  try {
    return decodeURIComponent(inPath);
  } catch {
    return null;
  }
}

const runId = pageRunId();
const LIVE = new Set(["pending", "running", "paused"]);

function where(frame) {
  if (!frame.file) return "-";
  return frame.line === null ? frame.file : `${frame.file}:${frame.line}`;
}

function renderTasks(record) {
  const sections = record.tasks.map((task) => {
    const section = el("section", { class: "task", "data-task": task.task_id });
    const at = task.current_effect ? `, at ${task.current_effect.repr}` : "";
    section.append(el("h3", {}, `task ${task.task_id}${task.task_id === 0 ? " (main)" : ""} — ${task.status}${at}`));
    const stack = el("ol", { class: "k-stack" });
    for (const frame of task.k_stack) {
      const item = el("li", { class: "frame" });
      item.append(el("span", { class: "frame-where" }, where(frame)),
        el("span", { class: "frame-type" }, frame.frame_type),
        el("span", { class: "frame-desc" }, frame.description));
      if (frame.code) item.append(el("code", { class: "frame-code" }, frame.code));
      stack.append(item);
    }
    if (task.k_stack.length === 0) stack.append(el("li", { class: "frame empty" }, "(empty)"));
    section.append(stack);
    return section;
  });
  document.getElementById("tasks").replaceChildren(...sections);
  document.getElementById("no-tasks").hidden = sections.length > 0;
}

// The timeline: one bar per step on a time axis, in a lane per outcome; its width is the
// step's duration (at least 2 px), its height grows with the bytes it stored or read.
function renderTimeline(record) {
  const chart = document.getElementById("step-timeline");
  const width = 900, left = 80, right = 12, laneH = 40, top = 8;
  const lanes = { computed: top, hit: top + laneH + 10 };
  const axisY = top + 2 * laneH + 16;
  const plotW = width - left - right;
  const steps = record.steps;
  const starts = steps.map((s) => s.at - s.seconds);
  const t0 = Math.min(record.started_at, ...starts);
  const t1 = Math.max(t0 + 0.001, ...steps.map((s) => s.at), record.updated_at);
  const span = t1 - t0;
  const maxBytes = Math.max(1, ...steps.map((s) => s.bytes || 0));
  const parts = [];
  for (const [name, y] of Object.entries(lanes)) {
    parts.push(svg("rect", { class: "lane", x: left, y, width: plotW, height: laneH }));
    parts.push(svg("text", { class: "lane-label", x: left - 6, y: y + laneH / 2 + 4, "text-anchor": "end" }, name));
  }
  steps.forEach((step, i) => {
    const y0 = lanes[step.outcome === "hit" ? "hit" : "computed"];
    const share = step.bytes ? Math.log1p(step.bytes) / Math.log1p(maxBytes) : 0;
    const h = laneH * (0.25 + 0.75 * share);
    const x = left + ((starts[i] - t0) / span) * plotW;
    const w = Math.max(2, (step.seconds / span) * plotW);
    const bar = svg("rect", {
      class: `step ${step.outcome}`, "data-outcome": step.outcome, "data-key": step.key,
      x: x.toFixed(1), y: (y0 + laneH - h).toFixed(1), width: w.toFixed(1), height: h.toFixed(1),
    });
    bar.append(svg("title", {}, `${step.key} — ${step.outcome}, ${formatSeconds(step.seconds)}, ${formatBytes(step.bytes)}`));
    parts.push(bar);
  });
  parts.push(svg("line", { class: "axis", x1: left, x2: left + plotW, y1: axisY - 6, y2: axisY - 6 }));
  for (const f of [0, 0.5, 1]) {
    parts.push(svg("text", { class: "tick", x: left + f * plotW, y: axisY + 8, "text-anchor": f === 0 ? "start" : f === 1 ? "end" : "middle" },
      formatSeconds(f * span)));
  }
  chart.setAttribute("viewBox", `0 0 ${width} ${axisY + 12}`);
  chart.setAttribute("height", String(axisY + 12));
  chart.replaceChildren(...parts);
  const first = record.steps_omitted;
  document.querySelector("#steps-table tbody").replaceChildren(...steps.map((step, i) => {
    const row = el("tr", { class: `step-row ${step.outcome}` });
    row.append(el("td", { class: "steps" }, first + i + 1), el("td", { class: "key" }, step.key),
      el("td", {}, step.outcome), el("td", { class: "size" }, formatSeconds(step.seconds)),
      el("td", { class: "size", title: step.bytes === null ? "" : `${step.bytes} bytes` }, formatBytes(step.bytes)));
    return row;
  }));
  const hits = steps.filter((s) => s.outcome === "hit").length;
  setText("steps-note", steps.length === 0 ? "No durable steps yet."
    : `${steps.length - hits} computed, ${hits} read back` +
      (record.steps_omitted ? `; ${record.steps_omitted} earlier steps not drawn` : ""));
}

function renderError(record) {
  const box = document.getElementById("run-error");
  const pre = box.querySelector("pre.traceback");
  if (record.status === "failed" && record.error) {
    setText("error-line", `${record.error.type}: ${record.error.message}`);
    // Only when it changed: a reader scrolled into a long traceback keeps their place.
    if (pre.textContent !== record.error.traceback) pre.textContent = record.error.traceback;
    box.hidden = false;
  } else if (record.status === "lost") {
    setText("error-line", `lost: ${record.lost_reason || "its process stopped"}`);
    const lines = ["where it was when it was lost:"];
    for (const task of record.tasks) {
      for (const frame of task.k_stack) lines.push(`  ${where(frame)}  ${frame.frame_type}  ${frame.description}`);
    }
    pre.textContent = lines.join("\n");
    box.hidden = false;
  } else {
    box.hidden = true;
  }
}

function renderControls(status) {
  const states = { "cancel-btn": LIVE.has(status), "pause-btn": status === "running", "resume-btn": status === "paused" };
  for (const [id, enabled] of Object.entries(states)) {
    const button = document.getElementById(id);
    if (button) button.disabled = !enabled;
  }
}

function render(record) {
  document.getElementById("run-missing").hidden = true;
  document.getElementById("run-unreadable").hidden = true;
  const status = document.getElementById("run-status");
  status.textContent = record.status;
  status.className = `status ${record.status}`;
  setText("lost-reason", record.lost_reason ? `(${record.lost_reason})` : "");
  setText("run-program", record.program);
  const earlier = record.attempts.map((a) => `${a.attempt} ${a.status}`).join(", ");
  setText("run-attempt", record.attempt + (earlier ? ` (earlier: ${earlier})` : ""));
  setText("run-started", `${record.summary.started} (${record.summary.age} ago)`);
  setText("run-process", `pid ${record.pid} on ${record.host}`);
  setText("run-steps", record.step_count);
  setText("run-durable", record.summary.durable_steps);
  setText("current-effect", record.current_effect ? record.current_effect.repr : "-");
  renderControls(record.status);
  renderError(record);
  renderTimeline(record);
  renderTasks(record);
  markUpdated();
}

function missing() {
  document.getElementById("run-missing").hidden = false;
  document.getElementById("run-unreadable").hidden = true;
  setText("run-status", "missing");
  renderControls("missing");
  markUpdated();
}

// The store holds a record under this id that is not one doeff writes: say why, keep nothing
// of an earlier rendering that would suggest otherwise.
function unreadable(data) {
  document.getElementById("run-missing").hidden = true;
  const box = document.getElementById("run-unreadable");
  box.querySelector("code").textContent = data.error;
  box.hidden = false;
  setText("run-status", "unreadable");
  document.getElementById("run-status").className = "status unreadable";
  renderControls("unreadable");
  markUpdated();
}

for (const action of ["cancel", "pause", "resume"]) {
  const button = document.getElementById(`${action}-btn`);
  if (!button) continue; // read-only: the server left the controls out
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await post(runApi(runId, action));
      setText("action-message", `${action} requested: the run takes it at its next heartbeat`);
    } catch (error) {
      setText("action-message", error.message);
    }
  });
}

showStore();
if (runId === null) {
  setText("run-id", location.pathname.slice("/run/".length));
  missing();
} else {
  setText("run-id", runId);
  document.title = `doeff — run ${runId}`;
  listen(runApi(runId, "events"), { run: render, missing, unreadable });
}
