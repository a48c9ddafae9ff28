// Saved commands: searchable list; open one to edit or run it.

import { get, query } from "../api.js";
import { errorBox, firstLine, h, when } from "../dom.js";

export const title = "Commands";

export async function mount(main, ctx) {
  let stopped = false, timer = null;
  const search = h("input", { id: "q", type: "search", placeholder: "name or description", oninput: () => { clearTimeout(timer); timer = setTimeout(load, 200); } });
  const tbody = h("tbody");
  const problem = h("div");
  const total = h("span", { class: "muted" });
  main.append(
    h("h1", {}, "Commands"),
    h("div", { class: "filters" },
      h("div", {}, h("label", { for: "q" }, "Search"), search),
      ctx.may("admin") ? h("a", { class: "button primary", href: "#/commands/new" }, "New command") : ""),
    problem,
    h("div", { class: "table-wrap" }, h("table", { "data-testid": "commands" },
      h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Description"), h("th", { class: "hide-narrow" }, "Script"),
        h("th", { class: "hide-narrow" }, "Pool"), h("th", { class: "hide-narrow" }, "Version"), h("th", {}, "Updated"))),
      tbody)),
    total);

  async function load() {
    try {
      const list = await get(`/api/v1/commands${query({ q: search.value.trim(), limit: 200 })}`);
      if (stopped) return;
      problem.replaceChildren();
      tbody.replaceChildren(...list.items.map((c) => h("tr", {},
        h("td", {}, h("a", { href: `#/commands/${encodeURIComponent(c.id)}` }, c.name)),
        h("td", {}, c.description),
        h("td", { class: "script mono hide-narrow" }, firstLine(c.script)),
        h("td", { class: "hide-narrow" }, c.pool),
        h("td", { class: "hide-narrow" }, c.version),
        h("td", {}, when(c.updated_at)))));
      if (!list.items.length) tbody.append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No commands.")));
      total.textContent = `${list.total} command${list.total === 1 ? "" : "s"}`;
    } catch (err) {
      if (!stopped) problem.replaceChildren(errorBox(err));
    }
  }

  load();
  return () => { stopped = true; clearTimeout(timer); };
}
