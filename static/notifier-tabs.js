// notifier widget: the tabs above the list ("All", one per category, "Archived"), each with
// its unread count. A `tablist` with one tab stop: arrow keys, Home and End move between
// tabs and show them.

import { el } from "./notifier-dom.js";

const MAX_COUNT = 99;

/**
 * The tab bar. `host` is the widget: its client, strings, current `view` and `selectTab`.
 */
export class Tabs {
  /**
   * @param {Object} host
   * @param {string} id the widget's id, for the tabs' ids
   * @param {string[]} categories one tab each, after "All"
   * @param {boolean} archive an "Archived" tab last
   */
  constructor(host, id, categories, archive) {
    this.host = host;
    this.element = el("div", {
      class: "notifier-tabs",
      role: "tablist",
      "data-testid": "notifier-tabs",
    });
    /** @type {Array<{key: string, status: string, category: string|null}>} */
    this.tabs = [{ key: "all", status: "inbox", category: null }];
    for (const category of categories) {
      this.tabs.push({ key: `c:${category}`, status: "inbox", category });
    }
    if (archive) this.tabs.push({ key: "archived", status: "archived", category: null });
    for (const tab of this.tabs) {
      tab.button = el("button", {
        type: "button",
        role: "tab",
        class: "notifier-tab",
        id: `${id}-tab-${tab.key}`,
        "aria-controls": `${id}-list`,
        "data-testid": `notifier-tab-${tab.key.replace(/^c:/, "")}`,
      });
      tab.name = el("span", {});
      tab.count = el("span", { class: "notifier-tab-count" });
      tab.unread = el("span", { class: "notifier-sr" });
      // Named by its visible text ("Social 2") and, for screen readers, " unread" after it.
      tab.button.append(tab.name, " ", tab.count, tab.unread);
      tab.button.addEventListener("click", () => host.selectTab(tab.key));
      this.element.append(tab.button);
    }
    this.element.addEventListener("keydown", (event) => this._key(event));
  }

  /** Whether there is more than "All" to choose from. */
  get shown() {
    return this.tabs.length > 1;
  }

  /** @param {string} key */
  find(key) {
    return this.tabs.find((t) => t.key === key);
  }

  _key(event) {
    const tabs = this.tabs;
    const at = tabs.findIndex((t) => t.key === this.host.view.key);
    const moves = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: tabs.length - 1 };
    if (!(event.key in moves)) return;
    event.preventDefault();
    const tab = tabs[(moves[event.key] + tabs.length) % tabs.length];
    this.host.selectTab(tab.key);
    tab.button.focus();
  }

  /** Names, counts (from the client's counts and counts by category) and the selection. */
  render() {
    const { client, strings, view } = this.host;
    const byCategory = client.categoryCounts?.categories;
    for (const tab of this.tabs) {
      const selected = tab.key === view.key;
      tab.button.setAttribute("aria-selected", String(selected));
      tab.button.tabIndex = selected ? 0 : -1;
      let name = strings.all;
      let unread = client.counts?.unread ?? 0;
      if (tab.status === "archived") {
        name = strings.archived;
        unread = 0;
      } else if (tab.category !== null) {
        name = this.host._categoryName(tab.category);
        unread = byCategory?.[tab.category]?.unread ?? 0;
      }
      tab.name.textContent = name;
      tab.count.textContent = unread > MAX_COUNT ? `${MAX_COUNT}+` : unread ? String(unread) : "";
      tab.count.hidden = unread === 0;
      tab.unread.textContent = unread ? ` ${strings.unread}` : "";
      tab.button.dataset.count = String(unread);
    }
  }
}
