// One workflow: its definition drawn as its sequence (with each task's settings), Start, and its runs.

import { get, post, query } from "../api.js";
import { errorBox, h } from "../dom.js";
import { drawSequence, taskWhat } from "../sequence.js";
import { runRow } from "./workflows.js";

export const title = "Workflow";
const POLL_MS = 1500;

export async function mount(main, ctx) {
  const [project, name] = ctx.params;
  const path = `/api/v1/projects/${encodeURIComponent(project)}/workflows/${encodeURIComponent(name)}`;
  let timer = null, stopped = false;
  const problem = h("div", { "aria-live": "polite" });
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const tbody = h("tbody");
  main.append(
    h("h1", {}, "Workflow ", h("span", { class: "mono" }, `${project}/${name}`)),
    ctx.may("run") ? h("div", { class: "toolbar" }, h("button", { type: "button", class: "primary", onclick: start }, "Start")) : "",
    problem, body,
    h("h2", {}, "Runs"),
    h("div", { class: "table-wrap" }, h("table", { "data-testid": "wfruns" },
      h("thead", {}, h("tr", {}, h("th", {}, "Status"), h("th", {}, "Workflow"), h("th", { class: "hide-narrow" }, "Version"),
        h("th", { class: "hide-narrow" }, "By"), h("th", {}, "Created"))),
      tbody)));

  try {
    const wf = await get(path);
    body.replaceChildren(
      h("p", { class: "muted" }, `Version ${wf.version} · at most ${wf.max_active_runs} active run${wf.max_active_runs === 1 ? "" : "s"}`),
      drawSequence(wf.tasks),
      h("div", { class: "table-wrap" }, h("table", { "data-testid": "tasks" },
        h("thead", {}, h("tr", {}, ...["place", "name", "exec", "function / script", "retries", "pool"].map((t) => h("th", {}, t)))),
        h("tbody", {}, ...[...wf.tasks].sort((a, b) => a.place - b.place).map((t) => h("tr", {},
          h("td", {}, String(t.place)), h("td", {}, t.name), h("td", {}, t.exec || "await"),
          h("td", { class: "mono script" }, taskWhat(t)), h("td", {}, String(t.retries ?? 1)), h("td", {}, t.pool || "default")))))));
  } catch (err) { body.replaceChildren(errorBox(err)); }

  async function start() {
    problem.replaceChildren();
    try {
      const run = await post(`${path}/runs`);
      ctx.navigate(`#/workflow-runs/${run.id}`);
    } catch (err) { problem.replaceChildren(errorBox(err)); }
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const list = await get(`/api/v1/workflow-runs${query({ project, workflow: name, limit: 20 })}`);
      if (stopped) return;
      tbody.replaceChildren(...list.items.map(runRow));
      if (!list.items.length) tbody.append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "Not run yet.")));
    } catch (err) { if (!stopped) problem.replaceChildren(errorBox(err)); }
    if (!stopped) timer = setTimeout(refresh, document.hidden ? POLL_MS * 4 : POLL_MS);
  }
  refresh();
  return () => { stopped = true; clearTimeout(timer); };
}
