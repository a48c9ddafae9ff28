// One saved command: edit it (admin), run it with arguments and env (run), or create a new one.

import { del, get, post, put } from "../api.js";
import { errorBox, formatEnv, h, parseArgs, parseEnv } from "../dom.js";

export const title = "Command";

export async function mount(main, ctx) {
  const [ref] = ctx.params;
  const creating = ref === undefined;
  let command = null;
  if (!creating) {
    try { command = await get(`/api/v1/commands/${encodeURIComponent(ref)}`); } catch (err) { main.append(errorBox(err)); return; }
  }
  const editable = ctx.may("admin");
  const field = (id, label, el) => [h("label", { for: id }, label), el];
  const name = h("input", { id: "c-name", required: true, value: command?.name ?? "", readonly: !editable, size: 30 });
  const description = h("input", { id: "c-description", value: command?.description ?? "", readonly: !editable, size: 60 });
  const script = h("textarea", { id: "c-script", class: "code", spellcheck: "false", readonly: !editable });
  script.value = command?.script ?? "#!/bin/bash\n";
  const env = h("textarea", { id: "c-env", class: "code short", rows: 3, spellcheck: "false", readonly: !editable, placeholder: "NAME=value" });
  env.value = formatEnv(command?.env);
  const pool = h("input", { id: "c-pool", value: command?.pool ?? "default", readonly: !editable, size: 14 });
  const timeout = h("input", { id: "c-timeout", type: "number", min: "0", step: "any", value: command?.timeout_s ?? "", readonly: !editable, size: 8 });
  const status = h("div", { "aria-live": "polite" });

  const editor = h("form", { "data-testid": "command-form" },
    ...field("c-name", "Name", name),
    ...field("c-description", "Description", description),
    ...field("c-script", "Script (bash)", script),
    ...field("c-env", "Environment (one NAME=value a line)", env),
    h("div", { class: "row" },
      h("div", {}, ...field("c-pool", "Pool", pool)),
      h("div", {}, ...field("c-timeout", "Timeout (s, empty: none)", timeout))),
    editable ? h("div", { class: "row" },
      h("button", { class: "primary", type: "submit" }, creating ? "Create" : "Save"),
      creating ? "" : h("button", { type: "button", class: "danger", onclick: remove }, "Delete")) : "",
    status);
  editor.addEventListener("submit", save);

  // Tab inserts a tab in the script (Esc first, then Tab, leaves the field: keyboard users are not trapped).
  let escaped = false;
  script.addEventListener("keydown", (e) => {
    if (e.key === "Escape") { escaped = true; return; }
    if (e.key === "Tab" && !e.shiftKey && !escaped && editable) {
      e.preventDefault();
      script.setRangeText("\t", script.selectionStart, script.selectionEnd, "end");
    }
    escaped = false;
  });

  main.append(h("h1", {}, creating ? "New command" : `Command ${command.name}`),
    creating ? "" : h("p", { class: "muted" }, `version ${command.version} · id `, h("span", { class: "mono" }, command.id)),
    !creating && ctx.may("run") ? runForm() : "",
    h("h2", {}, editable ? "Definition" : "Definition (read only)"),
    editor);

  function body() {
    const t = timeout.value.trim();
    return {
      name: name.value.trim(), description: description.value, script: script.value, env: parseEnv(env.value),
      pool: pool.value.trim() || "default", timeout_s: t === "" ? null : Number(t),
      // Kept as they are: the form does not edit them, and PUT replaces the whole command.
      secrets: command?.secrets ?? [], files: command?.files ?? [], artifacts: command?.artifacts ?? [],
      stop_grace_s: command?.stop_grace_s ?? undefined,
    };
  }

  async function save(event) {
    event.preventDefault();
    status.replaceChildren();
    try {
      const saved = creating ? await post("/api/v1/commands", body()) : await put(`/api/v1/commands/${command.id}`, body());
      if (creating) { ctx.navigate(`#/commands/${saved.id}`); return; }
      command = saved;
      status.append(h("p", { class: "muted" }, `Saved: version ${saved.version}.`));
    } catch (err) { status.append(errorBox(err)); }
  }

  async function remove() {
    if (!confirm(`Delete the command ${command.name}?`)) return;
    try { await del(`/api/v1/commands/${command.id}`); ctx.navigate("#/commands"); } catch (err) { status.append(errorBox(err)); }
  }

  function runForm() {
    const args = h("textarea", { id: "r-args", class: "code short", rows: 3, spellcheck: "false", placeholder: "one argument a line" });
    const runEnv = h("textarea", { id: "r-env", class: "code short", rows: 2, spellcheck: "false", placeholder: "NAME=value (over the command's)" });
    const out = h("div", { "aria-live": "polite" });
    const form = h("form", { "data-testid": "run-form" },
      h("h2", {}, "Run it"),
      ...field("r-args", "Arguments ($1, $2, … one a line)", args),
      ...field("r-env", "Environment", runEnv),
      h("div", { class: "row" }, h("button", { class: "primary", type: "submit" }, "Run")),
      out);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      out.replaceChildren();
      try {
        const run = await post(`/api/v1/commands/${command.id}/runs`, { args: parseArgs(args.value), env: parseEnv(runEnv.value) });
        ctx.navigate(`#/runs/${run.id}`);
      } catch (err) { out.append(errorBox(err)); }
    });
    return form;
  }
}
