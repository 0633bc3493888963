// Breakers: each model version's circuit breaker, with the mode an SRE can force. Breakers that
// a ModelDeployment owns are changed through kubectl, so those rows show the commands instead.
import { h } from "./dom.js";
import { num, percent, slug } from "./format.js";
import { badge, command, confirmRow, empty, table, time } from "./ui.js";

const STATE_TONES = { closed: "ok", open: "bad", half_open: "warn" };
const STATE_NAMES = { closed: "Closed", open: "Open", half_open: "Half-open" };
const MODES = [
  { mode: "open", label: "Force open" },
  { mode: "closed", label: "Force closed" },
  { mode: "auto", label: "Automatic" },
];

function modeButtons(b, ctx) {
  const key = `${b.model}/${b.version}`;
  const busy = ctx.isBusy(`breaker:${key}`);
  const buttons = MODES.map(({ mode, label }) =>
    h("button", {
      type: "button", class: "btn btn-small", id: `mode-${slug(b.model)}-${slug(b.version)}-${mode}`,
      "data-action": "mode", "data-mode": mode, "data-model": b.model, "data-version": b.version,
      "data-busy-key": `breaker:${key}`, "data-confirm-key": mode === "open" ? `open:${key}` : null,
      "aria-pressed": b.mode === mode ? "true" : "false", "aria-disabled": busy ? "true" : null,
    }, label),
  );
  const asking = ctx.isConfirming(`open:${key}`);
  const confirm = asking
    ? confirmRow({ question: "Stop all traffic to this version?", confirmLabel: "Yes, force open", action: "mode", data: { mode: "open", model: b.model, version: b.version, "busy-key": `breaker:${key}` } })
    : null;
  return h("span", { class: "btn-group", role: "group", "aria-label": `Breaker mode for ${b.model} version ${b.version}` }, confirm || buttons);
}

function managedCell(b) {
  const anchor = `cmds-${slug(b.model)}-${slug(b.version)}`;
  return h("span", { class: "cell-note" }, "Managed by ", h("code", null, b.managed_by), ": ", h("a", { href: `#${anchor}` }, "kubectl commands"));
}

/** Breakers a ModelDeployment owns change through kubectl: their commands, one card each. */
function managedCommands(list) {
  const managed = list.filter((b) => b.managed_by && b.commands);
  if (!managed.length) return null;
  return h(
    "section",
    { "aria-labelledby": "managed-title" },
    h("h2", { id: "managed-title" }, "Breakers managed by a ModelDeployment"),
    h("div", { class: "cards" }, managed.map((b) =>
      h(
        "div",
        { class: "card", id: `cmds-${slug(b.model)}-${slug(b.version)}`, "data-key": `${b.model}/${b.version}` },
        h("h3", null, `${b.model} v${b.version}`, h("span", { class: "muted" }, ` · ${b.managed_by}`)),
        ...MODES.map(({ mode, label }) => (b.commands[mode] ? command(b.commands[mode], label) : null)),
      ))),
  );
}

/** Failure rate, with the slow-call rate (when the breaker tracks it) and the calls it is over. */
function rates(b) {
  const slow = b.slow_rate === null || b.slow_rate === undefined ? "" : `slow ${percent(b.slow_rate)} · `;
  return h("span", null, percent(b.failure_rate), h("span", { class: "cell-note" }, `${slow}${num(b.calls)} calls`));
}

const COLUMNS = [
  { label: "Model" }, { label: "Version" }, { label: "State" }, { label: "Mode" }, { label: "Since" },
  { label: "Reason" }, { label: "Failure rate", num: true }, { label: "Change mode" },
];

export default function breakers(ctx) {
  return {
    title: "Breakers",
    url: () => "/console/api/breakers",
    render(data) {
      const list = data.breakers || [];
      if (!list.length) return [empty("No breakers yet.", "A breaker appears for each model version once it has served its first call.")];
      const rows = list.map((b) => ({
        key: `${b.model}/${b.version}`,
        id: `breaker-${slug(b.model)}-${slug(b.version)}`,
        cells: [
          b.model, b.version, badge(STATE_NAMES[b.state] || b.state, STATE_TONES[b.state] || "muted"),
          b.mode === "auto" ? "Automatic" : `Forced ${b.mode}`, time(b.since),
          b.reason ? h("span", { class: "cell-note" }, b.reason) : "—",
          rates(b),
          b.managed_by ? managedCell(b) : modeButtons(b, ctx),
        ],
      }));
      return [
        table({ id: "breakers", caption: "Circuit breakers", columns: COLUMNS, rows }),
        h("p", { class: "table-note" }, "Rates are over the breaker's current window. Forcing open stops all traffic to that version; Automatic lets the breaker decide again."),
        managedCommands(list),
      ];
    },
    actions: {
      async mode(d) {
        if (d.mode === "open" && d.confirmed !== "yes") return ctx.ask(`open:${d.model}/${d.version}`);
        const url = `/console/api/breakers/${encodeURIComponent(d.model)}/${encodeURIComponent(d.version)}`;
        const reply = await ctx.api.post(url, { mode: d.mode });
        const state = reply.breaker ? STATE_NAMES[reply.breaker.state] || reply.breaker.state : "";
        const label = MODES.find((m) => m.mode === d.mode).label;
        return `${d.model} v${d.version}: ${label}${state ? ` (now ${state.toLowerCase()})` : ""}.`;
      },
    },
  };
}
