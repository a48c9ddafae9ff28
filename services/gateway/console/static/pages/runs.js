// Runs: a live list (polled) with the API's filters, cursor paging that stays put, and a quick "run a script".

import { get, post, query } from "../api.js";
import { STATUSES, duration, errorBox, firstLine, h, runDuration, statusBadge, when } from "../dom.js";

export const title = "Runs";
const POLL_MS = 1500;
const PAGE = 50;

export async function mount(main, ctx) {
  const filters = { status: "", command_id: "", host: "", pool: "", after: "", before: "" };
  // cursors[i] opens page i; page 0 (no cursor) shows the newest runs and takes in new ones live.
  const cursors = [null];
  let page = 0, nextCursor = null, timer = null, stopped = false;

  const input = (name, attrs = {}) => h("input", { id: `f-${name}`, name, ...attrs, oninput: () => changed() });
  const statusSelect = h("select", { id: "f-status", name: "status", onchange: () => changed() },
    h("option", { value: "" }, "any"), ...STATUSES.map((s) => h("option", { value: s }, s)));
  const fields = {
    status: statusSelect,
    command_id: input("command_id", { placeholder: "id or name", size: 14 }),
    host: input("host", { size: 12 }),
    pool: input("pool", { size: 10 }),
    after: input("after", { type: "datetime-local" }),
    before: input("before", { type: "datetime-local" }),
  };
  const labels = { status: "Status", command_id: "Command", host: "Host", pool: "Pool", after: "Created after", before: "Created before" };
  const tbody = h("tbody");
  const summary = h("span", { class: "muted", "aria-live": "polite" });
  const newer = h("button", { type: "button", onclick: () => go(page - 1) }, "← Newer");
  const older = h("button", { type: "button", onclick: () => go(page + 1) }, "Older →");
  const problem = h("div");

  main.append(
    h("h1", {}, "Runs"),
    ctx.may("run") ? quickRun(ctx) : "",
    h("form", { class: "filters", role: "search", onsubmit: (e) => e.preventDefault() },
      ...Object.entries(fields).map(([name, el]) => h("div", {}, h("label", { for: el.id }, labels[name]), el))),
    problem,
    h("div", { class: "table-wrap" }, h("table", { "data-testid": "runs" },
      h("thead", {}, h("tr", {},
        h("th", {}, "Status"), h("th", {}, "Command"), h("th", { class: "hide-narrow" }, "Host"),
        h("th", {}, "Duration"), h("th", { class: "hide-narrow" }, "By"), h("th", {}, "Created"))),
      tbody)),
    h("div", { class: "pager" }, newer, older, summary),
  );

  function changed() {
    for (const [name, el] of Object.entries(fields)) filters[name] = el.value.trim();
    cursors.length = 1; page = 0;
    refresh();
  }

  function go(to) {
    if (to < 0 || (to > page && !nextCursor)) return;
    if (to > page) cursors[to] = nextCursor;
    page = to;
    refresh();
  }

  function params() {
    const p = { ...filters, limit: PAGE, cursor: cursors[page] };
    // datetime-local has no zone: send the browser's local time as an instant.
    for (const key of ["after", "before"]) if (p[key]) p[key] = new Date(p[key]).toISOString();
    return p;
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const list = await get(`/api/v1/runs${query(params())}`);
      if (stopped) return;
      problem.replaceChildren();
      nextCursor = list.next_cursor;
      tbody.replaceChildren(...list.items.map(row));
      if (!list.items.length) tbody.append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No runs match.")));
      summary.textContent = `${list.total} run${list.total === 1 ? "" : "s"} · page ${page + 1}`;
      newer.disabled = page === 0;
      older.disabled = !nextCursor;
    } catch (err) {
      if (stopped) return;
      problem.replaceChildren(errorBox(err));
    }
    if (!stopped) timer = setTimeout(refresh, document.hidden ? POLL_MS * 4 : POLL_MS);
  }

  function row(run) {
    const what = run.description || firstLine(run.script) + (run.args.length ? ` ${run.args.join(" ")}` : "");
    return h("tr", { "data-run": run.id },
      h("td", {}, statusBadge(run.status)),
      h("td", { class: "script mono" }, h("a", { href: `#/runs/${run.id}`, title: run.script }, what || "(empty script)")),
      h("td", { class: "hide-narrow" }, run.host || run.target_host || ""),
      h("td", {}, duration(runDuration(run))),
      h("td", { class: "hide-narrow" }, run.requested_by),
      h("td", {}, when(run.created_at)));
  }

  refresh();
  return () => { stopped = true; clearTimeout(timer); };
}

function quickRun(ctx) {
  const script = h("textarea", { id: "quick-script", class: "code short", rows: 3, placeholder: "echo hello" });
  const status = h("div");
  const form = h("form", { "data-testid": "quick-run" },
    h("label", { for: "quick-script" }, "Run a script"),
    script,
    h("div", { class: "row" }, h("button", { class: "primary", type: "submit" }, "Run")),
    status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.replaceChildren();
    try {
      const run = await post("/api/v1/runs", { script: script.value });
      ctx.navigate(`#/runs/${run.id}`);
    } catch (err) {
      status.append(errorBox(err));
    }
  });
  return h("details", {}, h("summary", {}, "Run a script…"), form);
}
