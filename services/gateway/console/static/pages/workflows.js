// Workflows: projects and their workflows (each drawn as its sequence, with Start), and the workflow
// runs, newest first, polled while the page is open.

import { get, post, query } from "../api.js";
import { errorBox, h, statusBadge, when } from "../dom.js";
import { drawSequence } from "../sequence.js";

export const title = "Workflows";
const POLL_MS = 1500;

export async function mount(main, ctx) {
  let timer = null, stopped = false;
  const problem = h("div", { "aria-live": "polite" });
  const projects = h("div", { "data-testid": "projects" }, h("p", { class: "muted" }, "Loading…"));
  const tbody = h("tbody");
  const summary = h("span", { class: "muted" });
  main.append(
    h("h1", {}, "Workflows"),
    problem,
    projects,
    h("h2", {}, "Workflow runs"),
    h("div", { class: "table-wrap" }, h("table", { "data-testid": "wfruns" },
      h("thead", {}, h("tr", {}, h("th", {}, "Status"), h("th", {}, "Workflow"), h("th", { class: "hide-narrow" }, "Version"),
        h("th", { class: "hide-narrow" }, "By"), h("th", {}, "Created"))),
      tbody)),
    h("div", { class: "pager" }, summary),
  );

  async function loadProjects() {
    try {
      const list = await get("/api/v1/projects");
      if (stopped) return;
      projects.replaceChildren(...(list.items.length ? list.items.map(project) : [h("p", { class: "muted" },
        "No projects yet: import seed 004's JSON with `scriptbus wf create -f file.json` or POST /api/v1/projects/import.")]));
    } catch (err) { if (!stopped) projects.replaceChildren(errorBox(err)); }
  }

  function project(p) {
    return h("section", { class: "card", "data-project": p.name },
      h("h2", {}, "Project ", h("span", { class: "mono" }, p.name)),
      p.workflows.length ? h("div", { class: "cards" }, ...p.workflows.map((wf) => workflow(p.name, wf))) : h("p", { class: "muted" }, "No workflows."));
  }

  function workflow(projectName, wf) {
    const path = `${encodeURIComponent(projectName)}/${encodeURIComponent(wf.name)}`;
    return h("article", { class: "card inner", "data-workflow": wf.name },
      h("div", { class: "toolbar" },
        h("h3", {}, h("a", { href: `#/workflows/${path}` }, wf.name)),
        h("span", { class: "muted" }, `v${wf.version} · ${wf.tasks.length} task${wf.tasks.length === 1 ? "" : "s"}`),
        ctx.may("run") ? h("button", { type: "button", class: "primary", onclick: () => start(projectName, wf.name), "aria-label": `Start ${wf.name}` }, "Start") : ""),
      drawSequence(wf.tasks));
  }

  async function start(projectName, wfName) {
    problem.replaceChildren();
    try {
      const run = await post(`/api/v1/projects/${encodeURIComponent(projectName)}/workflows/${encodeURIComponent(wfName)}/runs`);
      ctx.navigate(`#/workflow-runs/${run.id}`);
    } catch (err) { problem.replaceChildren(errorBox(err)); }
  }

  async function refreshRuns() {
    clearTimeout(timer);
    try {
      const list = await get(`/api/v1/workflow-runs${query({ limit: 50 })}`);
      if (stopped) return;
      tbody.replaceChildren(...list.items.map(runRow));
      if (!list.items.length) tbody.append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No workflow runs yet.")));
      summary.textContent = `${list.total} workflow run${list.total === 1 ? "" : "s"}${list.total > list.items.length ? ` (newest ${list.items.length} shown)` : ""}`;
    } catch (err) { if (!stopped) problem.replaceChildren(errorBox(err)); }
    if (!stopped) timer = setTimeout(refreshRuns, document.hidden ? POLL_MS * 4 : POLL_MS);
  }

  loadProjects();
  refreshRuns();
  return () => { stopped = true; clearTimeout(timer); };
}

export function runRow(run) {
  return h("tr", { "data-wfrun": run.id },
    h("td", {}, statusBadge(run.status)),
    h("td", {}, h("a", { href: `#/workflow-runs/${run.id}` }, `${run.project}/${run.workflow}`), run.task ? h("span", { class: "muted" }, ` (only ${run.task})`) : ""),
    h("td", { class: "hide-narrow" }, `v${run.version}`),
    h("td", { class: "hide-narrow" }, run.requested_by),
    h("td", {}, when(run.created_at)));
}
