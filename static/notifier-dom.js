// notifier widget: small DOM helpers and icons shared by its modules. Text is never parsed
// as HTML; only the constant icons below go through innerHTML.

/**
 * An element with attributes and, optionally, text.
 * @param {string} tag
 * @param {Object<string, string>} [attributes]
 * @param {string} [text]
 * @returns {HTMLElement}
 */
export function el(tag, attributes = {}, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

/**
 * A fragment from a template whose `{name}` values are strings or nodes (text is never
 * parsed as HTML).
 * @param {string} template
 * @param {Object<string, string|Node>} values
 */
export function build(template, values) {
  const fragment = document.createDocumentFragment();
  template.split(/\{(\w+)\}/).forEach((part, i) => {
    if (i % 2 === 0) {
      if (part) fragment.append(part);
    } else {
      fragment.append(part in values ? values[part] : `{${part}}`);
    }
  });
  return fragment;
}

/**
 * `url` resolved against the page if it is http(s) (or, for images, a data:image URI);
 * null otherwise, so that a `javascript:` URL in an activity can never run.
 * @param {unknown} url
 * @param {boolean} [image]
 */
export function safeUrl(url, image = false) {
  if (typeof url !== "string" || !url) return null;
  if (image && /^data:image\//i.test(url)) return url;
  try {
    const resolved = new URL(url, window.location.href);
    return resolved.protocol === "http:" || resolved.protocol === "https:" ? resolved.href : null;
  } catch {
    return null;
  }
}

/** A 16×16 icon (decorative: the button carrying it has the label). */
function svg(paths, size = 16) {
  return (
    `<svg viewBox="0 0 16 16" width="${size}" height="${size}" aria-hidden="true" ` +
    `focusable="false">${paths}</svg>`
  );
}

const STROKE =
  'fill="none" stroke="currentColor" stroke-width="1.6" stroke-linecap="round" stroke-linejoin="round"';

export const ICONS = {
  bell:
    '<svg viewBox="0 0 24 24" width="22" height="22" aria-hidden="true" focusable="false">' +
    '<path fill="currentColor" d="M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22Zm7-6V11a7 ' +
    '7 0 0 0-5.5-6.84V3.5a1.5 1.5 0 0 0-3 0v.66A7 7 0 0 0 5 11v5l-2 2v1h18v-1l-2-2Z"/></svg>',
  // Mark as read: an envelope opened; mark as unread: a closed one with a dot.
  read: svg(
    `<path ${STROKE} d="M2 6.5 8 2.5l6 4V13a.5.5 0 0 1-.5.5h-11A.5.5 0 0 1 2 13Z"/><path ${STROKE} d="m2 6.5 6 4 6-4"/>`,
  ),
  unread: svg(
    `<rect ${STROKE} x="1.5" y="4" width="10" height="9" rx=".8"/><path ${STROKE} d="m1.5 5 5 4 5-4"/><circle cx="13" cy="3.5" r="2.5" fill="currentColor"/>`,
  ),
  archive: svg(
    `<rect ${STROKE} x="1.5" y="2.5" width="13" height="3.5" rx=".6"/><path ${STROKE} d="M2.5 6v7.5h11V6M6 9h4"/>`,
  ),
  unarchive: svg(
    `<rect ${STROKE} x="1.5" y="2.5" width="13" height="3.5" rx=".6"/><path ${STROKE} d="M2.5 6v7.5h11V6M8 12.5V8.5M6 10.5l2-2 2 2"/>`,
  ),
  more: svg(
    '<circle cx="3" cy="8" r="1.5" fill="currentColor"/><circle cx="8" cy="8" r="1.5" fill="currentColor"/><circle cx="13" cy="8" r="1.5" fill="currentColor"/>',
  ),
  settings: svg(
    `<circle ${STROKE} cx="8" cy="8" r="2.2"/><path ${STROKE} d="M8 1.5v2M8 12.5v2M1.5 8h2M12.5 8h2M3.4 3.4l1.4 1.4M11.2 11.2l1.4 1.4M3.4 12.6l1.4-1.4M11.2 4.8l1.4-1.4"/>`,
    18,
  ),
  close: svg(`<path ${STROKE} d="M3.5 3.5l9 9M12.5 3.5l-9 9"/>`, 18),
  done: svg(`<path ${STROKE} d="m3 8.5 3 3 7-7"/>`, 14),
};

/** Set an icon (a constant from ICONS) as a button's content. */
export function icon(node, name) {
  if (node.dataset.icon !== name) {
    node.dataset.icon = name;
    node.innerHTML = ICONS[name];
  }
}

/** Give an icon button its accessible name (and the same tooltip). */
export function label(node, text) {
  node.setAttribute("aria-label", text);
  node.title = text;
}
