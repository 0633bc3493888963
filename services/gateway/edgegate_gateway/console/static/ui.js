// Building blocks the pages share: badges, tables in scrolling wrappers, times, empty states,
// copyable commands. Keeping them here makes the pages look and behave alike.
import { h } from "./dom.js";
import { EM_DASH, when } from "./format.js";

/** A status badge; `tone` is one of ok, warn, bad, info, muted. The text always says the state. */
export function badge(text, tone = "muted") {
  return h("span", { class: `badge badge-${tone}` }, text);
}

/** A <time> showing local time, with the exact UTC instant on hover. */
export function time(iso) {
  if (!iso) return EM_DASH;
  return h("time", { datetime: iso, title: iso }, when(iso));
}

/**
 * A table inside a focusable, labelled wrapper, so that wide tables scroll sideways (keyboard
 * users can scroll them too); below 640 px the CSS turns each row into a card instead. columns: [{label, num?}], rows: [{key, cells: []}].
 */
export function table({ id, caption, columns, rows, captionHidden = true }) {
  const head = h(
    "thead",
    null,
    h("tr", null, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label))),
  );
  const body = h(
    "tbody",
    null,
    rows.map((row) =>
      h(
        "tr",
        { "data-key": row.key, id: row.id || null },
        row.cells.map((cell, i) =>
          h(i === 0 && row.header !== false ? "th" : "td", cellAttrs(columns[i], i, row), cell),
        ),
      ),
    ),
  );
  const cap = h("caption", { class: captionHidden ? "visually-hidden" : null }, caption);
  return h(
    "div",
    { class: "table-wrap stack", tabindex: "0", role: "region", "aria-label": `${caption} table` },
    h("table", { id }, cap, head, body),
  );
}

function cellAttrs(column, index, row) {
  // data-label: on a phone each row becomes a card and the CSS prints the column name.
  const attrs = { class: column.num ? "num" : column.class || null, "data-label": column.label };
  if (index === 0 && row.header !== false) attrs.scope = "row";
  return attrs;
}

/** The honest empty state: what is missing and what makes it appear. */
export function empty(title, hint) {
  return h("div", { class: "empty", role: "note" }, h("p", { class: "empty-title" }, title), hint ? h("p", null, hint) : null);
}

/** A shell command in a <code> block with a Copy button (clipboard writes may fail quietly). */
export function command(text, label) {
  return h(
    "div",
    { class: "command", "data-key": `cmd:${text}` },
    label ? h("span", { class: "command-label" }, label) : null,
    h("code", null, text),
    h("button", { type: "button", class: "btn btn-small", "data-action": "copy", "data-copy": text, "aria-label": `Copy: ${label || text}` }, "Copy"),
  );
}

/** A definition list of facts: [[term, value], ...]. */
export function facts(pairs, cls = "facts") {
  return h("dl", { class: cls }, pairs.map(([term, value]) => h("div", { class: "fact" }, h("dt", null, term), h("dd", null, value))));
}

/** A figure with a big number and its unit, for totals. */
export function stat(label, value, unit) {
  return h("div", { class: "stat" }, h("span", { class: "stat-label" }, label), h("span", { class: "stat-value" }, value, unit ? h("span", { class: "stat-unit" }, ` ${unit}`) : null));
}

/**
 * Two-step confirmation for destructive actions: shown in place of the buttons that asked, so it
 * never widens a table; the first of its buttons does it, Keep goes back.
 */
export function confirmRow({ question, confirmLabel, action, data }) {
  const attrs = { type: "button", class: "btn btn-danger btn-small", "data-action": action };
  for (const [k, v] of Object.entries(data)) attrs[`data-${k}`] = v;
  return h(
    "span",
    { class: "confirm", role: "group", "aria-label": question },
    h("span", { class: "confirm-question" }, question),
    h(
      "span",
      { class: "confirm-buttons" },
      h("button", { ...attrs, "data-confirmed": "yes" }, confirmLabel),
      h("button", { type: "button", class: "btn btn-small", "data-action": "unconfirm" }, "Keep"),
    ),
  );
}

/** An API URL with the named page parameters that are set; empty ones are left out (the API reads "" as a value). */
export function query(path, params, names) {
  const picked = new URLSearchParams();
  for (const name of names) {
    const value = (params.get(name) || "").trim();
    if (value) picked.set(name, value);
  }
  const text = picked.toString();
  return text ? `${path}?${text}` : path;
}
