// notifier widget strings, and the formatting that depends on language and time zone.
//
// A locale is a plain object of templates; `{name}` is filled in, and an entry may be an
// object keyed by plural category (Intl.PluralRules: zero, one, two, few, many, other).
// Add a language by passing `strings` (a whole locale, or only the keys to override).

/** @typedef {string | Object<string, string>} Entry a template, or one per plural category */

/** @type {Object<string, Object<string, any>>} */
export const LOCALES = {
  en: {
    title: "Notifications",
    bell: { zero: "Notifications", other: "Notifications, {count} unseen" },
    announce: { one: "{count} unseen notification", other: "{count} unseen notifications" },
    markAllRead: "Mark all as read",
    markRead: "Mark as read",
    markUnread: "Mark as unread",
    unread: "unread",
    archive: "Archive",
    close: "Close",
    empty: "You're all caught up",
    emptyHint: "New notifications will show up here.",
    error: "Notifications can't be reached right now.",
    retry: "Try again",
    reconnecting: "Offline. Reconnecting…",
    failed: "Notifications are unavailable: {reason}",
    loading: "Loading…",
    newItems: { one: "{count} new notification", other: "{count} new notifications" },
    two: "{first} and {second}",
    others: { one: "{first} and {count} other", other: "{first} and {count} others" },
    verbs: {
      like: "{actors} liked {target}",
      comment: "{actors} commented on {target}",
      follow: "{actors} started following {target}",
      mention: "{actors} mentioned {target}",
      share: "{actors} shared {target}",
      reply: "{actors} replied to {target}",
      invite: "{actors} invited {target}",
      post: "{actors} posted {target}",
      add: "{actors} added {target}",
      pin: "{actors} pinned {target}",
    },
    verb: "{actors}: {verb} {target}",
    // A target without `extra.title`, from its type ("photo:1" -> "your photo").
    yourThing: "your {thing}",
    aThing: "a {thing}",
    something: "something",
    things: { user: "you" },
    types: {},
    all: "All",
    archived: "Archived",
    unarchive: "Move back to the inbox",
    archiveAllRead: "Archive all read",
    more: "More actions",
    snoozeHour: "Snooze for 1 hour",
    snoozeTomorrow: "Snooze until tomorrow",
    remove: "Delete",
    done: "Done",
    settings: "Notification settings",
    settingsHint: "Untick what you do not want to be notified about.",
    settingsCategories: "Categories",
    settingsVerbs: "Activity",
    settingsChannels: "Beyond this inbox",
    channelEmail: "Email me a digest of what I miss",
    alwaysOn: "always on",
    saved: "Saved",
    back: "Back to notifications",
    categories: {},
    verbNames: {
      like: "Likes",
      comment: "Comments",
      follow: "New followers",
      mention: "Mentions",
      share: "Shares",
      reply: "Replies",
      invite: "Invitations",
      post: "Posts",
      add: "Additions",
      pin: "Pins",
    },
    emptyArchive: "Nothing archived.",
    offline: "offline",
    unavailable: "unavailable",
    pending: {
      one: "Offline: {count} change will be sent when you are back online.",
      other: "Offline: {count} changes will be sent when you are back online.",
    },
    actionFailed: "That change could not be saved. Try again.",
    tokenError: "Notifications are unavailable: the sign-in token could not be fetched.",
    originError: "Notifications are unavailable: the server does not accept this site ({origin}).",
    toastMore: { one: "and {count} more", other: "and {count} more" },
  },
  fr: {
    title: "Notifications",
    bell: { zero: "Notifications", other: "Notifications, {count} non vues" },
    announce: {
      one: "{count} notification non vue",
      other: "{count} notifications non vues",
    },
    markAllRead: "Tout marquer comme lu",
    markRead: "Marquer comme lu",
    markUnread: "Marquer comme non lu",
    unread: "non lu",
    archive: "Archiver",
    close: "Fermer",
    empty: "Vous êtes à jour",
    emptyHint: "Les nouvelles notifications apparaîtront ici.",
    error: "Les notifications sont injoignables pour le moment.",
    retry: "Réessayer",
    reconnecting: "Hors ligne. Reconnexion…",
    failed: "Notifications indisponibles : {reason}",
    loading: "Chargement…",
    newItems: { one: "{count} nouvelle notification", other: "{count} nouvelles notifications" },
    two: "{first} et {second}",
    others: { one: "{first} et {count} autre", other: "{first} et {count} autres" },
    verbs: {
      like: { one: "{actors} a aimé {target}", other: "{actors} ont aimé {target}" },
      comment: { one: "{actors} a commenté {target}", other: "{actors} ont commenté {target}" },
      follow: { one: "{actors} vous suit", other: "{actors} vous suivent" },
      mention: { one: "{actors} vous a mentionné", other: "{actors} vous ont mentionné" },
      share: { one: "{actors} a partagé {target}", other: "{actors} ont partagé {target}" },
      reply: { one: "{actors} a répondu à {target}", other: "{actors} ont répondu à {target}" },
      invite: { one: "{actors} a invité {target}", other: "{actors} ont invité {target}" },
      post: { one: "{actors} a publié {target}", other: "{actors} ont publié {target}" },
      add: { one: "{actors} a ajouté {target}", other: "{actors} ont ajouté {target}" },
      pin: { one: "{actors} a épinglé {target}", other: "{actors} ont épinglé {target}" },
    },
    verb: "{actors} : {verb} {target}",
    yourThing: "votre {thing}",
    aThing: "un(e) {thing}",
    something: "quelque chose",
    things: { user: "vous" },
    types: { post: "publication", comment: "commentaire", message: "message", file: "fichier" },
    all: "Tout",
    archived: "Archivées",
    unarchive: "Remettre dans la boîte de réception",
    archiveAllRead: "Archiver les lues",
    more: "Plus d'actions",
    snoozeHour: "Reporter d'une heure",
    snoozeTomorrow: "Reporter à demain",
    remove: "Supprimer",
    done: "Fait",
    settings: "Paramètres des notifications",
    settingsHint: "Décochez ce dont vous ne voulez pas être notifié.",
    settingsCategories: "Catégories",
    settingsVerbs: "Activité",
    settingsChannels: "Hors de cette boîte",
    channelEmail: "Recevoir par e-mail un résumé de ce que je manque",
    alwaysOn: "toujours actives",
    saved: "Enregistré",
    back: "Retour aux notifications",
    verbNames: {
      like: "J'aime",
      comment: "Commentaires",
      follow: "Nouveaux abonnés",
      mention: "Mentions",
      share: "Partages",
      reply: "Réponses",
      invite: "Invitations",
      post: "Publications",
      add: "Ajouts",
      pin: "Épinglages",
    },
    emptyArchive: "Aucune notification archivée.",
    offline: "hors ligne",
    unavailable: "indisponibles",
    pending: {
      one: "Hors ligne : {count} modification sera envoyée au retour de la connexion.",
      other: "Hors ligne : {count} modifications seront envoyées au retour de la connexion.",
    },
    actionFailed: "La modification n'a pas pu être enregistrée. Réessayez.",
    tokenError: "Notifications indisponibles : le jeton de connexion n'a pas pu être obtenu.",
    originError: "Notifications indisponibles : le serveur n'accepte pas ce site ({origin}).",
    toastMore: { one: "et {count} autre", other: "et {count} autres" },
  },
};

