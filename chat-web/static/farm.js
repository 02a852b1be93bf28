// The page's connection to the farm, without the page: it speaks the JSON of
// `chat-client --json` over a WebSocket (one command object per frame out, one event object
// per frame in, each command answered in order by an `ok` or `error` object), and keeps the
// user logged in wherever the farm serves them.
//
// After the login it keeps only the resume ticket (in memory and in sessionStorage, for this
// tab), never the password. When its socket closes, it logs in with the ticket at the user's
// home, backup, then any other server of the farm (the `web` event lists their web
// endpoints), and fetches what waited meanwhile with `readlog`. When the session moves inside
// the farm (a `connected` event naming another server), it follows it to that server's
// endpoint. What the page shows is told through `view`, which app.js fills in.

const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 2000;
const SAVED = "chat.session";

// What the farm tells the page; app.js sets each.
export const view = {
  // A message or a join or leave notice, as the farm sent it.
  message: () => {},
  notice: () => {},
  // A text for the banner, or "" for none.
  banner: () => {},
  // An error about the connection, not the answer to a command.
  error: () => {},
  // Logged in (again), with the `whoami` answer once it comes.
  loggedIn: () => {},
  whoami: () => {},
  // Logged out, or the ticket refused: the password is needed; `message` says why.
  loggedOut: () => {},
};

export const farm = {
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
  // Commands to send once there is a socket (again).
  waiting: [],
  retryMs: RETRY_MIN_MS,
};

function socketUrl(pageUrl) {
  const url = new URL("/ws", pageUrl);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
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
    farm.socket = socket;
    farm.pending = [];
    opened();
  };
  socket.onmessage = (frame) => {
    if (farm.socket === socket) {
      receive(JSON.parse(frame.data));
    }
  };
  socket.onclose = () => {
    if (!isOpen) {
      failed();
    } else if (farm.socket === socket) {
      lost();
    }
  };
}

// Sends a command; `done(answer)` gets its `ok` or `error` object. Without a socket it waits
// for the next one.
export function send(command, done) {
  const entry = { command, done: done || (() => {}) };
  if (!farm.socket || farm.socket.readyState !== WebSocket.OPEN) {
    farm.waiting.push(entry);
    return;
  }
  farm.pending.push(entry);
  farm.socket.send(JSON.stringify(command));
}

function receive(event) {
  switch (event.type) {
    case "web":
      farm.endpoint = event.server;
      farm.servers = {};
      for (const server of event.servers) {
        farm.servers[server.name] = { url: server.url, live: server.live };
      }
      break;
    case "connected":
      farm.connectedTo = event.server;
      followSession();
      break;
    case "ok":
    case "error":
      if (event.command === "connection") {
        // About the session's connection to the farm, not an answer.
        view.error(event.message);
      } else {
        const pending = farm.pending.shift();
        if (pending) {
          pending.done(event);
        }
      }
      break;
    case "ticket":
      keepTicket(event.ticket);
      break;
    case "mark":
      // Everything before it has been handled (frames are handled in order): the gateway
      // may now tell the farm that those messages were shown. Not an answered command.
      farm.socket.send(JSON.stringify({ command: "marked", mark: event.mark }));
      break;
    case "message":
      view.message(event);
      break;
    case "joined":
    case "left":
      view.notice(event);
      break;
    case "farm_down":
      view.banner(event.message);
      break;
  }
}

function keepTicket(ticket) {
  farm.ticket = ticket;
  sessionStorage.setItem(SAVED, JSON.stringify({ user: farm.user, ticket }));
}

// Logs in with the password (registering a new name); `done(answer)` gets the answer. The
// password goes no further than this login.
export function logIn(user, password, done) {
  send({ command: "login", user, password }, (answer) => {
    if (answer.type === "ok") {
      farm.user = answer.user;
      keepTicket(answer.ticket);
      loggedIn();
    }
    done(answer);
  });
}

export function logOut(done) {
  send({ command: "logout" }, () => {
    forget("");
    done();
  });
}

