// Rollouts: each ModelDeployment's canary as the operator last mirrored it into NATS KV. The
// console only shows it; changes go through kubectl, so every action is a copyable command.
import { h, svg } from "./dom.js";
import { ms, num, percent } from "./format.js";
import { badge, command, empty, facts, time } from "./ui.js";

const PHASE_TONES = { Healthy: "ok", Progressing: "info", Promoting: "info", Pending: "muted", Paused: "warn", Aborted: "bad", Degraded: "bad" };
const VERDICT_TONES = { Pass: "ok", Fail: "bad", Inconclusive: "warn" };
const BREAKER_TONES = { closed: "ok", open: "bad", half_open: "warn" };

function weightBar(r) {
  const weight = Math.max(0, Math.min(100, Number(r.weight) || 0));
  const label = r.canary_version ? `Canary v${r.canary_version}: ${weight} % of traffic; stable v${r.stable_version}: ${100 - weight} %` : `Stable v${r.stable_version || "?"}: all traffic`;
  return h(
    "div",
    { class: "weight" },
    h("div", { class: "weight-label" }, h("span", null, `stable ${100 - weight} %`), h("span", null, `canary ${weight} %`)),
    h("div", { class: "weight-bar", role: "img", "aria-label": label },
      svg("svg", { width: "100%", height: "100%", "aria-hidden": "true", focusable: "false" }, svg("rect", { class: "tone-blue", x: `${100 - weight}%`, y: 0, width: `${weight}%`, height: "100%" }))),
  );
}

function stepList(r) {
  const steps = r.steps || [];
  if (!steps.length) return h("p", { class: "muted" }, "No steps: this deployment has no canary strategy.");
  const done = r.step >= steps.length;
  return h(
    "div",
    null,
    h("p", null, done ? `All ${steps.length} steps done.` : `Step ${r.step + 1} of ${steps.length}${r.paused ? " (paused)" : ""}`),
    h("ol", { class: "steps" }, steps.map((s, i) => h("li", { class: i < r.step ? "done" : null, "aria-current": i === r.step ? "step" : null }, s, i < r.step ? h("span", { class: "visually-hidden" }, " (done)") : null))),
  );
}

function analysis(a, r) {
  if (!a) return h("p", { class: "muted" }, "No analysis has run yet.");
  return h(
    "div",
    null,
    h("p", null, badge(a.verdict, VERDICT_TONES[a.verdict] || "muted"), " ", time(a.at), r.failed_checks ? h("span", null, ` · ${num(r.failed_checks)} failed checks`) : null),
    facts([
      ["Requests", num(a.requests)],
      ["Error rate", percent(a.error_rate, 2)],
      ["p99", a.p99_s === null || a.p99_s === undefined ? "—" : ms(a.p99_s * 1000)],
      ["Agreement", percent(a.agreement)],
    ], "facts facts-compact"),
    a.message ? h("p", { class: "cell-note" }, a.message) : null,
  );
}

function breakers(list) {
  if (!list || !list.length) return h("p", { class: "muted" }, "No breakers reported.");
  return h("ul", { class: "plain-list" }, list.map((b) =>
    h("li", null, `v${b.version} `, badge(b.state.replace("_", "-"), BREAKER_TONES[b.state] || "muted"), ` mode ${b.mode}`, b.reason ? h("span", { class: "cell-note" }, b.reason) : null)));
}

function conditions(list) {
  if (!list || !list.length) return h("p", { class: "muted" }, "None reported.");
  return h("ul", { class: "plain-list" }, list.map((c) =>
    h("li", null, badge(`${c.type}: ${c.status}`, c.status === "True" ? (c.type === "Degraded" ? "bad" : "ok") : "muted"), " ", c.reason || "", c.message ? h("span", { class: "cell-note" }, c.message) : null)));
}

function card(r) {
  const id = `${r.namespace}/${r.name}`;
  const versions = r.canary_version ? `stable v${r.stable_version} → canary v${r.canary_version}` : `stable v${r.stable_version || "?"}`;
  return h(
    "article",
    { class: "card rollout", id: `rollout-${r.namespace}-${r.name}`, "data-key": id, "aria-labelledby": `rollout-title-${r.namespace}-${r.name}` },
    h("div", { class: "rollout-head" },
      h("h2", { id: `rollout-title-${r.namespace}-${r.name}` }, id),
      badge(r.phase, PHASE_TONES[r.phase] || "muted"),
      r.paused ? badge("Paused", "warn") : null),
    h("p", { class: "versions" }, h("strong", null, r.model), ` · ${versions}`),
    weightBar(r),
    h("div", { class: "split" },
      h("section", null, h("h3", null, "Steps"), stepList(r)),
      h("section", null, h("h3", null, "Last analysis"), analysis(r.analysis, r))),
    h("div", { class: "split" },
      h("section", null, h("h3", null, "Breakers"), breakers(r.breakers)),
      h("section", null, h("h3", null, "Conditions"), conditions(r.conditions))),
    r.commands && r.commands.length ? h("section", null, h("h3", null, "Commands"), r.commands.map((c) => command(c.command, c.action))) : null,
    h("p", { class: "cell-note" }, "Observed ", time(r.observed_at)),
  );
}

export default function rollouts() {
  return {
    title: "Rollouts",
    url: () => "/console/api/rollouts",
    render(data) {
      const list = data.rollouts || [];
      const source = data.source ? h("p", { class: "table-note" }, `Source: ${data.source}.`) : null;
      if (!list.length) return [empty("No rollouts.", "Create a ModelDeployment; the operator mirrors its status here."), source];
      return [h("div", { class: "cards" }, list.map(card)), source];
    },
  };
}
