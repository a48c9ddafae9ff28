// One fan-out: a grid of its hosts (status colour, exit, a link to each host's run), polled while it
// runs; Stop and Retry for tokens that may run.

import { ApiError, get, post } from "../api.js";
import { errorBox, h, statusBadge, when } from "../dom.js";

export const title = "Fan-out";
const POLL_MS = 1500;
const ACTIVE = new Set(["queued", "running", "stopping"]);

export async function mount(main, ctx) {
  const [id] = ctx.params;
  const base = `/api/v1/fanouts/${id}`;
  let timer = null, stopped = false;
  const actions = h("div", { class: "toolbar" });
  const problem = h("div", { "aria-live": "polite" });
  const meta = h("dl", { class: "meta", "data-testid": "fanout-meta" });
  const grid = h("ul", { class: "hosts", "data-testid": "hosts", "aria-label": "Hosts" });
  main.append(h("h1", {}, "Fan-out ", h("span", { class: "mono" }, id.slice(0, 8))), actions, problem, meta, h("h2", {}, "Hosts"), grid);

  async function refresh() {
    clearTimeout(timer);
    let f;
    try { f = await get(base); } catch (err) {
      if (stopped) return;
      problem.replaceChildren(errorBox(err));
      if (!(err instanceof ApiError && err.status === 404)) timer = setTimeout(refresh, POLL_MS * 2);
      return;
    }
    if (stopped) return;
    render(f);
    if (ACTIVE.has(f.status)) timer = setTimeout(refresh, document.hidden ? POLL_MS * 4 : POLL_MS);
  }

  function render(f) {
    const active = ACTIVE.has(f.status);
    const facts = [
      ["Status", statusBadge(f.status)],
      ["Script", h("code", { class: "mono" }, f.script.length > 400 ? f.script.slice(0, 400) + "…" : f.script)],
      ["Arguments", f.args.length ? f.args.map((a) => JSON.stringify(a)).join(" ") : ""],
      ["Command", f.command_id ? h("a", { href: `#/commands/${f.command_id}` }, f.command_id) : ""],
      ["Matched", [f.pool ? `pool ${f.pool}` : "", ...Object.entries(f.labels).map(([k, v]) => `${k}=${v}`)].filter(Boolean).join(", ") || "every live executor"],
      ["Rolling", [f.max_parallel ? `at most ${f.max_parallel} at once` : "", f.max_failures ? `stop after ${f.max_failures} failed` : ""].filter(Boolean).join(", ")],
      ["Round", f.round > 1 ? String(f.round) : ""],
      ["Counts", Object.entries(f.counts).map(([k, n]) => `${n} ${k}`).join(", ")],
      ["Requested by", f.requested_by],
      ["Created", when(f.created_at)],
      ["Finished", when(f.finished_at)],
    ].filter(([, v]) => v !== "");
    meta.replaceChildren(...facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    const retryable = !active && f.runs.some((r) => r.status !== "succeeded");
    actions.replaceChildren(
      ctx.may("run") && active ? h("button", { type: "button", class: "danger", onclick: () => act("stop"), disabled: f.status === "stopping" }, "Stop") : "",
      ctx.may("run") && retryable ? h("button", { type: "button", onclick: () => act("retry") }, "Retry failed hosts") : "");
    grid.replaceChildren(...f.runs.map((r) => {
      const outcome = r.signal !== null && r.signal !== undefined ? `signal ${r.signal}` : r.exit_code !== null && r.exit_code !== undefined ? `exit ${r.exit_code}` : "";
      const inner = [h("span", { class: "mono host-name" }, r.host), h("span", { class: `status ${r.status}` }, r.status), outcome ? h("span", {}, outcome) : "",
        r.attempt > 1 ? h("span", { class: "muted" }, `attempt ${r.attempt}`) : ""];
      const label = `${r.host}: ${r.status}${outcome ? `, ${outcome}` : ""}${r.reason ? ` — ${r.reason}` : ""}`;
      return h("li", { class: `host ${r.status}`, "data-host": r.host },
        r.run_id ? h("a", { href: `#/runs/${r.run_id}`, title: label }, ...inner) : h("div", { title: label }, ...inner));
    }));
  }

  async function act(verb) {
    problem.replaceChildren();
    try { await post(`${base}/${verb}`); } catch (err) { problem.replaceChildren(errorBox(err)); }
    refresh();
  }

  refresh();
  return () => { stopped = true; clearTimeout(timer); };
}
