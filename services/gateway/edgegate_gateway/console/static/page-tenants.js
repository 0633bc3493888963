// Tenants: quotas against current load, how often each is throttled, and its task backlog.
import { h } from "./dom.js";
import { EM_DASH, num, plain, rate } from "./format.js";
import { badge, empty, table } from "./ui.js";

const TASK_STATES = ["pending", "processing", "completed", "failed", "cancelled"];

function quota(q) {
  if (!q) return h("span", { class: "muted" }, "No quota");
  const perKey = q.per_key_rate_per_s === null || q.per_key_rate_per_s === undefined ? null : `, per key ${plain(q.per_key_rate_per_s)}/s`;
  return h("span", null, `${plain(q.rate_per_s)}/s, burst ${plain(q.burst)}`, perKey);
}

export default function tenants(ctx) {
  return {
    title: "Tenants",
    url: () => "/console/api/tenants",
    render(data) {
      const list = data.tenants || [];
      if (!list.length) return [empty("No tenants yet.", "A tenant appears once a token for it is issued or it sends its first request.")];
      const columns = [
        { label: "Tenant" }, { label: "Quota" }, { label: "Rate (req/s)", num: true },
        { label: "429s (1 h)", num: true }, { label: "429s (/s)", num: true },
        ...TASK_STATES.map((s) => ({ label: s[0].toUpperCase() + s.slice(1), num: true })),
      ];
      const rows = list.map((t) => ({
        key: t.tenant,
        cells: [
          h("span", null, t.tenant, t.tenant === ctx.tenant ? h("span", { class: "visually-hidden" }, " (yours)") : null),
          quota(t.quota), rate(t.rate_per_s),
          t.throttled ? badge(num(t.throttled), "warn") : num(t.throttled),
          rate(t.throttled_per_s),
          ...TASK_STATES.map((s) => (t.tasks ? num(t.tasks[s]) : EM_DASH)),
        ],
      }));
      return [
        table({ id: "tenants", caption: "Tenants", columns, rows }),
        h("p", { class: "table-note" }, "Rate and 429s (/s) are over the last minute, 429s (1 h) over the last hour. Pending … Cancelled count the tenant's tasks by state, for your own tenant only (“—” for others: no one reads another tenant's tasks)."),
      ];
    },
  };
}
