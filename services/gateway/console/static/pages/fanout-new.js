// "Run on many hosts": a fan-out form (a script or a saved command, which executors, how rolling);
// on success the fan-out's own page, with its grid of hosts.

import { post } from "../api.js";
import { errorBox, h, parseArgs, parseEnv } from "../dom.js";

export const title = "Run on many hosts";

/** "k=v" pairs separated by spaces, commas or new lines. */
function parseLabels(text) {
  const labels = {};
  for (const pair of text.split(/[\s,]+/).filter(Boolean)) {
    const at = pair.indexOf("=");
    if (at <= 0) throw new Error(`labels: write key=value, not ${JSON.stringify(pair)}`);
    labels[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return labels;
}

export async function mount(main, ctx) {
  main.append(h("h1", {}, "Run on many hosts"));
  if (!ctx.may("run")) { main.append(h("p", { class: "muted" }, "Your token's role may not start runs.")); return; }
  const field = (id, label, el) => h("div", {}, h("label", { for: id }, label), el);
  const kind = h("select", { id: "fo-kind" }, h("option", { value: "script" }, "a script"), h("option", { value: "command" }, "a saved command"));
  const script = h("textarea", { id: "fo-script", class: "code short", rows: 6, spellcheck: "false", placeholder: "uptime" });
  const command = h("input", { id: "fo-command", size: 30, placeholder: "command name or id" });
  const args = h("textarea", { id: "fo-args", class: "code short", rows: 2, spellcheck: "false", placeholder: "one argument a line" });
  const env = h("textarea", { id: "fo-env", class: "code short", rows: 2, spellcheck: "false", placeholder: "NAME=value" });
  const pool = h("input", { id: "fo-pool", size: 14, placeholder: "any" });
  const labels = h("input", { id: "fo-labels", size: 30, placeholder: "role=web region=eu" });
  const hosts = h("input", { id: "fo-hosts", size: 30, placeholder: "all that match (or: web1 web2)" });
  const maxParallel = h("input", { id: "fo-parallel", type: "number", min: "1", size: 6 });
  const maxFailures = h("input", { id: "fo-failures", type: "number", min: "1", size: 6 });
  const timeout = h("input", { id: "fo-timeout", type: "number", min: "0", step: "any", size: 8 });
  const description = h("input", { id: "fo-description", size: 50 });
  const status = h("div", { "aria-live": "polite" });
  const scriptBox = field("fo-script", "Script (bash)", script), commandBox = field("fo-command", "Command", command);
  const sync = () => { scriptBox.hidden = kind.value !== "script"; commandBox.hidden = kind.value === "script"; };
  kind.addEventListener("change", sync);
  sync();
  const form = h("form", { "data-testid": "fanout-form" },
    h("p", { class: "muted" }, "One run on every live executor that matches, grouped as a fan-out."),
    field("fo-kind", "Run", kind), scriptBox, commandBox,
    field("fo-args", "Arguments ($1, $2, … one a line)", args),
    field("fo-env", "Environment (one NAME=value a line)", env),
    h("fieldset", {}, h("legend", {}, "Which hosts"),
      h("div", { class: "row" }, field("fo-pool", "Pool", pool), field("fo-labels", "Labels (key=value)", labels), field("fo-hosts", "Hosts", hosts))),
    h("fieldset", {}, h("legend", {}, "How"),
      h("div", { class: "row" }, field("fo-parallel", "At most at once", maxParallel), field("fo-failures", "Stop after failures", maxFailures),
        field("fo-timeout", "Timeout per host (s)", timeout))),
    field("fo-description", "Description", description),
    h("div", { class: "row" }, h("button", { class: "primary", type: "submit" }, "Run on hosts")),
    status);
  const number = (input) => (input.value.trim() === "" ? null : Number(input.value));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.replaceChildren();
    try {
      const hostList = hosts.value.split(/[\s,]+/).filter(Boolean);
      const body = {
        ...(kind.value === "script" ? { script: script.value } : { command_id: command.value.trim() }),
        args: parseArgs(args.value), env: parseEnv(env.value), labels: parseLabels(labels.value),
        pool: pool.value.trim() || null, max_parallel: number(maxParallel), max_failures: number(maxFailures),
        timeout_s: number(timeout), description: description.value,
        ...(hostList.length ? { hosts: hostList } : {}),
      };
      const fanout = await post("/api/v1/fanouts", body);
      ctx.navigate(`#/fanouts/${fanout.id}`);
    } catch (err) { status.append(errorBox(err)); }
  });
  main.append(form);
}
