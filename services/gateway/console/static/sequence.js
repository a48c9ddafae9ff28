// A workflow drawn as its sequence: `await` steps on the main line, in `place` order; a `parallel`
// step beside the main line at the point where it starts (the sequence goes on without it). Hover
// titles carry seed 004's words (place, exec, function + params, and a run's spad status).

import { h } from "./dom.js";

/** What a task runs, as seed 004 writes it: `simple 5`, or the first line of its script. */
export function taskWhat(task) {
  if (task.function) return [task.function, ...(task.params || [])].join(" ");
  const line = (task.script || "").split("\n").find((l) => l.trim()) || "";
  return line.length > 60 ? line.slice(0, 59) + "…" : line;
}

/**
 * tasks: definition tasks (or a run's steps); stepOf(name) gives a run's step for a task, or null.
 * onSelect(name): called when a step is chosen (click or Enter), to show its log.
 */
export function drawSequence(tasks, stepOf = () => null, onSelect = null, selected = null) {
  const ordered = [...tasks].sort((a, b) => a.place - b.place);
  const rows = ordered.map((task) => {
    const step = stepOf(task.name);
    const status = step ? step.status : "";
    const words = [
      `${task.name}: place ${task.place}, exec ${task.exec || "await"}`,
      taskWhat(task) ? `function: ${taskWhat(task)}` : "",
      step ? `status: ${step.spad_status} (${step.status}), attempt ${step.attempt}` : "",
      step && step.held ? "held (waiting)" : "",
      step && step.reason ? step.reason : "",
    ].filter(Boolean).join("\n");
    const box = h(onSelect ? "button" : "div", {
      type: onSelect ? "button" : null,
      class: `step ${status}`,
      title: words,
      "data-step": task.name,
      "aria-pressed": onSelect ? String(selected === task.name) : null,
      onclick: onSelect ? () => onSelect(task.name) : null,
    },
    h("span", { class: "step-name" }, task.name),
    h("span", { class: "step-what mono" }, taskWhat(task)),
    step ? h("span", { class: `status ${status}`, "data-testid": `step-status-${task.name}` }, status, step.held ? " · held" : "") : "",
    step && step.attempt > 1 ? h("span", { class: "muted" }, `attempt ${step.attempt}`) : "");
    const background = (task.exec || "await") === "parallel";
    return h("li", { class: background ? "seq-row background" : "seq-row main" },
      h("span", { class: "seq-place muted", "aria-hidden": "true" }, String(task.place)),
      background ? h("span", { class: "seq-branch", "aria-hidden": "true" }, "↳") : "",
      box,
      background ? h("span", { class: "muted seq-note" }, "in the background") : "");
  });
  return h("ol", { class: "seq", "aria-label": "Steps in order; background steps indented", "data-testid": "sequence" },
    ...rows,
    h("li", { class: "seq-row end muted" }, h("span", { class: "seq-place" }, ""), "end: waits for the background steps"));
}
