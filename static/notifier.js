// notifier widget: a bell with a live unseen badge, and an inbox that opens under it.
//
//   <script type="module" src="https://notifier.example/static/notifier.js"></script>
//   <notifier-bell token-url="/my-app/notifier-token"></notifier-bell>
//
// or, with a token function and callbacks:
//
//   import { mount } from "https://notifier.example/static/notifier.js";
//   mount(document.querySelector("#bell"), { token: () => getToken(), locale: "fr" });
//
// Built on the headless NotifierClient (notifier-client.js), which it re-exports. Plain DOM,
// no dependencies, no build step; see docs/widget.md.

import { NotifierClient } from "./notifier-client.js";
import { fill, fullTime, plural, relativeTime, stringsFor } from "./notifier-i18n.js";

export { NotifierClient } from "./notifier-client.js";
export { LOCALES, relativeTime } from "./notifier-i18n.js";

/**
 * @typedef {import("./notifier-client.js").Group} Group
 * @typedef {import("./notifier-client.js").ClientOptions} ClientOptions
 */

/**
 * @typedef {Object} WidgetOptions
 * @property {() => (string|Promise<string>)} [token] returns a user token (see ClientOptions)
 * @property {string} [tokenUrl] instead of `token`: your backend's URL that answers a POST
 *   (with the page's cookies) with `{"token": "..."}`
 * @property {string} [server] notifier's base URL; default: where this module was loaded from
 * @property {string} [feed="notification"]
 * @property {string} [locale] "en" (default: the page's `lang`), "fr", or any with `strings`
 * @property {Object<string, any>} [strings] overrides of (or a whole) locale's strings
 * @property {string} [timeZone] IANA zone for times; default: the browser's
 * @property {"auto"|"light"|"dark"} [theme="auto"]
 * @property {string|false} [stylesheet] the CSS to load; default: notifier.css beside this
 *   module; `false` if the page brings its own
 * @property {(item: Group, event: Event) => (boolean|void)} [onItemClick] called when an item
 *   is clicked (after it is marked read); return `false` to stop the navigation to its URL
 * @property {(items: Group[]) => void} [onNewItems] new or updated items arrived live
 * @property {(group: Group, strings: Object, locale: string) => (string|Node)} [describe]
 *   the text of an item, if the built-in "ana and 3 others liked your photo" does not fit
 * @property {number} [pageSize=20]
 * @property {number|false} [hiddenDisconnectMs] see ClientOptions
 * @property {{min: number, max: number}} [backoff] see ClientOptions
 */

const STYLESHEET = new URL("./notifier.css", import.meta.url).href;
const BELL_ICON =
  '<svg viewBox="0 0 24 24" width="22" height="22" aria-hidden="true" focusable="false">' +
  '<path fill="currentColor" d="M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22Zm7-6V11a7 ' +
  '7 0 0 0-5.5-6.84V3.5a1.5 1.5 0 0 0-3 0v.66A7 7 0 0 0 5 11v5l-2 2v1h18v-1l-2-2Z"/></svg>';
const MAX_BADGE = 99;
const MAX_AVATARS = 3;
let nextId = 0;

/**
 * Mount the widget into `element` (its content is replaced). Returns the widget, whose
 * `client` is the NotifierClient underneath.
 * @param {HTMLElement} element
 * @param {WidgetOptions} options
 * @returns {NotifierWidget}
 */
export function mount(element, options) {
  return new NotifierWidget(element, options);
}

/** The bell, badge and inbox; one per mount. */
export class NotifierWidget {
  /**
   * @param {HTMLElement} element
   * @param {WidgetOptions} options
   */
  constructor(element, options) {
    this.element = element;
    this.options = { theme: "auto", ...options };
    const token = this.options.token ?? (this.options.tokenUrl && tokenFrom(this.options.tokenUrl));
    if (!token) throw new TypeError("notifier: give options.token or options.tokenUrl");
    loadStylesheet(this.options.stylesheet ?? STYLESHEET);
    this.client = new NotifierClient({ ...this.options, token });
    this.setLocale(this.options.locale, this.options.strings, false);
    this.isOpen = false;
    /** While open: what the list shows (id → position when shown), so it never reshuffles. */
    this.shown = null;
    this.unopened = false;
    this.top = "";
    this.rows = new Map();
    this.lastUnseen = null;
    this._build();
    this._unsubscribe = [
      this.client.on("change", () => this.render()),
      this.client.on("items", (items) => this._arrived(items)),
    ];
    this.render();
    this.client.connect().catch(() => this.render());
  }

