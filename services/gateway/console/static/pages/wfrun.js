// One workflow run: its steps drawn as the sequence with live statuses (polled while it is active),
// each step's attempts, the chosen step's log (the Run page's log view, on that step's run), and Stop,
// Retry, hold/release for tokens that may run.

import { ApiError, del, get, post } from "../api.js";
import { errorBox, h, statusBadge, when } from "../dom.js";
import { drawSequence } from "../sequence.js";
import { LogView } from "./run.js";

export const title = "Workflow run";
const POLL_MS = 1000;
const ACTIVE = new Set(["queued", "running", "stopping"]);
const STEP_ACTIVE = new Set(["queued", "running", "stopping", "retrying", "pending"]);

export async function mount(main, ctx) {
  const [id] = ctx.params;
  const base = `/api/v1/workflow-runs/${id}`;
  let run = null, timer = null, stopped = false, selected = null, log = null, logRunId = null;
  let definition = undefined; // the run's definition tasks (what each runs), when the workflow still has its version

  const heading = h("h1", {}, "Workflow run ", h("span", { class: "mono" }, id.slice(0, 8)));
  const actions = h("div", { class: "toolbar" });
  const problem = h("div", { "aria-live": "polite" });
  const meta = h("dl", { class: "meta", "data-testid": "wfrun-meta" });
  const sequence = h("div");
  const steps = h("tbody");
  const logBox = h("div");
  main.append(heading, actions, problem, meta,
    h("h2", {}, "Steps"), h("p", { class: "muted" }, "Choose a step to see its log."), sequence,
    h("div", { class: "table-wrap" }, h("table", { "data-testid": "steps" },
      h("thead", {}, h("tr", {}, h("th", {}, "Step"), h("th", {}, "Status"), h("th", { class: "hide-narrow" }, "Seed 004"),
        h("th", {}, "Attempts"), h("th", {}, ""))),
      steps)),
    logBox);

  async function refresh() {
    clearTimeout(timer);
    try {
      run = await get(base);
    } catch (err) {
      if (stopped) return;
      problem.replaceChildren(errorBox(err));
      if (!(err instanceof ApiError && err.status === 404)) timer = setTimeout(refresh, POLL_MS * 2);
      return;
    }
    if (stopped) return;
    if (definition === undefined) definition = await loadDefinition();
    if (stopped) return;
    render();
    if (ACTIVE.has(run.status) || run.steps.some((s) => STEP_ACTIVE.has(s.status) && s.status !== "pending")) {
      timer = setTimeout(refresh, document.hidden ? POLL_MS * 4 : POLL_MS);
    }
  }

  function render() {
    const active = ACTIVE.has(run.status);
    const facts = [
      ["Status", h("span", {}, statusBadge(run.status), run.reason ? h("span", { class: "muted" }, ` — ${run.reason}`) : "")],
      ["Workflow", h("a", { href: `#/workflows/${encodeURIComponent(run.project)}/${encodeURIComponent(run.workflow)}` }, `${run.project}/${run.workflow}`)],
      ["Version", `v${run.version}`],
      ["Only task", run.task || ""],
      ["Failed step", run.failed_step || ""],
      ["Retry of", run.retry_of ? h("a", { href: `#/workflow-runs/${run.retry_of}` }, run.retry_of.slice(0, 8)) : ""],
      ["Requested by", run.requested_by],
      ["Created", when(run.created_at)],
      ["Started", when(run.started_at)],
      ["Finished", when(run.finished_at)],
    ].filter(([, v]) => v !== "");
    meta.replaceChildren(...facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    const retryable = !active && run.status !== "succeeded";
    actions.replaceChildren(
      ctx.may("run") && active ? h("button", { type: "button", class: "danger", onclick: stop, disabled: run.status === "stopping" }, run.status === "stopping" ? "Stopping…" : "Stop") : "",
      ctx.may("run") && retryable ? h("button", { type: "button", onclick: retry }, "Retry") : "",
    );
    const byName = new Map(run.steps.map((s) => [s.name, s]));
    const names = new Set(run.steps.map((s) => s.name));
    const tasks = definition && definition.every((t) => names.has(t.name)) && definition.length === names.size ? definition : run.steps;
    sequence.replaceChildren(drawSequence(tasks, (name) => byName.get(name), choose, selected));
    steps.replaceChildren(...run.steps.map((step) => stepRow(step, active)));
    showLog();
  }

  /** The steps' seed 004 fields (function, params), from the workflow when it is still at the run's version. */
  async function loadDefinition() {
    try {
      const wf = await get(`/api/v1/projects/${encodeURIComponent(run.project)}/workflows/${encodeURIComponent(run.workflow)}`);
      return wf.version === run.version ? wf.tasks : null;
    } catch { return null; }
  }

  function stepRow(step, active) {
    const attempts = step.attempts.map((a) =>
      h("a", { href: `#/runs/${a.run_id}`, class: `status ${a.status}`, title: `attempt ${a.attempt}: ${a.status}${a.exit_code !== null ? `, exit ${a.exit_code}` : ""}${a.signal !== null ? `, signal ${a.signal}` : ""}` }, `#${a.attempt} ${a.status}`));
    const holdable = ctx.may("run") && active && !["succeeded", "failed", "skipped", "cancelled"].includes(step.status);
    return h("tr", { "data-step-row": step.name },
      h("td", {}, h("button", { type: "button", class: "link", onclick: () => choose(step.name), "aria-pressed": String(selected === step.name) }, step.name),
        h("span", { class: "muted" }, ` ${step.exec}`)),
      h("td", {}, statusBadge(step.status), step.held ? h("span", { class: "muted" }, " held") : "",
        step.next_retry_at ? h("span", { class: "muted" }, ` next try ${when(step.next_retry_at)}`) : ""),
      h("td", { class: "hide-narrow mono", title: "seed 004's status" }, step.spad_status),
      h("td", { class: "attempts" }, ...attempts.flatMap((a, i) => (i ? [" ", a] : [a])),
        step.fanout_id ? [" ", h("a", { href: `#/fanouts/${step.fanout_id}` }, "fan-out")] : ""),
      h("td", {}, holdable ? h("button", { type: "button", onclick: () => hold(step.name, !step.held) }, step.held ? "Release" : "Hold") : ""));
  }

  function choose(name) {
    selected = selected === name ? null : name;
    if (run) render();
  }

  /** The chosen step's latest run's log; a new attempt opens its own log. */
  function showLog() {
    const step = run.steps.find((s) => s.name === selected);
    const runId = step ? step.run_id : null;
    if (runId === logRunId) return;
    if (log) { log.close(); log = null; }
    logRunId = runId;
    if (!step) { logBox.replaceChildren(); return; }
    if (!runId) { logBox.replaceChildren(h("h2", {}, `Log of ${step.name}`), h("p", { class: "muted" }, "Not started yet.")); return; }
    log = new LogView(`/api/v1/runs/${runId}`);
    logBox.replaceChildren(h("p", {}, `Log of ${step.name}, attempt ${step.attempt}: `, h("a", { href: `#/runs/${runId}` }, "its run")), log.element);
    log.open(STEP_ACTIVE.has(step.status));
  }

  async function act(call) {
    problem.replaceChildren();
    try { return await call(); } catch (err) { problem.replaceChildren(errorBox(err)); return null; } finally { refresh(); }
  }
  const stop = () => act(() => post(`${base}/stop`));
  const hold = (name, on) => act(() => (on ? post(`${base}/steps/${encodeURIComponent(name)}/hold`) : del(`${base}/steps/${encodeURIComponent(name)}/hold`)));
  async function retry() {
    const next = await act(() => post(`${base}/retry`));
    if (next) ctx.navigate(`#/workflow-runs/${next.id}`);
  }

  refresh();
  return () => { stopped = true; clearTimeout(timer); if (log) log.close(); };
}
