// Overview: is every service up, is the bus healthy, and how is traffic doing this hour.
import { lineChart } from "./charts.js";
import { h } from "./dom.js";
import { age, bytes, ms, num, rate } from "./format.js";
import { badge, empty, facts, stat, table, time } from "./ui.js";

function servicesTable(services) {
  if (!services.length) return empty("No services reported.", "The gateway asks each service for its health; none answered with a name.");
  const rows = services.map((s) => {
    const up = s.reachable && s.serving;
    const state = up ? badge("Serving", "ok") : badge("Down", "bad");
    const why = s.reachable ? (s.serving ? "" : "Not serving (starting or draining)") : s.error || "Unreachable";
    return {
      key: `${s.service}/${s.instance}`,
      cells: [s.service, h("span", null, state, why ? h("span", { class: "cell-note" }, why) : null), s.version || "—", h("code", null, s.instance || "—"), s.started_at ? h("span", null, time(s.started_at), h("span", { class: "cell-note" }, `up ${age(s.started_at)}`)) : "—"],
    };
  });
  const columns = [{ label: "Service" }, { label: "Status" }, { label: "Version" }, { label: "Instance" }, { label: "Started" }];
  return table({ id: "services", caption: "Services", columns, rows });
}

function natsFacts(nats) {
  if (!nats) return empty("No NATS information.", "");
  const link = nats.connected ? badge("Connected", "ok") : badge("Disconnected", "bad");
  const js = nats.jetstream ? badge("Enabled", "ok") : badge("Off", "bad");
  const buckets = (nats.kv_buckets || []).map((b) => h("code", { class: "tag" }, b));
  return h(
    "section",
    { class: "card", "aria-labelledby": "nats-title", id: "nats" },
    h("h2", { id: "nats-title" }, "NATS and JetStream"),
    facts([
      ["Connection", h("span", null, link, " ", h("code", null, nats.server || "—"))],
      ["Server version", nats.version || "—"],
      ["JetStream", js],
      ["Streams", h("span", { class: "num" }, num(nats.streams))],
      ["Consumers", h("span", { class: "num" }, num(nats.consumers))],
      ["Messages stored", h("span", { class: "num" }, num(nats.messages))],
      ["Stored", h("span", { class: "num" }, bytes(nats.bytes))],
    ]),
    h("h3", null, `KV buckets (${buckets.length})`),
    buckets.length ? h("p", { class: "tags" }, buckets) : h("p", { class: "muted" }, "None."),
  );
}

function charts(series) {
  const points = (series && series.points) || [];
  const times = points.map((p) => new Date(p.t));
  const pick = (field) => points.map((p) => p[field]);
  const windowS = (series && series.window_s) || 3600;
  const perS = (v) => (v === null ? "—" : `${rate(v)}/s`);
  return h(
    "div",
    { class: "chart-grid" },
    lineChart({ id: "chart-requests", title: "Request rate", unit: "requests/s", times, windowS, format: perS, series: [
      { label: "requests", values: pick("requests_per_s"), tone: "blue" },
      { label: "throttled (429)", values: pick("throttled_per_s"), tone: "orange", dashed: true },
    ] }),
    lineChart({ id: "chart-errors", title: "Error rate", unit: "errors/s", times, windowS, format: perS, series: [
      { label: "errors", values: pick("errors_per_s"), tone: "red" },
    ] }),
    lineChart({ id: "chart-latency", title: "Latency", unit: "ms", times, windowS, format: ms, series: [
      { label: "p50", values: pick("p50_ms"), tone: "blue" },
      { label: "p99", values: pick("p99_ms"), tone: "purple", dashed: true },
    ] }),
  );
}

export default function overview() {
  return {
    title: "Overview",
    url: () => "/console/api/overview",
    render(data) {
      const totals = data.totals || {};
      const windowMin = Math.round(((data.series && data.series.window_s) || 3600) / 60);
      return [
        h("section", { "aria-labelledby": "services-title" }, h("h2", { id: "services-title" }, "Services"), servicesTable(data.services || [])),
        h(
          "section",
          { "aria-labelledby": "traffic-title" },
          h("h2", { id: "traffic-title" }, `Traffic, last ${windowMin} minutes`),
          h("div", { class: "stats" }, stat("Requests", num(totals.requests)), stat("Errors", num(totals.errors)), stat("Throttled (429)", num(totals.throttled))),
          charts(data.series),
        ),
        natsFacts(data.nats),
      ];
    },
  };
}