  /**
   * Switch language (and strings) at run time.
   * @param {string} [locale]
   * @param {Object<string, any>} [strings]
   */
  setLocale(locale, strings, rerender = true) {
    this.locale = locale || document.documentElement.lang || navigator.language || "en";
    this.strings = stringsFor(this.locale, strings);
    if (rerender) {
      this._label();
      this.rows.clear();
      this.list.replaceChildren();
      this.render();
    }
  }

  // -- DOM ----------------------------------------------------------------------------------

  _build() {
    const id = `notifier-${++nextId}`;
    const root = el("div", { class: "notifier", "data-theme": this.options.theme });
    this.bell = el("button", {
      type: "button",
      class: "notifier-bell",
      "data-testid": "notifier-bell",
      "aria-haspopup": "dialog",
      "aria-expanded": "false",
      "aria-controls": `${id}-panel`,
    });
    this.bell.innerHTML = BELL_ICON; // a constant: no data goes through innerHTML
    this.badge = el("span", { class: "notifier-badge", "data-testid": "notifier-badge" });
    this.badge.hidden = true;
    this.bell.append(this.badge);
    this.announcer = el("span", {
      class: "notifier-sr",
      "aria-live": "polite",
      "data-testid": "notifier-announce",
    });
    this.panel = el("div", {
      class: "notifier-panel",
      id: `${id}-panel`,
      role: "dialog",
      tabindex: "-1",
      "aria-labelledby": `${id}-title`,
      "data-testid": "notifier-panel",
    });
    this.panel.hidden = true;
    this.heading = el("h2", { class: "notifier-title", id: `${id}-title` });
    this.markAll = el("button", {
      type: "button",
      class: "notifier-link",
      "data-testid": "notifier-mark-all",
    });
    this.status = el("p", { class: "notifier-status", role: "status" });
    this.banner = el("button", {
      type: "button",
      class: "notifier-banner",
      "data-testid": "notifier-new-banner",
    });
    this.banner.hidden = true;
    this.list = el("ul", { class: "notifier-list", "data-testid": "notifier-list" });
    this.sentinel = el("li", { class: "notifier-sentinel", "aria-hidden": "true" });
    this.placeholder = el("div", { class: "notifier-placeholder" });
    this.scroller = el("div", { class: "notifier-scroller" });
    this.scroller.append(this.banner, this.list, this.placeholder);
    const header = el("div", { class: "notifier-header" });
    header.append(this.heading, this.markAll);
    this.panel.append(header, this.status, this.scroller);
    root.append(this.bell, this.announcer, this.panel);
    this.root = root;
    this.element.replaceChildren(root);
    this._label();

    this.bell.addEventListener("click", () => this.toggle());
    this.markAll.addEventListener("click", () => this._act(this.client.markAllRead()));
    this.banner.addEventListener("click", () => this._reveal());
    root.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.isOpen) {
        event.stopPropagation();
        this.close();
        this.bell.focus();
      }
    });
    this._outside = (event) => {
      if (this.isOpen && !root.contains(event.target)) this.close();
    };
    document.addEventListener("pointerdown", this._outside);
    this._observer = new IntersectionObserver(
      (entries) => {
        if (entries.some((e) => e.isIntersecting) && this.isOpen) this._loadMore();
      },
      { root: this.scroller, rootMargin: "120px" },
    );
  }

  _label() {
    const s = this.strings;
    this.heading.textContent = s.title;
    this.markAll.textContent = s.markAllRead;
  }

  // -- opening and closing ------------------------------------------------------------------

  /** Open the inbox: show the list as it is now, and mark it seen. */
  open() {
    if (this.isOpen) return;
    this.isOpen = true;
    this.unopened = true; // until the first page is there: see render()
    this.panel.hidden = false;
    this.bell.setAttribute("aria-expanded", "true");
    this.render();
    this.panel.focus();
    this._clock = setInterval(() => this._tick(), 30_000);
  }

  /** Close the inbox. */
  close() {
    if (!this.isOpen) return;
    this.isOpen = false;
    this.unopened = false;
    this.shown = null;
    this.panel.hidden = true;
    this.bell.setAttribute("aria-expanded", "false");
    clearInterval(this._clock);
    this._observer.disconnect();
    this.render();
  }

  toggle() {
    if (this.isOpen) this.close();
    else this.open();
  }

  /** Remove the widget and close its connection. */
  destroy() {
    this.close();
    for (const off of this._unsubscribe) off();
    document.removeEventListener("pointerdown", this._outside);
    this.client.close();
    this.element.replaceChildren();
  }

  /** Remember what the open list shows; later arrivals wait behind the banner. */
  _snapshot() {
    const items = this.client.items();
    this.shown = new Map(items.map((g) => [g.id, g.position]));
    this.top = items.length ? items[0].position : "";
  }

  /** The banner was clicked: show the new items at the top, and mark them seen. */
  _reveal() {
    this._snapshot();
    this.render();
    this.scroller.scrollTop = 0;
    this._act(this.client.markSeen());
  }

  _arrived(items) {
    this.options.onNewItems?.(items);
    this.element.dispatchEvent(
      new CustomEvent("notifier:new-items", { detail: { items }, bubbles: true }),
    );
  }

  // -- rendering ----------------------------------------------------------------------------

  /** Bring the DOM in line with the client's state (keyed by item id: focus survives). */
  render() {
    const client = this.client;
    if (this.isOpen && this.unopened && client.loaded) {
      // Opened before the first page arrived: that page is what the user opened, not news.
      this.unopened = false;
      this._snapshot();
      queueMicrotask(() => this._act(client.markSeen())); // not from inside a render
    }
    this._renderBadge(client.counts);
    this.markAll.disabled = !client.counts?.unread;
    const { visible, waiting } = this._visible(client.items());
    this.banner.hidden = !this.isOpen || waiting === 0;
    this.banner.textContent = fill(plural(this.strings.newItems, waiting, this.locale), {
      count: waiting,
    });
    this._renderStatus(client, visible.length);
    if (!this.isOpen) return;
    this._renderList(visible);
    if (client.hasMore) {
      this.list.append(this.sentinel);
      this._observer.disconnect(); // observing again reports the sentinel's state afresh
      this._observer.observe(this.sentinel);
    } else {
      this.sentinel.remove();
    }
  }

  /**
   * What the open list shows, in the order it showed it: items newer than the top at the
   * time of opening (or of the last banner click) wait, and are counted for the banner.
   */
  _visible(items) {
    if (!this.shown) return { visible: items, waiting: 0 };
    const visible = [];
    let waiting = 0;
    for (const group of items) {
      const shownAt = this.shown.get(group.id);
      if (group.position > this.top) waiting += 1;
      if (shownAt !== undefined || group.position <= this.top) visible.push(group);
    }
    const at = (g) => this.shown.get(g.id) ?? g.position;
    visible.sort((a, b) => (at(a) < at(b) ? 1 : at(a) > at(b) ? -1 : 0));
    return { visible, waiting };
  }

  _renderBadge(counts) {
    const unseen = counts?.unseen ?? 0;
    this.badge.hidden = unseen === 0;
    this.badge.textContent = unseen > MAX_BADGE ? `${MAX_BADGE}+` : String(unseen);
    this.badge.dataset.count = String(unseen);
    this.root.dataset.unseen = String(unseen);
    const label = fill(plural(this.strings.bell, unseen, this.locale), { count: unseen });
    this.bell.setAttribute("aria-label", label);
    this.bell.title = label;
    if (this.lastUnseen !== null && unseen !== this.lastUnseen && counts) {
      this.announcer.textContent =
        fill(plural(this.strings.announce, unseen, this.locale), { count: unseen });
    }
    if (counts) this.lastUnseen = unseen;
  }

  _renderStatus(client, shown) {
    const s = this.strings;
    let status = "";
    let state = "ready";
    const failed = client.status === "failed";
    if (failed || (!client.loaded && client.status === "reconnecting")) {
      state = "error"; // refused, or never reached the server: say so
    } else if (!client.loaded) {
      state = "loading";
    } else if (client.status === "reconnecting") {
      status = s.reconnecting;
    }
    this.status.textContent = status;
    this.status.hidden = !status;
    this.root.dataset.state = state;
    this.root.dataset.status = client.status;
    const placeholder = this.placeholder;
    if (state === "error" && (!client.loaded || failed)) {
      placeholder.dataset.testid = "notifier-error";
      const message = failed ? fill(s.failed, { reason: client.error ?? "" }) : s.error;
      placeholder.replaceChildren(el("p", { role: "alert" }, message));
      if (!failed) {
        const retry = el("button", { type: "button", class: "notifier-button" }, s.retry);
        retry.addEventListener("click", () => client.reconnect());
        placeholder.append(retry);
      }
    } else if (state === "loading") {
      placeholder.dataset.testid = "notifier-loading";
      placeholder.replaceChildren(el("p", {}, s.loading));
    } else if (state === "ready" && shown === 0) {
      placeholder.dataset.testid = "notifier-empty";
      placeholder.replaceChildren(
        el("p", { class: "notifier-empty-title" }, s.empty),
        el("p", {}, s.emptyHint),
      );
    } else {
      placeholder.dataset.testid = "";
      placeholder.replaceChildren();
    }
    placeholder.hidden = !placeholder.firstChild;
  }

  _renderList(groups) {
    const keep = new Set(groups.map((g) => g.id));
    for (const [id, row] of this.rows) {
      if (!keep.has(id)) {
        row.element.remove();
        this.rows.delete(id);
      }
    }
    let previous = null;
    for (const group of groups) {
      let row = this.rows.get(group.id);
      if (!row) {
        row = this._row();
        this.rows.set(group.id, row);
      }
      this._fill(row, group);
      const expected = previous ? previous.nextSibling : this.list.firstChild;
      if (expected !== row.element) this.list.insertBefore(row.element, expected);
      previous = row.element;
    }
  }

  /** The elements of one item, built once and updated in place. */
  _row() {
    const element = el("li", { class: "notifier-item", "data-testid": "notifier-item" });
    const main = el("a", { class: "notifier-item-main", "data-testid": "notifier-item-link" });
    const avatars = el("span", { class: "notifier-avatars", "aria-hidden": "true" });
    const text = el("span", { class: "notifier-item-text", "data-testid": "notifier-item-text" });
    const time = el("time", { class: "notifier-item-time" });
    const unread = el("span", { class: "notifier-sr" });
    const body = el("span", { class: "notifier-item-body" });
    body.append(text, time);
    main.append(avatars, body, unread, el("span", { class: "notifier-dot", "aria-hidden": "true" }));
    const toggle = el("button", {
      type: "button",
      class: "notifier-icon",
      "data-testid": "notifier-toggle-read",
    });
    const archive = el("button", {
      type: "button",
      class: "notifier-icon",
      "data-testid": "notifier-archive",
    });
    archive.innerHTML =
      '<svg viewBox="0 0 16 16" width="14" height="14" aria-hidden="true"><path ' +
      'fill="currentColor" d="M1 2h14v3H1zM2 6h12v8H2zm4 2v1.5h4V8z"/></svg>';
    const actions = el("span", { class: "notifier-item-actions" });
    actions.append(toggle, archive);
    element.append(main, actions);
    const row = { element, main, avatars, text, time, unread, toggle, archive, group: null };
    main.addEventListener("click", (event) => this._clicked(row, event));
    main.addEventListener("keydown", (event) => {
      if (!main.hasAttribute("href") && (event.key === "Enter" || event.key === " ")) {
        event.preventDefault();
        this._clicked(row, event);
      }
    });
    toggle.addEventListener("click", () =>
      this._act(this.client.markRead([row.group.id], !row.group.is_read)),
    );
    archive.addEventListener("click", () => {
      const next = row.element.nextElementSibling ?? row.element.previousElementSibling;
      this._act(this.client.markArchived([row.group.id]));
      next?.querySelector("a")?.focus(); // the archived row goes: keep focus in the list
    });
    return row;
  }

  /** Update one row from its group (only what changed is touched). */
  _fill(row, group) {
    const s = this.strings;
    const signature = `${group.position}|${this.locale}`;
    row.element.dataset.id = group.id;
    row.element.dataset.read = String(group.is_read);
    row.element.dataset.seen = String(group.is_seen);
    row.unread.textContent = group.is_read ? "" : ` (${s.unread})`;
    const label = group.is_read ? s.markUnread : s.markRead;
    row.toggle.setAttribute("aria-label", label);
    row.toggle.title = label;
    row.toggle.textContent = group.is_read ? "○" : "✓";
    row.archive.setAttribute("aria-label", s.archive);
    row.archive.title = s.archive;
    row.group = group;
    if (row.signature !== signature) {
      row.signature = signature;
      const url = safeUrl(group.activities[0]?.extra?.url);
      if (url) {
        row.main.href = url;
        row.main.removeAttribute("role");
        row.main.removeAttribute("tabindex");
      } else {
        row.main.removeAttribute("href");
        row.main.setAttribute("role", "button");
        row.main.setAttribute("tabindex", "0");
      }
      const text = this.options.describe?.(group, s, this.locale) ?? describe(group, s, this.locale);
      row.text.replaceChildren(text);
      row.avatars.replaceChildren(...avatarsOf(group));
      row.time.dateTime = group.updated_at;
    }
    this._time(row);
  }

  _time(row) {
    const date = new Date(row.group.updated_at);
    const zone = { locale: this.locale, timeZone: this.options.timeZone };
    row.time.textContent = relativeTime(date, zone);
    row.time.title = fullTime(date, zone);
  }

  _tick() {
    for (const row of this.rows.values()) if (row.group) this._time(row);
  }

  // -- actions ------------------------------------------------------------------------------

  async _clicked(row, event) {
    const group = row.group;
    const href = row.main.getAttribute("href");
    // Let the browser open new tabs / windows itself; the mark still happens.
    const newTab = event.metaKey || event.ctrlKey || event.shiftKey || event.button === 1;
    if (!newTab) event.preventDefault();
    const marked = group.is_read ? Promise.resolve() : this.client.markRead([group.id]);
    this._act(marked);
    const detail = { item: group, url: href };
    const proceed =
      this.options.onItemClick?.(group, event) !== false &&
      this.element.dispatchEvent(
        new CustomEvent("notifier:item-click", { detail, bubbles: true, cancelable: true }),
      );
    if (!href || newTab || !proceed) return;
    // Wait (briefly) for the mark, so the page we go to sees the item read.
    await Promise.race([marked.catch(() => {}), new Promise((r) => setTimeout(r, 800))]);
    window.location.assign(href);
  }

  _loadMore() {
    this._act(this.client.loadMore());
  }

  /** Run an action; failures are shown by the client's state, never thrown at the page. */
  _act(promise) {
    promise.catch((error) => {
      this.status.textContent = error.message;
      this.status.hidden = false;
    });
  }
}

