// Escalations: questions the assistant could not answer, waiting for a person. What someone
// types into an answer box survives every refresh (the textarea is never re-rendered), and a
// draft whose question was answered elsewhere stays on screen until its writer discards it.
import { h } from "./dom.js";
import { badge, empty, time } from "./ui.js";

function byNewest(field) {
  return (a, b) => String(b[field] || "").localeCompare(String(a[field] || ""));
}

function meta(e) {
  return h("p", { class: "meta" }, h("span", null, "From ", h("strong", null, e.user || "unknown user")), badge(e.channel || "unknown channel", "info"), h("span", null, "Asked ", time(e.asked_at)));
}

function answerForm(e, ctx, gone) {
  const busy = ctx.isBusy(`answer:${e.id}`);
  return h(
    "form",
    { class: "answer-form", "aria-label": `Answer ${e.user || "the user"}` },
    h("label", { for: `answer-${e.id}` }, "Your answer"),
    h("textarea", { id: `answer-${e.id}`, name: "text", rows: "4", "data-keep": "", "data-id": e.id, "aria-describedby": `answer-hint-${e.id}` }),
    h("p", { class: "hint", id: `answer-hint-${e.id}` }, "The answer goes back to the user on their channel. Ctrl+Enter sends."),
    h(
      "div",
      { class: "answer-actions" },
      h("label", { class: "check" }, h("input", { type: "checkbox", id: `knowledge-${e.id}`, name: "add_to_knowledge", "data-keep": "" }), "Also add to the knowledge base"),
      gone
        ? h("button", { type: "button", class: "btn", "data-action": "discard", "data-id": e.id, id: `discard-${e.id}` }, "Discard draft")
        : h("button", { type: "submit", class: "btn btn-primary", "data-action": "answer", "data-id": e.id, "data-busy-key": `answer:${e.id}`, id: `send-${e.id}`, "aria-disabled": busy ? "true" : null }, busy ? "Sending…" : "Send answer"),
    ),
  );
}

function openItem(e, ctx, gone) {
  return h(
    "article",
    { class: "card", id: `escalation-${e.id}`, "data-key": e.id, "aria-labelledby": `q-${e.id}` },
    h("h2", { class: "question", id: `q-${e.id}` }, e.question || "(no question text)"),
    meta(e),
    gone ? h("p", { class: "notice", role: "note" }, "This question was answered or withdrawn elsewhere. Your draft is kept until you discard it.") : null,
    answerForm(e, ctx, gone),
  );
}

function answeredItem(e, ctx) {
  const busy = ctx.isBusy(`knowledge:${e.id}`);
  return h(
    "article",
    { class: "card", id: `escalation-${e.id}`, "data-key": e.id, "aria-labelledby": `q-${e.id}` },
    h("h2", { class: "question", id: `q-${e.id}` }, e.question || "(no question text)"),
    meta(e),
    h("p", { class: "answer" }, e.answer || h("span", { class: "muted" }, e.status === "cancelled" ? "(cancelled, no answer)" : "(empty answer)")),
    h(
      "div",
      { class: "answer-actions" },
      h("span", { class: "meta" }, e.status === "cancelled" ? badge("Cancelled", "muted") : badge("Answered", "ok"), e.answered_at ? h("span", null, " ", time(e.answered_at)) : null),
      e.status === "completed"
        ? h("button", { type: "button", class: "btn", "data-action": "knowledge", "data-id": e.id, "data-busy-key": `knowledge:${e.id}`, id: `add-knowledge-${e.id}`, "aria-disabled": busy ? "true" : null }, "Add to knowledge base")
        : null,
    ),
  );
}

const KNOWLEDGE = { added: "added to the knowledge base", skipped: "not added to the knowledge base" };

export default function escalations(ctx) {
  const known = new Map(); // id → last seen open escalation, for drafts whose question went away
  let viewButtons = [];
  const view = () => (ctx.params.get("status") === "answered" ? "answered" : "open");
  const draftOf = (id) => {
    const box = document.getElementById(`answer-${id}`);
    return box ? box.value.trim() : "";
  };
  return {
    title: "Escalations",
    url: () => `/console/api/escalations?status=${view()}`,
    controls() {
      viewButtons = [["open", "Open questions"], ["answered", "Answered"]].map(([name, label]) =>
        h("button", { type: "button", class: "btn", id: `view-${name}`, "data-action": "view", "data-view": name, "aria-pressed": String(view() === name) }, label),
      );
      return h("div", { class: "segmented", role: "group", "aria-label": "Show" }, viewButtons);
    },
    render(data) {
      // Filtered here too, so an answered question never shows an answer box whatever the API sent.
      const answered = view() === "answered";
      const list = (data.escalations || []).filter((e) => (e.status !== "pending") === answered);
      if (answered) {
        list.sort(byNewest("answered_at"));
        if (!list.length) return [empty("No answered escalations yet.", "Answers sent from the Open questions list show up here.")];
        return [h("div", { class: "questions" }, list.map((e) => answeredItem(e, ctx)))];
      }
      list.sort(byNewest("asked_at"));
      for (const e of list) known.set(e.id, e);
      const present = new Set(list.map((e) => e.id));
      const orphans = [...known.values()].filter((e) => !present.has(e.id) && draftOf(e.id));
      for (const id of [...known.keys()]) if (!present.has(id) && !draftOf(id)) known.delete(id);
      const items = [...orphans.map((e) => openItem(e, ctx, true)), ...list.map((e) => openItem(e, ctx, false))];
      if (!items.length) return [empty("No open questions.", "When the assistant cannot answer, it files the question here and tells the user a person will reply.")];
      return [h("div", { class: "questions" }, items)];
    },
    actions: {
      view(d) {
        for (const b of viewButtons) b.setAttribute("aria-pressed", String(b.dataset.view === d.view));
        const params = new URLSearchParams(window.location.search);
        if (d.view === "answered") params.set("status", "answered");
        else params.delete("status");
        ctx.setParams(params);
      },
      async answer(d) {
        const box = document.getElementById(`answer-${d.id}`);
        const tick = document.getElementById(`knowledge-${d.id}`);
        const text = box ? box.value.trim() : "";
        if (!text) {
          if (box) box.focus();
          throw new Error("Write an answer before sending.");
        }
        // Once sent, the question leaves the list: focus moves on to the neighbouring question.
        const item = document.getElementById(`escalation-${d.id}`);
        const neighbour = item && (item.nextElementSibling || item.previousElementSibling);
        const nextId = neighbour ? neighbour.getAttribute("data-key") : null;
        const reply = await ctx.api.post(`/console/api/escalations/${encodeURIComponent(d.id)}/answer`, { text, add_to_knowledge: Boolean(tick && tick.checked) });
        box.value = "";
        if (tick) tick.checked = false;
        known.delete(d.id);
        const who = reply.escalation && reply.escalation.user ? ` to ${reply.escalation.user}` : "";
        const kb = KNOWLEDGE[reply.knowledge] || `knowledge base: ${reply.knowledge}`;
        await ctx.refresh();
        const next = nextId && document.getElementById(`answer-${nextId}`);
        (next || document.getElementById("view-answered")).focus();
        return `Answer sent${who}; ${kb}.`;
      },
      async knowledge(d) {
        const reply = await ctx.api.post(`/console/api/escalations/${encodeURIComponent(d.id)}/knowledge`, {});
        return `Knowledge base: ${reply.knowledge}.`;
      },
      discard(d) {
        const box = document.getElementById(`answer-${d.id}`);
        if (box) box.value = "";
        known.delete(d.id);
        ctx.rerender();
        document.getElementById("content").focus();
      },
    },
  };
}
