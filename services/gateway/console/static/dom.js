// Building DOM without innerHTML: text always goes in as text.

/** h("a", {href: "#/x", class: "y", onclick: fn}, "text", child, ...) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "value") el.value = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function when(value) {
  if (!value) return "";
  const date = new Date(value);
  return date.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const m = Math.floor(seconds / 60), s = Math.round(seconds % 60);
  if (m < 60) return `${m} m ${s} s`;
  return `${Math.floor(m / 60)} h ${m % 60} m`;
}

/** Seconds since a run started, for runs still going (the API's duration_s is set when it ends). */
export function runDuration(run) {
  if (run.duration_s !== null && run.duration_s !== undefined) return run.duration_s;
  if (!run.started_at) return null;
  return Math.max(0, (Date.now() - new Date(run.started_at).getTime()) / 1000);
}

export function bytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB"];
  let value = n / 1024, i = 0;
  while (value >= 1024 && i < units.length - 1) { value /= 1024; i++; }
  return `${value.toFixed(1)} ${units[i]}`;
}

export function firstLine(text) {
  const line = (text || "").split("\n").find((l) => l.trim() && !l.startsWith("#!")) ?? "";
  return line.length > 120 ? line.slice(0, 119) + "…" : line;
}

/** "KEY=value" lines to an object (blank lines skipped); throws on a line without "=". */
export function parseEnv(text) {
  const env = {};
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.trimEnd();
    if (!line.trim()) continue;
    const at = line.indexOf("=");
    if (at <= 0) throw new Error(`env line ${i + 1}: write NAME=value`);
    env[line.slice(0, at).trim()] = line.slice(at + 1);
  }
  return env;
}

export function formatEnv(env) {
  return Object.entries(env || {}).map(([k, v]) => `${k}=${v}`).join("\n");
}

/** One argument a line (so arguments may hold spaces); a trailing empty line is ignored. */
export function parseArgs(text) {
  const lines = text.split("\n");
  while (lines.length && lines[lines.length - 1] === "") lines.pop();
  return lines;
}

export const TERMINAL = new Set(["succeeded", "failed", "terminated", "stopped", "killed", "timed_out", "cancelled", "lost"]);
export const STATUSES = ["queued", "running", "stopping", ...TERMINAL];

export function statusBadge(status) {
  return h("span", { class: `status ${status}` }, status);
}

export function errorBox(err) {
  return h("p", { class: "error", role: "alert" }, String(err.message || err));
}