/**
 * "ana and 3 others liked your photo", with the names in <strong>.
 * @param {Group} group
 * @param {Object<string, any>} s strings
 * @param {string} locale
 * @returns {DocumentFragment}
 */
export function describe(group, s, locale) {
  const names = [];
  for (const a of group.activities) {
    const name = a.extra?.actor_name ?? a.actor;
    if (!names.includes(name)) names.push(name);
  }
  const count = Math.max(group.actor_count, 1);
  let actors;
  if (count === 1 || names.length === 0) {
    actors = build("{first}", { first: strong(names[0] ?? "?") });
  } else if (count === 2 && names.length >= 2) {
    actors = build(s.two, { first: strong(names[0]), second: strong(names[1]) });
  } else {
    actors = build(plural(s.others, count - 1, locale), {
      first: strong(names[0]),
      count: String(count - 1),
    });
  }
  const newest = group.activities[0] ?? {};
  const entry = s.verbs[group.verb];
  const template = entry ? plural(entry, count, locale) : s.verb;
  return build(template, {
    actors,
    target: localised(newest.extra?.title, locale) ?? newest.target ?? newest.object ?? "",
    verb: group.verb,
  });
}

// -- small DOM helpers --------------------------------------------------------------------

/**
 * A fragment from a template whose `{name}` values are strings or nodes (text is never
 * parsed as HTML).
 */
