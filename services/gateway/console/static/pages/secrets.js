// Secrets (admin): names only, never values. Setting one sends the value once, from a password field
// cleared as soon as it is sent; nothing on the page can show it again (the API never answers it).

import { del, get, put } from "../api.js";
import { errorBox, h, when } from "../dom.js";

export const title = "Secrets";

export async function mount(main, ctx) {
  const admin = ctx.may("admin");
  const problem = h("div", { "aria-live": "polite" });
  const tbody = h("tbody");
  main.append(h("h1", {}, "Secrets"),
    h("p", { class: "muted" }, "Write-only values a run or command names; the script gets each as an environment variable of that name."),
    admin ? setForm() : "", problem,
    h("div", { class: "table-wrap" }, h("table", { "data-testid": "secrets" },
      h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Version"), h("th", {}, "Set"), h("th", { class: "hide-narrow" }, "By"), h("th", {}, ""))),
      tbody)));

  function setForm() {
    const name = h("input", { id: "s-name", required: true, size: 30, pattern: "[A-Za-z_][A-Za-z0-9_]*", placeholder: "DB_PASSWORD", autocomplete: "off" });
    const value = h("input", { id: "s-value", type: "password", required: true, size: 40, autocomplete: "new-password" });
    const status = h("div", { "aria-live": "polite" });
    const form = h("form", { "data-testid": "secret-form" },
      h("h2", {}, "Set a secret"),
      h("div", { class: "row" },
        h("div", {}, h("label", { for: "s-name" }, "Name"), name),
        h("div", {}, h("label", { for: "s-value" }, "Value"), value),
        h("button", { class: "primary", type: "submit" }, "Set")),
      status);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      status.replaceChildren();
      const given = value.value;
      value.value = ""; // gone from the page whatever the answer
      try {
        const secret = await put(`/api/v1/secrets/${encodeURIComponent(name.value.trim())}`, { value: given });
        status.append(h("p", { class: "muted" }, `Secret ${secret.name} set (version ${secret.version}).`));
        name.value = "";
        refresh();
      } catch (err) { status.append(errorBox(err)); }
    });
    return form;
  }

  function row(s) {
    return h("tr", { "data-secret": s.name },
      h("td", { class: "mono" }, s.name),
      h("td", {}, String(s.version)),
      h("td", {}, when(s.set_at)),
      h("td", { class: "hide-narrow" }, s.set_by),
      h("td", { class: "actions" }, admin ? h("button", { type: "button", class: "danger", onclick: () => remove(s), "aria-label": `Delete ${s.name}` }, "Delete") : ""));
  }

  async function remove(s) {
    if (!confirm(`Delete the secret ${s.name}? Runs and commands naming it will fail until it is set again.`)) return;
    problem.replaceChildren();
    try { await del(`/api/v1/secrets/${encodeURIComponent(s.name)}`); } catch (err) { problem.append(errorBox(err)); }
    refresh();
  }

  async function refresh() {
    try {
      const list = await get("/api/v1/secrets");
      tbody.replaceChildren(...(list.items.length ? list.items.map(row) : [h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No secrets."))]));
    } catch (err) { problem.replaceChildren(errorBox(err)); }
  }
  await refresh();
}
