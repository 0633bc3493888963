// Small DOM helpers: build detached trees with h()/svg(), then morph() them into the live page.
// Patching in place (instead of replacing innerHTML every 1.5 s) keeps keyboard focus, scroll
// positions, text being typed and selections intact, and nothing on screen flickers.

const SVG_NS = "http://www.w3.org/2000/svg";

function append(parent, child) {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) {
    for (const c of child) append(parent, c);
  } else if (child instanceof Node) {
    parent.appendChild(child);
  } else {
    parent.appendChild(document.createTextNode(String(child)));
  }
}

function build(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    // false/null/undefined leave the attribute out, true writes it bare (e.g. disabled).
    if (value === false || value === null || value === undefined) continue;
    el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

/** An HTML element: h("td", {class: "num"}, "12"). Children may be nodes, strings, arrays or null. */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element (presentation attributes only: the CSP forbids inline style attributes). */
export function svg(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

function keyOf(node) {
  return node.nodeType === Node.ELEMENT_NODE ? node.getAttribute("data-key") : null;
}

function sameKind(a, b) {
  return a.nodeType === b.nodeType && a.nodeName === b.nodeName && keyOf(a) === keyOf(b);
}

function syncAttributes(live, next) {
  for (const { name } of Array.from(live.attributes)) {
    // style is never ours (the CSP forbids it in markup): it is the browser's, e.g. a resized textarea.
    if (name !== "style" && !next.hasAttribute(name)) live.removeAttribute(name);
  }
  for (const { name, value } of Array.from(next.attributes)) {
    if (live.getAttribute(name) !== value) live.setAttribute(name, value);
  }
}

// Form controls marked data-keep hold what a person typed or ticked: never overwrite them.
function syncControl(live, next) {
  if (live.hasAttribute("data-keep")) return;
  if (live === document.activeElement) return;
  if (live instanceof HTMLInputElement && (live.type === "checkbox" || live.type === "radio")) {
    live.checked = next.hasAttribute("checked");
  } else if (live instanceof HTMLInputElement || live instanceof HTMLSelectElement) {
    if (next.hasAttribute("value")) live.value = next.getAttribute("value");
  }
}

/** Make `live` look like `next` (same tag), touching only what differs. */
export function morph(live, next) {
  if (live.nodeType === Node.TEXT_NODE) {
    if (live.nodeValue !== next.nodeValue) live.nodeValue = next.nodeValue;
    return;
  }
  syncAttributes(live, next);
  if (live instanceof HTMLTextAreaElement) return; // its text is the user's, not ours
  morphChildren(live, next);
  if (live instanceof HTMLInputElement || live instanceof HTMLSelectElement) syncControl(live, next);
}

/** Make the children of `live` look like those of `next`; children with data-key are matched by key. */
export function morphChildren(live, next) {
  const wanted = Array.from(next.childNodes);
  const wantedKeys = new Set(wanted.map(keyOf).filter((k) => k !== null));
  const byKey = new Map();
  for (const child of Array.from(live.childNodes)) {
    const key = keyOf(child);
    if (key === null) continue;
    // Drop vanished keyed children first so the survivors never need to move (moving blurs focus).
    if (wantedKeys.has(key)) byKey.set(key, child);
    else child.remove();
  }
  let cursor = live.firstChild;
  for (const child of wanted) {
    const key = keyOf(child);
    let match = null;
    if (key !== null) match = byKey.get(key) || null;
    else if (cursor && keyOf(cursor) === null && sameKind(cursor, child)) match = cursor;
    if (match && match.nodeName !== child.nodeName) match = null;
    if (match) {
      if (key !== null) byKey.delete(key);
      // Unkeyed leftovers in front of a keyed match go, rather than moving the match past them.
      while (cursor && cursor !== match && keyOf(cursor) === null) {
        const stale = cursor;
        cursor = cursor.nextSibling;
        stale.remove();
      }
      if (match === cursor) cursor = cursor.nextSibling;
      else live.insertBefore(match, cursor);
      morph(match, child);
    } else {
      live.insertBefore(child, cursor);
    }
  }
  while (cursor) {
    const nextSibling = cursor.nextSibling;
    cursor.remove();
    cursor = nextSibling;
  }
}

/** Replace the children of `live` with `nodes` by morphing (a wrapper keeps morphChildren simple). */
export function patch(live, nodes) {
  const next = live.cloneNode(false);
  append(next, nodes);
  morphChildren(live, next);
}