function build(template, values) {
  const fragment = document.createDocumentFragment();
  const parts = template.split(/\{(\w+)\}/);
  parts.forEach((part, i) => {
    if (i % 2 === 0) {
      if (part) fragment.append(part);
    } else if (part in values) {
      const value = values[part];
      fragment.append(typeof value === "string" ? value : value);
    } else {
      fragment.append(`{${part}}`);
    }
  });
  return fragment;
}

function strong(text) {
  return el("strong", {}, text);
}

/** A title given per language (`{"en": "your photo", "fr": "votre photo"}`) or as text. */
function localised(value, locale) {
  if (value == null || typeof value === "string") return value ?? undefined;
  return value[locale] ?? value[locale.split("-")[0]] ?? value.en ?? Object.values(value)[0];
}

function avatarsOf(group) {
  const seen = new Set();
  const nodes = [];
  for (const a of group.activities) {
    if (seen.has(a.actor) || nodes.length === MAX_AVATARS) continue;
    seen.add(a.actor);
    const src = safeUrl(a.extra?.avatar, true);
    const name = a.extra?.actor_name ?? a.actor;
    nodes.push(
      src
        ? el("img", { class: "notifier-avatar", src, alt: "", loading: "lazy" })
        : el("span", { class: "notifier-avatar notifier-avatar-initial" }, name[0].toUpperCase()),
    );
  }
  return nodes;
}

