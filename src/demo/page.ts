/**
 * The demo console's static assets as strings: the HTML page, its stylesheet
 * and its script. Strings (not files read at run time) so that `deno compile`
 * embeds them. The script is plain browser JavaScript without template
 * literals, so it needs no escaping inside this module.
 *
 * @module
 */

/** A demo person offered by the console's picker (agents and customers have separate ids). */
export interface DemoUser {
  kind: "agent" | "client";
  id: number;
  role: "admin" | "agent" | "client";
  /** Department ids (agents). */
  departments: number[];
  firstName: string;
  lastName: string;
}

/** A chat group the console suggests joining (the client id is needed to send). */
export interface DemoGroup {
  id: number;
  clientId: number;
  agentId: number | null;
  departmentId: number | null;
  status: string | null;
}

/** What the page is told at load time (embedded as a JSON data block). */
export interface DemoPageData {
  users: DemoUser[];
  groups: DemoGroup[];
  /** Whether `POST /dev/login` is available (development only). */
  devLogin: boolean;
}

/** JSON for a `<script type="application/json">` block: `<`, `>` and `&` escaped. */
function jsonForHtml(value: unknown): string {
  return JSON.stringify(value).replace(/</g, "\\u003c").replace(/>/g, "\\u003e").replace(
    /&/g,
    "\\u0026",
  );
}

/** The console's HTML page, with the demo users and groups embedded as JSON. */
export function demoHtml(data: DemoPageData): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Servana realtime · demo console</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/demo.css">
<script type="application/json" id="demo-data">${jsonForHtml(data)}</script>
<script src="/socket.io.min.js" defer></script>
<script src="/demo.js" defer></script>
</head>
<body>
<header class="bar">
  <h1>Servana realtime <span>demo console</span></h1>
  <form id="login-form" class="login">
    <label for="user-select">Demo user</label>
    <select id="user-select"></select>
    <button id="login" type="submit">Log in &amp; connect</button>
    <button id="logout" type="button" class="secondary" disabled>Disconnect</button>
  </form>
  <div id="status" class="pill off" role="status">offline</div>
</header>
<div id="alert" class="alert" role="alert" hidden></div>
<main class="grid">
  <section class="card" id="presence-card">
    <h2>Online users <small id="online-count"></small></h2>
    <ul id="online-list" class="people"><li class="empty">Not connected</li></ul>
    <div id="stats-card" hidden>
      <h2>Room stats <small>admin</small></h2>
      <dl id="stats" class="stats"><dt>rooms</dt><dd>–</dd></dl>
      <button id="get-stats" type="button" class="secondary">Refresh stats</button>
    </div>
  </section>
  <section class="card chat" id="chat-card">
    <h2>Chat <small id="room-info">not in a group</small></h2>
    <form id="join-form" class="join">
      <span id="group-buttons" class="suggest"></span>
      <input id="group-input" type="number" min="1" placeholder="group id" aria-label="Chat group id">
      <button id="join" type="submit" disabled>Join</button>
      <button id="leave" type="button" class="secondary" disabled>Leave</button>
    </form>
    <ol id="messages" class="messages"></ol>
    <div id="typing" class="typing" aria-live="polite"></div>
    <form id="composer" class="composer">
      <input id="composer-input" type="text" maxlength="5000" autocomplete="off"
        placeholder="Join a chat group to send messages" aria-label="Message" disabled>
      <button id="send" type="submit" disabled>Send</button>
    </form>
  </section>
  <section class="card" id="log-card">
    <h2>Events &amp; errors <button id="clear-log" type="button" class="link">clear</button></h2>
    <ol id="log" class="log"></ol>
  </section>
</main>
<footer class="foot">Cookie auth via <code>POST /dev/login</code> · socket.io client served by this server ·
  open a second browser profile (or a private window) to chat as another user.</footer>
