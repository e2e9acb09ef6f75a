// notifier widget: one item of the inbox (its text, avatars, time, action buttons and
// menu), built once and updated in place, and the text of an item ("ana and 3 others liked
// your photo").

import { build, el, icon, label, safeUrl } from "./notifier-dom.js";
import { fill, fullTime, plural, relativeTime } from "./notifier-i18n.js";

/** @typedef {import("./notifier-client.js").Group} Group */

const MAX_AVATARS = 3;
const MAX_ACTIONS = 2;

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
  const entry = s.verbs[group.verb];
  const template = entry ? plural(entry, count, locale) : s.verb;
  return build(template, {
    actors,
    target: targetText(group.activities[0] ?? {}, s, locale),
    verb: group.verb,
  });
}

/**
 * What an activity was done to: its `extra.title` (in the user's language when given per
 * language), or else a phrase from the type of its target ("photo:1" -> "your photo") or,
 * without a target, of its object ("a photo"). Raw ids are never shown.
 */
export function targetText(activity, s, locale) {
  const title = localised(activity.extra?.title, locale);
  if (title) return title;
  const own = Boolean(activity.target);
  const ref = own ? activity.target : activity.object;
  const type = typeof ref === "string" && ref.includes(":") ? ref.slice(0, ref.indexOf(":")) : "";
  if (!type) return s.something;
  if (own && s.things[type]) return s.things[type];
  const thing = s.types[type] ?? type.replace(/[_-]+/g, " ");
  return fill(own ? s.yourThing : s.aThing, { thing });
}

/** A title given per language (`{"en": "your photo", "fr": "votre photo"}`) or as text. */
function localised(value, locale) {
  if (value == null || typeof value === "string") return value || undefined;
  return value[locale] ?? value[locale.split("-")[0]] ?? value.en ?? Object.values(value)[0];
}

function strong(text) {
  return el("strong", {}, text);
}

/**
 * The actions an activity offers (`extra.actions`: `{label, url}` or `{label, event}`, at
 * most two); malformed ones are left out.
 * @returns {Array<{label: string, url?: string, event?: string}>}
 */