/**
 * `url` resolved against the page if it is http(s) (or, for images, a data:image URI);
 * null otherwise, so that a `javascript:` URL in an activity can never run.
 */
function safeUrl(url, image = false) {
  if (typeof url !== "string" || !url) return null;
  if (image && /^data:image\//i.test(url)) return url;
  try {
    const resolved = new URL(url, window.location.href);
    return resolved.protocol === "http:" || resolved.protocol === "https:" ? resolved.href : null;
  } catch {
    return null;
  }
}

function el(tag, attributes = {}, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function loadStylesheet(href) {
  if (!href) return;
  const links = document.querySelectorAll('link[rel="stylesheet"]');
  if ([...links].some((link) => link.href === href)) return;
  document.head.append(el("link", { rel: "stylesheet", href, "data-notifier": "" }));
}

/** A token function that asks the app's backend (with the page's cookies). */
function tokenFrom(url) {
  return async () => {
    const response = await fetch(url, { method: "POST", credentials: "include" });
    if (!response.ok) throw new Error(`token URL answered ${response.status}`);
    return (await response.json()).token;
  };
}

// -- <notifier-bell> ----------------------------------------------------------------------

/**
 * `<notifier-bell token-url="..." server="..." feed="..." locale="..." theme="...">`, or set
 * `element.options = {token, onItemClick, ...}` (any WidgetOptions) before or after it is
 * added to the page. `element.widget` and `element.client` give the objects underneath.
 */
export class NotifierBellElement extends HTMLElement {
  static observedAttributes = ["locale"];

  constructor() {
    super();
    /** @type {NotifierWidget|null} */
    this.widget = null;
    this._options = {};
  }

  /** @param {WidgetOptions} options */
  set options(options) {
    this._options = options;
    this._start();
  }

  get options() {
    return this._options;
  }

  /** @returns {NotifierClient|null} */
  get client() {
    return this.widget?.client ?? null;
  }

  connectedCallback() {
    // After the current task: a page that sets `options` right after creating the element
    // gets them into the first mount.
    queueMicrotask(() => this._start());
  }

  disconnectedCallback() {
    this.widget?.destroy();
    this.widget = null;
  }

  attributeChangedCallback(name, old, value) {
    if (name === "locale" && this.widget && old !== value) this.widget.setLocale(value);
  }

  _start() {
    if (this.widget || !this.isConnected) return;
    const fromAttributes = {};
    for (const [attribute, option] of [
      ["server", "server"],
      ["token-url", "tokenUrl"],
      ["feed", "feed"],
      ["locale", "locale"],
      ["theme", "theme"],
      ["time-zone", "timeZone"],
    ]) {
      if (this.hasAttribute(attribute)) fromAttributes[option] = this.getAttribute(attribute);
    }
    if (this.hasAttribute("page-size")) fromAttributes.pageSize = Number(this.getAttribute("page-size"));
    const options = { ...fromAttributes, ...this._options };
    if (!options.token && !options.tokenUrl) return; // wait for `options`
    this.widget = mount(this, options);
  }
}

if (typeof customElements !== "undefined" && !customElements.get("notifier-bell")) {
  customElements.define("notifier-bell", NotifierBellElement);
}
