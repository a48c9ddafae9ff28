// API tokens (admin): list, create with a role and a name (the token is shown this once, with a copy
// button), revoke. The gateway keeps only digests, so a lost token is revoked and made anew.

import { del, get, post, query } from "../api.js";
import { errorBox, h, when } from "../dom.js";

export const title = "Tokens";

export async function mount(main, ctx) {
  const problem = h("div", { "aria-live": "polite" });
  const fresh = h("div", { "aria-live": "polite" });
  const tbody = h("tbody");
  const showRevoked = h("input", { id: "t-revoked", type: "checkbox", onchange: () => refresh() });
  main.append(h("h1", {}, "API tokens"),
    ctx.may("admin") ? createForm() : "", fresh, problem,
    h("div", { class: "row" }, showRevoked, h("label", { for: "t-revoked", class: "inline plain" }, "show revoked tokens")),
    h("div", { class: "table-wrap" }, h("table", { "data-testid": "tokens" },
      h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Role"), h("th", { class: "hide-narrow" }, "Id"),
        h("th", {}, "Created"), h("th", { class: "hide-narrow" }, "By"), h("th", {}, ""))),
      tbody)));

  function createForm() {
    const name = h("input", { id: "t-name", size: 24, placeholder: "e.g. ci", autocomplete: "off" });
    const role = h("select", { id: "t-role" }, ...["read", "run", "admin"].map((r) => h("option", { value: r }, r)));
    const status = h("div", { "aria-live": "polite" });
    const form = h("form", { "data-testid": "token-form" },
      h("h2", {}, "Create a token"),
      h("div", { class: "row" },
        h("div", {}, h("label", { for: "t-name" }, "Name (who holds it)"), name),
        h("div", {}, h("label", { for: "t-role" }, "Role"), role),
        h("button", { class: "primary", type: "submit" }, "Create token")),
      status);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      status.replaceChildren();
      fresh.replaceChildren();
      try {
        const made = await post("/api/v1/tokens", { role: role.value, name: name.value.trim() });
        showOnce(made);
        name.value = "";
        refresh();
      } catch (err) { status.append(errorBox(err)); }
    });
    return form;
  }

  function showOnce(made) {
    const copied = h("span", { class: "muted", "aria-live": "polite" });
    const copy = async () => {
      try { await navigator.clipboard.writeText(made.token); copied.textContent = " Copied."; } catch { copied.textContent = " Select it and copy by hand."; }
    };
    fresh.replaceChildren(h("div", { class: "once", "data-testid": "new-token", role: "status" },
      h("p", {}, h("strong", {}, `Token ${made.name} (${made.role}): shown only once.`), " Copy it now: the gateway keeps only its digest."),
      h("p", {}, h("code", { class: "mono", "data-testid": "new-token-value" }, made.token)),
      h("div", { class: "toolbar" }, h("button", { type: "button", onclick: copy }, "Copy"),
        h("button", { type: "button", onclick: () => fresh.replaceChildren() }, "Done, hide it"), copied)));
  }

  function row(t) {
    return h("tr", { "data-token": t.name },
      h("td", { class: "mono" }, t.name, t.revoked_at ? h("span", { class: "muted" }, ` (revoked ${when(t.revoked_at)} by ${t.revoked_by})`) : ""),
      h("td", {}, t.role),
      h("td", { class: "hide-narrow mono" }, t.id),
      h("td", {}, when(t.created_at)),
      h("td", { class: "hide-narrow" }, t.created_by),
      h("td", { class: "actions" }, !t.revoked_at && ctx.may("admin") ? h("button", { type: "button", class: "danger", onclick: () => revoke(t), "aria-label": `Revoke ${t.name}` }, "Revoke") : ""));
  }

  async function revoke(t) {
    if (!confirm(`Revoke the token ${t.name}? Whoever holds it is refused from now on.`)) return;
    problem.replaceChildren();
    try { await del(`/api/v1/tokens/${t.id}`); } catch (err) { problem.append(errorBox(err)); }
    refresh();
  }

  async function refresh() {
    try {
      const list = await get(`/api/v1/tokens${query({ revoked: showRevoked.checked ? "true" : "" })}`);
      tbody.replaceChildren(...(list.items.length ? list.items.map(row) : [h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No tokens made through the API (tokens from SCRIPTBUS_API_TOKENS are not listed)."))]));
    } catch (err) { problem.replaceChildren(errorBox(err)); }
  }
  await refresh();
}