</body>
</html>
`;
}

/** The console's stylesheet. */
export const DEMO_CSS = `:root {
  --bg: #f4f6f9; --card: #fff; --ink: #1d2430; --muted: #6b7585; --line: #e1e5eb;
  --brand: #2f6fde; --brand-ink: #fff; --ok: #1f9d55; --warn: #b7791f; --bad: #d64545;
  --mine: #e8f0fe; --theirs: #f1f3f6;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink); height: 100vh; display: flex; flex-direction: column; }
h1 { font-size: 17px; margin: 0; white-space: nowrap; }
h1 span { color: var(--muted); font-weight: 400; }
h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); margin: 0 0 10px; display: flex; align-items: center; gap: 8px; }
h2 small { text-transform: none; letter-spacing: 0; font-weight: 400; }
button { font: inherit; border: 0; border-radius: 6px; padding: 6px 12px; background: var(--brand); color: var(--brand-ink); cursor: pointer; }
button:disabled { opacity: .45; cursor: default; }
button.secondary { background: var(--theirs); color: var(--ink); border: 1px solid var(--line); }
button.link { background: none; color: var(--brand); padding: 0; margin-left: auto; text-transform: none; letter-spacing: 0; }
input, select { font: inherit; padding: 6px 8px; border: 1px solid var(--line); border-radius: 6px; background: #fff; color: var(--ink); }
.bar { display: flex; align-items: center; gap: 16px; padding: 10px 18px; background: var(--card); border-bottom: 1px solid var(--line); flex-wrap: wrap; }
.login { display: flex; align-items: center; gap: 8px; margin-left: auto; }
.login label { color: var(--muted); }
.pill { padding: 3px 10px; border-radius: 999px; font-size: 12px; background: var(--theirs); color: var(--muted); white-space: nowrap; }
.pill.on { background: #e3f5ea; color: var(--ok); }
.pill.off { background: #fbe9e9; color: var(--bad); }
.pill.wait { background: #fdf3e1; color: var(--warn); }
.alert { margin: 10px 18px 0; padding: 8px 12px; border-radius: 6px; background: #fdf3e1; color: #7a4f0e; border: 1px solid #f3d9a4; }
.alert.bad { background: #fbe9e9; color: #8a2424; border-color: #f0c0c0; }
.grid { display: grid; grid-template-columns: 240px minmax(320px, 1fr) 320px; grid-template-rows: minmax(0, 1fr); gap: 14px; padding: 14px 18px; flex: 1; min-height: 0; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 14px; min-width: 0; min-height: 0; display: flex; flex-direction: column; }
.people { list-style: none; margin: 0 0 14px; padding: 0; }
.people li { display: flex; align-items: center; gap: 8px; padding: 5px 0; border-bottom: 1px solid var(--line); }
.people li:last-child { border-bottom: 0; }
.people .dot { width: 8px; height: 8px; border-radius: 50%; background: var(--ok); flex: none; }
.people .role, .msg .role { font-size: 11px; color: var(--muted); border: 1px solid var(--line); border-radius: 4px; padding: 0 4px; }
.people .me { font-size: 11px; color: var(--brand); }
.empty { color: var(--muted); font-style: italic; }
.stats { display: grid; grid-template-columns: auto 1fr; gap: 2px 10px; margin: 0 0 8px; }
.stats dt { color: var(--muted); } .stats dd { margin: 0; font-weight: 600; }
.join { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; margin-bottom: 10px; }
.join input { width: 110px; }
.suggest { display: flex; gap: 6px; flex-wrap: wrap; }
.suggest button { background: var(--theirs); color: var(--ink); border: 1px solid var(--line); padding: 4px 9px; }
.suggest button.closed { color: var(--muted); text-decoration: line-through; }
.messages { list-style: none; margin: 0; padding: 8px; flex: 1; overflow-y: auto; background: #fafbfc; border: 1px solid var(--line); border-radius: 8px; min-height: 0; display: flex; flex-direction: column; gap: 6px; }
.msg { max-width: 78%; padding: 6px 10px; border-radius: 10px; background: var(--theirs); align-self: flex-start; }
.msg.mine { background: var(--mine); align-self: flex-end; }
.msg .meta { display: flex; gap: 6px; align-items: center; font-size: 12px; color: var(--muted); }
.msg .name { font-weight: 600; color: var(--ink); }
.msg .text { white-space: pre-wrap; overflow-wrap: anywhere; }
.system { align-self: center; font-size: 12px; color: var(--muted); }
.typing { min-height: 20px; font-size: 12px; color: var(--muted); font-style: italic; padding: 4px 2px; }
.composer { display: flex; gap: 8px; }
.composer input { flex: 1; }
.log { list-style: none; margin: 0; padding: 0; font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, monospace; overflow-y: auto; flex: 1; min-height: 0; }
.log li { padding: 4px 0; border-bottom: 1px dashed var(--line); overflow-wrap: anywhere; }
.log .ev { font-weight: 600; }
.log .out .ev { color: var(--brand); }
.log .err { color: var(--bad); }
.log .warn { color: var(--warn); }
.log time { color: var(--muted); margin-right: 6px; }
.foot { padding: 6px 18px 12px; color: var(--muted); font-size: 12px; }
code { font-size: 12px; }
@media (max-width: 980px) {
  body { height: auto; }
  .grid { grid-template-columns: 1fr; grid-template-rows: none; }
  .messages { height: 50vh; flex: none; }
  .log { max-height: 40vh; }
}
`;

/** The console's browser script (uses the global `io` of the socket.io bundle). */
export const DEMO_JS = `(function () {
  "use strict";

  var HEARTBEAT_MS = 20000;
  var TYPING_REPEAT_MS = 2000;
  var TYPING_IDLE_MS = 3000;
  var TYPING_SHOWN_MS = 8000;
  var LOG_MAX = 200;

  var data = JSON.parse(document.getElementById("demo-data").textContent);
  var state = {
    user: null,
    socket: null,
    heartbeat: null,
    group: null,
    seen: new Set(),
    typingSentAt: 0,
    typingIdle: null,
    typers: new Map(),
    alertTimer: null,
    room: null,
  };

  function el(id) {
    return document.getElementById(id);
  }

  function make(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Chat text arrives as the person typed it, markup removed; it is always
  // shown with textContent, never as HTML.

  // agents and customers have separate ids: a person is (kind, id)
  function kindOf(userType) {
    return userType === "client" ? "client" : "agent";
  }

  function userByKey(kind, id) {
    for (var i = 0; i < data.users.length; i++) {
      if (data.users[i].kind === kind && data.users[i].id === id) return data.users[i];
    }
    return null;
  }

  function displayName(id, userType) {
    var user = userByKey(kindOf(userType), id);
    if (user) return (user.firstName + " " + user.lastName).trim() || (user.role + " " + id);
    return (userType || "user") + " " + id;
  }

  function isMe(id, userType) {
    return !!state.user && state.user.id === id && state.user.kind === kindOf(userType);
  }

  function groupById(id) {
    for (var i = 0; i < data.groups.length; i++) {
      if (data.groups[i].id === id) return data.groups[i];
    }
    return null;
  }

  function first(args) {
    // with connection state recovery, broadcasts carry a trailing offset argument
    return args.length ? args[0] : undefined;
  }

  function clock() {
    return new Date().toLocaleTimeString([], { hour12: false });
  }

  function compact(value) {
    if (value === undefined) return "";
    var text;
    try {
      text = JSON.stringify(value);
    } catch (e) {
      text = String(value);
    }
    return text.length > 240 ? text.slice(0, 240) + "…" : text;
  }

  function log(kind, name, payload) {
    var list = el("log");
    var item = make("li", kind);
    item.appendChild(make("time", "", clock()));
    item.appendChild(make("span", "ev", name));
    if (payload !== undefined) item.appendChild(document.createTextNode(" " + compact(payload)));
    list.insertBefore(item, list.firstChild);
    while (list.children.length > LOG_MAX) list.removeChild(list.lastChild);
  }

  function showAlert(text, bad, forMs) {
    var box = el("alert");
    box.textContent = text;
    box.className = bad ? "alert bad" : "alert";
    box.hidden = false;
    clearTimeout(state.alertTimer);
    state.alertTimer = setTimeout(function () {
      box.hidden = true;
    }, forMs || 6000);
  }

  function showError(payload) {
    var code = (payload && payload.code) || "ERROR";
    var message = (payload && payload.message) || String(payload);
    log("err", "error", payload);
    if (code === "RATE_LIMIT_EXCEEDED") {
      var retry = payload.details && payload.details.retryAfterMs;
      var seconds = typeof retry === "number" ? Math.max(1, Math.ceil(retry / 1000)) : null;
      showAlert(
        "Rate limit: " + message + (seconds ? " — retry in " + seconds + " s" : ""),
        false,
        typeof retry === "number" ? Math.min(retry, 60000) : 6000,
      );
    } else {
      showAlert(code + ": " + message, true);
    }
  }

  function setStatus(text, kind) {
    var pill = el("status");
    pill.textContent = text;
    pill.className = "pill " + kind;
  }

  function setConnected(connected) {
    el("logout").disabled = !state.socket;
    el("join").disabled = !connected;
    el("leave").disabled = !connected || state.group === null;
    var canSend = connected && state.group !== null;
    el("composer-input").disabled = !canSend;
    el("send").disabled = !canSend;
    el("composer-input").placeholder = canSend
      ? "Message #" + state.group
      : "Join a chat group to send messages";
    var buttons = el("group-buttons").querySelectorAll("button");
    for (var i = 0; i < buttons.length; i++) buttons[i].disabled = !connected;
  }

  // ---- user picker and login -------------------------------------------

  function fillUsers() {
    var select = el("user-select");
    var agentChosen = false; // an agent is the default choice
    for (var i = 0; i < data.users.length; i++) {
      var u = data.users[i];
      var option = make("option", "", u.role + " · " + (u.firstName + " " + u.lastName).trim() + " (" + u.kind + " " + u.id + ")");
      option.value = u.kind + ":" + u.id;
      if (u.role === "agent" && !agentChosen) {
        option.selected = true;
        agentChosen = true;
      }
      select.appendChild(option);
    }
    if (!data.devLogin) {
      el("login").disabled = true;
      showAlert("POST /dev/login is disabled (APP_ENV is not development): the demo cannot log in.", true, 600000);
    }
  }

  function suggestGroups() {
    var box = el("group-buttons");
    box.textContent = "";
    var user = state.user;
    if (!user) return;
    for (var i = 0; i < data.groups.length; i++) {
      var g = data.groups[i];
      // the access rule: customers their own, agents assigned or of their departments, admins all
      var mine = user.role === "admin" ||
        (user.kind === "client"
          ? g.clientId === user.id
          : g.agentId === user.id ||
            (g.departmentId !== null && user.departments.indexOf(g.departmentId) >= 0));
      if (!mine) continue;
      var button = make("button", g.status === "resolved" ? "closed" : "", "#" + g.id);
      button.type = "button";
      button.title = "Join chat group " + g.id + " (" + g.status + ")";
      button.dataset.group = String(g.id);
      button.addEventListener("click", function (event) {
        join(Number(event.currentTarget.dataset.group));
      });
      box.appendChild(button);
    }
  }

  function login(event) {
    event.preventDefault();
    var choice = el("user-select").value.split(":");
    disconnect(false);
    setStatus("logging in…", "wait");
    fetch("/dev/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ kind: choice[0], id: Number(choice[1]) }),
      credentials: "same-origin",
    }).then(function (res) {
      return res.json().catch(function () {
        return {};
      }).then(function (body) {
        if (!res.ok) {
          setStatus("offline", "off");
          showError({ code: body.code || "LOGIN_FAILED", message: body.message || "Login failed (" + res.status + ")" });
          return;
        }
        // the token is in the HttpOnly cookie now; the page never keeps it
        state.user = body.person;
        log("out", "POST /dev/login", { kind: body.person.kind, id: body.person.id, role: body.person.role });
        suggestGroups();
        el("stats-card").hidden = state.user.role !== "admin";
        connect();
      });
    }, function (error) {
      setStatus("offline", "off");
      showError({ code: "NETWORK", message: "Login request failed: " + error });
    });
  }

  // ---- socket ----------------------------------------------------------

  function emit(event, payload, onOk) {
    var socket = state.socket;
    if (!socket) return;
    log("out", "→ " + event, payload);
    socket.emit(event, payload, function (ack) {
      // failures arrive as the "error" event too, which shows them
      if (ack && ack.ok && onOk) onOk(ack);
    });
  }

  function connect() {
    var user = state.user;
    var socket = io({ withCredentials: true });
    state.socket = socket;
    setStatus("connecting…", "wait");
    setConnected(false);

    socket.on("connect", function () {
      var engine = socket.io.engine;
      setStatus(displayName(user.id, user.role) + " · " + engine.transport.name, "on");
      engine.once("upgrade", function (transport) {
        if (socket.connected) setStatus(displayName(user.id, user.role) + " · " + transport.name, "on");
      });
      log("", "connect", { id: socket.id, recovered: socket.recovered });
      setConnected(true);
      emit("userOnline", { userId: user.id, userType: user.role }, function () {
        // asked once this user counts as online, so the stats include it
        if (user.role === "admin") emit("getRoomStats");
      });
      emit("getOnlineUsers");
      if (state.group !== null && !socket.recovered) join(state.group);
      startHeartbeat();
    });
    socket.on("connect_error", function (err) {
      var payload = err && err.data ? err.data : { code: "CONNECT_ERROR", message: String(err && err.message) };
      setStatus(socket.active ? "reconnecting…" : "refused", socket.active ? "wait" : "off");
      showError(payload);
    });
    socket.on("disconnect", function (reason) {
      setStatus("disconnected (" + reason + ")", socket.active ? "wait" : "off");
      log("warn", "disconnect", reason);
      setConnected(false);
      stopHeartbeat();
      clearTypers();
    });

    socket.onAny(function (event) {
      var quiet = event === "error" || event === "receiveMessage";
      if (!quiet) log("", "← " + event, first(Array.prototype.slice.call(arguments, 1)));
    });
    socket.on("error", function () {
      showError(first(arguments));
    });
    socket.on("onlineUsersUpdate", function () {
      var payload = first(arguments);
      renderOnline(payload && payload.onlineUsers);
    });
    socket.on("onlineUsersList", function () {
      renderOnline(first(arguments));
    });
    socket.on("joinedRoom", function () {
      var payload = first(arguments);
      state.room = { id: payload.chatGroupId, status: payload.roomInfo.status, members: payload.roomInfo.memberCount };
      renderRoomInfo();
    });
    socket.on("userJoined", function () {
      var p = first(arguments);
      if (!p || p.chatGroupId !== state.group) return;
      systemLine(displayName(p.userId, p.userType) + " joined");
      if (state.room && state.room.id === p.chatGroupId) state.room.members++;
      renderRoomInfo();
    });
    socket.on("userLeft", function () {
      var p = first(arguments);
      if (!p || p.chatGroupId !== state.group) return;
      systemLine(displayName(p.userId, p.userType) + " left");
      removeTyper(p.userType, p.userId);
      if (state.room && state.room.id === p.chatGroupId) state.room.members = Math.max(1, state.room.members - 1);
      renderRoomInfo();
    });
    socket.on("receiveMessage", function () {
      var m = first(arguments);
      log("", "← receiveMessage", { chat_id: m.chat_id, chatGroupId: m.chatGroupId });
      if (m.chatGroupId !== state.group) return;
      if (m.sender) removeTyper(m.sender_type, m.sender.userId);
      addMessage(m);
    });
    socket.on("typing", function () {
      var p = first(arguments);
      if (p && p.chatGroupId === state.group) addTyper(p.userType, p.userId);
    });
    socket.on("stopTyping", function () {
      var p = first(arguments);
      if (p && p.chatGroupId === state.group) removeTyper(p.userType, p.userId);
    });
    socket.on("roomStatsUpdate", function () {
      renderStats(first(arguments));
    });
    socket.on("tokenExpiring", function () {
      showAlert("Session token expires soon: log in again to renew it.", false, 15000);
    });
    socket.on("forcedDisconnect", function () {
      var p = first(arguments);
      showAlert("Disconnected by an administrator: " + (p && p.reason), true, 15000);
    });
  }

  function disconnect(announce) {
    var socket = state.socket;
    if (!socket) return;
    if (announce && socket.connected && state.user) {
      emit("userOffline", { userId: state.user.id });
    }
    stopHeartbeat();
    socket.disconnect();
    state.socket = null;
    state.group = null;
    state.seen.clear();
    clearTypers();
    el("messages").textContent = "";
    state.room = null;
    renderRoomInfo();
    renderOnline(null);
    setConnected(false);
    setStatus("offline", "off");
  }

  function startHeartbeat() {
    stopHeartbeat();
    state.heartbeat = setInterval(function () {
      if (state.socket && state.socket.connected) {
        emit("userHeartbeat", { userId: state.user.id, timestamp: Date.now() });
      }
    }, HEARTBEAT_MS);
  }

  function stopHeartbeat() {
    clearInterval(state.heartbeat);
    state.heartbeat = null;
  }

  // ---- presence and stats ---------------------------------------------

  function renderOnline(users) {
    var list = el("online-list");
    list.textContent = "";
    if (!users) {
      list.appendChild(make("li", "empty", "Not connected"));
      el("online-count").textContent = "";
      return;
    }
    el("online-count").textContent = String(users.length);
    if (!users.length) list.appendChild(make("li", "empty", "Nobody visible online"));
    var order = { admin: 0, agent: 1, client: 2 };
    users.slice().sort(function (a, b) {
      return (order[a.userType] - order[b.userType]) || (a.userId - b.userId);
    }).forEach(function (u) {
      var item = make("li");
      item.dataset.person = kindOf(u.userType) + ":" + u.userId;
      item.title = "last seen " + u.lastSeen;
      item.appendChild(make("span", "dot"));
      item.appendChild(make("span", "name", displayName(u.userId, u.userType)));
      item.appendChild(make("span", "role", u.userType));
      if (isMe(u.userId, u.userType)) item.appendChild(make("span", "me", "you"));
      list.appendChild(item);
    });
  }

  function renderStats(stats) {
    var box = el("stats");
    box.textContent = "";
    var rows = [
      ["rooms", stats.totalRooms],
      ["active", stats.activeRooms],
      ["online", stats.totalUsers],
      ["at", new Date(stats.timestamp).toLocaleTimeString([], { hour12: false })],
    ];
    rows.forEach(function (row) {
      box.appendChild(make("dt", "", row[0]));
      box.appendChild(make("dd", "", String(row[1])));
    });
  }

  // ---- chat -------------------------------------------------------------

  function join(groupId) {
    if (!state.socket || !state.socket.connected || !(groupId > 0)) return;
    emit("joinChatGroup", { groupId: groupId, userType: state.user.role, userId: state.user.id }, function (ack) {
      // the previous group is left only once the new one is joined: a refused
      // join (ACCESS_DENIED, ROOM_INACTIVE, ...) keeps the current chat
      var changed = state.group !== ack.chatGroupId;
      if (changed && state.group !== null) {
        stopTyping();
        emit("leaveRoom", { chatGroupId: state.group });
      }
      state.group = ack.chatGroupId;
      renderRoomInfo();
      el("group-input").value = String(ack.chatGroupId);
      if (changed) {
        state.seen.clear();
        clearTypers();
        el("messages").textContent = "";
      }
      setConnected(true);
      emit("getMessages", { chatGroupId: ack.chatGroupId, limit: 50 }, function (history) {
        if (history.chatGroupId !== state.group) return;
        history.messages.forEach(addMessage);
      });
    });
  }

  function leave() {
    if (state.group === null) return;
    stopTyping();
    emit("leaveRoom", { chatGroupId: state.group });
    state.group = null;
    state.seen.clear();
    clearTypers();
    el("messages").textContent = "";
    state.room = null;
    renderRoomInfo();
    setConnected(!!(state.socket && state.socket.connected));
  }

  function addMessage(m) {
    if (state.seen.has(m.chat_id)) return;
    state.seen.add(m.chat_id);
    var senderId = m.sender ? m.sender.userId : null;
    var mine = senderId !== null && isMe(senderId, m.sender_type);
    var item = make("li", mine ? "msg mine" : "msg");
    item.dataset.chatId = String(m.chat_id);
    var meta = make("div", "meta");
    var profile = m.sender && m.sender.profile;
    var name = profile && (profile.prof_firstname || profile.prof_lastname)
      ? (profile.prof_firstname + " " + profile.prof_lastname).trim()
      : displayName(senderId, m.sender_type);
    meta.appendChild(make("span", "name", name));
    meta.appendChild(make("span", "role", m.sender_type));
    meta.appendChild(make("time", "", new Date(m.chat_created_at).toLocaleTimeString([], { hour12: false })));
    item.appendChild(meta);
    item.appendChild(make("div", "text", m.chat_message));
    var list = el("messages");
    list.appendChild(item);
    list.scrollTop = list.scrollHeight;
  }

  function renderRoomInfo() {
    var room = state.room;
    el("room-info").textContent = room && room.id === state.group
      ? "#" + room.id + " · " + room.status + " · " + room.members + (room.members === 1 ? " member" : " members") + " here"
      : "not in a group";
  }

  function systemLine(text) {
    var list = el("messages");
    list.appendChild(make("li", "system", text));
    list.scrollTop = list.scrollHeight;
  }

  function clientIdFor(groupId) {
    if (state.user.kind === "client") return state.user.id;
    var group = groupById(groupId);
    return group ? group.clientId : undefined;
  }

  function send(event) {
    event.preventDefault();
    var input = el("composer-input");
    var text = input.value;
    if (!text.trim() || state.group === null) return;
    stopTyping();
    var id = Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 10);
    emit("sendMessage", {
      message: text,
      chatGroupId: state.group,
      clientId: clientIdFor(state.group),
      clientMessageId: id,
    }, function () {
      if (input.value === text) input.value = "";
    });
  }

  // ---- typing indicators ------------------------------------------------

  function onInput() {
    if (state.group === null) return;
    if (!el("composer-input").value) {
      stopTyping();
      return;
    }
    var now = Date.now();
    if (now - state.typingSentAt > TYPING_REPEAT_MS) {
      state.typingSentAt = now;
      emit("typing", { chatGroupId: state.group, userType: state.user.role, userId: state.user.id });
    }
    clearTimeout(state.typingIdle);
    state.typingIdle = setTimeout(stopTyping, TYPING_IDLE_MS);
  }

  function stopTyping() {
    clearTimeout(state.typingIdle);
    state.typingIdle = null;
    if (!state.typingSentAt || state.group === null) return;
    state.typingSentAt = 0;
    emit("stopTyping", { chatGroupId: state.group, userType: state.user.role, userId: state.user.id });
  }

  function addTyper(userType, userId) {
    var key = kindOf(userType) + ":" + userId;
    var current = state.typers.get(key);
    if (current) clearTimeout(current.timer);
    state.typers.set(key, {
      name: displayName(userId, userType),
      timer: setTimeout(function () {
        removeTyper(userType, userId);
      }, TYPING_SHOWN_MS),
    });
    renderTypers();
  }

  function removeTyper(userType, userId) {
    var key = kindOf(userType) + ":" + userId;
    var current = state.typers.get(key);
    if (!current) return;
    clearTimeout(current.timer);
    state.typers.delete(key);
    renderTypers();
  }

  function clearTypers() {
    state.typers.forEach(function (t) {
      clearTimeout(t.timer);
    });
    state.typers.clear();
    renderTypers();
  }

  function renderTypers() {
    var names = [];
    state.typers.forEach(function (t) {
      names.push(t.name);
    });
    el("typing").textContent = names.length
      ? names.join(", ") + (names.length === 1 ? " is typing…" : " are typing…")
      : "";
  }

  // ---- wiring -------------------------------------------------------------

  fillUsers();
  el("login-form").addEventListener("submit", login);
  el("logout").addEventListener("click", function () {
    disconnect(true);
  });
  el("join-form").addEventListener("submit", function (event) {
    event.preventDefault();
    join(Number(el("group-input").value));
  });
  el("leave").addEventListener("click", leave);
  el("composer").addEventListener("submit", send);
  el("composer-input").addEventListener("input", onInput);
  el("composer-input").addEventListener("blur", stopTyping);
  el("get-stats").addEventListener("click", function () {
    emit("getRoomStats");
  });
  el("clear-log").addEventListener("click", function () {
    el("log").textContent = "";
  });
  if (typeof io !== "function") {
    showAlert("The socket.io client bundle did not load.", true, 600000);
    el("login").disabled = true;
  }
})();
`;
