// The web client's page: conversations with their unread counts, messages shown once (by
// id), who is online, the banner. The farm's side (the socket, the logins, moving between
// servers) is farm.js, which tells the page what happens through `view`.

import { farm, logIn, logOut, messageId, send, start, view } from "./farm.js";

const $ = (id) => document.getElementById(id);
const WHO_EVERY_MS = 5000;

const page = {
  // The ids of the messages shown, over every socket and server.
  seen: new Set(),
  // Conversations by key ("@bob", "#ops"): {messages: [], unread: 0}.
  conversations: new Map(),
  current: null,
  whoTimer: null,
};

// --- Conversations and messages ---------------------------------------------------------

function conversation(key) {
  if (!page.conversations.has(key)) {
    page.conversations.set(key, { messages: [], unread: 0 });
  }
  return page.conversations.get(key);
}

function keyOf(message) {
  if (message.group) {
    return "#" + message.group;
  }
  return "@" + (message.from === farm.user ? message.to : message.from);
}

function showMessage(message) {
  if (page.seen.has(message.id)) {
    return;
  }
  page.seen.add(message.id);
  const key = keyOf(message);
  const talk = conversation(key);
  talk.messages.push(message);
  if (key === page.current) {
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
  if (key === page.current) {
    drawMessage({ notice: text });
  }
  refreshWho();
}

function select(key) {
  page.current = key;
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
  for (const [key, talk] of page.conversations) {
    const item = document.createElement("li");
    item.className = "conversation" + (key === page.current ? " current" : "");
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
    item.className = "message" + (message.from === farm.user ? " mine" : "");
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
  const usable = page.current !== null;
  $("text").disabled = !usable;
  $("send").disabled = !usable;
}

function showError(text) {
  $("chat-error").textContent = text || "";
}

function sendText(text) {
  const key = page.current;
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
      from: farm.user,
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
  clearTimeout(page.whoTimer);
  page.whoTimer = setTimeout(refreshWho, WHO_EVERY_MS);
  if (!farm.loggedIn) {
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

view.message = showMessage;
view.notice = showNotice;
view.error = showError;
view.banner = (text) => {
  const element = $("banner");
  element.textContent = text || "";
  element.hidden = !text;
};
view.loggedIn = () => {
  $("login").hidden = true;
  $("chat").hidden = false;
  send({ command: "groups" }, (answer) => {
    if (answer.type === "ok") {
      for (const group of answer.joined) {
        conversation("#" + group);
      }
      drawConversations();
    }
  });
  refreshWho();
};
view.whoami = (answer) => {
  $("me").textContent = `${answer.user}@${answer.server}`;
};
view.loggedOut = (message) => {
  $("chat").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
};

$("login").onsubmit = (submit) => {
  submit.preventDefault();
  $("login-error").textContent = "";
  $("login-button").disabled = true;
  logIn($("user").value.trim(), $("password").value, (answer) => {
    $("login-button").disabled = false;
    if (answer.type === "error") {
      $("login-error").textContent = answer.message;
    } else {
      $("password").value = "";
    }
  });
};
$("composer").onsubmit = (submit) => {
  submit.preventDefault();
  const text = $("text").value;
  if (text.trim() && page.current) {
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
  const key = page.current;
  send({ command: "leave", group: key.slice(1) }, (answer) => {
    if (answer.type === "ok") {
      page.conversations.delete(key);
      page.current = null;
      $("messages").replaceChildren();
      $("title").textContent = "Pick a conversation";
      $("leave").hidden = true;
      enableComposer();
      drawConversations();
    }
  });
};
$("logout").onclick = () => {
  logOut(() => {
    page.conversations.clear();
    page.current = null;
    drawConversations();
  });
};

start();
