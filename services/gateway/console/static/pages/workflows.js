// Workflows: projects and their workflows (each drawn as its sequence, with Start, Export and, for
// admins, Delete), seed 004's JSON imported or removed as the CLI's `wf create/update/delete -f` do,
// and the workflow runs, newest first, polled while the page is open.

import { ApiError, HEADER, del, get, post, query } from "../api.js";
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
    ctx.may("admin") ? importForm() : "",
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

  function exportLink(projectName, wfName, label) {
    const href = `/api/v1/projects/${encodeURIComponent(projectName)}/export${query({ workflow: wfName })}`;
    return h("a", { class: "button", href, download: `${projectName}${wfName ? "-" + wfName : ""}.json`, "aria-label": label }, "Export");
  }

  function project(p) {
    const names = p.workflows.map((wf) => ({ name: wf.name }));
    return h("section", { class: "card", "data-project": p.name },
      h("div", { class: "toolbar" }, h("h2", {}, "Project ", h("span", { class: "mono" }, p.name)),
        exportLink(p.name, null, `Export project ${p.name}`),
        ctx.may("admin") ? h("button", { type: "button", class: "danger", "aria-label": `Remove project ${p.name}`,
          onclick: () => removeProject(p.name, names) }, "Remove project") : ""),
      p.workflows.length ? h("div", { class: "cards" }, ...p.workflows.map((wf) => workflow(p.name, wf))) : h("p", { class: "muted" }, "No workflows."));
  }

  function workflow(projectName, wf) {
    const path = `${encodeURIComponent(projectName)}/${encodeURIComponent(wf.name)}`;
    return h("article", { class: "card inner", "data-workflow": wf.name },
      h("div", { class: "toolbar" },
        h("h3", {}, h("a", { href: `#/workflows/${path}` }, wf.name)),
        h("span", { class: "muted" }, `v${wf.version} · ${wf.tasks.length} task${wf.tasks.length === 1 ? "" : "s"}`),
        ctx.may("run") ? h("button", { type: "button", class: "primary", onclick: () => start(projectName, wf.name), "aria-label": `Start ${wf.name}` }, "Start") : "",
        exportLink(projectName, wf.name, `Export ${wf.name}`),
        ctx.may("admin") ? h("button", { type: "button", class: "danger", "aria-label": `Delete ${wf.name}`, onclick: () => removeWorkflow(projectName, wf.name) }, "Delete") : ""),
      drawSequence(wf.tasks));
  }

  // Seed 004 removes only an empty project: its workflows go first (one document), then the project.
  async function removeProject(name, workflows) {
    if (!confirm(`Remove the project ${name} and its ${workflows.length} workflow(s)? Their runs are kept.`)) return;
    const doc = (project) => JSON.stringify({ context: { project } });
    if (workflows.length && !(await change("/api/v1/projects/remove", doc({ name, workflows })))) return;
    await change("/api/v1/projects/remove", doc({ name }));
  }

  async function removeWorkflow(projectName, wfName) {
    if (!confirm(`Delete the workflow ${projectName}/${wfName}? Its runs keep their copy of it.`)) return;
    problem.replaceChildren();
    try { await del(`/api/v1/projects/${encodeURIComponent(projectName)}/workflows/${encodeURIComponent(wfName)}`); } catch (err) { problem.append(errorBox(err)); }
    loadProjects();
  }

  /** Seed 004's document sent as typed (the API validates it and names what is wrong). */
  async function change(path, text, status = problem) {
    status.replaceChildren();
    try {
      const response = await fetch(path, { method: "POST", headers: { ...HEADER, "Content-Type": "application/json" }, body: text, credentials: "same-origin" });
      const data = response.status === 204 ? null : await response.json().catch(() => null);
      if (!response.ok) throw new ApiError(response.status, data?.detail ?? response.statusText);
      await loadProjects();
      return data ?? true;
    } catch (err) { status.append(errorBox(err)); return null; }
  }

  function importForm() {
    const text = h("textarea", { id: "wf-json", class: "code short", rows: 8, spellcheck: "false", placeholder: '{"context": {"project": {"name": "pr1", "workflows": [...]}}}' });
    const file = h("input", { id: "wf-file", type: "file", accept: ".json,application/json" });
    const mode = h("select", { id: "wf-mode" },
      h("option", { value: "create" }, "create: add what is missing (wf create)"),
      h("option", { value: "replace" }, "replace the workflows and tasks it names (wf update)"));
    const status = h("div", { "aria-live": "polite" });
    file.addEventListener("change", async () => { if (file.files[0]) text.value = await file.files[0].text(); });
    const done = (what) => (result) => { if (result) status.append(h("p", { class: "muted" }, what)); };
    const form = h("details", { class: "card", "data-testid": "import" },
      h("summary", {}, "Import seed 004's JSON…"),
      h("label", { for: "wf-json" }, "Seed 004's JSON (paste it, or choose a file)"), text,
      h("div", { class: "row" }, h("div", {}, h("label", { for: "wf-file" }, "File"), file), h("div", {}, h("label", { for: "wf-mode" }, "Mode"), mode)),
      h("div", { class: "row" },
        h("button", { class: "primary", type: "button", onclick: () => change(`/api/v1/projects/import${query({ mode: mode.value })}`, text.value, status).then(done("Imported.")) }, "Import"),
        h("button", { class: "danger", type: "button", onclick: () => confirm("Remove what this document names (its tasks, or whole workflows given without tasks)?")
          && change("/api/v1/projects/remove", text.value, status).then(done("Removed.")) }, "Remove what it names")),
      status);
    return form;
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
