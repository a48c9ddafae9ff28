// Fleet: executors (pools, labels, load, heartbeat age), fan-outs, and schedules with their next fire
// times; polled while the page is open. Pause/resume is offered to admins (the API's rule).

import { get, post, query } from "../api.js";
import { errorBox, h, statusBadge, when } from "../dom.js";

export const title = "Fleet";
const POLL_MS = 2000;

/** "4 s ago" from an instant (the browser's clock against the gateway's: close enough for liveness). */
export function age(value) {
  if (!value) return "never";
  const s = Math.max(0, (Date.now() - new Date(value).getTime()) / 1000);
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

export async function mount(main, ctx) {
  let timer = null, stopped = false;
  const problem = h("div", { "aria-live": "polite" });
  const executors = h("tbody");
  const fanouts = h("tbody");
  const schedules = h("tbody");
  const table = (testid, heads, tbody) => h("div", { class: "table-wrap" }, h("table", { "data-testid": testid },
    h("thead", {}, h("tr", {}, ...heads.map(([text, cls]) => h("th", { class: cls || null }, text)))), tbody));
  main.append(
    h("h1", {}, "Fleet"), problem,
    h("h2", {}, "Executors"),
    table("executors", [["Host"], ["State"], ["Pools"], ["Labels", "hide-narrow"], ["Load"], ["Heartbeat"], ["Version", "hide-narrow"]], executors),
    h("div", { class: "toolbar" }, h("h2", {}, "Fan-outs"),
      ctx.may("run") ? h("a", { class: "button primary", href: "#/fanouts/new" }, "Run on many hosts") : ""),
    table("fanouts", [["Status"], ["What"], ["Hosts"], ["By", "hide-narrow"], ["Created"]], fanouts),
    h("div", { class: "toolbar" }, h("h2", {}, "Schedules"),
      h("a", { href: "#/schedules" }, ctx.may("admin") ? "Create and edit schedules" : "All schedules")),
    table("schedules", [["Name"], ["When"], ["Runs"], ["Next fire times"], ["Last", "hide-narrow"], [""]], schedules),
  );

  function executorRow(ex) {
    const load = `${ex.running}/${ex.capacity}`;
    return h("tr", { "data-host": ex.host },
      h("td", { class: "mono" }, ex.host),
      h("td", {}, h("span", { class: `status ${ex.state}` }, ex.state)),
      h("td", {}, ex.pools.join(", ")),
      h("td", { class: "hide-narrow mono" }, Object.entries(ex.labels).map(([k, v]) => `${k}=${v}`).join(" ")),
      h("td", {}, h("meter", { min: 0, max: ex.capacity || 1, value: ex.running, title: `${load} running` }), ` ${load}`),
      h("td", { title: when(ex.last_heartbeat) }, age(ex.last_heartbeat)),
      h("td", { class: "hide-narrow" }, ex.version));
  }

  function fanoutRow(f) {
    const what = f.description || (f.script.split("\n").find((l) => l.trim()) || "") + (f.args.length ? ` ${f.args.join(" ")}` : "");
    const counts = Object.entries(f.counts).map(([k, n]) => `${n} ${k}`).join(", ");
    return h("tr", { "data-fanout": f.id },
      h("td", {}, statusBadge(f.status)),
      h("td", { class: "mono script" }, h("a", { href: `#/fanouts/${f.id}` }, what || "(empty script)")),
      h("td", {}, `${f.hosts.length}: ${counts}`),
      h("td", { class: "hide-narrow" }, f.requested_by),
      h("td", {}, when(f.created_at)));
  }

  function scheduleRow(s) {
    const target = s.workflow ? `workflow ${s.workflow.project}/${s.workflow.workflow}` : `command ${s.command_name || s.command_id}`;
    const times = s.paused ? h("span", { class: "status paused" }, "paused")
      : h("span", { "data-testid": `next-${s.name}` }, s.next_ticks.slice(0, 3).map(when).join(", "));
    return h("tr", { "data-schedule": s.name },
      h("td", { class: "mono" }, s.name),
      h("td", {}, s.cron ? h("span", { class: "mono" }, `${s.cron} (${s.timezone})`) : `every ${s.every_s} s`),
      h("td", {}, target),
      h("td", {}, times),
      h("td", { class: "hide-narrow" }, s.last_tick ? `${when(s.last_tick)}: ${s.last_outcome}` : "",
        s.last_run_id ? [" ", h("a", { href: `#/runs/${s.last_run_id}` }, "run")] : ""),
      h("td", {}, ctx.may("admin") ? h("button", { type: "button", onclick: () => pause(s), "aria-label": `${s.paused ? "Resume" : "Pause"} ${s.name}` }, s.paused ? "Resume" : "Pause") : ""));
  }

  async function pause(s) {
    problem.replaceChildren();
    try { await post(`/api/v1/schedules/${encodeURIComponent(s.id)}/${s.paused ? "resume" : "pause"}`); } catch (err) { problem.replaceChildren(errorBox(err)); }
    refresh();
  }

  const empty = (cols, text) => h("tr", {}, h("td", { colspan: cols, class: "muted" }, text));

  async function refresh() {
    clearTimeout(timer);
    try {
      const [ex, fo, sc] = await Promise.all([get("/api/v1/executors"), get(`/api/v1/fanouts${query({ limit: 20 })}`), get(`/api/v1/schedules${query({ limit: 100 })}`)]);
      if (stopped) return;
      problem.replaceChildren();
      executors.replaceChildren(...(ex.items.length ? ex.items.map(executorRow) : [empty(7, "No executor has reported.")]));
      fanouts.replaceChildren(...(fo.items.length ? fo.items.map(fanoutRow) : [empty(5, "No fan-outs yet.")]));
      schedules.replaceChildren(...(sc.items.length ? sc.items.map(scheduleRow) : [empty(6, "No schedules.")]));
    } catch (err) { if (!stopped) problem.replaceChildren(errorBox(err)); }
    if (!stopped) timer = setTimeout(refresh, document.hidden ? POLL_MS * 4 : POLL_MS);
  }
  refresh();
  return () => { stopped = true; clearTimeout(timer); };
}