/**
 * The strings for `locale` ("fr-CA" falls back to "fr", then English), with overrides.
 * @param {string} locale
 * @param {Object<string, any>} [overrides]
 */
export function stringsFor(locale, overrides = {}) {
  const base = LOCALES[locale] ?? LOCALES[locale.split("-")[0]] ?? {};
  return {
    ...LOCALES.en,
    ...base,
    ...overrides,
    verbs: { ...LOCALES.en.verbs, ...base.verbs, ...overrides.verbs },
    verbNames: { ...LOCALES.en.verbNames, ...base.verbNames, ...overrides.verbNames },
    things: { ...base.things, ...overrides.things },
    types: { ...base.types, ...overrides.types },
    categories: { ...base.categories, ...overrides.categories },
  };
}

/**
 * The template of `entry` for `count` in `locale` (`zero` is used for 0 when given, as
 * English has no zero category but a bell label wants one).
 * @param {Entry} entry
 * @param {number} count
 * @param {string} locale
 */
export function plural(entry, count, locale) {
  if (typeof entry === "string") return entry;
  if (count === 0 && entry.zero) return entry.zero;
  return entry[new Intl.PluralRules(locale).select(count)] ?? entry.other;
}

/**
 * Fill `{name}` placeholders with strings.
 * @param {string} template
 * @param {Object<string, string|number>} values
 */
export function fill(template, values) {
  return template.replace(/\{(\w+)\}/g, (match, name) =>
    name in values ? String(values[name]) : match,
  );
}

/**
 * The calendar day of `date` in `timeZone`, as a day number (days since the epoch).
 * @param {Date} date
 * @param {string|undefined} timeZone
 */
function dayNumber(date, timeZone) {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone,
    year: "numeric",
    month: "numeric",
    day: "numeric",
  }).formatToParts(date);
  const get = (type) => Number(parts.find((p) => p.type === type).value);
  return Date.UTC(get("year"), get("month") - 1, get("day")) / 86_400_000;
}

/**
 * "just now", "5 minutes ago", "3 hours ago", "yesterday", "3 days ago", or a date. Days
 * are calendar days in `timeZone` (default: the browser's), so an item from 23:30 seen at
 * 00:10 is "40 minutes ago", and one from 22:00 seen at 01:00 is "yesterday".
 * @param {Date} date
 * @param {{now?: Date, locale?: string, timeZone?: string}} [options]
 */
export function relativeTime(date, { now = new Date(), locale = "en", timeZone } = {}) {
  const rtf = new Intl.RelativeTimeFormat(locale, { numeric: "auto" });
  const seconds = Math.max(0, (now.getTime() - date.getTime()) / 1000);
  if (seconds < 45) return rtf.format(0, "second");
  if (seconds < 3600) return rtf.format(-Math.max(1, Math.round(seconds / 60)), "minute");
  const days = dayNumber(now, timeZone) - dayNumber(date, timeZone);
  if (days <= 0) return rtf.format(-Math.floor(seconds / 3600), "hour");
  if (days < 7) return rtf.format(-days, "day");
  const sameYear = days < 300;
  return new Intl.DateTimeFormat(locale, {
    timeZone,
    month: "short",
    day: "numeric",
    ...(sameYear ? {} : { year: "numeric" }),
  }).format(date);
}

/**
 * The full date and time in the user's zone, for a tooltip.
 * @param {Date} date
 * @param {{locale?: string, timeZone?: string}} [options]
 */
export function fullTime(date, { locale = "en", timeZone } = {}) {
  return new Intl.DateTimeFormat(locale, {
    timeZone,
    dateStyle: "full",
    timeStyle: "short",
  }).format(date);
}