export function actionsOf(activity) {
  const actions = Array.isArray(activity?.extra?.actions) ? activity.extra.actions : [];
  return actions
    .filter(
      (a) => a && typeof a.label === "string" && (safeUrl(a.url) || typeof a.event === "string"),
    )
    .slice(0, MAX_ACTIONS);
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
 * The start of tomorrow's working day (9:00) in the browser's zone: "snooze until
 * tomorrow".
 * @param {Date} [now]
 */
export function tomorrowMorning(now = new Date()) {
  const date = new Date(now);
  date.setDate(date.getDate() + 1);
  date.setHours(9, 0, 0, 0);
  return date;
}

/**
 * One row of the list. `host` is the widget: its client, strings, options and `_act`.
 */
export class Row {
  constructor(host) {
    this.host = host;
    this.group = null;
    this.signature = "";
    const element = el("li", { class: "notifier-item", "data-testid": "notifier-item" });
    const content = el("div", { class: "notifier-item-content" });
    const main = el("a", { class: "notifier-item-main", "data-testid": "notifier-item-link" });
    this.avatars = el("span", { class: "notifier-avatars", "aria-hidden": "true" });
    this.text = el("span", { class: "notifier-item-text", "data-testid": "notifier-item-text" });
    this.time = el("time", { class: "notifier-item-time" });
    this.unread = el("span", { class: "notifier-sr" });
    const body = el("span", { class: "notifier-item-body" });
    body.append(this.text, this.time);
    main.append(
      this.avatars,
      body,
      this.unread,
      el("span", { class: "notifier-dot", "aria-hidden": "true" }),
    );
    this.cta = el("div", { class: "notifier-item-cta", "data-testid": "notifier-item-actions" });
    content.append(main, this.cta);
    this.toggle = this._button("notifier-toggle-read");
    this.archive = this._button("notifier-archive");
    this.more = this._button("notifier-more", {
      "aria-haspopup": "menu",
      "aria-expanded": "false",
    });
    this.menu = el("div", { class: "notifier-menu", role: "menu", "data-testid": "notifier-menu" });
    this.menu.hidden = true;
    this.menuItems = {
      hour: this._menuItem("notifier-snooze-hour"),
      tomorrow: this._menuItem("notifier-snooze-tomorrow"),
      remove: this._menuItem("notifier-delete"),
    };
    const buttons = el("div", { class: "notifier-item-buttons" });
    buttons.append(this.toggle, this.archive, this.more, this.menu);
    element.append(content, buttons);
    this.element = element;
    this.main = main;

    main.addEventListener("click", (event) => host._clicked(this, event));
    main.addEventListener("keydown", (event) => {
      if (!main.hasAttribute("href") && (event.key === "Enter" || event.key === " ")) {
        event.preventDefault();
        host._clicked(this, event);
      }
    });
    this.toggle.addEventListener("click", () =>
      host._act(host.client.markRead([this.group.id], !this.group.is_read)),
    );
    this.archive.addEventListener("click", () => {
      const archived = this.group.is_archived && !this.group.snoozed_until;
      this._leaving();
      host._act(host.client.markArchived([this.group.id], !archived));
    });
    this.more.addEventListener("click", () =>
      this.menu.hidden ? this.openMenu() : this.closeMenu(true),
    );
    this.menu.addEventListener("keydown", (event) => this._menuKey(event));
    this.menuItems.hour.addEventListener("click", () =>
      this._chosen(() => host.client.snooze([this.group.id], new Date(Date.now() + 3_600_000))),
    );
    this.menuItems.tomorrow.addEventListener("click", () =>
      this._chosen(() => host.client.snooze([this.group.id], tomorrowMorning())),
    );
    this.menuItems.remove.addEventListener("click", () =>
      this._chosen(() => host.client.remove(this.group.id)),
    );
  }

  _button(testid, attributes = {}) {
    return el("button", {
      type: "button",
      class: "notifier-icon",
      "data-testid": testid,
      ...attributes,
    });
  }

  _menuItem(testid) {
    const item = el("button", {
      type: "button",
      role: "menuitem",
      tabindex: "-1",
      "data-testid": testid,
    });
    this.menu.append(item);
    return item;
  }

  /** The row is about to leave the list: keep the keyboard's focus in the list. */
  _leaving() {
    const next = this.element.nextElementSibling ?? this.element.previousElementSibling;
    const target = next?.querySelector(".notifier-item-main") ?? this.host.panel;
    queueMicrotask(() => target.focus());
  }

  _chosen(action) {
    this.closeMenu(false);
    this._leaving();
    this.host._act(action());
  }

  openMenu() {
    this.host._closeMenus();
    this.menu.hidden = false;
    this.more.setAttribute("aria-expanded", "true");
    // Open upwards when the list has no room below the button.
    const scroller = this.host.scroller.getBoundingClientRect();
    const below = scroller.bottom - this.more.getBoundingClientRect().bottom;
    this.menu.classList.toggle("notifier-menu-up", below < this.menu.offsetHeight + 8);
    this.menuItems.hour.focus();
    this.host.openMenu = this;
  }

  closeMenu(focus) {
    if (this.menu.hidden) return;
    this.menu.hidden = true;
    this.more.setAttribute("aria-expanded", "false");
    if (this.host.openMenu === this) this.host.openMenu = null;
    if (focus) this.more.focus();
  }

  _menuKey(event) {
    const items = [...this.menu.querySelectorAll('[role="menuitem"]')];
    const at = items.indexOf(document.activeElement);
    const moves = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: items.length - 1 };
    if (event.key in moves) {
      event.preventDefault();
      items[(moves[event.key] + items.length) % items.length].focus();
    } else if (event.key === "Escape") {
      event.stopPropagation();
      this.closeMenu(true);
    } else if (event.key === "Tab") {
      this.closeMenu(false);
    }
  }

  /**
   * Update the row from its group (only what changed is touched).
   * @param {Group} group
   * @param {string} status the list it is shown in
   */
  fill(group, status) {
    const host = this.host;
    const s = host.strings;
    const locale = host.locale;
    this.group = group;
    const element = this.element;
    element.dataset.id = group.id;
    element.dataset.read = String(group.is_read);
    element.dataset.seen = String(group.is_seen);
    element.dataset.done = String(Boolean(group.is_done));
    if (group.category) element.dataset.category = group.category;
    this.unread.textContent = group.is_read ? "" : ` (${s.unread})`;
    label(this.toggle, group.is_read ? s.markUnread : s.markRead);
    icon(this.toggle, group.is_read ? "unread" : "read");
    const archived = status === "archived";
    label(this.archive, archived ? s.unarchive : s.archive);
    icon(this.archive, archived ? "unarchive" : "archive");
    label(this.more, s.more);
    icon(this.more, "more");
    this.menuItems.hour.textContent = s.snoozeHour;
    this.menuItems.tomorrow.textContent = s.snoozeTomorrow;
    this.menuItems.remove.textContent = s.remove;
    const signature = `${group.position}|${locale}|${Boolean(group.is_done)}`;
    if (this.signature !== signature) {
      this.signature = signature;
      const newest = group.activities[0] ?? {};
      const url = safeUrl(newest.extra?.url);
      if (url) {
        this.main.href = url;
        this.main.removeAttribute("role");
        this.main.removeAttribute("tabindex");
      } else {
        this.main.removeAttribute("href");
        this.main.setAttribute("role", "button");
        this.main.setAttribute("tabindex", "0");
      }
      const text = host.options.describe?.(group, s, locale) ?? describe(group, s, locale);
      this.text.replaceChildren(text);
      this.avatars.replaceChildren(...avatarsOf(group));
      this.time.dateTime = group.updated_at;
      this._actions(group, newest);
    }
    this.tick();
  }

  /** The activity's own action buttons, or "Done" once one was taken. */
  _actions(group, activity) {
    const s = this.host.strings;
    const actions = actionsOf(activity);
    this.cta.replaceChildren();
    if (group.is_done && actions.length) {
      const done = el("span", { class: "notifier-done", "data-testid": "notifier-done" });
      done.append(el("span", { "aria-hidden": "true" }, "✓ "), s.done);
      this.cta.append(done);
    } else {
      for (const action of actions) {
        const button = el(
          "button",
          { type: "button", class: "notifier-cta", "data-testid": "notifier-action" },
          action.label,
        );
        button.addEventListener("click", (event) => this.host._action(this, action, event));
        this.cta.append(button);
      }
    }
    this.cta.hidden = !this.cta.firstChild;
  }

  /** Refresh the relative time. */
  tick() {
    const date = new Date(this.group.updated_at);
    const zone = { locale: this.host.locale, timeZone: this.host.options.timeZone };
    this.time.textContent = relativeTime(date, zone);
    this.time.title = fullTime(date, zone);
  }
}
