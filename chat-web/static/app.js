// The farm's web client. It speaks the JSON of `chat-client --json` over a WebSocket to the
// server that served this page: one command object per frame out, one event object per frame
// in, each command answered in order by an `ok` or `error` object.
//
// After the login it keeps only the resume ticket (in memory and in sessionStorage, for this
// tab), never the password. When its server's socket closes, it logs in with the ticket at
// the user's home, backup, then any other server of the farm (the `web` event lists their web
// endpoints), and fetches what waited meanwhile with `readlog`. When the session moves inside
// the farm (a `connected` event naming another server), the page follows it to that server's
// endpoint. Every message is shown once: the page remembers the ids it has shown.
"use strict";

const $ = (id) => document.getElementById(id);
const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 2000;
const WHO_EVERY_MS = 5000;

const state = {
  socket: null,
  // The server whose endpoint the socket is on, and the one the session is connected to.
  endpoint: null,
  connectedTo: null,
  // Every server's web endpoint, by name: {url, live}.
  servers: {},
  user: null,
  ticket: null,
  home: null,
  backup: null,
  loggedIn: false,
  // Commands sent and not yet answered, oldest first: {command, done}.
  pending: [],
  // Commands to send once logged in again after a move.
  waiting: [],
  seen: new Set(),
  // Conversations by key ("@bob", "#ops"): {messages: [], unread: 0}.
  conversations: new Map(),
  current: null,
  retryMs: RETRY_MIN_MS,
  whoTimer: null,
};

