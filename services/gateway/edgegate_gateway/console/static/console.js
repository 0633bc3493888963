// The console's shell: picks the page named by the server, fetches its data every 1.5 s and
// patches the page in place, and routes clicks, form submits and results to the page module.
import { api } from "./api.js";
import { chartsNeedRedraw } from "./charts.js";
import { h, patch } from "./dom.js";
import { clock } from "./format.js";
import { PAGES } from "./pages.js";

const REFRESH_MS = 1500;
const MESSAGE_MS = 12000; // how long an action's result stays in the status line

function meta(name) {
  const el = document.querySelector(`meta[name="${name}"]`);
  return el ? el.content : "";
}

function fillHeader() {
  for (const input of document.querySelectorAll('input[name="csrf"]')) input.value = meta("csrf-token");
  const subject = document.getElementById("who-subject");
  const tenant = document.getElementById("who-tenant");
  if (subject) subject.textContent = meta("edgegate-subject");
  if (tenant) tenant.textContent = meta("edgegate-tenant");
  const operatorBadge = document.getElementById("who-operator");
  if (operatorBadge) operatorBadge.hidden = meta("edgegate-operator") !== "true";
}

function markNav(name) {
  for (const link of document.querySelectorAll("#nav a[data-page]")) {
    if (link.dataset.page === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

/** The status line: the last refresh time, the refresh error, or an action's result. */
class StatusLine {
  constructor(el) {
    this.el = el;
    // Only this span is a live region: actions' results and refresh errors are announced,
    // the "Updated hh:mm:ss" beside it (rewritten every refresh) is not.
    this.messageEl = h("span", { id: "status-message", role: "status" });
    this.refreshEl = h("span", { id: "status-refresh" });
    el.replaceChildren(this.messageEl, this.refreshEl);
    this.updatedAt = null;
    this.error = null;
    this.message = null;
  }
  updated() {
    this.updatedAt = new Date();
    this.error = null;
    this.show();
  }
  failed(err, { shown = null } = {}) {
    // Network failures already say "The gateway did not answer"; HTTP errors carry the server's words.
    const text = err.status ? `Refresh failed: ${err.message}` : err.message;
    this.error = shown ? `${text} · showing data from ${clock(shown)}` : text;
    this.show();
  }
  say(text, { error = false } = {}) {
    this.message = { text, error, until: Date.now() + MESSAGE_MS };
    this.show();
  }
  show() {
    // Two spans, each rewritten only when its own text changes: a screen reader then announces
    // an action's result once, not again with every refresh.
    const current = this.message && this.message.until > Date.now() ? this.message : null;
    const message = [current ? current.text : "", this.error || ""].filter(Boolean).join(" · ");
    let refresh = this.error ? "" : this.updatedAt ? `Updated ${clock(this.updatedAt)}` : "Loading…";
    if (message && refresh) refresh = ` · ${refresh}`;
    setText(this.messageEl, message);
    setText(this.refreshEl, refresh);
    this.el.classList.toggle("status-error", Boolean(this.error) || Boolean(current && current.error));
  }
}

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

class Console {
  constructor(name, module) {
    this.name = name;
    this.status = new StatusLine(document.getElementById("status"));
    this.data = null;
    this.shownAt = null; // when the data on screen was fetched
    this.seq = 0;
    this.timer = null;
    this.paused = false;
    this.confirming = null; // key of the destructive action awaiting its second click
    this.busy = new Set(); // keys of actions in flight: their buttons read aria-disabled
    this.page = module(this.context());
    this.main = document.getElementById("content");
  }

  context() {
    return {
      api,
      operator: meta("edgegate-operator") === "true",
      tenant: meta("edgegate-tenant"),
      refresh: () => this.load(),
      rerender: () => this.draw(),
      say: (text, opts) => this.status.say(text, opts),
      isConfirming: (key) => this.confirming === key,
      isBusy: (key) => this.busy.has(key),
      ask: (key) => this.ask(key),
      get params() {
        return new URLSearchParams(window.location.search);
      },
      setParams: (params) => this.setParams(params),
    };
  }

  start() {
    document.title = `${this.page.title} · edgegate console`;
    const controls = this.page.controls ? this.page.controls() : null;
    this.body = h("div", { id: "page-body", class: "page-body" }, h("p", { class: "loading" }, "Loading…"));
    this.main.replaceChildren(...[h("h1", { id: "page-title" }, this.page.title), controls, this.body].filter(Boolean));
    this.main.addEventListener("click", (e) => this.onClick(e));
    this.main.addEventListener("submit", (e) => this.onSubmit(e));
    this.main.addEventListener("change", (e) => this.page.onChange && this.page.onChange(e.target));
    this.main.addEventListener("keydown", (e) => this.onKeydown(e));
    document.addEventListener("visibilitychange", () => this.onVisibility());
    let resizeTimer = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => this.draw(), 150);
    });
    this.load();
  }

  /** Fetch now; a reply to an older request (e.g. before a filter changed) is dropped. */
  async load() {
    clearTimeout(this.timer);
    const mine = ++this.seq;
    try {
      const data = await api.get(this.page.url());
      if (mine !== this.seq) return;
      this.data = data;
      this.shownAt = new Date();
      this.draw();
      this.status.updated();
    } catch (err) {
      if (mine !== this.seq) return;
      this.status.failed(err, { shown: this.shownAt });
      if (this.data === null) this.showLoadError(err);
    } finally {
      if (mine === this.seq) this.timer = setTimeout(() => this.tick(), REFRESH_MS);
    }
  }

  tick() {
    // A hidden tab does not poll; it catches up the moment it is shown again.
    if (document.hidden) this.paused = true;
    else this.load();
  }

  onVisibility() {
    if (!document.hidden && this.paused) {
      this.paused = false;
      this.load();
    }
  }

  draw() {
    if (this.data === null) return;
    patch(this.body, this.page.render(this.data));
    // Charts are drawn at their box's width; the first draw (or a resize) may need a second pass.
    if (chartsNeedRedraw(this.body)) patch(this.body, this.page.render(this.data));
  }

  showLoadError(err) {
    patch(this.body, [
      h("div", { class: "empty empty-error", role: "note" }, h("p", { class: "empty-title" }, "Could not load this page."), h("p", null, err.message), h("p", null, `Retrying every ${REFRESH_MS / 1000} s.`)),
    ]);
  }

  ask(key) {
    this.confirming = key;
    this.draw();
    const yes = this.body.querySelector('[data-confirmed="yes"]');
    if (yes) yes.focus();
  }

  onClick(event) {
    const button = event.target.closest("[data-action]");
    if (!button || !this.main.contains(button)) return;
    if (button.getAttribute("aria-disabled") === "true") return;
    const action = button.dataset.action;
    if (action === "copy") return copy(button.dataset.copy, this.status);
    if (action === "unconfirm") return this.unconfirm();
    const handler = this.page.actions && this.page.actions[action];
    if (!handler) return;
    event.preventDefault();
    this.run(handler, button);
  }

  unconfirm() {
    const origin = this.confirming;
    this.confirming = null;
    this.draw();
    const back = origin && this.body.querySelector(`[data-confirm-key="${CSS.escape(origin)}"]`);
    if (back) back.focus();
  }

  /** Run a page action: its key is busy meanwhile, its result goes to the status line. */
  async run(handler, button) {
    const key = button.dataset.busyKey || button.dataset.action;
    // The confirm row vanishes once confirmed: focus goes back to the button that asked.
    const origin = button.dataset.confirmed === "yes" ? this.confirming : null;
    if (origin) this.confirming = null;
    this.busy.add(key);
    this.draw();
    try {
      const message = await handler(button.dataset, button);
      if (message) this.status.say(message);
    } catch (err) {
      this.status.say(err.message, { error: true });
    } finally {
      this.busy.delete(key);
      this.draw();
      const back = origin && this.body.querySelector(`[data-confirm-key="${CSS.escape(origin)}"]`);
      if (back && !this.body.contains(document.activeElement)) back.focus();
      this.load();
    }
  }

  onSubmit(event) {
    // A form whose submit button names an action runs it like a click (Enter in a field too).
    const button = event.target.querySelector('[type="submit"][data-action]');
    const handler = button && this.page.actions && this.page.actions[button.dataset.action];
    if (handler) {
      event.preventDefault();
      if (button.getAttribute("aria-disabled") !== "true") this.run(handler, button);
      return;
    }
    if (!this.page.onSubmit) return;
    event.preventDefault();
    this.page.onSubmit(event.target);
  }

  onKeydown(event) {
    // Ctrl+Enter (⌘+Enter) in a textarea sends its form, as in chat and mail clients.
    const target = event.target;
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && target instanceof HTMLTextAreaElement && target.form) {
      event.preventDefault();
      target.form.requestSubmit();
    }
  }

  setParams(params) {
    const query = params.toString();
    window.history.replaceState(null, "", query ? `?${query}` : window.location.pathname);
    this.load();
  }
}

async function copy(text, status) {
  try {
    await navigator.clipboard.writeText(text);
    status.say("Copied to the clipboard.");
  } catch {
    status.say("Could not copy: select the command and copy it by hand.");
  }
}

const name = meta("edgegate-page");
fillHeader();
markNav(name);
if (PAGES[name]) new Console(name, PAGES[name]).start();
