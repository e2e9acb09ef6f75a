// notifier headless client: one user's notification feed, kept live over the websocket.
//
// For apps that draw their own UI (the <notifier-bell> widget is built on it). It speaks the
// HTTP client API (docs/api.md) and the websocket protocol (docs/realtime.md): it holds the
// items it has seen, merges every frame into them by id, reconnects with jittered backoff
// (or when a restarting server says to) and resumes from its last position, so nothing is
// lost while the socket is down.
// No dependencies, no build step.

/**
 * A notification group, exactly as the server sends it.
 * @typedef {Object} Group
 * @property {string} id
 * @property {string} verb
 * @property {Array<{id: string, actor: string, verb: string, object: string,
 *   target?: string|null, time: string, extra: Object<string, any>}>} activities
 *   newest first
 * @property {string[]} actors distinct actors of the shown activities, newest first
 * @property {number} actor_count
 * @property {number} activity_count
 * @property {string} created_at ISO time of the oldest activity
 * @property {string} updated_at ISO time of the newest activity
 * @property {string} position the newest activity's id: positions compare as strings
 * @property {boolean} is_seen
 * @property {boolean} is_read
 * @property {boolean} is_archived also true while snoozed
 * @property {string|null} [category] the group's category (config `[categories]`), if any
 * @property {boolean} [is_done] an action of it was taken (`mark {"done": true}`)
 * @property {string|null} [snoozed_until] ISO time it comes back at, while snoozed
 */

/**
 * Which groups a list shows, as the server's `status` query (docs/api.md): `inbox` (not
 * archived, not snoozed), `archived` (archived, not snoozed), `snoozed`, `unread`, `all`;
 * and a category (`null`: every category).
 * @typedef {{status?: "inbox"|"archived"|"snoozed"|"unread"|"all", category?: string|null}} Filter
 */

/** @typedef {{unseen: number, unread: number}} Counts */

/**
 * Why the connection is not live, when it is not: `token` (the token function failed),
 * `origin` (the server is there but refuses this page's origin: NOTIFIER_ALLOWED_ORIGINS),
 * `unreachable` (no answer), `refused` (a close code that retrying cannot heal), or null.
 * @typedef {"token"|"origin"|"unreachable"|"refused"|null} Problem
 */

/**
 * Where the connection stands: `connecting` (first connection), `live`, `reconnecting`
 * (lost, retrying with backoff), `paused` (a hidden tab let go of its socket), `failed` (the
 * server refused this client for good: a bad feed or a token that does not cover it).
 * @typedef {"idle"|"connecting"|"live"|"reconnecting"|"paused"|"failed"|"closed"} Status
 */

/**
 * @typedef {Object} ClientOptions
 * @property {() => (string|Promise<string>)} token returns a user token (from your backend,
 *   which gets it from `POST /v1/tokens`); called again when the token nears expiry or the
 *   server refuses it, so an expiring token is replaced without a page reload
 * @property {string} [server] notifier's base URL; default: where this module was loaded from
 * @property {string} [feed="notification"] the notification feed group
 * @property {number} [pageSize=20] items per page (first load and each "load more")
 * @property {number|false} [hiddenDisconnectMs=300000] a tab hidden this long closes its
 *   socket, and resumes when shown again; `false` keeps it open
 * @property {{min: number, max: number}} [backoff] reconnect delays, ms (full jitter)
 * @property {number} [pingMs=25000] application-level ping interval (the server closes an
 *   idle socket after `idle_timeout`, 75 s by default)
 * @property {boolean} [byCategory=false] keep `categoryCounts` (counts per category) fresh
 */

const DEFAULT_SERVER = new URL(".", import.meta.url).origin;
/** Close codes after which retrying cannot help (docs/realtime.md). */
const FATAL_CLOSES = new Set([4400, 4403, 4404]);
const TOKEN_EXPIRED = 4401;
/**
 * A close reason that says when to come back: a restarting server closes each socket with
 * 1012 `restart; retry in 3471 ms`, each with its own delay, so that its clients do not all
 * return in the same second (docs/realtime.md, close codes).
 */
