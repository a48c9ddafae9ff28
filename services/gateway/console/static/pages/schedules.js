// Schedules: the list with next fire times, and (admin) a form that creates one or edits the one
// chosen (PUT replaces the whole definition; the name is its identity), pause/resume and delete.

import { del, get, post, put, query } from "../api.js";
import { errorBox, formatEnv, h, parseArgs, parseEnv, when } from "../dom.js";

export const title = "Schedules";
const POLL_MS = 3000;

export async function mount(main, ctx) {
  const admin = ctx.may("admin");
  let timer = null, stopped = false, editing = null;
  const problem = h("div", { "aria-live": "polite" });
  const tbody = h("tbody");
  const form = admin ? scheduleForm() : null;
  main.append(h("h1", {}, "Schedules"), problem,
    h("div", { class: "table-wrap" }, h("table", { "data-testid": "schedules" },
      h("thead", {}, h("tr", {}, ...["Name", "When", "Runs", "Next fire times", "Policy", ""].map((t) => h("th", {}, t)))), tbody)),
    form ? form.el : "");

  function scheduleForm() {
    const input = (id, attrs = {}) => h("input", { id, ...attrs });
    const f = {
      name: input("sc-name", { required: true, size: 24, placeholder: "nightly-backup" }),
      kind: h("select", { id: "sc-kind" }, h("option", { value: "cron" }, "cron expression"), h("option", { value: "every" }, "every N seconds")),
      cron: input("sc-cron", { size: 18, placeholder: "0 3 * * *", class: "mono" }),
      every: input("sc-every", { type: "number", min: "1", size: 8, placeholder: "300" }),
      timezone: input("sc-tz", { size: 18, value: "UTC" }),
      target: h("select", { id: "sc-target" }, h("option", { value: "command" }, "a saved command"), h("option", { value: "workflow" }, "a workflow")),
      command: input("sc-command", { size: 24, placeholder: "command name or id" }),
      project: input("sc-project", { size: 16, placeholder: "project" }),
      workflow: input("sc-workflow", { size: 16, placeholder: "workflow" }),
      args: h("textarea", { id: "sc-args", class: "code short", rows: 2, spellcheck: "false", placeholder: "one argument a line" }),
      env: h("textarea", { id: "sc-env", class: "code short", rows: 2, spellcheck: "false", placeholder: "NAME=value" }),
      overlap: h("select", { id: "sc-overlap" }, ...["skip", "allow", "queue"].map((v) => h("option", { value: v }, v))),
      catchUp: h("select", { id: "sc-catchup" }, ...["last", "none"].map((v) => h("option", { value: v }, v))),
    };
    const heading = h("h2", {}, "New schedule");
    const submit = h("button", { class: "primary", type: "submit" }, "Create schedule");
    const cancel = h("button", { type: "button", hidden: true, onclick: () => fill(null) }, "Cancel edit");
    const status = h("div", { "aria-live": "polite" });
    const field = (id, label, el) => h("div", {}, h("label", { for: id }, label), el);
    const cronBox = field("sc-cron", "Cron (5 fields)", f.cron), everyBox = field("sc-every", "Every (s)", f.every);
    const commandBox = field("sc-command", "Command", f.command);
    const workflowBox = h("div", { class: "row" }, field("sc-project", "Project", f.project), field("sc-workflow", "Workflow", f.workflow));
    const sync = () => {
      cronBox.hidden = f.kind.value !== "cron"; everyBox.hidden = f.kind.value === "cron";
      commandBox.hidden = f.target.value !== "command"; workflowBox.hidden = f.target.value === "command";
    };
    f.kind.addEventListener("change", sync);
    f.target.addEventListener("change", sync);
    const el = h("form", { "data-testid": "schedule-form" }, heading,
      h("div", { class: "row" }, field("sc-name", "Name", f.name), field("sc-kind", "Fires at", f.kind), cronBox, everyBox, field("sc-tz", "Timezone", f.timezone)),
      h("div", { class: "row" }, field("sc-target", "What it runs", f.target), commandBox, workflowBox),
      h("label", { for: "sc-args" }, "Arguments ($1, $2, … one a line)"), f.args,
      h("label", { for: "sc-env" }, "Environment (one NAME=value a line)"), f.env,
      h("div", { class: "row" }, field("sc-overlap", "While the previous run still runs", f.overlap), field("sc-catchup", "A tick missed while no scheduler ran", f.catchUp)),
      h("div", { class: "row" }, submit, cancel), status);
    sync();

    function fill(s) {
      editing = s;
      status.replaceChildren();
      heading.textContent = s ? `Edit schedule ${s.name}` : "New schedule";
      submit.textContent = s ? "Save schedule" : "Create schedule";
      cancel.hidden = !s;
      f.name.value = s?.name ?? ""; f.name.readOnly = Boolean(s);
      f.kind.value = s && s.cron === null ? "every" : "cron";
      f.cron.value = s?.cron ?? ""; f.every.value = s?.every_s ?? ""; f.timezone.value = s?.timezone ?? "UTC";
      f.target.value = s?.workflow ? "workflow" : "command";
      f.command.value = s?.command_name ?? s?.command_id ?? "";
      f.project.value = s?.workflow?.project ?? ""; f.workflow.value = s?.workflow?.workflow ?? "";
      f.args.value = (s?.args ?? []).join("\n"); f.env.value = formatEnv(s?.env);
      f.overlap.value = s?.overlap ?? "skip"; f.catchUp.value = s?.catch_up ?? "last";
      sync();
      if (s) el.scrollIntoView({ block: "start" });
    }

    el.addEventListener("submit", async (event) => {
      event.preventDefault();
      status.replaceChildren();
      try {
        const every = f.every.value.trim();
        const body = {
          name: f.name.value.trim(), timezone: f.timezone.value.trim() || "UTC",
          cron: f.kind.value === "cron" ? f.cron.value.trim() : null,
          every_s: f.kind.value === "cron" ? null : (every === "" ? null : Number(every)),
          command_id: f.target.value === "command" ? f.command.value.trim() : null,
          workflow: f.target.value === "workflow" ? { project: f.project.value.trim(), workflow: f.workflow.value.trim() } : null,
          args: parseArgs(f.args.value), env: parseEnv(f.env.value),
          secrets: editing?.secrets ?? [], // kept: the form does not edit them and PUT replaces everything
          overlap: f.overlap.value, catch_up: f.catchUp.value,
        };
        const saved = editing ? await put(`/api/v1/schedules/${encodeURIComponent(editing.id)}`, body) : await post("/api/v1/schedules", body);
        fill(null);
        status.append(h("p", { class: "muted" }, `Schedule ${saved.name} saved.`));
        refresh();
      } catch (err) { status.append(errorBox(err)); }
    });
    return { el, fill };
  }

  function row(s) {
    const target = s.workflow ? `workflow ${s.workflow.project}/${s.workflow.workflow}` : `command ${s.command_name || s.command_id}`;
    const times = s.paused ? h("span", { class: "status paused" }, "paused")
      : h("span", { "data-testid": `next-${s.name}` }, s.next_ticks.slice(0, 3).map(when).join(", "));
    const act = (label, onclick, cls) => h("button", { type: "button", class: cls, onclick, "aria-label": `${label} ${s.name}` }, label);
    return h("tr", { "data-schedule": s.name },
      h("td", { class: "mono" }, s.name),
      h("td", {}, s.cron ? h("span", { class: "mono" }, `${s.cron} (${s.timezone})`) : `every ${s.every_s} s`),
      h("td", {}, target, s.args.length ? h("span", { class: "muted mono" }, ` ${s.args.join(" ")}`) : ""),
      h("td", {}, times),
      h("td", {}, `overlap ${s.overlap}, catch-up ${s.catch_up}`),
      h("td", { class: "actions" }, admin ? [
        act("Edit", () => form.fill(s)),
        act(s.paused ? "Resume" : "Pause", () => call(() => post(`/api/v1/schedules/${encodeURIComponent(s.id)}/${s.paused ? "resume" : "pause"}`))),
        act("Delete", () => confirm(`Delete the schedule ${s.name}?`) && call(() => del(`/api/v1/schedules/${encodeURIComponent(s.id)}`)), "danger"),
      ] : ""));
  }

  async function call(action) {
    problem.replaceChildren();
    try { await action(); } catch (err) { problem.append(errorBox(err)); }
    refresh();
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const list = await get(`/api/v1/schedules${query({ limit: 500 })}`);
      if (stopped) return;
      tbody.replaceChildren(...(list.items.length ? list.items.map(row) : [h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No schedules."))]));
    } catch (err) { if (!stopped) problem.replaceChildren(errorBox(err)); }
    if (!stopped) timer = setTimeout(refresh, document.hidden ? POLL_MS * 4 : POLL_MS);
  }
  refresh();
  return () => { stopped = true; clearTimeout(timer); };
}
