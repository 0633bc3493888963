// Formatting shared by the pages: numbers line up (the CSS uses tabular-nums) and every
// figure carries its unit, so nobody has to guess whether 12 means ms or seconds.

const EM_DASH = "—";

/** A number with at most `digits` decimals, thousands separated; "—" for null (no data yet). */
export function num(value, digits = 0) {
  if (value === null || value === undefined || Number.isNaN(value)) return EM_DASH;
  return Number(value).toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

/** A configured number (a quota, a threshold): no padding zeros, "5" rather than "5.00". */
export function plain(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return EM_DASH;
  return Number(value).toLocaleString("en-US", { maximumFractionDigits: 2 });
}

/** A rate such as requests/s: two decimals below 10, one below 100, none above. */
export function rate(value) {
  if (value === null || value === undefined) return EM_DASH;
  const abs = Math.abs(value);
  return num(value, abs >= 100 ? 0 : abs >= 10 ? 1 : 2);
}

/** Milliseconds with a precision that suits their size. */
export function ms(value) {
  if (value === null || value === undefined) return EM_DASH;
  return `${num(value, value >= 100 ? 0 : 1)} ms`;
}

/** A fraction 0..1 as a percentage. */
export function percent(fraction, digits = 1) {
  if (fraction === null || fraction === undefined) return EM_DASH;
  return `${num(fraction * 100, digits)} %`;
}

/** Bytes in B/KiB/MiB/GiB. */
export function bytes(value) {
  if (value === null || value === undefined) return EM_DASH;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = Number(value);
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${num(v, i === 0 ? 0 : 1)} ${units[i]}`;
}

function pad(n) {
  return String(n).padStart(2, "0");
}

/** hh:mm:ss in the browser's time zone (the status line, chart axes use hh:mm). */
export function clock(date, { seconds = true } = {}) {
  const hm = `${pad(date.getHours())}:${pad(date.getMinutes())}`;
  return seconds ? `${hm}:${pad(date.getSeconds())}` : hm;
}

/** A timestamp as text: today's show the time only, older ones the date too. */
export function when(iso) {
  if (!iso) return EM_DASH;
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  const now = new Date();
  const sameDay = date.toDateString() === now.toDateString();
  const day = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
  return sameDay ? clock(date) : `${day} ${clock(date, { seconds: false })}`;
}

/** How long ago, coarse ("3 min", "2 h 5 min", "4 d"), for uptimes and ages. */
export function age(iso, now = new Date()) {
  if (!iso) return EM_DASH;
  const seconds = Math.max(0, Math.round((now.getTime() - new Date(iso).getTime()) / 1000));
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} d`;
}

/** A name as an id part: lower case, runs of anything else one "-" (model-all-minilm-l6-v2). */
export function slug(text) {
  return String(text).toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");
}

export { EM_DASH };