const RETRY_IN = /\bretry in (\d+) ms\b/;
/** The longest announced delay honoured, ms (the server's window is at most an hour). */
const MAX_ANNOUNCED_MS = 3_600_000;
/** Refresh a token this long before it expires, seconds. */
const TOKEN_MARGIN = 30;
/** How often changes kept offline are tried again while nothing else sends them, ms. */
const FLUSH_RETRY_MS = 5_000;
/** What a local change returns to drop a group (a delete). */
const REMOVE = Symbol("remove");

/**
 * One user's notification feed, live. Read `items()`, `counts`, `status`; listen with
 * `on("change", ...)`; act with `markSeen()`, `markRead()`, `markArchived()`,
 * `markAllRead()`; page with `loadMore()`.
 */
export class NotifierClient {
  /** @param {ClientOptions} options */
  constructor(options) {
    if (typeof options?.token !== "function") {
      throw new TypeError("NotifierClient: options.token must be a function returning a token");
    }
    this.options = {
      server: DEFAULT_SERVER,
      feed: "notification",
      pageSize: 20,
      hiddenDisconnectMs: 300_000,
      backoff: { min: 500, max: 30_000 },
      pingMs: 25_000,
      ...options,
    };
    this.server = this.options.server.replace(/\/+$/, "");
    this.feed = this.options.feed;
    /** @type {Map<string, Group>} */
    this.groups = new Map();
    /** @type {Counts|null} */
    this.counts = null;
    /** @type {Status} */
    this.status = "idle";
    /** The reason for `failed`, or the last connection problem. */
    this.error = null;
    /** Newest position received: where a resume starts. */
    this.position = null;
    /** Oldest position held ("" = the whole feed; null = nothing yet). */
    this.oldest = null;
    /** The feed's `max_length` (from the server's welcome): the most items it keeps. */
    this.maxLength = null;
    /** Whether a first page has arrived (an empty feed counts). */
    this.loaded = false;
    /** Connections opened so far (the first one included). */
    this.connections = 0;
    /** The last `subscribe` message sent (a resume carries `position`). */
    this.lastSubscribe = null;
    /** @type {WebSocket|null} */
    this.socket = null;
    /** @type {Problem} */
    this.problem = null;
    /**
     * Changes made while the server could not be reached (offline): shown at once, sent in
     * order when it can be again (back online, or reconnected).
     * @type {Array<{method: string, path: string, body?: Object, change: Function}>}
     */
    this.pending = [];
    /** `{unseen, unread, categories: {name: {unseen, unread}}, uncategorized}` (byCategory). */
    this.categoryCounts = null;
    /** Lists other than the inbox (a category, the archive): pages read over HTTP. */
    this._views = new Map();
    this._listeners = new Map();
    this._token = null;
    this._tokenExpires = 0;
    this._attempt = 0;
    this._timers = { retry: 0, ping: 0, hidden: 0 };
    this._lastMessage = 0;
    this._loadingMore = null;
    this._stopped = false;
    this._onVisibility = () => this._visibilityChanged();
    this._onOnline = () => {
      this._flush();
      if (this.status === "reconnecting") this.reconnect();
    };
  }

  // -- events -------------------------------------------------------------------------------

