// Talking to /console/api: one place decides what an error says, so every page and the
// status line word failures the same way.

const TIMEOUT_MS = 10000;

export class ApiError extends Error {
  constructor(message, { status = 0, type = "", code = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.type = type;
    this.code = code;
  }
}

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

async function send(method, url, body) {
  const headers = { Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin", cache: "no-store" };
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    headers["X-CSRF-Token"] = csrfToken();
    init.body = JSON.stringify(body ?? {});
  }
  // A hung request must not stall the refresh loop for ever.
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
  init.signal = abort.signal;
  let response;
  try {
    response = await fetch(url, init);
  } catch (err) {
    const why = abort.signal.aborted ? `no reply within ${TIMEOUT_MS / 1000} s` : err.message;
    throw new ApiError(`The gateway did not answer: ${why}`);
  } finally {
    clearTimeout(timer);
  }
  return readReply(response);
}

async function readReply(response) {
  if (response.status === 401) {
    // The session cookie expired or was revoked: signing in again is the only way on.
    window.location.assign("/console/login");
    throw new ApiError("Signed out: your session ended.", { status: 401 });
  }
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (!response.ok) {
    const error = payload && payload.error ? payload.error : {};
    const message = error.message || `HTTP ${response.status} ${response.statusText}`.trim();
    throw new ApiError(message, { status: response.status, type: error.type, code: error.code });
  }
  if (payload === null) throw new ApiError("The gateway's reply was not JSON.", { status: response.status });
  return payload;
}

export const api = {
  get: (url) => send("GET", url),
  post: (url, body = {}) => send("POST", url, body),
};
