// Tasks: the tenant's stored tasks, filtered by status/user/model (kept in the URL so a view can
// be bookmarked or shared), with Retry and Cancel where the taskstore allows them.
import { h } from "./dom.js";
import { num } from "./format.js";
import { badge, confirmRow, empty, query, table, time } from "./ui.js";

const STATUSES = ["pending", "processing", "completed", "failed", "cancelled"];
const TONES = { pending: "info", processing: "info", completed: "ok", failed: "bad", cancelled: "muted" };

function filterForm(params) {
  const status = params.get("status") || "";
  const options = [h("option", { value: "", selected: status === "" }, "Any status"), ...STATUSES.map((s) => h("option", { value: s, selected: s === status }, s))];
  const text = (id, name, label, hint) =>
    h("div", { class: "field" }, h("label", { for: id }, label), h("input", { id, name, type: "search", value: params.get(name) || "", placeholder: hint, autocomplete: "off", spellcheck: "false" }));
  return h(
    "form",
    { id: "task-filters", class: "filters", role: "search", "aria-label": "Filter tasks" },
    h("div", { class: "field" }, h("label", { for: "filter-status" }, "Status"), h("select", { id: "filter-status", name: "status" }, options)),
    text("filter-user", "user", "User", "any user"),
    text("filter-model", "model", "Model", "any model"),
    h("button", { type: "submit", class: "btn" }, "Apply"),
  );
}

function actionsCell(task, ctx) {
  const busy = ctx.isBusy(`task:${task.id}`);
  const common = { type: "button", class: "btn btn-small", "data-id": task.id, "data-busy-key": `task:${task.id}`, "aria-disabled": busy ? "true" : null };
  const retry = task.can_retry ? h("button", { ...common, "data-action": "retry", id: `retry-${task.id}`, "aria-label": `Retry task ${task.id}` }, "Retry") : null;
  const cancel = task.can_cancel ? h("button", { ...common, "data-action": "cancel", id: `cancel-${task.id}`, "data-confirm-key": `cancel:${task.id}`, "aria-label": `Cancel task ${task.id}` }, "Cancel") : null;
  const asking = task.can_cancel && ctx.isConfirming(`cancel:${task.id}`);
  const confirm = asking ? confirmRow({ question: "Cancel this task?", confirmLabel: "Yes, cancel", action: "cancel", data: { id: task.id, "busy-key": `task:${task.id}` } }) : null;
  return h("span", { class: "btn-group" }, confirm || [retry, cancel]);
}

function row(task, ctx) {
  return {
    key: task.id,
    id: `task-${task.id}`,
    cells: [
      h("code", { title: task.id }, task.id.length > 12 ? `${task.id.slice(0, 12)}…` : task.id),
      badge(task.status, TONES[task.status] || "muted"),
      task.user || "—", task.model || "—", task.priority || "normal", num(task.attempts),
      h("span", null, time(task.created_at), task.updated_at && task.updated_at !== task.created_at ? h("span", { class: "cell-note" }, "updated ", time(task.updated_at)) : null),
      h(
        "div",
        null,
        task.text ? h("span", { class: "clamp", title: task.text }, task.text) : h("span", { class: "muted" }, "(no text)"),
        task.error ? h("span", { class: "cell-error clamp", title: task.error }, `Error: ${task.error}`) : null,
      ),
      actionsCell(task, ctx),
    ],
  };
}

const COLUMNS = [
  { label: "Task" }, { label: "Status" }, { label: "User" }, { label: "Model" }, { label: "Priority" },
  { label: "Attempts", num: true }, { label: "Created" }, { label: "Text and error", class: "text-cell" },
  { label: "Actions", class: "actions" },
];

export default function tasks(ctx) {
  let form = null;
  const apply = () => {
    const params = new URLSearchParams();
    for (const [key, value] of new FormData(form)) if (String(value).trim()) params.set(key, String(value).trim());
    ctx.setParams(params);
  };
  const act = async (verb, id) => {
    const reply = await ctx.api.post(`/console/api/tasks/${encodeURIComponent(id)}/${verb}`, {});
    const status = reply.task ? reply.task.status : "updated";
    return `Task ${id} ${verb === "retry" ? "queued again" : "cancelled"} (now ${status}).`;
  };
  return {
    title: "Tasks",
    url: () => query("/console/api/tasks", ctx.params, ["status", "user", "model"]),
    controls() {
      form = filterForm(ctx.params);
      return form;
    },
    onSubmit: apply,
    onChange(target) {
      if (target.id === "filter-status") apply();
    },
    render(data) {
      const list = data.tasks || [];
      if (!list.length) return [empty("No tasks match.", "Tasks appear when a client sends with async or when inference is offline.")];
      const more = data.next_page_token ? `Showing the newest ${num(list.length)} tasks; narrow the filter to see others.` : `${num(list.length)} tasks.`;
      return [table({ id: "tasks", caption: "Tasks", columns: COLUMNS, rows: list.map((t) => row(t, ctx)) }), h("p", { class: "table-note" }, more)];
    },
    actions: {
      retry: (d) => act("retry", d.id),
      cancel: (d) => {
        if (d.confirmed !== "yes") return ctx.ask(`cancel:${d.id}`);
        return act("cancel", d.id);
      },
    },
  };
}