  /**
   * Listen to `change` (any state change), `items` (new or updated items that arrived live:
   * `(groups)`), `status` (`(status, error)`), `counts` (`(counts)`) or `error` (`(error)`,
   * a failed HTTP call). Returns a function that removes the listener.
   * @param {"change"|"items"|"status"|"counts"|"error"} type
   * @param {Function} listener
   * @returns {() => void}
   */
  on(type, listener) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(listener);
    return () => this._listeners.get(type)?.delete(listener);
  }

  _emit(type, ...args) {
    for (const listener of this._listeners.get(type) ?? []) {
      try {
        listener(...args);
      } catch (error) {
        console.error(`notifier: a '${type}' listener failed`, error);
      }
    }
  }

  _changed() {
    this._emit("change", this);
  }

  _setStatus(status, error = null, problem = null) {
    if (status === "live") problem = null;
    if (status === this.status && error === this.error && problem === this.problem) return;
    this.status = status;
    this.error = error;
    this.problem = problem;
    this._emit("status", status, error);
    this._changed();
  }

  // -- reading state ------------------------------------------------------------------------

  /**
   * The items held, newest first: the inbox (not archived, not snoozed), or those a filter
   * keeps. For a filter other than the whole inbox, the pages `loadView` read are included
   * (the live copy of a group wins over the page's).
   * @param {Filter & {archived?: boolean}} [filter] `archived: true`: every item held
   * @returns {Group[]}
   */
  items({ archived = false, status = archived ? "all" : "inbox", category = null } = {}) {
    const now = Date.now();
    const all = new Map(this._views.get(viewKey(status, category))?.groups ?? []);
    for (const [id, group] of this.groups) all.set(id, group);
    return [...all.values()]
      .filter((g) => inStatus(g, status, now) && (category === null || g.category === category))
      .sort(byPosition);
  }

  /** Whether older items exist beyond those held (see `loadMore`). */
  get hasMore() {
    return this.oldest !== null && this.oldest !== "";
  }

  /**
   * Whether a list has older items to load (`loadView(filter, true)`).
   * @param {Filter} filter
   */
  viewHasMore({ status = "inbox", category = null } = {}) {
    const view = this._views.get(viewKey(status, category));
    return view ? view.next !== "" : this.hasMore;
  }

  /**
   * Read a list's first page over HTTP (or, with `more`, its next older page): a category's
   * items or the archive reach further back than the live window. Resolves to the number of
   * groups read.
   * @param {Filter} filter
   * @param {boolean} [more]
   * @returns {Promise<number>}
   */
  async loadView({ status = "inbox", category = null } = {}, more = false) {
    const key = viewKey(status, category);
    const view = this._views.get(key) ?? { groups: new Map(), next: null, loading: null };
    this._views.set(key, view);
    if (more && view.next === "") return 0;
    view.loading ??= (async () => {
      try {
        const query = new URLSearchParams({ limit: String(this.options.pageSize), status });
        if (category !== null) query.set("category", category);
        if (more && view.next) query.set("id_lt", view.next);
        const page = await this.request("GET", `?${query}`);
        if (!more) view.groups.clear();
        for (const group of page.groups ?? []) view.groups.set(group.id, group);
        view.next = page.next ?? "";
        for (const p of this.pending) this._applyLocal(p.change, view.groups);
        this._changed();
        return page.groups?.length ?? 0;
      } catch (error) {
        this._emit("error", error);
        throw error;
      } finally {
        view.loading = null;
      }
    })();
    return view.loading;
  }

  // -- lifecycle ----------------------------------------------------------------------------

  /**
   * Open the connection (and keep it open until `close()`). Resolves once the first page has
   * arrived; rejects only if the server refuses this client for good (`failed`).
   * @returns {Promise<NotifierClient>}
   */
  connect() {
    this._stopped = false;
    if (typeof document !== "undefined") {
      document.addEventListener("visibilitychange", this._onVisibility);
    }
    if (typeof window !== "undefined") window.addEventListener("online", this._onOnline);
    const ready = new Promise((resolve, reject) => {
      const off = this.on("change", () => {
        if (this.loaded) {
          off();
          resolve(this);
        } else if (this.status === "failed") {
          off();
          reject(new Error(this.error ?? "refused"));
        }
      });
    });
    if (!this.socket) this._open();
    return ready;
  }

  /** Close the connection for good (no reconnect). */
  close() {
    this._stopped = true;
    this._clearTimers();
    if (typeof document !== "undefined") {
      document.removeEventListener("visibilitychange", this._onVisibility);
    }
    if (typeof window !== "undefined") window.removeEventListener("online", this._onOnline);
    this._drop();
    this._setStatus("closed");
  }

  /** Drop the current socket (if any) and connect again now, resuming. */
  reconnect() {
    if (this._stopped) return;
    clearTimeout(this._timers.retry);
    this._drop();
    this._open();
  }

  _clearTimers() {
    clearTimeout(this._timers.flush);
    clearTimeout(this._timers.categories);
    this._timers.categories = 0;
    clearTimeout(this._timers.retry);
    clearInterval(this._timers.ping);
    clearTimeout(this._timers.hidden);
  }

  /** Forget the socket without triggering a reconnect from its close event. */
  _drop() {
    const socket = this.socket;
    this.socket = null;
    clearInterval(this._timers.ping);
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
      if (socket.readyState <= WebSocket.OPEN) socket.close(1000);
    }
  }

  async _open() {
    const status = this.connections === 0 && !this.problem ? "connecting" : "reconnecting";
    this._setStatus(status, this.error, this.problem);
    let token;
    try {
      token = await this.token();
    } catch (error) {
      this._retry(`no token: ${error.message ?? error}`, null, "token");
      return;
    }
    if (this._stopped || this.socket) return;
    const url = this.server.replace(/^http/, "ws") + "/v1/realtime";
    const socket = new WebSocket(url);
    this.socket = socket;
    this.connections += 1;
    let opened = false;
    socket.onopen = () => {
      opened = true;
      socket.send(JSON.stringify({ type: "auth", token }));
    };
    socket.onmessage = (event) => this._receive(JSON.parse(event.data));
    socket.onclose = (event) => this._closed(socket, event, opened);
  }

  async _closed(socket, event, opened) {
    if (socket !== this.socket) return;
    this.socket = null;
    clearInterval(this._timers.ping);
    if (this._stopped) return;
    if (FATAL_CLOSES.has(event.code)) {
      this._setStatus("failed", event.reason || `closed with ${event.code}`, "refused");
      return;
    }
    if (event.code === TOKEN_EXPIRED) this._token = null; // the next attempt gets a new one
    // A handshake that failed says nothing to the page (1006, no reason): ask the server
    // whether it is there at all, and whether it lets this origin in.
    const problem = opened ? "unreachable" : await probe(this.server);
    if (this._stopped || this.socket) return;
    if (problem === "origin") {
      console.error(
        `notifier: ${this.server} refuses this page's origin (${location.origin}); ` +
          "add it to the server's NOTIFIER_ALLOWED_ORIGINS",
      );
    }
    this._retry(event.reason || "connection lost", announcedDelay(event.reason), problem);
  }

  /**
   * Reconnect after the delay the server announced in its close reason (a restart), or
   * else after a full-jitter backoff: random in [0, min(max, min·2^attempt)]. An announced
   * delay is not a failure: it leaves the backoff where it was.
   * @param {string} reason
   * @param {number|null} [announced] ms
   */
  _retry(reason, announced = null, problem = "unreachable") {
    if (this._stopped) return;
    let wait;
    if (announced !== null) {
      wait = Math.min(announced, MAX_ANNOUNCED_MS);
    } else {
      const { min, max } = this.options.backoff;
      const ceiling = Math.min(max, min * 2 ** this._attempt);
      this._attempt += 1;
      wait = Math.random() * ceiling;
    }
    this._setStatus("reconnecting", reason, problem);
    clearTimeout(this._timers.retry);
    this._timers.retry = setTimeout(() => this._open(), wait);
  }

  _visibilityChanged() {
    const wait = this.options.hiddenDisconnectMs;
    if (wait === false || this._stopped) return;
    clearTimeout(this._timers.hidden);
    if (document.visibilityState === "hidden") {
      this._timers.hidden = setTimeout(() => {
        clearTimeout(this._timers.retry);
        this._drop();
        this._setStatus("paused");
      }, wait);
    } else if (this.status === "paused") {
      this._open();
    }
  }

  // -- frames -------------------------------------------------------------------------------

  _send(message) {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  _subscribe() {
    /** @type {Object<string, any>} */
    const message = { type: "subscribe", feed: this.feed, limit: this.options.pageSize };
    if (this.position) {
      message.position = this.position; // resume: the exact state since, in one frame
      message.oldest = this.oldest ?? "";
    } else {
      this.groups.clear(); // nothing to resume from: the answer replaces everything
      this.oldest = null;
    }
    this.lastSubscribe = message;
    this._send(message);
  }

  _receive(frame) {
    this._lastMessage = Date.now();
    switch (frame.type) {
      case "welcome":
        this._attempt = 0;
        this.maxLength = frame.feeds?.[this.feed]?.max_length ?? null;
        this._startPings(frame.idle_timeout);
        // Changes made offline go first, so the state the server answers with has them.
        if (this.pending.length) this._flush().finally(() => this._subscribe());
        else this._subscribe();
        return;
      case "sync":
        return this._applySync(frame);
      case "update":
        return this._applyUpdate(frame);
      case "removed":
        for (const id of frame.activity_ids) this._forget(id);
        return this._changed();
      case "counts":
        return this._applyCounts(frame.counts);
      case "refetch":
        this.groups.clear();
        this._views.clear();
        this.position = this.oldest = null;
        this._applyCounts(frame.counts);
        this._subscribe();
        return;
      default:
        return; // pong, and frame types added later
    }
  }

  _startPings(idleTimeout) {
    clearInterval(this._timers.ping);
    const every = Math.min(this.options.pingMs, (idleTimeout || 75) * 500);
    this._timers.ping = setInterval(() => {
      // A socket that has heard nothing for two intervals is dead even if the browser
      // has not noticed (a laptop waking up, a silently dropped NAT mapping).
      if (Date.now() - this._lastMessage > 2 * every + 5_000) this.reconnect();
      else this._send({ type: "ping" });
    }, every);
  }

  _applySync(frame) {
    const floor = frame.oldest ?? "";
    const before = new Map(this.groups);
    for (const [id, group] of this.groups) {
      if (group.position >= floor) this.groups.delete(id);
    }
    for (const group of frame.groups ?? []) this.groups.set(group.id, group);
    this.oldest = this.oldest === null ? floor : minPosition(this.oldest, floor);
    this._overlay();
    this._trim();
    this._advance(frame.position);
    this._applyCounts(frame.counts, false);
    const fresh = new Set(frame.new ?? []);
    const arrived = (frame.groups ?? []).filter(
      (g) => fresh.has(g.id) && before.get(g.id)?.position !== g.position,
    );
    this._live(this.loaded ? arrived : []);
  }

  _applyUpdate(frame) {
    const arrived = [];
    const floor = this.oldest ?? "";
    for (const group of frame.groups ?? []) {
      if (group.position < floor) continue; // below the window: not something we hold
      const known = this.groups.get(group.id);
      if (!known || group.position > known.position) arrived.push(group);
      this.groups.set(group.id, group);
    }
    this._overlay();
    const trimmed = this._trim();
    this._advance(frame.position);
    this._applyCounts(frame.counts, false);
    this._live(arrived.filter((g) => !trimmed.has(g.id)));
  }

  /**
   * Keep the `maxLength` items with the highest positions: the feed trims what an addition
   * pushes past its `max_length` in storage, and no frame names those items.
   * @returns {Set<string>} the ids dropped
   */
  _trim() {
    const dropped = new Set();
    if (this.maxLength === null || this.groups.size <= this.maxLength) return dropped;
    for (const group of [...this.groups.values()].sort(byPosition).slice(this.maxLength)) {
      this.groups.delete(group.id);
      dropped.add(group.id);
    }
    return dropped;
  }

  _live(arrived) {
    const first = !this.loaded;
    this.loaded = true;
    if (this.status !== "live") this._setStatus("live");
    if (arrived.length && !first) this._emit("items", arrived);
    this._changed();
  }

  _applyCounts(counts, notify = true) {
    if (!counts) return;
    this.counts = { unseen: counts.unseen, unread: counts.unread };
    this._emit("counts", this.counts);
    if (this.options.byCategory) this._countCategories();
    if (notify) this._changed();
  }

  /** Read the counts per category again, soon (one request for a burst of changes). */
  _countCategories() {
    if (this._timers.categories) return;
    this._timers.categories = setTimeout(async () => {
      this._timers.categories = 0;
      try {
        this.categoryCounts = await this.request("GET", "/counts?by=category");
        this._changed();
      } catch (error) {
        this._emit("error", error);
      }
    }, 150);
  }

  _advance(position) {
    if (position && (!this.position || position > this.position)) this.position = position;
  }

  // -- HTTP ---------------------------------------------------------------------------------

  /**
   * A user token, cached until shortly before it expires.
   * @param {boolean} [fresh] ask for a new one even if the cached one looks valid
   * @returns {Promise<string>}
   */
  async token(fresh = false) {
    const now = Date.now() / 1000;
    if (!fresh && this._token && this._tokenExpires - TOKEN_MARGIN > now) return this._token;
    const token = await this.options.token();
    if (typeof token !== "string" || !token) throw new Error("the token function gave no token");
    this._token = token;
    this._tokenExpires = tokenExpiry(token) ?? now + 300;
    return token;
  }

  /**
   * Call the client API; retries once with a fresh token on 401.
   * @param {string} method
   * @param {string} path below `/v1/me/feeds/{feed}`
   * @param {Object} [body]
   */
  request(method, path, body) {
    return this.call(method, `/v1/me/feeds/${encodeURIComponent(this.feed)}${path}`, body);
  }

  /**
   * Call any client API route (`/v1/me/...`); retries once with a fresh token on 401.
   * Network failures reject with `error.offline = true`.
   * @param {string} method
   * @param {string} path from the server's root
   * @param {Object} [body]
   */
  async call(method, path, body) {
    const url = `${this.server}${path}`;
    for (const fresh of [false, true]) {
      const token = await this.token(fresh);
      let response;
      try {
        response = await fetch(url, {
          method,
          headers: {
            Authorization: `Bearer ${token}`,
            ...(body ? { "Content-Type": "application/json" } : {}),
          },
          body: body ? JSON.stringify(body) : undefined,
          keepalive: method === "POST", // a mark survives the navigation that follows a click
        });
      } catch (error) {
        // fetch's own message ("Failed to fetch") is the browser's, not for users' eyes.
        throw Object.assign(new Error("the server could not be reached"), {
          offline: true,
          cause: error,
        });
      }
      if (response.status === 401 && !fresh) continue;
      const payload = await response.json().catch(() => null);
      if (!response.ok) {
        const message = payload?.error?.message ?? `HTTP ${response.status}`;
        throw Object.assign(new Error(message), { status: response.status, payload });
      }
      return payload;
    }
  }

  /**
   * Load the next page of older items over HTTP (infinite scroll), and tell the socket, so
   * later syncs keep them exact too. Resolves to the number of items added.
   * @returns {Promise<number>}
   */
  loadMore() {
    if (!this.hasMore) return Promise.resolve(0);
    this._loadingMore ??= (async () => {
      try {
        const below = this.oldest;
        const query = `?limit=${this.options.pageSize}&id_lt=${encodeURIComponent(below)}`;
        const page = await this.request("GET", query);
        let added = 0;
        for (const group of page.groups ?? []) {
          if (!this.groups.has(group.id)) added += 1;
          if (!this.groups.has(group.id) || group.position <= below) {
            this.groups.set(group.id, group);
          }
        }
        this.oldest = page.next ?? "";
        this._trim();
        this._applyCounts(page.counts, false);
        this._send({ type: "window", feed: this.feed, oldest: this.oldest });
        this._changed();
        return added;
      } catch (error) {
        this._emit("error", error);
        throw error;
      } finally {
        this._loadingMore = null;
      }
    })();
    return this._loadingMore;
  }

  /**
   * Mark every item up to the newest held as seen (what opening an inbox does). Items that
   * arrive meanwhile stay unseen: `up_to` bounds the mark.
   */
  markSeen() {
    if (!this.position) return Promise.resolve(this.counts);
    const upTo = this.position;
    return this._mark({ seen: true, all: true, up_to: upTo }, (g) =>
      g.position <= upTo ? { is_seen: true } : null,
    );
  }

  /**
   * Mark every item up to the newest held as read ("mark all as read"), or only those of
   * one category.
   * @param {{category?: string|null}} [filter]
   */
  markAllRead({ category = null } = {}) {
    if (!this.position) return Promise.resolve(this.counts);
    const upTo = this.position;
    const body = { read: true, all: true, up_to: upTo };
    if (category !== null) body.category = category;
    return this._mark(body, (g) =>
      g.position <= upTo && (category === null || g.category === category)
        ? { is_read: true, is_seen: true }
        : null,
    );
  }

  /**
   * Archive every read item of the inbox ("archive all read"), or only one category's.
   * @param {{category?: string|null}} [filter]
   */
  archiveAllRead({ category = null } = {}) {
    const body = { archived: true, all: true, status: "read" };
    if (category !== null) body.category = category;
    const now = Date.now();
    return this._mark(body, (g) =>
      g.is_read && inStatus(g, "inbox", now) && (category === null || g.category === category)
        ? { is_archived: true }
        : null,
    );
  }

  /**
   * Mark groups read (or unread with `read = false`).
   * @param {string[]} ids group ids
   * @param {boolean} [read]
   */
  markRead(ids, read = true) {
    const wanted = new Set(ids);
    return this._mark({ read, group_ids: ids }, (g) =>
      wanted.has(g.id) ? { is_read: read } : null,
    );
  }

  /**
   * Archive groups (or bring them back with `archived = false`).
   * @param {string[]} ids group ids
   * @param {boolean} [archived]
   */
  markArchived(ids, archived = true) {
    const wanted = new Set(ids);
    return this._mark({ archived, group_ids: ids }, (g) =>
      wanted.has(g.id) ? { is_archived: archived } : null,
    );
  }

  /**
   * Mark groups done (an action of theirs was taken), and read.
   * @param {string[]} ids group ids
   * @param {boolean} [done]
   */
  markDone(ids, done = true) {
    const wanted = new Set(ids);
    const body = done ? { done, read: true, group_ids: ids } : { done, group_ids: ids };
    return this._mark(body, (g) =>
      wanted.has(g.id) ? (done ? { is_done: true, is_read: true } : { is_done: false }) : null,
    );
  }

  /**
   * Hide groups until `until` (a Date); they come back unseen and unread then. `null` brings
   * them back now.
   * @param {string[]} ids group ids
   * @param {Date|null} until
   */
  snooze(ids, until) {
    const wanted = new Set(ids);
    const iso = until ? until.toISOString() : null;
    const flags = iso
      ? { is_archived: true, snoozed_until: iso }
      : { is_archived: false, snoozed_until: null };
    return this._mark({ group_ids: ids, until: iso }, (g) => (wanted.has(g.id) ? flags : null), {
      path: "/snooze",
    });
  }

  /**
   * Delete a group for good (every activity of it leaves this user's feed).
   * @param {string} id group id
   */
  remove(id) {
    return this._mark(undefined, (g) => (g.id === id ? REMOVE : null), {
      method: "DELETE",
      path: `/groups/${encodeURIComponent(id)}`,
    });
  }

  /**
   * The user's preferences: `{muted: {categories, verbs, actors}, categories: [{name,
   * critical}], channels: {email: [...]}, email}` (channels: categories not sent by email or
   * webhook, `*` for all; email: the digests' address, set by the app).
   */
  preferences() {
    return this.call("GET", "/v1/me/preferences");
  }

  /**
   * Replace what the user mutes (and, when given, the categories turned off per channel);
   * resolves to the preferences as stored. Channels left out are kept.
   * @param {{categories?: string[], verbs?: string[], actors?: string[]}} muted
   * @param {Record<string, string[]>} [channels]
   */
  savePreferences(muted, channels) {
    return this.call("PUT", "/v1/me/preferences", channels ? { muted, channels } : { muted });
  }

  /**
   * Apply a change locally at once (so the UI answers the click), then on the server; the
   * answer's counts are absolute, and the socket's next sync carries the server's truth.
   * While the server cannot be reached the change waits in `pending` (still shown) and is
   * sent when it can be; a change the server refuses is undone by resuming over the socket.
   * @returns {Promise<Counts|null>} the counts after it (as they were, while it waits)
   */
  async _mark(body, change, { method = "POST", path = "/mark" } = {}) {
    this._applyLocal(change);
    const waiting = { method, path, body, change };
    if (this.pending.length || globalThis.navigator?.onLine === false) {
      this._queue(waiting);
      return this.counts;
    }
    this._changed();
    try {
      this._received(await this.request(method, path, body));
      return this.counts;
    } catch (error) {
      if (error.offline) {
        this._queue(waiting);
        return this.counts;
      }
      this._emit("error", error);
      if (this.socket?.readyState === WebSocket.OPEN) this._subscribe();
      throw error;
    }
  }

  /**
   * Keep a change for later. Besides coming back online and reconnecting, a retry timer
   * sends it: a request can fail while the browser and the socket both look fine.
   */
  _queue(waiting) {
    this.pending.push(waiting);
    this._retryFlush();
    this._changed();
  }

  _retryFlush() {
    clearTimeout(this._timers.flush);
    if (!this._stopped) this._timers.flush = setTimeout(() => this._flush(), FLUSH_RETRY_MS);
  }

  /** Send the changes made offline, in order; stops at the first that still cannot go. */
  async _flush() {
    if (this._flushing || !this.pending.length) return;
    this._flushing = true;
    let refused = false;
    try {
      while (this.pending.length) {
        const { method, path, body } = this.pending[0];
        try {
          this._received(await this.request(method, path, body));
        } catch (error) {
          if (error.offline) {
            this._retryFlush();
            break;
          }
          refused = true;
          this._emit("error", error);
        }
        this.pending.shift();
      }
    } finally {
      this._flushing = false;
      if (refused && this.socket?.readyState === WebSocket.OPEN) this._subscribe();
      this._changed();
    }
  }

  /** A mark's answer is counts; a delete's is `{removed, counts}`. */
  _received(payload) {
    this._applyCounts(payload?.counts ?? payload);
  }

  /** Apply `change` to every group held (the live window and the lists read over HTTP). */
  _applyLocal(change, only = null) {
    for (const groups of only
      ? [only]
      : [this.groups, ...[...this._views.values()].map((v) => v.groups)]) {
      for (const [id, group] of groups) {
        const flags = change(group);
        if (flags === REMOVE) groups.delete(id);
        else if (flags) groups.set(id, { ...group, ...flags });
      }
    }
  }

  /** Frames from the server do not know of the changes still waiting: keep them shown. */
  _overlay() {
    for (const p of this.pending) this._applyLocal(p.change, this.groups);
  }

  /** Drop a group wherever it is held. */
  _forget(id) {
    this.groups.delete(id);
    for (const view of this._views.values()) view.groups.delete(id);
  }
}

