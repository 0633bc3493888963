// Audit: the security service's tamper-evident log, newest first, with paging to older records
// and a check that the hash chain is intact.
import { h } from "./dom.js";
import { num } from "./format.js";
import { badge, empty, query, table, time } from "./ui.js";

const EVENTS = [
  ["", "All events"],
  ["authn_failure", "Authentication failures"],
  ["deny", "Denials"],
  ["redaction", "Redactions"],
  ["admin", "Admin actions"],
];
const TONES = { authn_failure: "bad", deny: "warn", redaction: "info", admin: "muted" };

function details(record) {
  const entries = Object.entries(record.details || {});
  if (!entries.length) return "";
  return h("code", { class: "kv" }, entries.map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" "));
}

function verifyText(r) {
  if (r.intact) return `Chain intact: ${num(r.records_checked)} records checked, head #${r.head_sequence}.`;
  const where = r.first_broken_sequence ? ` First broken record: #${r.first_broken_sequence}.` : "";
  return `Chain broken: ${r.problem || r.kind || "unknown problem"}.${where} ${num(r.records_checked)} records checked, head #${r.head_sequence}.`;
}

const COLUMNS = [
  { label: "Seq", num: true }, { label: "Time" }, { label: "Event" }, { label: "Reason" }, { label: "Subject" },
  { label: "Tenant" }, { label: "Token" }, { label: "Request" }, { label: "Details", class: "text-cell" },
];

export default function audit(ctx) {
  let resultBox = null;
  let verifyButton = null;
  const setParam = (name, value) => {
    const params = ctx.params;
    if (value) params.set(name, value);
    else params.delete(name);
    if (name === "event") params.delete("before"); // a new filter starts at the newest record
    ctx.setParams(params);
  };
  return {
    title: "Audit",
    url: () => query("/console/api/audit", ctx.params, ["before", "event"]),
    controls() {
      const current = ctx.params.get("event") || "";
      verifyButton = h("button", { type: "button", class: "btn", id: "audit-verify", "data-action": "verify" }, "Verify chain");
      resultBox = h("div", { id: "audit-verify-result", class: "result", role: "status", "aria-live": "polite" });
      return h(
        "div",
        null,
        h(
          "div",
          { class: "toolbar" },
          h("div", { class: "field" }, h("label", { for: "audit-event" }, "Event"), h("select", { id: "audit-event", name: "event" }, EVENTS.map(([v, label]) => h("option", { value: v, selected: v === current }, label)))),
          h("div", { class: "field" }, h("span", { class: "hint", "aria-hidden": "true" }, "\u00a0"), verifyButton),
        ),
        resultBox,
      );
    },
    onChange(target) {
      if (target.id === "audit-event") setParam("event", target.value);
    },
    render(data) {
      const records = data.records || [];
      const before = ctx.params.get("before");
      const paging = h(
        "div",
        { class: "toolbar" },
        before ? h("button", { type: "button", class: "btn", id: "audit-newest", "data-key": "newest", "data-action": "newest" }, "Newest") : null,
        data.next_before ? h("button", { type: "button", class: "btn", id: "audit-older", "data-key": "older", "data-action": "older", "data-before": data.next_before }, "Older") : null,
        h("span", { class: "muted" }, before ? `Records before #${before}.` : "Newest records; the first page refreshes live."),
      );
      if (!records.length) return [empty("No audit records match.", "Records appear when a request is denied, a token fails, data is redacted or an admin changes something."), paging];
      const rows = records.map((r) => ({
        key: String(r.seq),
        id: `audit-${r.seq}`,
        cells: [num(r.seq), time(r.time), badge(r.event, TONES[r.event] || "muted"), r.reason || "—", r.subject || "—", r.tenant || "—", r.token_id ? h("code", null, r.token_id) : "—", r.request_id ? h("code", null, r.request_id) : "—", details(r)],
      }));
      return [table({ id: "audit", caption: "Audit records", columns: COLUMNS, rows }), paging];
    },
    actions: {
      older: (d) => setParam("before", d.before),
      newest: () => setParam("before", ""),
      async verify() {
        verifyButton.setAttribute("aria-disabled", "true");
        verifyButton.textContent = "Verifying…";
        resultBox.className = "result";
        try {
          const r = await ctx.api.post("/console/api/audit/verify", {});
          resultBox.textContent = verifyText(r);
          resultBox.className = `result ${r.intact ? "result-ok" : "result-bad"}`;
        } catch (err) {
          resultBox.textContent = `Could not verify: ${err.message}`;
          resultBox.className = "result result-bad";
        } finally {
          verifyButton.removeAttribute("aria-disabled");
          verifyButton.textContent = "Verify chain";
        }
      },
    },
  };
}
