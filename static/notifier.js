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
import { ICONS, el, icon, label, safeUrl } from "./notifier-dom.js";
import { fill, plural, stringsFor } from "./notifier-i18n.js";
import { describe, Row } from "./notifier-items.js";
import { Preferences } from "./notifier-prefs.js";
import { Tabs } from "./notifier-tabs.js";

export { NotifierClient } from "./notifier-client.js";
export { LOCALES, relativeTime } from "./notifier-i18n.js";
export { describe } from "./notifier-items.js";

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
 * @property {string[]} [categories] one tab per category, after "All" (with its unread count)
 * @property {boolean} [archive=true] an "Archived" tab
 * @property {boolean} [toast=false] a short-lived message when notifications arrive live
 * @property {number} [toastMs=6000] how long a toast stays, ms
 * @property {string[]} [verbs] verbs the preferences offer to mute (besides those of the
 *   items held and those already muted)
 * @property {(action: {label: string, url?: string, event?: string}, item: Group,
 *   activity: Object) => void} [onAction] an item's action button was clicked
 */

const STYLESHEET = new URL("./notifier.css", import.meta.url).href;
const MAX_BADGE = 99;
/** Below this viewport width the inbox is a sheet the width of the screen (notifier.css). */
const SHEET = "(max-width: 480px)";
/** Options that a running widget takes as they change; any other one mounts it again. */
const LIVE_OPTIONS = new Set([
  "token",
  "tokenUrl",
  "locale",
  "strings",
  "theme",
  "timeZone",
  "onItemClick",
  "onNewItems",
  "onAction",
  "describe",
  "toast",
  "toastMs",
  "verbs",
]);
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
    this.options = { theme: "auto", archive: true, toast: false, toastMs: 6000, ...options };
    if (!this.options.token && !this.options.tokenUrl) {
      throw new TypeError("notifier: give options.token or options.tokenUrl");
    }
    // Read at each call: a page that passes a new token function (a framework re-rendering
    // with an inline one) keeps its connection; the new function serves the next token.
    const token = () =>
      this.options.token ? this.options.token() : tokenFrom(this.options.tokenUrl)();
    loadStylesheet(this.options.stylesheet ?? STYLESHEET);
    const categories = this.options.categories ?? [];
    this.client = new NotifierClient({ ...this.options, token, byCategory: categories.length > 0 });
    this.setLocale(this.options.locale, this.options.strings, false);
    this.isOpen = false;
    this.prefsOpen = false;
    /** While open: what the list shows (id → position when shown), so it never reshuffles. */
    this.shown = null;
    this.unopened = false;
    this.top = "";
    this.rows = new Map();
    this.lastUnseen = null;
    /** A failed action's message, shown until the next action. */
    this.notice = "";
    this.openMenu = null;
    /** The list shown: the inbox, a category's tab, or the archive. */
    this.view = { key: "all", status: "inbox", category: null };
    this._build(categories);
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
      for (const row of this.rows.values()) row.signature = "";
      this.render();
    }
  }

  /**
   * Switch theme at run time.
   * @param {"auto"|"light"|"dark"} theme
   */
  setTheme(theme) {
    this.options.theme = theme || "auto";
    this.root.dataset.theme = this.options.theme;
  }

  /**
   * Take new values of the options a running widget can change (see LIVE_OPTIONS).
   * @param {WidgetOptions} options
   */
  update(options) {
    const before = this.options;
    this.options = { ...before, ...options };
    if (options.theme !== before.theme) this.setTheme(options.theme);
    if (options.locale !== before.locale || options.strings !== before.strings) {
      this.setLocale(options.locale, options.strings);
    } else {
      for (const row of this.rows.values()) row.signature = "";
      this.render();
    }
  }

  // -- DOM ----------------------------------------------------------------------------------

  _build(categories) {
    const id = `notifier-${++nextId}`;
    this.id = id;
    const root = el("div", { class: "notifier", "data-theme": this.options.theme });
    this.bell = el("button", {
      type: "button",
      class: "notifier-bell",
      "data-testid": "notifier-bell",
      "aria-haspopup": "dialog",
      "aria-expanded": "false",
      "aria-controls": `${id}-panel`,
    });
    this.bell.innerHTML = ICONS.bell; // a constant: no data goes through innerHTML
    this.badge = el("span", { class: "notifier-badge", "data-testid": "notifier-badge" });
    this.badge.hidden = true;
    this.offlineMark = el("span", {
      class: "notifier-bell-offline",
      "data-testid": "notifier-bell-offline",
    });
    this.offlineMark.hidden = true;
    this.bell.append(this.badge, this.offlineMark);
    this.announcer = el("span", {
      class: "notifier-sr",
      "aria-live": "polite",
      "data-testid": "notifier-announce",
    });
    // A live region present from the start (one added with its content is not announced).
    this.toastRegion = el("div", {
      class: "notifier-toasts",
      role: "status",
      "data-testid": "notifier-toasts",
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
    this.settingsButton = el("button", {
      type: "button",
      class: "notifier-icon",
      "aria-expanded": "false",
      "aria-controls": `${id}-prefs`,
      "data-testid": "notifier-settings",
    });
    icon(this.settingsButton, "settings");
    this.closeButton = el("button", {
      type: "button",
      class: "notifier-icon",
      "data-testid": "notifier-close",
    });
    icon(this.closeButton, "close");
    const header = el("div", { class: "notifier-header" });
    header.append(this.heading, this.markAll, this.settingsButton, this.closeButton);
    this.tabBar = new Tabs(this, id, categories, this.options.archive !== false);
    this.status = el("p", {
      class: "notifier-status",
      role: "status",
      "data-testid": "notifier-status",
    });
    this.banner = el("button", {
      type: "button",
      class: "notifier-banner",
      "data-testid": "notifier-new-banner",
    });
    this.banner.hidden = true;
    this.list = el("ul", { class: "notifier-list", "data-testid": "notifier-list" });
    this.sentinel = el("li", { class: "notifier-sentinel", "aria-hidden": "true" });
    this.placeholder = el("div", { class: "notifier-placeholder" });
    this.scroller = el("div", { class: "notifier-scroller", id: `${id}-list` });
    if (this.tabBar.shown) this.scroller.setAttribute("role", "tabpanel");
    this.scroller.append(this.banner, this.list, this.placeholder);
    this.footer = el("div", { class: "notifier-footer" });
    this.archiveRead = el("button", {
      type: "button",
      class: "notifier-link",
      "data-testid": "notifier-archive-read",
    });
    this.footer.append(this.archiveRead);
    this.prefs = new Preferences(this, id);
    this.panel.append(
      header,
      this.tabBar.element,
      this.status,
      this.scroller,
      this.footer,
      this.prefs.element,
    );
    root.append(this.bell, this.announcer, this.toastRegion, this.panel);
    this.root = root;
    this.element.replaceChildren(root);
    this._label();

    this.bell.addEventListener("click", () => this.toggle());
    this.closeButton.addEventListener("click", () => {
      this.close();
      this.bell.focus();
    });
    this.settingsButton.addEventListener("click", () => this.showPreferences(!this.prefsOpen));
    this.markAll.addEventListener("click", () =>
      this._act(this.client.markAllRead({ category: this.view.category })),
    );
    this.archiveRead.addEventListener("click", () =>
      this._act(this.client.archiveAllRead({ category: this.view.category })),
    );
    this.banner.addEventListener("click", () => this._reveal());
    root.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.isOpen) {
        event.stopPropagation();
        this.close();
        this.bell.focus();
      }
    });
    this._outside = (event) => {
      if (this.openMenu && !this.openMenu.menu.parentNode.contains(event.target))
        this._closeMenus();
      if (this.isOpen && !root.contains(event.target)) this.close();
    };
    document.addEventListener("pointerdown", this._outside);
    this._onResize = () => this._place();
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
    this.archiveRead.textContent = s.archiveAllRead;
    label(this.settingsButton, s.settings);
    label(this.closeButton, s.close);
    this.prefs.label();
  }

  /** A category's name for people: `strings.categories[name]`, or the name capitalised. */
  _categoryName(name) {
    return (
      this.strings.categories[name] ??
      name.charAt(0).toUpperCase() + name.slice(1).replace(/[_-]+/g, " ")
    );
  }

  // -- opening and closing ------------------------------------------------------------------

  /** Open the inbox: show the list as it is now, and mark it seen. */
  open() {
    if (this.isOpen) return;
    this.isOpen = true;
    this.unopened = true; // until the first page is there: see render()
    this.panel.hidden = false;
    this.bell.setAttribute("aria-expanded", "true");
    this._dismissToasts();
    this.render();
    this._place();
    window.addEventListener("resize", this._onResize);
    this.panel.focus();
    this._clock = setInterval(() => this._tick(), 30_000);
    if (this.view.key !== "all") this._loadView();
  }

  /** Close the inbox. */
  close() {
    if (!this.isOpen) return;
    this.isOpen = false;
    this.unopened = false;
    this.shown = null;
    this.notice = "";
    this._closeMenus();
    this.showPreferences(false, false);
    this.panel.hidden = true;
    this.bell.setAttribute("aria-expanded", "false");
    window.removeEventListener("resize", this._onResize);
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
    clearTimeout(this._toastTimer);
    this.client.close();
    this.element.replaceChildren();
  }

  /**
   * Keep the panel inside the viewport: shifted sideways when the bell is near an edge (a
   * bell on the left of a header), a full-width sheet on small screens (notifier.css).
   */
  _place() {
    const panel = this.panel;
    panel.style.right = "";
    if (!this.isOpen || window.matchMedia(SHEET).matches) return;
    const margin = 8;
    const width = document.documentElement.clientWidth;
    const box = panel.getBoundingClientRect();
    let shift = 0;
    if (box.left < margin) shift = margin - box.left;
    else if (box.right > width - margin) shift = width - margin - box.right;
    if (shift) panel.style.right = `${-shift}px`;
  }

  /**
   * Show the preferences in the panel (or the list again).
   * @param {boolean} show
   */
  showPreferences(show, focus = true) {
    if (show === this.prefsOpen) return;
    this.prefsOpen = show;
    this.settingsButton.setAttribute("aria-expanded", String(show));
    this.prefs.element.hidden = !show;
    this.root.dataset.view = show ? "preferences" : "list";
    if (show) {
      this._closeMenus();
      this.prefs.load();
      if (focus) {
        this.prefs.heading.setAttribute("tabindex", "-1");
        this.prefs.heading.focus();
      }
    } else if (focus) {
      this.settingsButton.focus();
    }
    this.render();
  }

  // -- tabs ---------------------------------------------------------------------------------

  /**
   * Show another tab: "all", `c:<category>`, or "archived".
   * @param {string} key
   */
  selectTab(key) {
    const tab = this.tabBar.find(key);
    if (!tab || tab.key === this.view.key) return;
    this.view = { key: tab.key, status: tab.status, category: tab.category };
    this._closeMenus();
    this.shown = null;
    this.list.replaceChildren();
    this.rows.clear();
    if (this.isOpen && this.client.loaded && tab.status === "inbox") this._snapshot();
    this.scroller.scrollTop = 0;
    this.render();
    if (tab.key !== "all") this._loadView();
  }

  _loadView() {
    if (this.client.loaded || this.client.status === "live")
      this._act(this.client.loadView(this.view));
  }

  /** Remember what the open list shows; later arrivals wait behind the banner. */
  _snapshot() {
    const items = this.client.items(this.view);
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
    const fresh = items.filter((g) => !g.is_seen && !g.is_archived);
    if (this.options.toast && !this.isOpen && fresh.length) this._toast(fresh);
  }

  /**
   * Say what arrived in a small message by the bell, for `toastMs`; announced politely by
   * the live region it is in, and never taking the focus.
   */
  _toast(groups) {
    const s = this.strings;
    const toast = el("div", { class: "notifier-toast", "data-testid": "notifier-toast" });
    const text =
      this.options.describe?.(groups[0], s, this.locale) ?? describe(groups[0], s, this.locale);
    toast.append(text);
    if (groups.length > 1) {
      toast.append(
        " ",
        fill(plural(s.toastMore, groups.length - 1, this.locale), { count: groups.length - 1 }),
      );
    }
    this.toastRegion.replaceChildren(toast);
    clearTimeout(this._toastTimer);
    this._toastTimer = setTimeout(() => this._dismissToasts(), this.options.toastMs);
  }

  _dismissToasts() {
    clearTimeout(this._toastTimer);
    this.toastRegion.replaceChildren();
  }

  _closeMenus() {
    this.openMenu?.closeMenu(false);
    this.openMenu = null;
  }

  // -- rendering ----------------------------------------------------------------------------

  /** Bring the DOM in line with the client's state (keyed by item id: focus survives). */
  render() {
    const client = this.client;
    if (this.isOpen && this.unopened && client.loaded) {
      // Opened before the first page arrived: that page is what the user opened, not news.
      this.unopened = false;
      if (this.view.status === "inbox") this._snapshot();
      if (this.view.key !== "all") this._loadView();
      queueMicrotask(() => this._act(client.markSeen())); // not from inside a render
    }
    this._renderBadge(client);
    const view = this.view;
    const items = client.items(view);
    const { visible, waiting } = this._visible(items);
    this.tabBar.render();
    const archive = view.status === "archived";
    const unread =
      view.category === null
        ? (client.counts?.unread ?? 0)
        : (client.categoryCounts?.categories?.[view.category]?.unread ??
          items.filter((g) => !g.is_read).length);
    this.markAll.hidden = archive || this.prefsOpen;
    this.markAll.disabled = !unread;
    this.footer.hidden = archive || this.prefsOpen;
    this.archiveRead.disabled = !visible.some((g) => g.is_read);
    this.banner.hidden = !this.isOpen || waiting === 0;
    this.banner.textContent = fill(plural(this.strings.newItems, waiting, this.locale), {
      count: waiting,
    });
    this.tabBar.element.hidden = !this.tabBar.shown || this.prefsOpen;
    this.scroller.hidden = this.prefsOpen;
    this._renderStatus(client, visible.length);
    if (!this.isOpen) return;
    this._renderList(visible);
    const more = view.key === "all" ? client.hasMore : client.viewHasMore(view);
    if (more) {
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

  _renderBadge(client) {
    const s = this.strings;
    const counts = client.counts;
    const unseen = counts?.unseen ?? 0;
    this.badge.hidden = unseen === 0;
    this.badge.textContent = unseen > MAX_BADGE ? `${MAX_BADGE}+` : String(unseen);
    this.badge.dataset.count = String(unseen);
    this.root.dataset.unseen = String(unseen);
    // Offline or refused: said on the bell itself, closed or not, and in its name.
    const down =
      client.status === "failed" ? "failed" : client.status === "reconnecting" ? "offline" : "";
    this.offlineMark.hidden = !down;
    this.root.dataset.connection = down || "ok";
    let name = fill(plural(s.bell, unseen, this.locale), { count: unseen });
    if (down) name += `, ${down === "failed" ? s.unavailable : s.offline}`;
    this.bell.setAttribute("aria-label", name);
    this.bell.title = name;
    if (this.lastUnseen !== null && unseen !== this.lastUnseen && counts) {
      this.announcer.textContent = fill(plural(s.announce, unseen, this.locale), { count: unseen });
    }
    if (counts) this.lastUnseen = unseen;
  }

  /** The message for a connection problem (never the browser's own text). */
  _problem(client) {
    const s = this.strings;
    if (client.problem === "token") return s.tokenError;
    if (client.problem === "origin") return fill(s.originError, { origin: location.origin });
    if (client.status === "failed") return fill(s.failed, { reason: client.error ?? "" });
    return s.error;
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
    }
    if (client.pending.length) {
      status = fill(plural(s.pending, client.pending.length, this.locale), {
        count: client.pending.length,
      });
    } else if (this.notice) {
      status = this.notice;
    } else if (client.loaded && client.status === "reconnecting") {
      status =
        client.problem && client.problem !== "unreachable" ? this._problem(client) : s.reconnecting;
    }
    this.status.textContent = status;
    this.status.hidden = !status || this.prefsOpen;
    this.root.dataset.state = state;
    this.root.dataset.status = client.status;
    const placeholder = this.placeholder;
    if (state === "error" && (!client.loaded || failed)) {
      placeholder.dataset.testid = "notifier-error";
      if (placeholder.dataset.message !== this._problem(client)) {
        placeholder.dataset.message = this._problem(client);
        placeholder.replaceChildren(el("p", { role: "alert" }, this._problem(client)));
        if (!failed) {
          const retry = el("button", { type: "button", class: "notifier-button" }, s.retry);
          retry.addEventListener("click", () => client.reconnect());
          placeholder.append(retry);
        }
      }
    } else {
      placeholder.dataset.message = "";
      if (state === "loading") {
        placeholder.dataset.testid = "notifier-loading";
        placeholder.replaceChildren(el("p", {}, s.loading));
      } else if (state === "ready" && shown === 0) {
        placeholder.dataset.testid = "notifier-empty";
        placeholder.replaceChildren(
          ...(this.view.status === "archived"
            ? [el("p", { class: "notifier-empty-title" }, s.emptyArchive)]
            : [el("p", { class: "notifier-empty-title" }, s.empty), el("p", {}, s.emptyHint)]),
        );
      } else {
        placeholder.dataset.testid = "";
        placeholder.replaceChildren();
      }
    }
    placeholder.hidden = !placeholder.firstChild;
  }

  _renderList(groups) {
    const keep = new Set(groups.map((g) => g.id));
    for (const [id, row] of this.rows) {
      if (!keep.has(id)) {
        if (this.openMenu === row) this._closeMenus();
        row.element.remove();
        this.rows.delete(id);
      }
    }
    let previous = null;
    for (const group of groups) {
      let row = this.rows.get(group.id);
      if (!row) {
        row = new Row(this);
        this.rows.set(group.id, row);
      }
      row.fill(group, this.view.status);
      const expected = previous ? previous.nextSibling : this.list.firstChild;
      if (expected !== row.element) this.list.insertBefore(row.element, expected);
      previous = row.element;
    }
  }

  _tick() {
    for (const row of this.rows.values()) if (row.group) row.tick();
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

  /**
   * An item's action button (`extra.actions`): the group is marked done; a `url` action
   * goes there, an `event` action dispatches `notifier:action` from the element.
   */
  async _action(row, action, event) {
    const group = row.group;
    const activity = group.activities[0];
    const done = this.client.markDone([group.id]);
    this._act(done);
    this.options.onAction?.(action, group, activity);
    const detail = { event: action.event ?? null, action, item: group, activity };
    const proceed = this.element.dispatchEvent(
      new CustomEvent("notifier:action", { detail, bubbles: true, cancelable: true }),
    );
    row.main.focus(); // the button is replaced by "Done"
    const url = safeUrl(action.url);
    if (!url || !proceed) return;
    if (event.metaKey || event.ctrlKey) {
      window.open(url, "_blank", "noopener");
      return;
    }
    await Promise.race([done.catch(() => {}), new Promise((r) => setTimeout(r, 800))]);
    window.location.assign(url);
  }

  _loadMore() {
    const view = this.view;
    this._act(view.key === "all" ? this.client.loadMore() : this.client.loadView(view, true));
  }

  /** What to tell the user about a failed call: the server's own message for a refused
   *  input, otherwise a sentence of ours (never the browser's "Failed to fetch"). */
  _message(error) {
    if (error?.status === 422 && error.payload?.error?.message) return error.payload.error.message;
    return this.strings.actionFailed;
  }

  /** Run an action; failures are shown in the status line, never thrown at the page. */
  _act(promise) {
    if (this.notice) {
      this.notice = "";
      this.render();
    }
    promise.catch((error) => {
      this.notice = this._message(error);
      this.render();
    });
  }
}

// -- small helpers --------------------------------------------------------------------------

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

/** Attributes of `<notifier-bell>` and the options they give. */
const ATTRIBUTES = {
  server: ["server", String],
  "token-url": ["tokenUrl", String],
  feed: ["feed", String],
  locale: ["locale", String],
  theme: ["theme", String],
  "time-zone": ["timeZone", String],
  "page-size": ["pageSize", Number],
  categories: [
    "categories",
    (v) =>
      v
        .split(",")
        .map((c) => c.trim())
        .filter(Boolean),
  ],
  archive: ["archive", (v) => v !== "false"],
  toast: ["toast", (v) => v !== "false"],
  verbs: [
    "verbs",
    (v) =>
      v
        .split(",")
        .map((c) => c.trim())
        .filter(Boolean),
  ],
};

/**
 * `<notifier-bell token-url="..." server="..." feed="..." locale="..." theme="..."
 * categories="social,billing" toast>`, or set `element.options = {token, onItemClick, ...}`
 * (any WidgetOptions) before or after it is added to the page. Attributes and options are
 * both watched: a change of locale, theme, strings, callbacks or toast applies in place,
 * any other one mounts the widget again. `element.widget` and `element.client` give the
 * objects underneath.
 */
export class NotifierBellElement extends HTMLElement {
  static observedAttributes = Object.keys(ATTRIBUTES);

  constructor() {
    super();
    /** @type {NotifierWidget|null} */
    this.widget = null;
    this._options = {};
  }

  /** @param {WidgetOptions} options */
  set options(options) {
    this._options = options ?? {};
    this._apply();
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
    queueMicrotask(() => this._apply());
  }

  disconnectedCallback() {
    this.widget?.destroy();
    this.widget = null;
  }

  attributeChangedCallback(name, old, value) {
    if (this.widget && old !== value) this._apply();
  }

  /** The options now: the attributes', overridden by `options`. */
  _merged() {
    const merged = {};
    for (const [attribute, [option, parse]] of Object.entries(ATTRIBUTES)) {
      if (this.hasAttribute(attribute)) merged[option] = parse(this.getAttribute(attribute));
    }
    return { ...merged, ...this._options };
  }

  /** Mount, update in place, or mount again, as the options now ask. */
  _apply() {
    if (!this.isConnected) return;
    const options = this._merged();
    if (!options.token && !options.tokenUrl) return; // wait for `options`
    const last = this._last ?? {};
    this._last = options;
    if (this.widget) {
      const keys = new Set([...Object.keys(options), ...Object.keys(last)]);
      const remount = [...keys].some((k) => !LIVE_OPTIONS.has(k) && !same(options[k], last[k]));
      if (!remount) {
        this.widget.update(options);
        return;
      }
      this.widget.destroy();
    }
    this.widget = mount(this, options);
  }
}

/** Whether two option values are the same (arrays and objects by content: `categories`,
 * `backoff`: a framework re-rendering with equal values does not reconnect). */
function same(a, b) {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  return JSON.stringify(a) === JSON.stringify(b); // arrays and plain objects, by content
}

if (typeof customElements !== "undefined" && !customElements.get("notifier-bell")) {
  customElements.define("notifier-bell", NotifierBellElement);
}