/**
 * Whether `group` is in a list of `status` (the server's `status` query).
 * @param {Group} group
 * @param {string} status
 * @param {number} [now] ms
 */
export function inStatus(group, status, now = Date.now()) {
  const snoozed = Boolean(group.snoozed_until) && Date.parse(group.snoozed_until) > now;
  switch (status) {
    case "all":
      return true;
    case "archived":
      return group.is_archived && !snoozed;
    case "snoozed":
      return snoozed;
    case "unread":
      return !group.is_read && !group.is_archived && !snoozed;
    default:
      return !group.is_archived && !snoozed;
  }
}

function viewKey(status, category) {
  return `${status}|${category ?? ""}`;
}

function byPosition(a, b) {
  return a.position < b.position ? 1 : a.position > b.position ? -1 : 0;
}

/**
 * Why a websocket handshake failed, from two requests to `/healthz`: a CORS request the
 * browser refuses while an opaque one goes through means the server is up but does not
 * allow this page's origin (it refuses the websocket with 403 too); neither going through
 * means it cannot be reached.
 * @param {string} server
 * @returns {Promise<Problem>}
 */
async function probe(server) {
  const url = `${server}/healthz`;
  try {
    await fetch(url, { mode: "cors", cache: "no-store" });
    return "unreachable"; // the server answers, yet the socket fails: a proxy, say
  } catch {
    try {
      await fetch(url, { mode: "no-cors", cache: "no-store" });
      return "origin";
    } catch {
      return "unreachable";
    }
  }
}

/** The smaller of two positions, where "" means "the whole feed" and wins. */
function minPosition(a, b) {
  if (a === "" || b === "") return "";
  return a < b ? a : b;
}

/**
 * The delay a close reason asks for before reconnecting, ms (`retry in N ms`, whatever the
 * close code), or null when it names none.
 * @param {string|undefined} reason
 * @returns {number|null}
 */
export function announcedDelay(reason) {
  const match = RETRY_IN.exec(reason ?? "");
  return match ? Number(match[1]) : null;
}

/**
 * The `exp` claim of a JWT (seconds), or null when it cannot be read. Only used to refresh
 * early: the server is what checks tokens.
 * @param {string} token
 */
export function tokenExpiry(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const exp = JSON.parse(atob(part.padEnd(Math.ceil(part.length / 4) * 4, "="))).exp;
    return typeof exp === "number" ? exp : null;
  } catch {
    return null;
  }
}
