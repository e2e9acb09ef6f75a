// notifier widget: the preferences view inside the inbox panel. One checkbox per category
// and per verb, ticked when the user is notified of it; unticking mutes it
// (`PUT /v1/me/preferences`). Critical categories are shown ticked and cannot be muted.
// A user with an email address (set by the app) also gets one box for email digests.

import { el } from "./notifier-dom.js";

/**
 * The preferences view. `host` is the widget: its client, strings and options.
 */
export class Preferences {
  constructor(host, id) {
    this.host = host;
    this.saved = null;
    this.element = el("section", {
      class: "notifier-prefs",
      id: `${id}-prefs`,
      "aria-labelledby": `${id}-prefs-title`,
      "data-testid": "notifier-prefs",
    });
    this.element.hidden = true;
    this.heading = el("h3", { class: "notifier-prefs-title", id: `${id}-prefs-title` });
    this.hint = el("p", { class: "notifier-prefs-hint" });
    this.form = el("div", { class: "notifier-prefs-form" });
    this.status = el("p", {
      class: "notifier-prefs-status",
      role: "status",
      "data-testid": "notifier-prefs-status",
    });
    this.back = el("button", {
      type: "button",
      class: "notifier-link",
      "data-testid": "notifier-prefs-back",
    });
    this.element.append(this.heading, this.hint, this.form, this.status, this.back);
    this.back.addEventListener("click", () => host.showPreferences(false));
  }

  /** Fetch the preferences and draw them. */
  async load() {
    this.label();
    this.status.textContent = this.host.strings.loading;
    try {
      this.saved = await this.host.client.preferences();
      this.status.textContent = "";
      this.draw();
    } catch (error) {
      this.status.textContent = this.host._message(error);
    }
  }

  label() {
    const s = this.host.strings;
    this.heading.textContent = s.settings;
    this.hint.textContent = s.settingsHint;
    this.back.textContent = s.back;
    if (this.saved) this.draw();
  }

  draw() {
    const s = this.host.strings;
    const muted = this.saved.muted ?? {};
    const categories = this.saved.categories ?? [];
    const verbs = new Set([...(this.host.options.verbs ?? []), ...(muted.verbs ?? [])]);
    for (const group of this.host.client.items({ status: "all" })) verbs.add(group.verb);
    this.form.replaceChildren();
    if (categories.length) {
      this.form.append(
        this._fieldset(
          s.settingsCategories,
          "categories",
          categories.map((c) => ({
            name: c.name,
            label: this.host._categoryName(c.name),
            fixed: c.critical,
          })),
          new Set(muted.categories ?? []),
        ),
      );
    }
    if (verbs.size) {
      this.form.append(
        this._fieldset(
          s.settingsVerbs,
          "verbs",
          [...verbs].sort().map((v) => ({ name: v, label: s.verbNames[v] ?? v, fixed: false })),
          new Set(muted.verbs ?? []),
        ),
      );
    }
    if (this.saved.email) {
      // Digests go to an address only the app knows: no address, nothing to turn off.
      const off = new Set((this.saved.channels ?? {}).email ?? []);
      this.form.append(
        this._fieldset(
          s.settingsChannels,
          "channels",
          [{ name: "email", label: s.channelEmail, fixed: false }],
          off.has("*") ? new Set(["email"]) : new Set(),
        ),
      );
    }
  }

  _fieldset(legend, kind, entries, muted) {
    const s = this.host.strings;
    const fieldset = el("fieldset", { class: "notifier-prefs-set" });
    fieldset.append(el("legend", {}, legend));
    for (const entry of entries) {
      const box = el("input", {
        type: "checkbox",
        "data-kind": kind,
        "data-name": entry.name,
        "data-testid": `notifier-pref-${kind}-${entry.name}`,
      });
      box.checked = entry.fixed || !muted.has(entry.name);
      box.disabled = entry.fixed;
      const row = el("label", { class: "notifier-prefs-row" });
      row.append(box, ` ${entry.label}`);
      if (entry.fixed)
        row.append(el("span", { class: "notifier-prefs-fixed" }, ` (${s.alwaysOn})`));
      box.addEventListener("change", () => this.save());
      fieldset.append(row);
    }
    return fieldset;
  }

  /** Send what the boxes say (actors muted elsewhere are kept, and categories turned off
   * for a channel by the app, but for the "all" the email box stands for). */
  async save() {
    const muted = { categories: [], verbs: [], actors: this.saved?.muted?.actors ?? [] };
    let channels;
    for (const box of this.form.querySelectorAll("input[data-kind]")) {
      if (box.dataset.kind === "channels") {
        const off = ((this.saved?.channels ?? {}).email ?? []).filter((c) => c !== "*");
        channels = { email: box.checked ? off : ["*", ...off] };
      } else if (!box.checked && !box.disabled) {
        muted[box.dataset.kind].push(box.dataset.name);
      }
    }
    this.status.textContent = "";
    try {
      this.saved = await this.host.client.savePreferences(muted, channels);
      this.status.textContent = this.host.strings.saved;
    } catch (error) {
      this.status.textContent = this.host._message(error);
      if (this.saved) this.draw(); // back to what is stored
    }
  }
}