function socketUrl(pageUrl) {
  const url = new URL("/ws", pageUrl);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

function banner(text) {
  const element = $("banner");
  element.textContent = text || "";
  element.hidden = !text;
}

// Opens a socket to `pageUrl`'s endpoint; `opened` runs once it is open, `failed` if it
// never opens.
function open(pageUrl, opened, failed) {
  let socket;
  try {
    socket = new WebSocket(socketUrl(pageUrl));
  } catch (err) {
    failed();
    return;
  }
  let isOpen = false;
  socket.onopen = () => {
    isOpen = true;
    state.socket = socket;
    state.pending = [];
    opened();
  };
  socket.onmessage = (frame) => {
    if (state.socket === socket) {
      receive(JSON.parse(frame.data));
    }
  };
  socket.onclose = () => {
    if (!isOpen) {
      failed();
    } else if (state.socket === socket) {
      lost();
    }
  };
}

// Sends a command; `done(answer)` gets its `ok` or `error` object.
function send(command, done) {
  if (!state.socket || state.socket.readyState !== WebSocket.OPEN) {
    state.waiting.push({ command, done });
    return;
  }
  state.pending.push({ command, done: done || (() => {}) });
  state.socket.send(JSON.stringify(command));
}

function receive(event) {
  switch (event.type) {
    case "web":
      state.endpoint = event.server;
      state.servers = {};
      for (const server of event.servers) {
        state.servers[server.name] = { url: server.url, live: server.live };
      }
      break;
    case "connected":
      state.connectedTo = event.server;
      followSession();
      break;
    case "ok":
    case "error":
      if (event.command === "connection") {
        // About the session's connection to the farm, not an answer.
        showError(event.message);
        break;
      }
      answered(event);
      break;
    case "ticket":
      keepTicket(event.ticket);
      break;
    case "message":
      showMessage(event);
      break;
    case "joined":
    case "left":
      showNotice(event);
      break;
    case "farm_down":
      banner(event.message);
      break;
  }
}

function answered(event) {
  const pending = state.pending.shift();
  if (pending) {
    pending.done(event);
  }
}

function keepTicket(ticket) {
  state.ticket = ticket;
  sessionStorage.setItem("chat.session", JSON.stringify({ user: state.user, ticket }));
}

// --- Logging in, and again after a move -------------------------------------------------

function logIn(user, password) {
  $("login-error").textContent = "";
  $("login-button").disabled = true;
  send({ command: "login", user, password }, (answer) => {
    $("login-button").disabled = false;
    if (answer.type === "error") {
      $("login-error").textContent = answer.message;
      return;
    }
    state.user = answer.user;
    keepTicket(answer.ticket);
    $("password").value = "";
    loggedIn();
  });
}

// The ticket logs the user in on a new socket, without the password.
function resume() {
  send({ command: "login", user: state.user, ticket: state.ticket }, (answer) => {
    if (answer.type === "error") {
      // Expired or revoked (a logout or a password change elsewhere): the password it is.
      forget();
      $("login-error").textContent = answer.message;
      return;
    }
    keepTicket(answer.ticket);
    loggedIn();
  });
}

function loggedIn() {
  state.loggedIn = true;
  state.retryMs = RETRY_MIN_MS;
  banner("");
  $("login").hidden = true;
  $("chat").hidden = false;
  enableComposer();
  send({ command: "readlog" });
  send({ command: "whoami" }, (answer) => {
    if (answer.type === "ok") {
      state.home = answer.home;
      state.backup = answer.backup;
      $("me").textContent = `${answer.user}@${answer.server}`;
    }
  });
  send({ command: "groups" }, (answer) => {
    if (answer.type === "ok") {
      for (const group of answer.joined) {
        conversation("#" + group);
      }
      drawConversations();
    }
  });
  refreshWho();
  sendWaiting();
  followSession();
}

// Sends what was asked while there was no socket.
function sendWaiting() {
  const waiting = state.waiting;
  state.waiting = [];
  for (const { command, done } of waiting) {
    send(command, done);
  }
}

function forget() {
  state.loggedIn = false;
  state.ticket = null;
  sessionStorage.removeItem("chat.session");
  $("chat").hidden = true;
  $("login").hidden = false;
  banner("");
}

// The socket closed by itself: its server is gone. Log in elsewhere with the ticket.
function lost() {
  state.socket = null;
  state.loggedIn = false;
  enableComposer();
  // What was not answered is asked again on the new socket.
  state.waiting = state.pending.concat(state.waiting);
  state.pending = [];
  if (!state.ticket) {
    connectHere();
    return;
  }
  banner("Connection lost; reconnecting…");
  reconnect(candidates(), 0);
}

// Where to log in again: home, backup, then every other server, live ones first.
function candidates() {
  const names = [state.home, state.backup];
  const others = Object.keys(state.servers).sort(
    (a, b) => Number(state.servers[b].live) - Number(state.servers[a].live)
  );
  const order = [];
  for (const name of names.concat(others)) {
    if (name && state.servers[name] && !order.includes(name)) {
      order.push(name);
    }
  }
  if (order.length === 0) {
    order.push(null);
  }
  return order;
}

function reconnect(order, index) {
  if (index >= order.length) {
    const wait = state.retryMs;
    state.retryMs = Math.min(RETRY_MAX_MS, state.retryMs * 2);
    setTimeout(() => reconnect(candidates(), 0), wait);
    return;
  }
  const name = order[index];
  const url = name ? state.servers[name].url : location.href;
  banner(`Connection lost; reconnecting${name ? " to " + name : ""}…`);
  open(url, resume, () => reconnect(order, index + 1));
}

// The session moved to another server inside the farm: follow it to that server's endpoint.
function followSession() {
  const there = state.connectedTo;
  if (!state.loggedIn || !state.ticket || !there || there === state.endpoint) {
    return;
  }
  // Live, whatever the list said when this socket opened: the session just reached it.
  const server = state.servers[there];
  if (!server) {
    return;
  }
  const old = state.socket;
  state.socket = null;
  state.loggedIn = false;
  state.waiting = state.pending.concat(state.waiting);
  state.pending = [];
  old.close();
  banner(`Moving to ${there}…`);
  open(server.url, resume, () => reconnect(candidates(), 0));
}

// A socket to this page's own server, before any login (or after one that was refused).
function connectHere() {
  const opened = () => {
    banner("");
    sendWaiting();
  };
  open(location.href, opened, () => {
    banner("Cannot reach the chat server; retrying…");
    setTimeout(connectHere, RETRY_MAX_MS);
  });
}

// --- Conversations and messages ---------------------------------------------------------

function conversation(key) {
  if (!state.conversations.has(key)) {
    state.conversations.set(key, { messages: [], unread: 0 });
  }
  return state.conversations.get(key);
}

function keyOf(message) {
  if (message.group) {
    return "#" + message.group;
  }
  return "@" + (message.from === state.user ? message.to : message.from);
}

function showMessage(message) {
  if (state.seen.has(message.id)) {
    return;
  }
  state.seen.add(message.id);
  const key = keyOf(message);
  const talk = conversation(key);
  talk.messages.push(message);
  if (key === state.current) {
    drawMessage(message);
  } else {
    talk.unread += 1;
  }
  drawConversations();
}

function showNotice(notice) {
  const key = "#" + notice.group;
  const talk = conversation(key);
  const text = `${notice.user} ${notice.type} #${notice.group}`;
  talk.messages.push({ notice: text });
  if (key === state.current) {
    drawMessage({ notice: text });
  }
  refreshWho();
}

function select(key) {
  state.current = key;
  const talk = conversation(key);
  talk.unread = 0;
  $("title").textContent = key.startsWith("#") ? key : key.slice(1);
  $("leave").hidden = !key.startsWith("#");
  const list = $("messages");
  list.replaceChildren();
  for (const message of talk.messages) {
    drawMessage(message);
  }
  drawConversations();
  enableComposer();
  $("text").focus();
}

function drawConversations() {
  const list = $("conversations");
  list.replaceChildren();
  for (const [key, talk] of state.conversations) {
    const item = document.createElement("li");
    item.className = "conversation" + (key === state.current ? " current" : "");
    item.dataset.key = key;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = key.startsWith("#") ? key : key.slice(1);
    const unread = document.createElement("span");
    unread.className = "unread";
    unread.textContent = talk.unread ? String(talk.unread) : "";
    item.append(name, unread);
    item.onclick = () => select(key);
    list.append(item);
  }
}

function drawMessage(message) {
  const item = document.createElement("li");
  if (message.notice) {
    item.className = "notice";
    item.textContent = message.notice;
  } else {
    item.className = "message" + (message.from === state.user ? " mine" : "");
    item.dataset.id = message.id;
    const time = document.createElement("span");
    time.className = "time";
    const sent = new Date(message.sent_at);
    time.textContent = sent.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    const from = document.createElement("span");
    from.className = "from";
    from.textContent = message.from;
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = message.text;
    item.append(time, from, text);
  }
  const list = $("messages");
  list.append(item);
  list.scrollTop = list.scrollHeight;
}

function enableComposer() {
  const usable = state.current !== null;
  $("text").disabled = !usable;
  $("send").disabled = !usable;
}

function showError(text) {
  $("chat-error").textContent = text || "";
}

// A fresh message id (a UUIDv7, as the CLI's): a send asked again after a move keeps it, so
// the farm stores and shows it once.
function messageId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  let ms = Date.now();
  for (let i = 5; i >= 0; i--) {
    bytes[i] = ms % 256;
    ms = Math.floor(ms / 256);
  }
  bytes[6] = (bytes[6] & 0x0f) | 0x70;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)].join("-");
}