// The ticket logs the user in on a new socket, without the password.
function resume() {
  send({ command: "login", user: farm.user, ticket: farm.ticket }, (answer) => {
    if (answer.type === "error") {
      // Expired or revoked (a logout or a password change elsewhere): the password it is.
      forget(answer.message);
      return;
    }
    keepTicket(answer.ticket);
    loggedIn();
  });
}

function loggedIn() {
  farm.loggedIn = true;
  farm.retryMs = RETRY_MIN_MS;
  view.banner("");
  send({ command: "readlog" });
  send({ command: "whoami" }, (answer) => {
    if (answer.type === "ok") {
      farm.home = answer.home;
      farm.backup = answer.backup;
      view.whoami(answer);
    }
  });
  view.loggedIn();
  sendWaiting();
  followSession();
}

// Sends what was asked while there was no socket.
function sendWaiting() {
  const waiting = farm.waiting;
  farm.waiting = [];
  for (const { command, done } of waiting) {
    send(command, done);
  }
}

function forget(message) {
  farm.loggedIn = false;
  farm.ticket = null;
  sessionStorage.removeItem(SAVED);
  view.banner("");
  view.loggedOut(message);
}

// Takes back what the socket being let go did not answer, to ask it again on the next.
function letGo() {
  farm.socket = null;
  farm.loggedIn = false;
  farm.waiting = farm.pending.concat(farm.waiting);
  farm.pending = [];
}

// The socket closed by itself: its server is gone. Log in elsewhere with the ticket.
function lost() {
  letGo();
  if (!farm.ticket) {
    connectHere();
    return;
  }
  view.banner("Connection lost; reconnecting…");
  reconnect(candidates(), 0);
}

// Where to log in again: home, backup, then every other server, live ones first.
function candidates() {
  const names = [farm.home, farm.backup];
  const others = Object.keys(farm.servers).sort(
    (a, b) => Number(farm.servers[b].live) - Number(farm.servers[a].live)
  );
  const order = [];
  for (const name of names.concat(others)) {
    if (name && farm.servers[name] && !order.includes(name)) {
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
    const wait = farm.retryMs;
    farm.retryMs = Math.min(RETRY_MAX_MS, farm.retryMs * 2);
    setTimeout(() => reconnect(candidates(), 0), wait);
    return;
  }
  const name = order[index];
  const url = name ? farm.servers[name].url : location.href;
  view.banner(`Connection lost; reconnecting${name ? " to " + name : ""}…`);
  open(url, resume, () => reconnect(order, index + 1));
}

// The session moved to another server inside the farm: follow it to that server's endpoint.
function followSession() {
  const there = farm.connectedTo;
  if (!farm.loggedIn || !farm.ticket || !there || there === farm.endpoint) {
    return;
  }
  // Live, whatever the list said when this socket opened: the session just reached it.
  const server = farm.servers[there];
  if (!server) {
    return;
  }
  const old = farm.socket;
  letGo();
  old.close();
  view.banner(`Moving to ${there}…`);
  open(server.url, resume, () => reconnect(candidates(), 0));
}

// A socket to this page's own server, before any login (or after one that was refused).
function connectHere() {
  const opened = () => {
    view.banner("");
    sendWaiting();
  };
  open(location.href, opened, () => {
    view.banner("Cannot reach the chat server; retrying…");
    setTimeout(connectHere, RETRY_MAX_MS);
  });
}

// Connects: logs in again with the tab's saved ticket, if it has one.
export function start() {
  const saved = JSON.parse(sessionStorage.getItem(SAVED) || "null");
  if (saved && saved.user && saved.ticket) {
    farm.user = saved.user;
    farm.ticket = saved.ticket;
    open(location.href, resume, () => reconnect(candidates(), 0));
  } else {
    connectHere();
  }
}

// A fresh message id (a UUIDv7, as the CLI's): a send asked again after a move keeps it, so
// the farm stores and shows it once.
export function messageId() {
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