function sendText(text) {
  const key = state.current;
  const id = messageId();
  const command = key.startsWith("#")
    ? { command: "send", group: key.slice(1), text, id }
    : { command: "send", to: key.slice(1), text, id };
  send(command, (answer) => {
    if (answer.type === "error") {
      showError(answer.message);
      return;
    }
    showError("");
    showMessage({
      id: answer.id,
      from: state.user,
      to: command.to,
      group: command.group,
      text,
      sent_at: new Date().toISOString(),
    });
  });
}

function openConversation(name) {
  if (name.startsWith("#")) {
    const group = name.slice(1);
    send({ command: "join", group }, (answer) => {
      if (answer.type === "error") {
        showError(answer.message);
        return;
      }
      showError("");
      select("#" + answer.group);
    });
  } else {
    select("@" + name);
  }
}

function refreshWho() {
  clearTimeout(state.whoTimer);
  state.whoTimer = setTimeout(refreshWho, WHO_EVERY_MS);
  if (!state.loggedIn) {
    return;
  }
  send({ command: "who" }, (answer) => {
    if (answer.type !== "ok") {
      return;
    }
    const list = $("online");
    list.replaceChildren();
    for (const user of answer.users) {
      const item = document.createElement("li");
      item.textContent = user;
      item.dataset.user = user;
      item.onclick = () => openConversation(user);
      list.append(item);
    }
  });
}

// --- Wiring -----------------------------------------------------------------------------

function start() {
  $("login").onsubmit = (submit) => {
    submit.preventDefault();
    logIn($("user").value.trim(), $("password").value);
  };
  $("composer").onsubmit = (submit) => {
    submit.preventDefault();
    const text = $("text").value;
    if (text.trim() && state.current) {
      $("text").value = "";
      sendText(text);
    }
  };
  $("open-form").onsubmit = (submit) => {
    submit.preventDefault();
    const name = $("open-name").value.trim();
    if (name) {
      $("open-name").value = "";
      openConversation(name);
    }
  };
  $("leave").onclick = () => {
    const key = state.current;
    send({ command: "leave", group: key.slice(1) }, (answer) => {
      if (answer.type === "ok") {
        state.conversations.delete(key);
        state.current = null;
        $("messages").replaceChildren();
        $("title").textContent = "Pick a conversation";
        $("leave").hidden = true;
        enableComposer();
        drawConversations();
      }
    });
  };
  $("logout").onclick = () => {
    send({ command: "logout" }, () => {
      forget();
      state.conversations.clear();
      state.current = null;
      drawConversations();
    });
  };
  const saved = JSON.parse(sessionStorage.getItem("chat.session") || "null");
  if (saved && saved.user && saved.ticket) {
    state.user = saved.user;
    state.ticket = saved.ticket;
    open(location.href, resume, () => reconnect(candidates(), 0));
  } else {
    connectHere();
  }
}

start();
